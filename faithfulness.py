"""Which explanation can you trust? Deletion, insertion, sanity checks and the game's own objects, for every map.

Plays the checkpoint's game, samples `--states` states from `--games` games, and explains at each the agent's
own decision, its most probable action (`--explain taken`: the action it took), with every map of saliency.py
(attention, gradcam, gradient, smoothgrad, vargrad, ig_black, ig_blur, perturbation). A *place* is one of the
84x84 pixel positions, in all 4 stacked frames at once, ranked by the map's maximum over the frames. The two
7x7 maps (the attention and Grad-CAM, on conv3's grid) are drawn two ways: painted (each unit adds its weight to
its 36x36 receptive field, as saliency.py and render.py show them) and bilinearly between the centres of the
units' fields (`attention_bilinear`, `gradcam_bilinear`): how far a score depends on the drawing.

Floors: maps that carry no information about the model, which a map must beat to show it found something.
- geometry alone: `random` (i.i.d. uniform pixels), `painted_uniform` (a uniform 7x7 map, painted: heavy in the
  centre, where most fields overlap), `painted_dirichlet` and `bilinear_dirichlet` (random 7x7 maps,
  Dirichlet(1) over the 49 units, one per head, painted or drawn bilinearly).
- the input alone, no model: `edge` |x - blur(x)| (the frames' edges, blur sigma 3 px), `intensity` (the
  frames themselves) and `frame_difference` |x_k - x_(k-1)| (what moved); each the maximum over the frames.
Each method's margin is taken over the strongest floor of each score, paired over states; the strongest floor
is chosen on the other half of the games (cross-fitting: even games choose for odd ones and vice versa), so
that picking it does not flatter it.

- deletion (Petsiuk et al. 2018, RISE, arXiv 1806.07421): replace the places, most relevant first, by a
  blurred (Greydanus' sigma 3) or black copy and follow KL(original policy || perturbed policy) and the
  probability of the explained action. A map that found what matters moves the policy early: a large KL
  area, a small probability area.
- insertion: the reverse. From the fully blurred (or black) frames, restore the most relevant places first:
  the probability comes back early (large area), the KL falls early (small area).
- cascading randomisation (Adebayo et al. 2018, arXiv 1810.03292): re-initialise the network from the top
  down (actor+critic, fc, attention, conv3, conv2, conv1, cumulatively) with the training script's
  `layer_init`, and give the Spearman rank correlation of each new map with the trained model's, on
  `--sanity-states` states. Beside it, each method's floor (its trained map's correlation with the geometry
  floors) and its correlation with the input floors. The 7x7 maps are also compared on their own grid (49
  values, no painting) on every state, with `--sanity-seeds` re-initialisations.
- objects (games whose RAM layout play.py knows: Breakout): the ball's and the paddle's boxes in the 4
  stacked frames, read from the emulator's RAM, grown by `--margin` px. For every map, the localisation
  metrics as Quantus defines them: relevance mass accuracy and relevance rank accuracy (Arras et al. 2022,
  CLEVR-XAI, arXiv 2003.07258) and the pointing game (Zhang et al. 2018, arXiv 1608.00507), against the
  object's share of the screen (what a map blind to it gets). For the 7x7 maps (each attention head, Grad-CAM),
  on their grid: how often the peak unit's receptive field contains the object, and how often the peak is the
  object's nearest unit, each against its chance rate (a unit drawn at random).

Every mean is over states with a standard error over games (cluster-robust: states of one game are not
independent). Huber et al. 2021 (arXiv 2101.07312) compared saliency methods for Atari agents with insertion,
sanity checks and run time.

This file holds the states, deletion and insertion, the sanity checks and the command line; the maps are made in
faithfulness_maps.py, the object grounding is in faithfulness_grounding.py, the tables, CSV and figures in
faithfulness_report.py.

    python faithfulness.py --checkpoint runs/<run_name>/run.pt
"""

import collections
import copy
import json
import os
import time
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import numpy as np
import torch
import tyro

from agents import load_checkpoint, log_action_probabilities, played_policy
from cli import SAYS_ITS_DEFAULT, Progress, UsageError, exit_on_bad_input, output_folder, pick_device
from faithfulness_grounding import grid_grounding, grounding, latest_boxes, object_masks
from faithfulness_maps import (
    ALL_METHODS,
    BILINEAR,
    CURVES,
    FLOORS,
    GEOMETRY_FLOORS,
    GRID_METHODS,
    HIGHER_IS_BETTER,
    INPUT_FLOORS,
    Method,
    explanation_maps,
    floor_maps,
    grid_maps,
)
from faithfulness_report import EXPLAINED, print_report, save_csv, save_figure, save_object_figure
from play import mean_and_se, play
from ppo_attention import layer_init
from saliency import as_float_input, check_options, gaussian_blur, paint_attention

CASCADE = (  # re-initialised from the output down, cumulatively: (label, layers)
    ("actor+critic", ("actor", "critic")),
    ("fc", ("fc",)),
    ("attention", ("attn_logits", "attn_hidden")),
    ("conv3", ("conv3",)),
    ("conv2", ("conv2",)),
    ("conv1", ("conv1",)),
)
Q_VALUES = (
    "this agent is a DQN, whose outputs are Q-values: the curves follow the policy it plays, epsilon-greedy (the "
    "greedy action, or with probability epsilon a random one), and the explained action is the greedy one. That "
    "policy changes only where the greedy action does: the KL curve is the share of states whose decision changed "
    "(times a constant), the probability curve the share that keep it. softmax(Q) would follow the Q-values "
    "smoothly, but on a scale they do not have: a DQN's Q-values differ by hundredths, and softmax(Q) stays near "
    "uniform whatever is deleted."
)
INIT_STD = {"actor": 0.01, "critic": 1.0}  # the training script's layer_init; sqrt(2) for every other layer
PIXELS = 84 * 84  # the places deletion and insertion replace: pixels


@dataclass
class Args:
    """Score every saliency map of a checkpoint by deletion, insertion, cascading randomisation, the game's objects
    and run time, against floors that know nothing of the model."""

    checkpoint: str
    """a `run.pt` of ppo_attention.py (or its run folder), a CleanRL .pt/.cleanrl_model or a Stable-Baselines3 .zip"""
    env_id: Optional[str] = None
    """the game of a CleanRL or SB3 agent whose file does not name it, e.g. BreakoutNoFrameskip-v4"""
    states: int = 128
    """states to explain, spread over --games games, drawn at random steps of each game"""
    games: int = 8
    """games the states come from (seeds --seed, --seed + 1, ...); standard errors are over games"""
    max_steps: int = 1000
    """states are drawn from the first this many agent steps of each game"""
    method: tuple[Method, ...] = ALL_METHODS
    """maps to score, floors included (the attention maps are skipped, with a note, for an agent without attention)"""
    explain: Literal["greedy", "taken"] = "greedy"
    """the action the maps explain and the curves follow: the most probable one (the agent's decision) or the
    one it took (sampled from the policy unless --greedy)"""
    baseline: Literal["blur", "black"] = "blur"
    """what replaces a deleted place: the frames blurred (Gaussian, sigma 3 px) or black"""
    steps: int = 20
    """intervals of the deletion and insertion curves (at least 20: at most 5% of the places per step)"""
    samples: int = 50
    """noisy copies per state for SmoothGrad and VarGrad"""
    ig_steps: int = 256
    """points on the path of Integrated Gradients (midpoint rule); the report gives how complete the sums are
    (256: 0.5-0.8% short from the blurred frames and 4.7-6.2% from black on the demo agents' states, median)"""
    stride: int = 5
    """grid spacing in pixels of the perturbation method"""
    margin: int = 4
    """pixels of the 84x84 observation added around each object's box (the attention's stride is 8)"""
    sanity_states: int = 8
    """states (of --states, evenly spread) for the sanity check of every map, which recomputes every map 7 times;
    0 skips the sanity checks"""
    sanity_seeds: int = 3
    """re-initialisations (seeds --seed, --seed + 1, ...) of the sanity check of the 7x7 maps on their own grid,
    which runs on all --states states"""
    chunk: int = 128
    """network inputs per forward pass (bounds memory)"""
    threads: int = 0
    """torch CPU threads, 0 for every core (1.4x faster than 1 on the project's 2 cores); 1 on a CPU others use"""
    seed: int = 1
    """seed of the games, the sampled states and actions, the noise, the floors and the re-initialisation"""
    greedy: bool = False
    """play the most probable action instead of sampling from the policy"""
    out: Annotated[Optional[str], SAYS_ITS_DEFAULT] = None
    """output folder (default: a new runs/<run_name>/faithfulness__<unix time>/)"""
    force: bool = False
    """write into an --out folder that already holds files"""
    cuda: bool = True
    """compute on CUDA when it is available"""


def check_args(args: Args) -> None:
    """Reject a bad setting with one sentence (UsageError) before anything is loaded or written."""
    for name in ("states", "games", "max_steps", "sanity_seeds"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.steps < 20:
        raise UsageError(f"--steps must be at least 20 (at most 5% of the places per step), got {args.steps}.")
    for name in ("sanity_states", "margin", "threads"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}.")
    check_options(None, "smoothgrad", "action", None, None, args.samples, 0.15, args.stride, args.chunk, args.ig_steps)


# ----------------------------------------------------------------------------- states


def sample_states(agent, env_id: str, args: Args, progress, env_options: Optional[dict] = None) -> tuple:
    """(observations (S, 4, 84, 84) uint8, taken actions (S,), objects, games (S,) int) with S <= --states, the
    tensors on the agent's device.

    objects[s][k]: the game's objects in stacked frame k of state s ({name: 210x160 box or None}, `Step.objects`
    of the step that frame comes from; {} for the empty frames before a game's start, or a game play.py cannot
    read). games[s]: the game state s comes from, 0 to --games - 1. Game g is played from seed `seed + g`; its
    share of the states is a uniform sample (reservoir sampling, numpy Generator seeded with `seed`) of its first
    `max_steps` steps. Steps where the game pressed FIRE after a lost life are left out: the agent did not
    choose that action.
    """
    rng, games = np.random.default_rng(args.seed), min(args.games, args.states)
    obs, actions, objects, game_of = [], [], [], []
    for g, share in enumerate(len(part) for part in np.array_split(np.arange(args.states), games)):
        kept, seen, recent = [], 0, collections.deque([{}] * 4, maxlen=4)  # objects of the 4 stacked frames
        for step in play(agent, env_id, args.seed + g, args.greedy, args.max_steps, env_options):
            progress(f"playing game {g + 1}/{games}: step {step.t}")
            recent.append(step.objects)
            if step.forced:
                continue
            state = (step.t, step.obs, step.action, list(recent))
            if len(kept) < share:
                kept.append(state)
            elif (j := int(rng.integers(0, seen + 1))) < share:  # each step so far is kept with chance share/seen
                kept[j] = state
            seen += 1
        if len(kept) < share:
            print(f"note: game {g + 1} gave only {len(kept)} of its {share} states (it ended after {seen} steps).")
        for _, o, a, objs in sorted(kept, key=lambda k: k[0]):
            obs.append(o)
            actions.append(a)
            objects.append(objs)
            game_of.append(g)
    progress(f"sampled {len(obs)} states from {games} games", done=True)
    device = next(agent.parameters()).device
    obs, actions = torch.as_tensor(np.stack(obs), device=device), torch.as_tensor(actions, device=device)
    return obs, actions, objects, np.asarray(game_of)


def explained_actions(logits: torch.Tensor, taken: torch.Tensor, explain: str) -> torch.Tensor:
    """The action explained at each state: the most probable one under the policy (`greedy`, the agent's
    decision; for a low-probability sampled action, deleting what matters can even raise its probability) or
    the one the agent took (`taken`)."""
    return logits.argmax(-1) if explain == "greedy" else taken


# ----------------------------------------------------------------------------- deletion and insertion


def relevance_ranks(relevance: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Position of each place in the order most relevant first: (S, 84, 84) -> (S, 7056), 0 = first.

    Ties (flat regions, painted attention) are broken at random, not by position: a map of zeros must
    not delete the top rows first.
    """
    flat = relevance.flatten(1)
    shuffle = torch.rand(flat.shape, generator=generator, device=flat.device).argsort(1)  # a random order
    order = shuffle.gather(1, flat.gather(1, shuffle).argsort(dim=1, descending=True, stable=True))
    ranks = torch.empty_like(order)
    return ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))


@torch.inference_mode()
def policy_curves(agent, x, base, actions, ranks, fractions, chunk: int) -> dict:
    """Deletion and insertion curves of each state: {name in CURVES: (S, K)} at K fractions of places replaced.

    x, base: (S, 4, 84, 84) float input in [0, 1] and its baseline (blurred or black); actions: (S,) the
    explained actions; ranks: (S, 7056) from `relevance_ranks`. Input (s, k) is built on the fly in its
    chunk: the places of rank < fraction_k x 7056 come from base (deletion) or from x (insertion).
    """
    S, K = x.shape[0], len(fractions)
    counts = torch.as_tensor(np.round(np.asarray(fractions) * PIXELS), device=x.device).long()  # (K,)
    logp = log_action_probabilities(agent, agent(x)[0])  # (S, A) the original policy
    flat = {name: torch.empty(S * K, device=x.device) for name in CURVES}
    rows_per_pass = max(chunk // 2, 1)  # a deletion and an insertion input per row
    for start in range(0, S * K, rows_per_pass):
        rows = torch.arange(start, min(start + rows_per_pass, S * K), device=x.device)
        s, k = rows // K, rows % K
        replaced = (ranks[s] < counts[k, None]).view(-1, 1, 84, 84)  # (C, 1, 84, 84), the same in all 4 frames
        inputs = torch.cat([torch.where(replaced, base[s], x[s]), torch.where(replaced, x[s], base[s])])
        logq = log_action_probabilities(agent, agent(inputs)[0]).view(2, len(rows), -1)  # (2, C, A): del., ins.
        kl = (logp[s].exp() * (logp[s] - logq)).sum(-1).clamp_min(0)  # (2, C) KL(original || perturbed), >= 0
        prob = logq.gather(2, actions[s].view(1, -1, 1).expand(2, -1, 1))[..., 0].exp()  # (2, C)
        for name, value in zip(CURVES, (kl[0], prob[0], prob[1], kl[1])):
            flat[name][rows] = value
    return {name: v.view(S, K).cpu().numpy() for name, v in flat.items()}


def deletion_insertion(agent, obs, maps: dict, actions, baseline="blur", steps=20, chunk=128, seed=1, progress=None):
    """The deletion and insertion curves of every map: ({method: {name in CURVES: (S, K)}}, fractions (K,)).

    agent: an Agent or saliency.AnyPolicy; obs (S, 4, 84, 84) uint8 (or float in [0, 1]); maps {method: relevance
    (S, 84, 84)} (collapse_frames of a saliency map); actions (S,) the explained actions; baseline "blur" or
    "black"; K = steps + 1 fractions of the places from 0 to 1. Tied places are ordered at random (seed).
    """
    x = as_float_input(agent, obs)  # (S, 4, 84, 84) in [0, 1]
    actions = torch.as_tensor(actions, device=x.device).long().expand(len(x))
    base = gaussian_blur(x) if baseline == "blur" else torch.zeros_like(x)
    fractions, ties, curves = np.linspace(0, 1, steps + 1), torch.Generator(x.device).manual_seed(seed), {}
    for method, relevance in maps.items():
        if progress:
            progress(f"deletion and insertion: {method}")
        ranks = relevance_ranks(torch.as_tensor(relevance, device=x.device), ties)  # (S, 7056)
        curves[method] = policy_curves(agent, x, base, actions, ranks, fractions, chunk)
    return curves, fractions


def area_under_curve(y, x) -> np.ndarray:
    """Trapezoid rule over the last axis: y (..., K) at x (K,) -> (...)."""
    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    return ((y[..., 1:] + y[..., :-1]) / 2 * np.diff(x)).sum(-1)


def folds_of(games) -> np.ndarray:
    """The half of the games each state belongs to, for cross-fitting: 0 for the 1st, 3rd, 5th ... game, 1 for
    the others; all 0 with a single game."""
    labels, game = np.unique(np.asarray(games), return_inverse=True)
    return game % 2 if len(labels) > 1 else np.zeros(len(game), int)


def margins(areas: dict, games) -> dict:
    """{method: {curve: (mean, se, floor)}}: each method's per-state area minus the strongest floor's, signed so
    that positive is better (deletion KL and insertion prob: higher is better; the other two: lower), paired
    over states, with its standard error over games.

    The strongest floor of a curve is the floor with the best mean area on the other half of the games (see
    `folds_of`): cross-fitting, so that the floor is not picked on the very states it is scored on (the best of
    7 noisy floors, picked in-sample, would look stronger than it is). floor: the floor chosen for each half,
    "a" or "a/b" when the halves chose differently; with one game, the floor is chosen in-sample. {} without
    floors."""
    floors = [m for m in FLOORS if m in areas]
    result = {m: {} for m in areas if floors}
    folds = folds_of(games)
    for curve, higher in HIGHER_IS_BETTER.items() if floors else ():
        sign = 1.0 if higher else -1.0
        chosen, strongest = [], np.empty(len(folds))
        for fold in np.unique(folds):
            choose_on = folds != fold if (folds != fold).any() else np.ones(len(folds), bool)
            best = max(floors, key=lambda f: sign * areas[f][curve][choose_on].mean())
            strongest[folds == fold] = areas[best][curve][folds == fold]
            chosen.append(best)
        label = "/".join(dict.fromkeys(chosen))
        for method in result:
            result[method][curve] = (*mean_and_se(sign * (areas[method][curve] - strongest), games), label)
    return result


# ----------------------------------------------------------------------------- sanity check


def cascade_steps(agent) -> list:
    """The steps of `CASCADE` this agent has: [(label, layer names)] (no 'attention' without an attention module)."""
    return [(label, layers) for label, layers in CASCADE if all(hasattr(agent, name) for name in layers)]


def cascade(agent, seed: int) -> list:
    """Cascading randomisation: [(label, copy of the agent with every layer down to that step re-initialised)].

    The training script's `layer_init` under torch seed `seed` (the global RNG is restored after);
    the agent itself is untouched.
    """
    device = next(agent.parameters()).device
    model = copy.deepcopy(agent).to(memory_format=torch.contiguous_format)  # layer_init needs plain layout
    steps = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for label, layers in cascade_steps(agent):
            for name in layers:
                layer_init(getattr(model, name), INIT_STD.get(name, np.sqrt(2)))
            steps.append((label, copy.deepcopy(model)))
    return steps


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Rank of each value in its row, 0 to P - 1, tied values sharing their mean rank: (N, P) -> (N, P) float64."""
    N, P = x.shape
    order = x.argsort(dim=1, stable=True)
    ordered = x.gather(1, order)
    new_value = torch.ones_like(ordered, dtype=torch.bool)
    new_value[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    tie = new_value.long().cumsum(1) - 1  # (N, P) which run of equal values each sorted entry is in
    position = torch.arange(P, dtype=torch.float64, device=x.device).expand(N, P)
    total = torch.zeros(N, P, dtype=torch.float64, device=x.device).scatter_add_(1, tie, position)
    count = torch.zeros_like(total).scatter_add_(1, tie, torch.ones_like(position))
    return torch.empty_like(total).scatter_(1, order, (total / count.clamp_min(1)).gather(1, tie))


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of |a| and |b| per map: (N, ...) -> (N,). A constant map counts as 0."""
    ra, rb = (average_ranks(m.flatten(1).abs()) for m in (a, b))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    norm = (ra.square().sum(1) * rb.square().sum(1)).sqrt()
    return torch.where(norm > 0, (ra * rb).sum(1) / norm.clamp_min(1e-300), 0.0)


def sanity_check(agent, map_fn, seed: int, progress=None, floors=None, inputs=None, games=None) -> tuple:
    """({method: {step label: (mean over states, standard error) of the rank correlation with the trained agent's
    map}}, {method: {"value", "floor", "input", "input_floor"}}).

    map_fn(model) -> {method: maps (N, ...)} computes the maps of the same N states with a given model; games (N,):
    the game of each state, for standard errors over games (None: over states).
    floors: {floor name: maps (N, ...)} that know nothing of the model; a method's floor is the largest mean
    correlation of its trained maps with one of them, what the map's geometry alone gives ({} without floors).
    inputs: {input floor name: maps (N, ...)} computed from the input alone: "input" is the trained map's largest
    mean correlation with one of them ("input_floor" which). Adebayo et al.'s limiting case, a map equal to the
    input, stays at 1 whatever is re-initialised.
    """
    trained = map_fn(agent)
    result = {method: {} for method in trained}
    steps = cascade(agent, seed)
    for i, (label, model) in enumerate(steps):
        if progress:
            progress(f"sanity check: re-initialised down to {label} ({i + 1}/{len(steps)})")
        for method, m in map_fn(model).items():
            result[method][label] = mean_and_se(spearman(trained[method], m).cpu().numpy(), games)
    by_geometry = {}
    for method in (m for m in trained if m not in FLOORS):
        by_geometry[method] = {}
        if floors:
            value, floor = max((float(spearman(trained[method], maps).mean()), f) for f, maps in floors.items())
            by_geometry[method].update(value=value, floor=floor)
        if inputs:
            value, floor = max((float(spearman(trained[method], maps).mean()), f) for f, maps in inputs.items())
            by_geometry[method].update(input=value, input_floor=floor)
    return result, {m: v for m, v in by_geometry.items() if v}


def grid_sanity(agent, x, actions, games, seeds: list, chunk: int, progress=None) -> dict:
    """The sanity check of the 7x7 maps on their own grid: {method: {step label: {"value", "se", "seeds"}}}.

    For each re-initialisation seed and cascade step, the Spearman rank correlation of the 49 values of each
    state's map (attention: heads summed, the map the features are multiplied by; Grad-CAM) with the trained
    model's, summarised over seeds and states by `seeds_and_games`. A map that knows nothing of the model (a
    random 7x7 map) has 0 here: no painting adds shared geometry.
    """
    trained = {m: g.sum(1) for m, g in grid_maps(agent, x, actions, chunk).items()}  # {method: (S, 7, 7)}
    per_seed = {m: collections.defaultdict(list) for m in trained}  # {method: {label: [(S,) per seed]}}
    for i, seed in enumerate(seeds):
        for label, model in cascade(agent, seed):
            if progress:
                progress(f"sanity check on the 7x7 grid: seed {i + 1}/{len(seeds)}, re-initialised down to {label}")
            for method, grid in grid_maps(model, x, actions, chunk).items():
                per_seed[method][label].append(spearman(trained[method], grid.sum(1)).cpu().numpy())
    result = {}
    for method, by_label in per_seed.items():
        result[method] = {label: seeds_and_games(np.stack(rho), games) for label, rho in by_label.items()}
    return result


def seeds_and_games(values: np.ndarray, games) -> dict:
    """{"value", "se", "seeds"} of values (R, S), one row per re-initialisation seed and one column per state.

    value: the mean. Each seed draws one network for every state, so its states move together: the standard error
    adds the spread of the R seeds' means (their sample sd / sqrt(R)) and the spread over games of each state's
    mean over the seeds (`mean_and_se`), in quadrature: se = sqrt(se_seeds^2 + se_games^2). seeds: each seed's
    mean over the states."""
    by_seed = values.mean(1)  # (R,)
    value, se_games = mean_and_se(values.mean(0), games)
    se_seeds = mean_and_se(by_seed)[1]  # nan with one seed: the spread of the seeds is unknown
    return dict(value=value, se=float(np.sqrt(se_seeds**2 + se_games**2)), seeds=[float(v) for v in by_seed])


# ----------------------------------------------------------------------------- the command line


def summary(areas: dict, seconds: dict, sanity: dict, by_geometry: dict, objects: dict, games) -> dict:
    """{method: each area's mean over states and standard error over games, the margin over the strongest floor,
    seconds per state, {layer: rank correlation} and its standard errors, the sanity floor, the object grounding}."""
    results, margin = {}, margins(areas, games)
    for method, per_state in areas.items():
        r = {}
        for name in CURVES:
            r[f"{name}_auc"], r[f"{name}_auc_se"] = mean_and_se(per_state[name], games)
        r["margin"] = {c: dict(zip(("value", "se", "floor"), v)) for c, v in margin.get(method, {}).items()}
        r["seconds_per_state"] = seconds[method]
        r["sanity"] = {layer: v[0] for layer, v in sanity.get(method, {}).items()}
        r["sanity_se"] = {layer: v[1] for layer, v in sanity.get(method, {}).items()}
        if method in by_geometry:
            r["sanity_floor"] = by_geometry[method]
        r["objects"] = objects.get(method, {})
        results[method] = r
    return results


def main(argv=None) -> str:
    """Sample states, compute and score every map, print the tables and write JSON, CSV and PNGs; returns the folder."""
    args = tyro.cli(Args, args=argv)
    check_args(args)
    device = pick_device(args.cuda, args.threads)
    agent, meta = load_checkpoint(args.checkpoint, device, args.env_id)
    methods = list(dict.fromkeys(args.method))
    if agent.attn_heads == 0 and {"attention", "attention_bilinear"} & set(methods):
        methods = [m for m in methods if m not in ("attention", "attention_bilinear")]
        print("note: this agent has no attention module; the attention maps are skipped.")
    if not methods:
        raise UsageError("no method is left to score; add --method gradient (or another one).")
    progress = Progress()
    with output_folder(args.out, meta["run_name"], "faithfulness", args.force) as out:
        start = time.perf_counter()
        obs, taken, objects, games = sample_states(agent, meta["env_id"], args, progress, meta["env_options"])
        if meta["outputs"] == "q_values":  # a DQN: the curves follow its epsilon-greedy policy
            print(f"note: {Q_VALUES}")
        x = obs.float() / 255  # (S, 4, 84, 84)
        with torch.no_grad():
            clean = agent.activations(x)
        actions = explained_actions(clean["logits"], taken, args.explain)  # (S,)
        progress(f"maps of {len(obs)} states: {', '.join(methods)}")
        floors = torch.Generator(device=device).manual_seed(args.seed)
        maps, seconds, incomplete, grids = explanation_maps(agent, obs, actions, methods, args, floors)
        progress(f"maps: {time.perf_counter() - start:.0f} s", done=True)

        maps_in_order = {m: maps[m] for m in methods}  # {method: (S, 84, 84)}
        curves, fractions = deletion_insertion(agent, obs, maps_in_order, actions, args.baseline, args.steps, args.chunk, args.seed, progress)  # fmt: skip
        areas = {m: {name: area_under_curve(c[name], fractions) for name in CURVES} for m, c in curves.items()}
        progress(f"deletion and insertion: {time.perf_counter() - start:.0f} s", done=True)

        some = np.unique(np.linspace(0, len(obs) - 1, min(args.sanity_states, len(obs))).round().astype(int))
        redraws = torch.Generator(device).manual_seed(args.seed + 1)  # floors: fresh draws at every step
        sanity, by_geometry, layers = {}, {}, [label for label, _ in cascade_steps(agent)] if len(some) else []
        grid_checked, seeds = {}, [args.seed + i for i in range(args.sanity_seeds)]
        if layers:
            sanity_maps = lambda model: explanation_maps(model, obs[some], actions[some], methods, args, redraws)[0]  # noqa: E731
            heads = max(agent.attn_heads, 1)
            geometry = {f: floor_maps(f, len(some), heads, redraws) for f in GEOMETRY_FLOORS}
            inputs = {f: floor_maps(f, len(some), heads, redraws, x[some]) for f in INPUT_FLOORS}
            sanity, by_geometry = sanity_check(agent, sanity_maps, args.seed, progress, geometry, inputs, games[some])
            progress(f"sanity check on {len(some)} states: {time.perf_counter() - start:.0f} s", done=True)
            if {*GRID_METHODS, *BILINEAR} & set(methods):
                grid_checked = grid_sanity(agent, x, actions, games, seeds, args.chunk, progress)
                progress(f"sanity check on the 7x7 grid: {time.perf_counter() - start:.0f} s", done=True)

        masks, boxes = object_masks(objects, args.margin), latest_boxes(objects)
        grounded = {m: grounding(maps[m], masks, games) for m in methods} if masks else {}
        heads = {f"attention (head {h})": grounding(paint_attention(clean["attention"])[:, h], masks, games)
                 for h in range(agent.attn_heads)} if masks and "attention" in methods else {}  # fmt: skip
        grid_rows = {}
        if masks and grids:
            if "attention" in grids and ({"attention", "attention_bilinear"} & set(methods)):
                for h in range(agent.attn_heads):
                    grid_rows[f"attention (head {h})"] = grid_grounding(grids["attention"][:, h], boxes, games)
                if agent.attn_heads > 1:
                    grid_rows["attention (heads summed)"] = grid_grounding(grids["attention"].sum(1), boxes, games)
            if {"gradcam", "gradcam_bilinear"} & set(methods):
                grid_rows["gradcam"] = grid_grounding(grids["gradcam"][:, 0], boxes, games)
        results = summary(areas, seconds, sanity, by_geometry, grounded, games)
        report = dict(checkpoint=args.checkpoint, env_id=meta["env_id"], states=len(obs),
                      games=len(np.unique(games)), explained=args.explain, baseline=args.baseline,
                      ig_steps=args.ig_steps, margin_px=args.margin, sanity_states=len(some) if layers else 0,
                      sanity_seeds=len(seeds) if grid_checked else 0,
                      ig_completeness_error={m: float(np.median(e)) for m, e in incomplete.items()})  # fmt: skip
        report["policy"] = played_policy(agent)
        with open(os.path.join(out, "faithfulness.json"), "w") as f:
            json.dump({**report, "methods": results, "attention_heads": heads, "grid_sanity": grid_checked,
                       "grid_objects": grid_rows}, f, indent=2)  # fmt: skip
        save_csv(os.path.join(out, "faithfulness.csv"), results, layers)
        title = (f"{meta['env_id']}, {len(obs)} states from {report['games']} games, {args.baseline} baseline: "
                 f"which explanation of {EXPLAINED[args.explain]} can you trust?")  # fmt: skip
        title += " (a DQN: its epsilon-greedy policy)" if meta["outputs"] == "q_values" else ""
        save_figure(os.path.join(out, "faithfulness.png"), curves, fractions, results, layers, grid_checked, title,
                    args.baseline, games)  # fmt: skip
        rows = {**grounded, **heads}
        if rows:
            object_title = (f"{meta['env_id']}, {len(obs)} states: does each map find the game's objects? "
                            f"(boxes + {args.margin} px)")  # fmt: skip
            save_object_figure(os.path.join(out, "objects.png"), rows, grid_rows, object_title)
        print_report(title, results, args, report, layers, grid_checked, rows, grid_rows, incomplete)
        files = "faithfulness.json, faithfulness.csv, faithfulness.png" + (" and objects.png" if rows else "")
        print(f"\n\nwrote {files} to {out}")
    return out


if __name__ == "__main__":
    exit_on_bad_input(main)
