"""The Atari games as the agents see them: ale-py's games by id, and one game that feeds an agent exactly what its
training fed it.

- `atari_ids()` / `resolve_atari_id(env_id)`: the gymnasium ids of ale-py's games (one scan of the registry), and
  the game and settings of one id; an id the agents cannot play is a UsageError that suggests ids that work.
- `make_env(env_id, **options)`: one game, (4, 84, 84) uint8 stacks. The defaults are this project's training env
  (ale-py's `AtariVectorEnv`, pixel for pixel, and FIRE after a lost life); `ENV_OPTIONS` holds what SB3's and
  CleanRL's Atari wrappers do differently, for the agents they trained.
- `render_step(env, saved, action, shift)`: one agent step played again from a saved emulator state, with some RAM
  bytes shifted first (interventions.py has the game draw its ball elsewhere this way).

ppo_attention.py trains on ale-py's C++ vector env (its `make_env`); the explanation scripts play one game at a time
with this module's `make_env`, and tests/test_agents_elsewhere.py checks the two against each other pixel for pixel.
"""

import collections
import difflib
import functools
import re
from typing import Optional

import ale_py
import cv2
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, TransformObservation

from cli import UsageError

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no emulator banner on stderr


@functools.cache
def atari_ids() -> dict:
    """{gymnasium id: its settings} of every ale-py game id in the registry (scanned once)."""
    return {k: dict(s.kwargs) for k, s in gym.registry.items() if s.entry_point == "ale_py.env:AtariEnv"}


def resolve_atari_id(env_id: str) -> tuple:
    """(ale-py game name, the id's settings) of a gymnasium Atari id with RGB frames and a fixed frame skip
    (NoFrameskip-v4, v5); any other id is a UsageError that suggests ids that work."""
    usable = {
        k: a for k, a in atari_ids().items() if a.get("obs_type") != "ram" and isinstance(a.get("frameskip", 1), int)
    }
    if env_id not in usable:
        game = re.sub(r"^ale/|-v\d+$|noframeskip|deterministic|[-_ ]", "", env_id.lower())  # "ms_pacman": "mspacman"
        close = [k for k, kw in usable.items() if kw["game"].replace("_", "") == game and k.endswith(("p-v4", "-v5"))]
        close = close or difflib.get_close_matches(env_id, usable, n=2, cutoff=0.6) or ["BreakoutNoFrameskip-v4"]
        raise UsageError(f"'{env_id}' is not an RGB Atari id with a fixed frame skip; try {' or '.join(close[:2])}.")
    settings = dict(repeat_action_probability=0.25, full_action_space=False, max_num_frames_per_episode=108000)
    return usable[env_id]["game"], {k: usable[env_id].get(k, default) for k, default in settings.items()}


def game_ids(game: Optional[str] = None) -> list:
    """The ids of ale-py's games (all, or one) without a frame skip of their own, with RGB frames: NoFrameskip-v4."""
    return [
        k
        for k, kw in atari_ids().items()
        if kw.get("frameskip") == 1 and kw.get("obs_type") != "ram" and game in (None, kw["game"])
    ]


def action_names(env_id: str) -> list:
    """The names of the game's actions, in the order of the agent's outputs (NOOP, FIRE, RIGHT, LEFT in Breakout)."""
    with gym.make(env_id) as env:
        return env.unwrapped.get_action_meanings()


class FireAndNoopReset(gym.Wrapper):
    """Reset as `AtariVectorEnv` does: FIRE for one frame (where the game has it), then up to noop_max - 1
    single-frame no-ops. It presses the emulator's own FIRE and NOOP: in Backgammon and VideoCheckers action 0
    of the game's action set is FIRE, and there is no NOOP among them."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        self.noop_max = noop_max
        self.fire = "FIRE" in env.unwrapped.get_action_meanings()

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        ale = self.env.unwrapped.ale
        noops = int(self.np_random.integers(0, max(self.noop_max, 1))) - int(self.fire)
        for press in [ale_py.Action.FIRE] * self.fire + [ale_py.Action.NOOP] * max(noops, 0):
            ale.act(press)  # one frame (the game runs with frameskip 1 under AtariPreprocessing)
            if ale.game_over():
                obs, info = self.env.reset()
        return obs, info  # AtariPreprocessing reads the screen from the emulator, not this obs


class FireAfterLifeLoss(gym.Wrapper):
    """The agent step after a lost life presses FIRE whatever the agent chose, as the training loop does
    (CleanRL's FireResetEnv; in Breakout the ball stays put until FIRE). `info["forced"]` marks that step."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        names = env.unwrapped.get_action_meanings()
        self.fire = names.index("FIRE") if "FIRE" in names else None
        self.fire_next, self.lives = False, 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.fire_next, self.lives = False, self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        forced = self.fire_next
        obs, reward, terminated, truncated, info = self.env.step(self.fire if forced else action)
        lives = self.env.unwrapped.ale.lives()
        self.fire_next = self.fire is not None and 0 < lives < self.lives and not (terminated or truncated)
        self.lives = lives
        return obs, reward, terminated, truncated, {**info, "forced": forced, "action": self.fire if forced else action}


class RecordRAM(gym.Wrapper):
    """Keeps the emulator's RAM (128 bytes) after each of the last two emulator frames in `rams`: the two frames
    that AtariPreprocessing max-pools into the newest observed frame. Both are the current RAM after a reset."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.rams = collections.deque(maxlen=2)

    def reset(self, **kwargs):
        out = self.env.reset(**kwargs)
        ram = self.env.unwrapped.ale.getRAM().copy()
        self.rams.extend([ram, ram])
        return out

    def step(self, action):
        out = self.env.step(action)
        self.rams.append(self.env.unwrapped.ale.getRAM().copy())
        return out


class SB3Resets(gym.Wrapper):
    """The resets of Stable-Baselines3's Atari wrappers (CleanRL's ppo_atari.py and dqn_atari.py use copies of them),
    as an agent trained with them saw its game. Steps the agent does not see; their rewards count in the score:

    - `on_reset` (FireResetEnv, in games with FIRE): after the no-op start, a FIRE step, then an action-2 step;
    - `on_life_loss` (EpisodicLifeEnv): a lost life ends the agent's episode. Its next observation comes after a
      NOOP step (and FireResetEnv's two steps), and `info["restart"]` tells the frame stack to start afresh.

    Steps of 4 frames, with SB3's action indices 0 (NOOP) 1 (FIRE) and 2, which SB3 asserts for the games it wraps.
    """

    def __init__(self, env: gym.Env, on_reset: bool, on_life_loss: bool):
        super().__init__(env)
        fire = on_reset and "FIRE" in env.unwrapped.get_action_meanings()
        self.fire_steps, self.on_life_loss, self.lives = [1, 2] if fire else [], on_life_loss, 0

    def unseen(self, actions: list, obs, info: dict) -> tuple:
        """Play `actions` without the agent: (last observation, their reward, whether the game ended, info)."""
        reward, over = 0.0, False
        for a in actions:
            obs, r, terminated, truncated, info = self.env.step(a)
            reward, over = reward + float(r), terminated or truncated
            if over:
                break
        self.lives = self.env.unwrapped.ale.lives()
        return obs, reward, over, info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        obs, _, _, info = self.unseen(self.fire_steps, obs, info)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        restart = self.on_life_loss and 0 < lives < self.lives and not (terminated or truncated)
        self.lives = lives
        if restart:
            obs, more, over, info = self.unseen([0] + self.fire_steps, obs, info)
            reward, terminated = reward + more, over
        return obs, reward, terminated, truncated, {**info, "restart": restart}


class StackFrames(gym.Wrapper):
    """The last 4 frames, oldest first, channel first: (4, 84, 84) uint8. (SB3's VecFrameStack stacks on the last
    axis, (84, 84, 4); VecTransposeImage turns that into this same order for its policy.) Before an episode's first
    frame the stack holds zeros (`padding="zero"`: ale-py, SB3's VecFrameStack) or copies of that frame ("reset":
    gymnasium's FrameStackObservation, CleanRL's stack). An episode starts at reset and at `info["restart"]`."""

    def __init__(self, env: gym.Env, padding: str = "zero"):
        super().__init__(env)
        self.padding, self.observation_space = padding, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)

    def start(self, frame: np.ndarray) -> np.ndarray:
        before = np.zeros_like(frame) if self.padding == "zero" else frame
        self.frames = np.stack([before, before, before, frame])
        return self.frames.copy()

    def reset(self, **kwargs):
        frame, info = self.env.reset(**kwargs)
        return self.start(frame), info

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        if info.get("restart"):
            return self.start(frame), reward, terminated, truncated, info
        self.frames = np.concatenate([self.frames[1:], frame[None]])
        return self.frames.copy(), reward, terminated, truncated, info


GRAY = {  # 84x84 gray frames from the RGB frame, max-pooled over the last 2 emulator frames of an agent step
    "sb3": lambda rgb: cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (84, 84), interpolation=cv2.INTER_AREA),
    "cleanrl": lambda rgb84: cv2.cvtColor(rgb84, cv2.COLOR_RGB2GRAY),  # the RGB frame already resized
}


OPTIONS = {  # make_env's settings of what an agent sees, and their values
    "start": ("ale", "sb3"),
    "life_loss": ("fire", "new_episode"),
    "frames": ("ale", "sb3", "cleanrl"),
    "padding": ("zero", "reset"),
}


ENV_OPTIONS = {  # make_env's settings for what each trainer's Atari wrappers fed its agent
    "ppo_attention": {},  # the defaults
    "sb3": dict(start="sb3", life_loss="new_episode", frames="sb3", padding="zero"),
    "cleanrl": dict(start="sb3", life_loss="new_episode", frames="cleanrl", padding="reset"),
}


def make_env(
    env_id: str,
    seed: Optional[int] = None,
    noop_max: int = 30,
    start: str = "ale",
    life_loss: str = "fire",
    frames: str = "ale",
    padding: str = "zero",
) -> gym.Env:
    """One game that feeds an agent exactly what its training fed it: (4, 84, 84) uint8 stacks, oldest frame first.

    The defaults are this project's training env (ale-py's `AtariVectorEnv`, pixel for pixel, and FIRE after a lost
    life). Agents trained with other Atari wrappers saw their game differently; `ENV_OPTIONS` holds the settings for
    Stable-Baselines3's and CleanRL's:
    - start: "ale" presses FIRE for one frame, then 0 to noop_max - 1 no-op frames (AtariVectorEnv); "sb3" 1 to
      noop_max no-op frames, then a FIRE step and an action-2 step the agent does not see (SB3's NoopResetEnv and
      FireResetEnv; ale-py's single-game AtariPreprocessing draws the no-ops as SB3 does).
    - life_loss: "fire": the agent's next step is FIRE whatever it chose (`info["forced"]`), its stack goes on;
      "new_episode": the agent's episode ends (SB3's EpisodicLifeEnv), a NOOP step (and the FIRE steps) it does not
      see, then a new stack.
    - frames: each observed frame is the max of the last 2 of an agent step's 4 emulator frames, 84x84 gray. "ale":
      the emulator's grayscale, max-pooled, resized (area interpolation); "sb3" (SB3's WarpFrame): RGB max-pooled,
      OpenCV's RGB->gray, then resized; "cleanrl": RGB max-pooled, resized, then OpenCV's gray (gymnasium 0.29's
      ResizeObservation and GrayScaleObservation, the version CleanRL pins).
    - padding: what fills the stack before an episode's first frame: "zero" (ale-py, SB3) or copies of it
      ("reset", CleanRL's gymnasium FrameStack).
    Every agent divides the frames by 255 (SB3: normalize_images; a network that did not is rescaled on loading).
    An episode of this env is a whole game (all lives). `env.render()` returns the 210x160x3 colour frame of the
    last emulator step, `env.get_wrapper_attr("rams")` the RAM of the last two (see `RecordRAM`). `noop_max=0`
    gives the start of `AtariVectorEnv(noop_max=0)`.
    """
    for name, value in dict(start=start, life_loss=life_loss, frames=frames, padding=padding).items():
        if value not in OPTIONS[name]:
            raise ValueError(f"make_env: {name} must be one of {OPTIONS[name]}, not {value!r}.")
    env = gym.make(env_id, frameskip=1, render_mode="rgb_array", **resolve_atari_id(env_id)[1])
    env = RecordRAM(FireAndNoopReset(env, noop_max) if start == "ale" else env)  # the RAM of every emulator frame
    size = (160, 210) if frames == "sb3" else 84  # SB3 turns the whole frame gray before resizing it
    env = AtariPreprocessing(env, noop_max=noop_max if start == "sb3" else 0, frame_skip=4, screen_size=size,
                             terminal_on_life_loss=False, grayscale_obs=frames == "ale")  # fmt: skip
    if frames != "ale":
        env = TransformObservation(env, GRAY[frames], gym.spaces.Box(0, 255, (84, 84), np.uint8))
    if start == "sb3" or life_loss == "new_episode":
        env = SB3Resets(env, on_reset=start == "sb3", on_life_loss=life_loss == "new_episode")
    if life_loss == "fire":
        env = FireAfterLifeLoss(env)
    env = StackFrames(env, padding)
    if seed is not None:
        env.action_space.seed(seed)
    return env


# ----------------------------------------------------------------------------- one agent step played again


def preprocessing_layer(env):
    """The wrapper of a make_env game that turns one agent step (4 emulator frames, the last 2 max-pooled) into one
    84x84 frame: the outermost AtariPreprocessing, or the TransformObservation above it (SB3's and CleanRL's gray).
    Stepping it plays one agent step without the wrappers that keep a frame stack or count lives."""
    layer = env
    while not isinstance(layer, (AtariPreprocessing, TransformObservation)):
        layer = layer.env
    return layer


def render_step(env, saved, action: int, shift: dict) -> tuple:
    """(the 84x84 frame, the RAM of the 2 emulator frames max-pooled into it (2, 128)) of one agent step played again
    from the emulator state `saved` (ale.cloneState) with `action`, after adding shift {RAM address: amount} to
    the RAM. None when a shifted byte would leave 0..255."""
    ale = env.unwrapped.ale
    ale.restoreState(saved)
    ram = ale.getRAM()
    if any(not 0 <= int(ram[a]) + d <= 255 for a, d in shift.items()):
        return None
    for address, amount in shift.items():
        ale.setRAM(address, int(ram[address]) + amount)
    frame = preprocessing_layer(env).step(action)[0]
    return np.asarray(frame), np.stack(env.get_wrapper_attr("rams"))
