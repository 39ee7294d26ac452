"""Play one game with an agent, step by step, and read where the game's objects are.

- `play(agent, env_id, seed, env_options=meta["env_options"])`: one seeded game, yielding a `Step` (observation,
  colour frame, every layer's activations, policy, value, attention, action, reward, score, the emulator's RAM and
  the game's objects) per agent step. Every script explains the same trajectory for the same seed.
- `object_boxes(env_id, ram)`: where the game's objects (Breakout: ball, paddle) are in the 210x160 frame, read
  from the emulator's RAM; `box_in_observation` puts such a box into the 84x84 observation. The ground truth
  that faithfulness.py scores the maps against, and that interventions.py removes and moves objects with
  (`RAM_POSITIONS`: the RAM bytes that place an object; `PLAYFIELD`: where the game is played).
- `mean_and_se`, `mean_and_se_over_games`, `bootstrap_over_games`, `plus_minus`: the statistics of what was
  measured on played games, whose states are not independent draws (errors over games; nan with fewer than 2).

    from agents import load_checkpoint
    from play import play
    agent, meta = load_checkpoint("checkpoints/breakout_coef0.pt")
    for step in play(agent, meta["env_id"], seed=1, max_steps=100, env_options=meta["env_options"]):
        print(step.t, meta["action_names"][step.action], step.value)
"""

import dataclasses
import functools
import itertools
from typing import Optional

import numpy as np
import torch

from agents import action_probabilities
from atari_env import make_env, resolve_atari_id
from cli import UsageError
from ppo_attention import Agent


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

# The playfield of a game, in the 210x160 frame (y0, x0, y1, x1), end-exclusive: Breakout's is what its walls
# leave visible (breakout_objects), below the score and the top wall.
PLAYFIELD = {"breakout": (32, 8, 196, 152)}

# {game: {object: (RAM address of its x, RAM address of its y)}}: in the 210x160 frame x = RAM + a constant and
# y = RAM + a constant (breakout_objects: ball x = ram[99] - 49, y = ram[101] + 9), so adding (dy, dx) to them
# moves the object by (dy, dx) frame pixels: atari_env.render_step plays a step again with the RAM shifted.
RAM_POSITIONS = {"breakout": {"ball": (99, 101)}}


@functools.cache
def game_name(env_id: str) -> str:
    """ale-py's name of a gymnasium Atari id's game (cached: the play loop reads the objects twice a step)."""
    return resolve_atari_id(env_id)[0]


def movable(env_id: str) -> list:
    """The objects of this game that the emulator can be told to draw elsewhere (RAM_POSITIONS)."""
    return list(RAM_POSITIONS.get(game_name(env_id), {}))


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


def playfield_in_observation(box: tuple) -> tuple:
    """The observation pixels (y0, x0, y1, x1) wholly inside a 210x160 frame box: start rounded up, end down."""
    y0, x0, y1, x1 = box
    (h, w), n = FRAME_SIZE, OBS_SIZE
    return -(-y0 * n // h), -(-x0 * n // w), y1 * n // h, x1 * n // w


def shifted(box: Optional[tuple], dy: int, dx: int) -> Optional[tuple]:
    """A box (y0, x0, y1, x1) moved down by dy and right by dx; None stays None."""
    return None if box is None else (box[0] + dy, box[1] + dx, box[2] + dy, box[3] + dx)


def union_box(boxes: list) -> Optional[tuple]:
    """The smallest box (y0, x0, y1, x1) holding all the given boxes (None ones left out); None when there are none."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


# ----------------------------------------------------------------------------- statistics over played games
# States of one game are alike (the same bricks, the same habits): they are not independent draws. So the error of
# a statistic over states is one over games. Two estimates: the mean over states with its cluster-robust error
# (`mean_and_se(values, games)`: every state weighs the same), and the mean of the games' means with the error of
# that mean (`mean_and_se_over_games`: every game weighs the same, whatever number of states it gave). They agree
# when every game gives the same number of states. With fewer than 2 games (or values) there is no error to give:
# it is nan, and a table shows the value alone (`plus_minus`).


def mean_and_se(values, games=None) -> tuple:
    """(mean over values, its standard error) of values (S,); the error is nan for fewer than 2 values (or games).

    games None: the values independent, sample sd / sqrt(S). games (S,), the game of each value: values of one game
    are not independent, so the standard error is the cluster-robust one of the mean,
    sqrt(G / (G - 1) * sum over games g of (sum over g's values of (v - mean))^2) / S, with G games (Liang and
    Zeger 1986, with the usual G / (G - 1) correction). When every game gives the same number of values it is
    the sample sd of the G per-game means / sqrt(G)."""
    v = np.asarray(values, dtype=np.float64)
    if games is None:
        return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    labels, game = np.unique(np.asarray(games), return_inverse=True)
    G = len(labels)
    if G < 2:
        return float(v.mean()), float("nan")
    sums = np.bincount(game, weights=v - v.mean(), minlength=G)  # (G,) each game's sum of deviations
    return float(v.mean()), float(np.sqrt(G / (G - 1) * np.square(sums).sum()) / len(v))


def per_game_means(values, games) -> np.ndarray:
    """(G,) the mean of the values of each game, games in sorted order. values, games: one per state."""
    values, games = np.asarray(values, dtype=np.float64), np.asarray(games)
    return np.array([values[games == g].mean() for g in np.unique(games)])


def mean_and_se_over_games(values, games) -> tuple:
    """(mean, standard error, number of games) of a per-state value: the mean of the games' means and its standard
    error over games (nan for fewer than 2 games)."""
    means = per_game_means(values, games)
    return (*mean_and_se(means), len(means))


def plus_minus(value: float, se: float, digits: int = 3, unit: str = "", notation: str = "f") -> str:
    """A mean and its standard error for a table: "0.123 ± 0.004" ("12% ± 3%" with unit "%", "1.2e-04 ± 3.0e-05"
    with notation "e"), or the value alone where the error is nan (fewer than 2 games: nothing to estimate it from)."""
    text = f"{value:.{digits}{notation}}{unit}"
    return text if np.isnan(se) else f"{text} ± {se:.{digits}{notation}}{unit}"


def bootstrap_over_games(statistic, columns: dict, games, resamples: int = 2000, seed: int = 0, level: float = 0.95):
    """The percentile interval (low, high) of statistic({name: (G,) per-game means}) over `resamples` bootstrap
    samples of whole games drawn with replacement (the pairs cluster bootstrap; Cameron and Miller 2015, "A
    practitioner's guide to cluster-robust inference", Journal of Human Resources 50(2)). For a statistic that is no
    mean of its own, such as a ratio of two means. columns: {name: per-state values}. (nan, nan) for fewer than 2
    games: resampling one game always draws that game."""
    means = {name: per_game_means(v, games) for name, v in columns.items()}
    G = len(next(iter(means.values())))
    if G < 2:
        return float("nan"), float("nan")
    draws = np.random.default_rng(seed).integers(0, G, (resamples, G))  # (R, G): the games of each sample
    values = np.array([statistic({name: m[d] for name, m in means.items()}) for d in draws])
    low, high = np.nanquantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
