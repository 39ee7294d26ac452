"""What the explanation scripts share: load a trained agent, play one game with it, and the command-line conventions.

- `load_checkpoint(path)`: a checkpoint -> a ready `Agent` in eval mode and its metadata. It reads this project's
  `run.pt` and agents trained elsewhere: CleanRL's ppo_atari.py and dqn_atari.py state dicts and Stable-Baselines3's
  PPO, A2C and DQN zips (see "agents trained elsewhere" below). Weights load with `weights_only=True`, so a shared
  file cannot run code.
- `make_env(env_id, **options)`: one game that feeds the agent exactly what its training fed it. The defaults are
  this project's: ale-py's preprocessing (the same as `AtariVectorEnv`'s, pixel for pixel) and FIRE after a lost
  life, as the training loop does; the options are what SB3's and CleanRL's Atari wrappers do differently.
- `play(agent, env_id, seed, env_options=meta["env_options"])`: one seeded game, yielding a `Step` (observation,
  colour frame, every layer's activations, policy, value, attention, action, reward, score, the emulator's RAM and
  the game's objects) per agent step. Every script explains the same trajectory for the same seed.
- `object_boxes(env_id, ram)`: where the game's objects (Breakout: ball, paddle) are in the 210x160 frame, read
  from the emulator's RAM; `box_in_observation` puts such a box into the 84x84 observation. The ground truth
  that faithfulness.py scores the maps against, and that an intervention removes objects with.
- Conventions: `pick_device`, `output_folder` (a new `runs/<run_name>/<kind>__<time>/` or `--out`, never
  overwriting files), `Progress` on stderr, and `exit_on_bad_input`: a `UsageError` (ppo_attention.py's) is one
  sentence and exit 1, Ctrl-C is exit 130, any other error is a bug and keeps its traceback.

Imports flow one way: ppo_attention <- play <- saliency <- relevance_tree <- render, explore; saliency <- faithfulness,
interventions.
The game's objects live here, beside the game they are read from, so that every script can reuse them.

    from play import load_checkpoint, play
    agent, meta = load_checkpoint("checkpoints/breakout_coef0.pt")
    for step in play(agent, meta["env_id"], seed=1, max_steps=100, env_options=meta["env_options"]):
        print(step.t, meta["action_names"][step.action], step.value)
"""

import collections
import contextlib
import dataclasses
import functools
import io
import itertools
import json
import os
import re
import sys
import time
import zipfile
from typing import Optional

import ale_py
import cv2
import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.wrappers import AtariPreprocessing, TransformObservation

from ppo_attention import Agent, UsageError, read_checkpoint, resolve_atari_id

# ----------------------------------------------------------------------------- one game, as training sees it


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


# ----------------------------------------------------------------------------- playing one game


@dataclasses.dataclass
class Step:
    """One agent step of `play`."""

    t: int  # agent step of the game, 0 = the first observation
    obs: np.ndarray  # (4, 84, 84) uint8: what the agent saw
    frame: np.ndarray  # (210, 160, 3) uint8: the colour frame of the newest of the 4 frames
    activations: dict  # agent.activations(obs) with a batch of 1, on the agent's device
    probs: np.ndarray  # (A,) the policy (of a Q-value agent: epsilon-greedy, see `action_probabilities`)
    value: float  # V(s) (of a Q-value agent: max_a Q(s, a))
    attention: np.ndarray  # (H, 7, 7) the attention maps; H = 0 without attention
    action: int  # the action taken
    forced: bool  # True when the game pressed FIRE after a lost life (the agent's choice was overridden)
    reward: float  # raw game reward of this step
    score: float  # game score so far, this step's reward included
    ram: Optional[np.ndarray] = None  # (2, 128) uint8: the RAM at the 2 frames max-pooled into obs[-1]; [1]: frame's
    objects: dict = dataclasses.field(default_factory=dict)  # {name: its 210x160 box in obs[-1] or None}; {}: unknown


@torch.no_grad()
def play(
    agent: Agent,
    env_id: str,
    seed: int = 1,
    greedy: bool = False,
    max_steps: Optional[int] = None,
    env_options: Optional[dict] = None,
):
    """Play one game (all lives) with the agent and yield a `Step` for every agent step.

    The game starts from `seed` (its no-op start, sticky actions); actions are sampled from the policy with
    a torch.Generator seeded with `seed`, or the most probable one when `greedy`. Ends when the game does or
    after `max_steps` steps. env_options: make_env's settings of what the agent saw in training (the loaded
    checkpoint's `meta["env_options"]`; None: this project's).
    """
    device = next(agent.parameters()).device
    env = make_env(env_id, **(env_options or {}))
    rams = env.get_wrapper_attr("rams")  # the deque RecordRAM updates in place
    generator = torch.Generator(device=device).manual_seed(seed)
    try:
        obs, _ = env.reset(seed=seed)
        score = 0.0
        for t in itertools.count() if max_steps is None else range(max_steps):
            frame, ram = env.render(), np.stack(rams)
            activations = agent.activations(torch.as_tensor(obs, device=device)[None])
            probs = action_probabilities(agent, activations["logits"])[0]  # (A,)
            chosen = int(probs.argmax() if greedy else torch.multinomial(probs, 1, generator=generator))
            next_obs, reward, terminated, truncated, info = env.step(chosen)
            score += float(reward)
            yield Step(
                t=t,
                obs=np.asarray(obs),
                frame=frame,
                activations=activations,
                probs=probs.cpu().numpy(),
                value=float(activations["value"][0, 0]),
                attention=activations["attention"][0].float().cpu().numpy(),
                action=info.get("action", chosen),
                forced=info.get("forced", False),
                reward=reward,
                score=score,
                ram=ram,
                objects=observed_boxes(env_id, ram),
            )
            if terminated or truncated:
                break
            obs = next_obs
    finally:
        env.close()


def play_to(agent: Agent, env_id: str, steps, seed: int = 1, greedy: bool = False, env_options=None) -> tuple:
    """Play one game up to the last of `steps`: ({t: Step} for the steps in `steps`, every action taken).
    UsageError (one sentence) when the game ends before the last of them."""
    kept, actions = {}, []
    for step in play(agent, env_id, seed, greedy, max(steps) + 1, env_options):
        actions.append(step.action)
        if step.t in steps:
            kept[step.t] = step
    if len(kept) < len(set(steps)):
        raise UsageError(f"step {max(steps)} is beyond the game, which ended after {len(actions)} steps.")
    return kept, actions


def action_probabilities(agent: Agent, logits: torch.Tensor) -> torch.Tensor:
    """The distribution (B, A) the play loop draws actions from: softmax(logits) for a policy; for a Q-value agent
    epsilon-greedy, the greedy action with probability 1 - epsilon + epsilon / A, every other epsilon / A."""
    if isinstance(agent, QValueAgent):
        greedy = F.one_hot(logits.argmax(-1), logits.shape[-1]).float()
        return agent.epsilon / logits.shape[-1] + (1 - agent.epsilon) * greedy
    return logits.float().softmax(-1)


def log_action_probabilities(agent: Agent, logits: torch.Tensor) -> torch.Tensor:
    """The log of `action_probabilities` (log_softmax for a policy: no probability rounds to 0 before the log)."""
    return (
        action_probabilities(agent, logits).log() if isinstance(agent, QValueAgent) else logits.float().log_softmax(-1)
    )


def played_policy(agent: Agent) -> str:
    """What the play loop draws actions from, in words: "policy", or a Q-value agent's "epsilon-greedy, epsilon 0.01"
    (faithfulness.py's and interventions.py's KL follow that distribution)."""
    return f"epsilon-greedy, epsilon {agent.epsilon:g}" if isinstance(agent, QValueAgent) else "policy"


# ----------------------------------------------------------------------------- the game's objects, from its RAM

FRAME_SIZE, OBS_SIZE = (210, 160), 84  # the colour frame (rows, columns); AtariPreprocessing resizes all of it


def breakout_objects(ram: np.ndarray) -> dict:
    """Breakout's ball (2x4 px) and paddle (16x4 px) from the RAM addresses OCAtari documents (Delfosse et al.
    2023, ocatari/ram/breakout.py), cut to the playfield the walls leave visible (rows 32-195, columns 8-151).
    The ball is off the screen when ram[101] is 0 or when it is below the playfield."""
    bx, by, px = int(ram[99]) - 49, int(ram[101]) + 9, int(ram[72]) - 47
    visible = lambda y0, x0, y1, x1: (max(y0, 32), max(x0, 8), min(y1, 196), min(x1, 152))  # noqa: E731
    ball = visible(by, bx, by + 4, bx + 2) if ram[101] != 0 else None
    return {
        "ball": ball if ball and ball[0] < ball[2] and ball[1] < ball[3] else None,
        "paddle": visible(189, px, 193, px + 16),
    }


OBJECT_READERS = {"breakout": breakout_objects}  # ale-py game name -> reader; tests/test_play.py checks each one


@functools.cache
def game_name(env_id: str) -> str:
    """ale-py's name of a gymnasium Atari id's game. Cached: resolve_atari_id scans the whole registry, and the
    play loop reads the objects twice a step (uncached, 17% of a game's time)."""
    return resolve_atari_id(env_id)[0]


def object_boxes(env_id: str, ram: np.ndarray) -> dict:
    """Where the game's objects are in one 210x160 frame, read from the emulator's RAM (128 bytes, uint8):
    {name: (y0, x0, y1, x1), end-exclusive, or None when the object is not on the screen}: the pixels it covers.
    {} for a game whose RAM layout is not known here (all but `OBJECT_READERS`)."""
    reader = OBJECT_READERS.get(game_name(env_id))
    return {} if reader is None else reader(ram)


def observed_boxes(env_id: str, rams: np.ndarray) -> dict:
    """The objects of an observed frame, the maximum of two emulator frames: each object's boxes in both
    (rams: (2, 128), as `Step.ram`) joined into one 210x160 box, or None when it is in neither."""
    boxes = [object_boxes(env_id, ram) for ram in rams]
    joined = {}
    for name in boxes[-1]:
        present = [b[name] for b in boxes if b[name] is not None]
        joined[name] = None if not present else tuple(f(v) for f, v in zip((min, min, max, max), zip(*present)))
    return joined


def box_in_observation(box: tuple, margin: int = 0) -> tuple:
    """A 210x160 frame box (y0, x0, y1, x1) in the 84x84 observation: every observation pixel that one of its
    pixels reaches through AtariPreprocessing's resize (area interpolation), grown by `margin` observation
    pixels on each side and clipped to the image; end-exclusive."""
    y0, x0, y1, x1 = box
    (h, w), n = FRAME_SIZE, OBS_SIZE
    y0, x0, y1, x1 = y0 * n // h, x0 * n // w, -(-y1 * n // h), -(-x1 * n // w)  # start rounded down, end up
    return max(y0 - margin, 0), max(x0 - margin, 0), min(y1 + margin, n), min(x1 + margin, n)


# ----------------------------------------------------------------------------- loading an agent


def load_checkpoint(path: str, device="cpu", env_id: Optional[str] = None) -> tuple:
    """A ready agent in eval mode and its metadata, or UsageError with one sentence.

    path: this project's `run.pt` (or its run folder), a CleanRL state dict or a Stable-Baselines3 zip (see "agents
    trained elsewhere" below). env_id: the game of an agent whose file does not name it. meta holds env_id,
    action_names, n_actions, attn_heads, run_name, path, outputs ("policy", or "q_values" for a DQN, with the
    epsilon of its epsilon-greedy play), source (what trained it), env_options (make_env's settings of what it saw
    in training) and, from this project's checkpoints, the rest of the file but the tensors (args, global_step, ...).
    """
    check_run_folder(path)
    if os.path.isfile(path) and zipfile.is_zipfile(path) and not is_torch_zip(path):
        agent, meta = load_sb3(path, env_id)
    elif cleanrl_names(state := torch_file(path)):
        agent, meta = load_cleanrl(path, state, env_id)
    elif isinstance(state, dict) and "format_version" not in state:
        raise UsageError(f"'{path}' is not a checkpoint written by ppo_attention.py, nor a CleanRL or SB3 agent.")
    else:
        agent, meta = load_ppo_attention(path, env_id)
    return agent.to(device).eval(), meta


AGENT_FILES = (".pt", ".zip", ".cleanrl_model")  # this project's, SB3's and CleanRL's agent files


def check_run_folder(path: str) -> None:
    """A folder loads as a run folder (its run.pt); for one without, UsageError naming the agent files it holds."""
    if not os.path.isdir(path) or os.path.isfile(os.path.join(path, "run.pt")):
        return
    files = sorted(f for f in os.listdir(path) if f.endswith(AGENT_FILES) and os.path.isfile(os.path.join(path, f)))
    shown, more = ", ".join(os.path.join(path, f) for f in files[:6]), len(files) - 6
    shown += f" and {more} more" if more > 0 else ""
    choose = f"give one of its files: {shown}" if files else "it holds no .pt, .zip or .cleanrl_model file either"
    raise UsageError(f"'{path}' is a folder without a run.pt (a run folder of ppo_attention.py); {choose}.")


def is_torch_zip(path: str) -> bool:
    """torch.save writes a zip file too, with a `<name>/data.pkl` in it."""
    with zipfile.ZipFile(path) as z:
        return any(name.endswith("data.pkl") for name in z.namelist())


def torch_file(path: str):
    """What a PyTorch file holds, loaded with weights_only=True; None for a folder or a file that does not load."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True) if os.path.isfile(path) else None
    except Exception:  # read_checkpoint says what is wrong with it, in one sentence
        return None


def load_ppo_attention(path: str, env_id: Optional[str]) -> tuple:
    """A checkpoint of ppo_attention.py (see its `read_checkpoint`); it names its game, so --env-id can only agree."""
    ckpt = read_checkpoint(path)
    if env_id and env_id != ckpt["env_id"]:
        raise UsageError(f"'{ckpt['path']}' plays {ckpt['env_id']}, not --env-id {env_id}; leave --env-id out.")
    try:
        with torch.device("meta"):  # no random init: the weights come from the file
            agent = Agent(int(ckpt["n_actions"]), int(ckpt["attn_heads"]))
        agent.load_state_dict(ckpt["model"], assign=True)
    except (KeyError, RuntimeError, TypeError, ValueError):
        raise UsageError(f"'{ckpt['path']}' does not match the Agent architecture of ppo_attention.py.") from None
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    return agent, meta | dict(outputs="policy", source="ppo_attention.py", env_options=ENV_OPTIONS["ppo_attention"])


# ----------------------------------------------------------------------------- agents trained elsewhere
# CleanRL and Stable-Baselines3 train Atari agents with the Nature CNN, which is this project's Agent with
# attn_heads=0: their weights go into its layers, and make_env feeds each agent what its trainer's wrappers did.


class QValueAgent(Agent):
    """A DQN's Q-network in the Agent's layers: `logits` are the Q-values Q(s, a), and `value` is max_a Q(s, a),
    the value of acting greedily (a DQN has no critic: `critic` holds zeros, and its output is replaced).
    The play loop acts epsilon-greedily: a uniformly random action with probability `epsilon`, else the greedy one."""

    def __init__(self, n_actions: int, epsilon: float):
        super().__init__(n_actions, attn_heads=0)
        self.epsilon = epsilon

    def activations(self, x: torch.Tensor, check: bool = True) -> dict:
        out = super().activations(x, check)
        out["value"] = out["logits"].amax(1, keepdim=True)
        return out


CLEANRL = dict(conv1="network.0", conv2="network.2", conv3="network.4", fc="network.7")  # nn.Sequential's indices
SB3 = dict(conv1="cnn.0", conv2="cnn.2", conv3="cnn.4", fc="linear.0")  # SB3's NatureCNN, in its features_extractor
LAYOUTS = {  # where each of the Agent's layers is in a file: {Agent layer: the file's layer}
    "CleanRL ppo_atari.py": CLEANRL | dict(actor="actor", critic="critic"),
    "CleanRL dqn_atari.py": CLEANRL | dict(actor="network.9"),
    "SB3 PPO": {k: f"features_extractor.{v}" for k, v in SB3.items()} | dict(actor="action_net", critic="value_net"),
    "SB3 A2C": {k: f"features_extractor.{v}" for k, v in SB3.items()} | dict(actor="action_net", critic="value_net"),
    "SB3 DQN": {k: f"q_net.features_extractor.{v}" for k, v in SB3.items()} | dict(actor="q_net.q_net.0"),
}
SB3_COPIES = ("pi_features_extractor.", "vf_features_extractor.", "q_net_target.")  # not read (see load_sb3)
CLEANRL_EPSILON = 0.01  # dqn_atari.py's final exploration rate, with which it evaluates the model it saves


def nature_cnn(path: str, state: dict, source: str, epsilon: Optional[float] = None, scale: float = 1.0) -> Agent:
    """An Agent without attention (a QValueAgent when `epsilon` is given) holding the weights of `state`, laid out
    as LAYOUTS[source] says; UsageError (one sentence) for a missing layer, a layer the Nature CNN has not, or
    another shape. scale: 255 for a network that read frames in 0..255 (conv1's weights x 255: the Agent reads
    them / 255)."""
    names = {f"{layer}.{p}" for layer in LAYOUTS[source].values() for p in ("weight", "bias")}
    if missing := sorted(names - set(state)):
        more = f" and {len(missing) - 2} more" if len(missing) > 2 else ""
        raise UsageError(f"'{path}' lacks {', '.join(missing[:2])}{more}: it is not a whole {source} network.")
    if extra := sorted(k for k in set(state) - names if not k.startswith(SB3_COPIES)):
        raise UsageError(f"'{path}' has layers the Nature CNN of {source} has not ({', '.join(extra[:2])}).")
    weights = {f"{ours}.{p}": state[f"{theirs}.{p}"].float() for ours, theirs in LAYOUTS[source].items() for p in ("weight", "bias")}  # fmt: skip
    weights["conv1.weight"] = weights["conv1.weight"] * scale
    if epsilon is not None:
        weights |= {"critic.weight": torch.zeros(1, 512), "critic.bias": torch.zeros(1)}
    n_actions = len(weights["actor.bias"])
    try:
        with torch.device("meta"):  # no random init: the weights come from the file
            agent = Agent(n_actions, attn_heads=0) if epsilon is None else QValueAgent(n_actions, epsilon)
        agent.load_state_dict(weights, assign=True)
    except RuntimeError:
        raise UsageError(
            f"'{path}' is not the Nature CNN (4 stacked 84x84 frames, convolutions of 32, 64 and 64 channels, 512 "
            "units) of this project's Agent: its layers have other shapes."
        ) from None
    return agent


def cleanrl_names(state) -> bool:
    return isinstance(state, dict) and any(str(k).startswith(("network.", "actor.", "critic.")) for k in state)


def load_cleanrl(path: str, state: dict, env_id: Optional[str]) -> tuple:
    """A state dict of CleanRL's ppo_atari.py `Agent` (network.0/2/4/7, actor, critic; its users save
    `agent.state_dict()`) or of dqn_atari.py's `QNetwork` (network.0 to network.9, no actor or critic; `--save-model`
    writes runs/<run_name>/<exp_name>.cleanrl_model). The keys tell the two apart, not the file's name: CleanRL's
    other scripts save PPO agents as .cleanrl_model too. Both compute network(x / 255), as the Agent does."""
    heads = any(str(k).startswith(("actor.", "critic.")) for k in state)
    dqn = not heads and any(str(k).startswith("network.9.") for k in state)
    source = "CleanRL dqn_atari.py" if dqn else "CleanRL ppo_atari.py"
    agent = nature_cnn(path, state, source, epsilon=CLEANRL_EPSILON if dqn else None)
    env_id, names = game_of(path, env_id, agent.n_actions, source)
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))  # dqn_atari.py's runs/<run_name>/
    run_name = folder if folder.startswith(f"{env_id}__") else os.path.splitext(os.path.basename(path))[0]
    return agent, elsewhere_meta(path, agent, env_id, names, run_name, source, "cleanrl")


def plain(entry):
    """A value of SB3's `data` JSON without unpickling: as it is where SB3 stored it as JSON; where SB3 cloudpickled it
    (":serialized:"), the plain fields SB3 wrote beside the blob: an object's first-level attributes or a dict's items,
    as JSON, or as their str() where they were not JSON (so a str there may have been another Python value)."""
    if isinstance(entry, dict) and ":serialized:" in entry:
        return {k: v for k, v in entry.items() if k not in (":type:", ":serialized:")}
    return entry


def load_sb3(path: str, env_id: Optional[str]) -> tuple:
    """A Stable-Baselines3 zip of PPO or A2C with `ActorCriticCnnPolicy`, or of DQN with its `CnnPolicy`.

    The weights come from `policy.pth` (weights_only=True): the shared CNN and the heads; the copies of the CNN
    (pi_, vf_features_extractor) must equal it, and DQN's target network is not read. Of the `data` JSON only
    plain fields are read (see `plain`): the `observation_space`'s `_shape` (a list) and `dtype` ("uint8"),
    `policy_kwargs`' `normalize_images` (true or false), `num_timesteps`, `exploration_final_eps`, and whether
    there is a `clip_range` (PPO, not A2C). What SB3 cloudpickled (`:serialized:`: Python objects, which could run
    code) is never unpickled; an agent whose fields cannot be read so is refused. (The space's bounds need no check:
    SB3's NatureCNN refuses to normalize images that are not 0..255.)
    """
    with zipfile.ZipFile(path) as z:
        if not {"data", "policy.pth"} <= set(z.namelist()):
            raise UsageError(f"'{path}' is a zip file but not a Stable-Baselines3 agent (no data and policy.pth).")
        try:
            data = json.loads(z.read("data"))
            state = torch.load(io.BytesIO(z.read("policy.pth")), map_location="cpu", weights_only=True)
        except Exception:
            raise UsageError(
                f"'{path}' has an SB3 data or policy.pth that is corrupt or holds Python objects."
            ) from None
    dqn = any(k.startswith("q_net.") for k in state)
    source = "SB3 DQN" if dqn else "SB3 PPO" if "clip_range" in data else "SB3 A2C"
    if not any(k.endswith("features_extractor.cnn.0.weight") for k in state):
        raise UsageError(f"'{path}' holds an SB3 policy without the Nature CNN (an MlpPolicy, or another features "
                         "extractor); only CnnPolicy agents of PPO, A2C and DQN load here.")  # fmt: skip
    if any(not torch.equal(v, state[k.split("_", 1)[1]]) for k, v in state.items() if k.startswith(SB3_COPIES[:2])):
        raise UsageError(f"'{path}' has a CNN of its own for the value (share_features_extractor=False); "
                         "this project's Agent shares one.")  # fmt: skip
    shape, dtype = sb3_observations(path, data)
    if shape != [4, 84, 84] or dtype != "uint8":
        raise UsageError(f"'{path}' saw {dtype} observations of shape {tuple(shape)}, not 4 stacked 84x84 uint8 "
                         "frames (SB3's AtariWrapper and VecFrameStack(4)).")  # fmt: skip
    normalized = sb3_normalize_images(path, data)
    epsilon = float(data.get("exploration_final_eps", 0.05)) if dqn else None
    agent = nature_cnn(path, state, source, epsilon, scale=1.0 if normalized else 255.0)
    env_id, names = game_of(path, env_id, agent.n_actions, source)
    run_name = os.path.splitext(os.path.basename(path))[0]
    meta = elsewhere_meta(path, agent, env_id, names, run_name, source, "sb3")
    return agent, meta | dict(global_step=data.get("num_timesteps"))


def sb3_observations(path: str, data: dict) -> tuple:
    """(shape as a list, dtype name) of the observations an SB3 agent saw, from its `data`'s observation_space."""
    space = plain(data.get("observation_space"))
    shape, dtype = (space.get("_shape", space.get("shape")), space.get("dtype")) if isinstance(space, dict) else (0, 0)
    if not (isinstance(shape, list) and all(isinstance(n, int) for n in shape) and isinstance(dtype, str)):
        raise UsageError(f"'{path}' does not say in plain JSON what observations its agent saw (its data's "
                         "observation_space has no _shape and dtype), and it is not unpickled here.")  # fmt: skip
    return shape, dtype


def sb3_normalize_images(path: str, data: dict) -> bool:
    """Whether an SB3 policy divided its frames by 255: `policy_kwargs`' normalize_images, True where it is unset."""
    kwargs = plain(data.get("policy_kwargs", {}))
    normalized = kwargs.get("normalize_images", True) if isinstance(kwargs, dict) else None
    if not isinstance(normalized, bool):
        raise UsageError(f"'{path}' does not say in plain JSON whether its policy divided its frames by 255 "
                         "(policy_kwargs' normalize_images), and it is not unpickled here.")  # fmt: skip
    return normalized


def elsewhere_meta(path, agent, env_id, names, run_name, source, trainer) -> dict:
    """The metadata of an agent trained elsewhere (see load_checkpoint)."""
    meta = dict(path=path, env_id=env_id, action_names=names, n_actions=agent.n_actions, attn_heads=0)
    meta |= dict(run_name=run_name, outputs="policy", source=source, env_options=ENV_OPTIONS[trainer])
    return meta | (dict(outputs="q_values", epsilon=agent.epsilon) if isinstance(agent, QValueAgent) else {})


def game_ids(game: Optional[str] = None) -> list:
    """The ids of ale-py's games (all, or one) without a frame skip of their own, with RGB frames: NoFrameskip-v4."""
    ids = []
    for k, spec in gym.registry.items():
        kw = spec.kwargs
        if spec.entry_point == "ale_py.env:AtariEnv" and kw.get("frameskip") == 1 and kw.get("obs_type") != "ram":
            ids += [k] if game in (None, kw["game"]) else []
    return ids


def env_id_in_path(path: str) -> Optional[str]:
    """The Atari id that a file's name or its folder's name holds, as CleanRL's run folders
    (`runs/<env_id>__<exp_name>__<seed>__<time>/`) and rl-baselines3-zoo's files (`<algo>-<env_id>.zip`) do."""
    names = f"{os.path.basename(os.path.dirname(os.path.abspath(path)))}/{os.path.basename(path)}"
    found = [k for k in game_ids() if re.search(rf"(^|[^A-Za-z0-9]){re.escape(k)}($|[^A-Za-z0-9])", names)]
    return max(found, key=len) if found else None


def game_of(path: str, env_id: Optional[str], n_actions: int, source: str) -> tuple:
    """(env_id, action names) of an agent trained elsewhere: --env-id, else the Atari id its path names; UsageError
    when there is none, when its trainer's wrappers could not have played that id, or when the actions differ."""
    env_id = env_id or env_id_in_path(path)
    if env_id is None:
        raise UsageError(f"'{path}' does not say which game its {source} agent plays; add --env-id, e.g. "
                         "--env-id BreakoutNoFrameskip-v4.")  # fmt: skip
    game = resolve_atari_id(env_id)[0]
    if env_id not in game_ids():  # SB3's and CleanRL's wrappers skip frames themselves
        alternative = " or ".join(game_ids(game)[:1]) or "a NoFrameskip-v4 id"
        raise UsageError(f"{source}'s Atari wrappers skip frames themselves, so its agents could not have played "
                         f"{env_id}, which skips frames too; try {alternative}.")  # fmt: skip
    with gym.make(env_id) as env:
        names = env.unwrapped.get_action_meanings()
    if len(names) != n_actions:
        raise UsageError(f"the agent in '{path}' has {n_actions} outputs but {env_id} has {len(names)} actions; "
                         "is --env-id right?")  # fmt: skip
    return env_id, names


# ----------------------------------------------------------------------------- conventions of every script


def pick_device(cuda: bool) -> torch.device:
    return torch.device("cuda" if cuda and torch.cuda.is_available() else "cpu")


def make_writable_folder(path: str, what: str = "output folder") -> None:
    """Create `path` if needed and check that a file can be written there (UsageError if not)."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test{os.getpid()}")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"cannot write the {what} '{path}': {e.strerror}.") from None


@contextlib.contextmanager
def output_folder(out: Optional[str], run_name: str, kind: str, force: bool = False):
    """The folder an explanation script writes into: `--out`, or a new `runs/<run_name>/<kind>__<unix time>/`.

    An `--out` that already holds files is refused unless `force`. A folder made here and left empty (bad
    input, Ctrl-C before the first file) is removed again.
    """
    if out is None:
        base = os.path.join("runs", run_name.replace("/", "-"), f"{kind}__{int(time.time())}")
        out, n = base, 1
        while os.path.exists(out):
            n += 1
            out = f"{base}-{n}"
    elif os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out '{out}' is a file, not a folder.")
    elif os.path.isdir(out) and os.listdir(out) and not force:
        raise UsageError(f"--out '{out}' already holds files; choose another folder or add --force to write into it.")
    created = not os.path.exists(out)
    make_writable_folder(out)
    try:
        yield out
    finally:
        if created and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)


class Progress:
    """Progress on stderr: on a terminal one line rewritten in place, in a log a plain line every `every` seconds."""

    def __init__(self, every: float = 30.0):
        self.tty, self.every, self.last = sys.stderr.isatty(), every, -float("inf")

    def __call__(self, message: str, done: bool = False) -> None:
        now = time.monotonic()
        if done or now - self.last >= (0.1 if self.tty else self.every):
            self.last = now
            end = "\n" if done or not self.tty else ""
            print(f"\r{message}\033[K" if self.tty else message, end=end, file=sys.stderr, flush=True)


def exit_on_bad_input(main, argv=None):
    """Run a script's `main(argv)`: a UsageError ends with one sentence on stderr and exit 1, Ctrl-C with exit 130 and
    "stopped by Ctrl-C." (with what the script says of it: `KeyboardInterrupt("what was kept")`). Any other exception
    is a bug and keeps its traceback."""
    try:
        return main(argv)
    except UsageError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt as e:
        print(f"\nstopped by Ctrl-C{f': {e}' if str(e) else ''}.", file=sys.stderr)
        sys.exit(130)
