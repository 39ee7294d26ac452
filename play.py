"""What the explanation scripts share: load a trained agent, play one game with it, and the command-line conventions.

- `load_checkpoint(path)`: a checkpoint written by ppo_attention.py -> a ready `Agent` in eval mode and its
  metadata. It loads with `weights_only=True`, so a shared file cannot run code.
- `make_env(env_id)`: one game that feeds the agent exactly what training fed it: ale-py's preprocessing
  (the same as `AtariVectorEnv`'s, pixel for pixel) and FIRE after a lost life, as the training loop does.
- `play(agent, env_id, seed)`: one seeded game, yielding a `Step` (observation, colour frame, every layer's
  activations, policy, value, attention, action, reward, score, the emulator's RAM and the game's objects)
  per agent step. Every script explains the same trajectory for the same seed.
- `object_boxes(env_id, ram)`: where the game's objects (Breakout: ball, paddle) are in the 210x160 frame, read
  from the emulator's RAM; `box_in_observation` puts such a box into the 84x84 observation. The ground truth
  that faithfulness.py scores the maps against, and that an intervention removes objects with.
- Conventions: `pick_device`, `output_folder` (a new `runs/<run_name>/<kind>__<time>/` or `--out`, never
  overwriting files), `Progress` on stderr, and `exit_on_bad_input`: a `UsageError` (ppo_attention.py's) is one
  sentence and exit 1, Ctrl-C is exit 130, any other error is a bug and keeps its traceback.

Imports flow one way: ppo_attention <- play <- saliency, relevance_tree <- render, faithfulness, explore.
The game's objects live here, beside the game they are read from, so that every script can reuse them.

    from play import load_checkpoint, play
    agent, meta = load_checkpoint("checkpoints/breakout_coef0.pt")
    for step in play(agent, meta["env_id"], seed=1, max_steps=100):
        print(step.t, meta["action_names"][step.action], step.value)
"""

import collections
import contextlib
import dataclasses
import functools
import itertools
import os
import sys
import time
from typing import Optional

import ale_py
import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

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


def make_env(env_id: str, seed: Optional[int] = None, noop_max: int = 30) -> gym.Env:
    """One game that feeds the agent exactly what training fed it: (4, 84, 84) uint8 stacks.

    An episode is a whole game (all lives). `env.render()` returns the 210x160x3 colour frame of the last
    emulator step, `env.get_wrapper_attr("rams")` the RAM of the last two (see `RecordRAM`). `noop_max=0` gives
    the start of `AtariVectorEnv(noop_max=0)`.
    """
    env = gym.make(env_id, frameskip=1, render_mode="rgb_array", **resolve_atari_id(env_id)[1])
    env = RecordRAM(FireAndNoopReset(env, noop_max))
    env = AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False)
    env = FireAfterLifeLoss(env)
    env = FrameStackObservation(env, 4, padding_type="zero")
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
    probs: np.ndarray  # (A,) the policy
    value: float  # V(s)
    attention: np.ndarray  # (H, 7, 7) the attention maps; H = 0 without attention
    action: int  # the action taken
    forced: bool  # True when the game pressed FIRE after a lost life (the agent's choice was overridden)
    reward: float  # raw game reward of this step
    score: float  # game score so far, this step's reward included
    ram: Optional[np.ndarray] = None  # (2, 128) uint8: the RAM at the 2 frames max-pooled into obs[-1]; [1]: frame's
    objects: dict = dataclasses.field(default_factory=dict)  # {name: its 210x160 box in obs[-1] or None}; {}: unknown


@torch.no_grad()
def play(agent: Agent, env_id: str, seed: int = 1, greedy: bool = False, max_steps: Optional[int] = None):
    """Play one game (all lives) with the agent and yield a `Step` for every agent step.

    The game starts from `seed` (its no-op start, sticky actions); actions are sampled from the policy with
    a torch.Generator seeded with `seed`, or the most probable one when `greedy`. Ends when the game does or
    after `max_steps` steps.
    """
    device = next(agent.parameters()).device
    env = make_env(env_id)
    rams = env.get_wrapper_attr("rams")  # the deque RecordRAM updates in place
    generator = torch.Generator(device=device).manual_seed(seed)
    try:
        obs, _ = env.reset(seed=seed)
        score = 0.0
        for t in itertools.count() if max_steps is None else range(max_steps):
            frame, ram = env.render(), np.stack(rams)
            activations = agent.activations(torch.as_tensor(obs, device=device)[None])
            probs = activations["logits"].float().softmax(-1)[0]  # (A,)
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
                action=info["action"],
                forced=info["forced"],
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


def play_to(agent: Agent, env_id: str, steps, seed: int = 1, greedy: bool = False) -> tuple:
    """Play one game up to the last of `steps`: ({t: Step} for the steps in `steps`, every action taken).
    UsageError (one sentence) when the game ends before the last of them."""
    kept, actions = {}, []
    for step in play(agent, env_id, seed, greedy, max_steps=max(steps) + 1):
        actions.append(step.action)
        if step.t in steps:
            kept[step.t] = step
    if len(kept) < len(set(steps)):
        raise UsageError(f"step {max(steps)} is beyond the game, which ended after {len(actions)} steps.")
    return kept, actions


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


def load_checkpoint(path: str, device="cpu") -> tuple:
    """A ready `Agent` in eval mode and the checkpoint's metadata (everything but the tensors), or
    UsageError with one sentence."""
    ckpt = read_checkpoint(path)
    try:
        with torch.device("meta"):  # no random init: the weights come from the file
            agent = Agent(int(ckpt["n_actions"]), int(ckpt["attn_heads"]))
        agent.load_state_dict(ckpt["model"], assign=True)
    except (KeyError, RuntimeError, TypeError, ValueError):
        raise UsageError(f"'{ckpt['path']}' does not match the Agent architecture of ppo_attention.py.") from None
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    return agent.to(device).eval(), meta


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
    """Run a script's `main(argv)`: a UsageError ends with one sentence on stderr and exit 1, Ctrl-C with exit 130.
    Any other exception is a bug and keeps its traceback."""
    try:
        return main(argv)
    except UsageError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        print("\nstopped by Ctrl-C.", file=sys.stderr)
        sys.exit(130)
