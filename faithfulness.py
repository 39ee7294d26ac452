"""Which explanation can you trust? Deletion, insertion, sanity checks and the game's own objects, for every map.

Plays the checkpoint's game, samples `--states` states from several games, and explains at each the agent's
own decision, its most probable action (`--explain taken`: the action it took), with every map of saliency.py
(attention, gradcam, gradient, smoothgrad, vargrad, ig_black, ig_blur, perturbation). A *place* is one of the
84x84 pixel positions, in all 4 stacked frames at once, ranked by the map's maximum over the frames.

Floors: maps that carry no information about the model, which every method must beat.
- random: i.i.d. uniform pixels.
- painted_uniform: a uniform 7x7 attention painted like the attention (36x36 receptive fields, stride 8).
  Painting alone makes a map heavy in the centre, where the most receptive fields overlap.
- painted_dirichlet: random 7x7 attention maps (Dirichlet(1) over the 49 places, one per head), painted.
  The same geometry as the attention and Grad-CAM, and spatially coherent like every real map.
Each method's margin is taken over the strongest floor of each score, paired over states.

- deletion (Petsiuk et al. 2018, RISE, arXiv 1806.07421): replace the places, most relevant first, by a
  blurred (Greydanus' sigma 3) or black copy and follow KL(original policy || perturbed policy) and the
  probability of the explained action. A map that found what matters moves the policy early: a large KL
  area, a small probability area.
- insertion: the reverse. From the fully blurred (or black) frames, restore the most relevant places first:
  the probability comes back early (large area), the KL falls early (small area).
  Every area is a mean over states with its standard error.
- cascading randomisation (Adebayo et al. 2018, arXiv 1810.03292): re-initialise the network from the top
  down (actor+critic, fc, attention, conv3, conv2, conv1, cumulatively) with the training script's
  `layer_init`, and give the Spearman rank correlation of each new map with the trained model's. A map
  that stays the same when the weights are destroyed explains the input, not the model. Beside it, each
  method's floor: its trained map's correlation with the floors, what geometry alone gives.
- objects (games whose RAM layout play.py knows: Breakout): the ball's and the paddle's boxes in the 4
  stacked frames, read from the emulator's RAM and grown by `--margin` px. For every map and each attention
  head: the share of the map's mass on each object against the object's share of the screen, and how often
  the map's peak (its maximum) lies on the object.

Huber et al. 2021 (arXiv 2101.07312) compared saliency methods for Atari agents with insertion, sanity
checks and run time.

    python faithfulness.py --checkpoint runs/<run_name>/run.pt
"""

import collections
import copy
import csv
import json
import os
import time
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
import tyro

from agents import load_checkpoint, log_action_probabilities, played_policy
from cli import Progress, UsageError, exit_on_bad_input, output_folder, pick_device
from play import box_in_observation, play
from ppo_attention import layer_init
from saliency import (
    METHODS,
    as_float_input,
    check_options,
    collapse_frames,
    gaussian_blur,
    paint_attention,
    saliency_maps,
)

FLOORS = ("random", "painted_uniform", "painted_dirichlet")
ALL_METHODS = (*METHODS, *FLOORS)
Method = Literal["attention", "gradcam", "gradient", "smoothgrad", "vargrad", "ig_black", "ig_blur", "perturbation",
                 "random", "painted_uniform", "painted_dirichlet"]  # fmt: skip
CURVES = ("deletion_kl", "deletion_prob", "insertion_prob", "insertion_kl")
HIGHER_IS_BETTER = {"deletion_kl": True, "deletion_prob": False, "insertion_prob": True, "insertion_kl": False}
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
PLACES = 84 * 84


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
    """games the states come from (seeds --seed, --seed + 1, ...)"""
    max_steps: int = 1000
    """states are drawn from the first this many agent steps of each game"""
    method: tuple[Method, ...] = ALL_METHODS
    """maps to score, floors included (attention is skipped, with a note, for an agent without attention)"""
    explain: Literal["greedy", "taken"] = "greedy"
    """the action the maps explain and the curves follow: the most probable one (the agent's decision) or the
    one it took (sampled from the policy unless --greedy)"""
    baseline: Literal["blur", "black"] = "blur"
    """what replaces a deleted place: the frames blurred (Gaussian, sigma 3 px) or black"""
    steps: int = 20
    """intervals of the deletion and insertion curves (at least 20: at most 5% of the places per step)"""
    samples: int = 50
    """noisy copies per state for SmoothGrad and VarGrad"""
    ig_steps: int = 64
    """points on the path of Integrated Gradients (midpoint rule); the report gives how complete the sums are"""
    stride: int = 5
    """grid spacing in pixels of the perturbation method"""
    margin: int = 4
    """pixels of the 84x84 observation added around each object's box (the attention's stride is 8)"""
    sanity_states: int = 8
    """states (of --states, evenly spread) for the sanity check, which recomputes every map 7 times; 0 skips it"""
    chunk: int = 128
    """network inputs per forward pass (bounds memory)"""
    threads: int = 1
    """torch CPU threads: passes this small gain little from more, and on a CPU busy with other jobs, threads
    that wait for each other made them 3-9 times slower on the project's 2 cores"""
    seed: int = 1
    """seed of the games, the sampled states and actions, the noise, the floors and the re-initialisation"""
    greedy: bool = False
    """play the most probable action instead of sampling from the policy"""
    out: Optional[str] = None
    """output folder (default: a new runs/<run_name>/faithfulness__<unix time>/)"""
    force: bool = False
    """write into an --out folder that already holds files"""
    cuda: bool = True
    """compute on CUDA when it is available"""


def check_args(args: Args) -> None:
    """Reject a bad setting with one sentence (UsageError) before anything is loaded or written."""
    for name in ("states", "games", "max_steps", "threads"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.steps < 20:
        raise UsageError(f"--steps must be at least 20 (at most 5% of the places per step), got {args.steps}.")
    for name in ("sanity_states", "margin"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}.")
    check_options(None, "smoothgrad", "action", None, None, args.samples, 0.15, args.stride, args.chunk, args.ig_steps)


# ----------------------------------------------------------------------------- states and maps


def sample_states(agent, env_id: str, args: Args, progress, env_options: Optional[dict] = None) -> tuple:
    """(observations (S, 4, 84, 84) uint8, taken actions (S,), objects) with S <= --states, on the agent's device.

    objects[s][k]: the game's objects in stacked frame k of state s ({name: 210x160 box or None}, `Step.objects`
    of the step that frame comes from; {} for the empty frames before a game's start, or a game play.py cannot
    read). Game g is played from seed `seed + g`; its share of the states is a uniform sample (reservoir
    sampling, numpy Generator seeded with `seed`) of its first `max_steps` steps. Steps where the game pressed
    FIRE after a lost life are left out: the agent did not choose that action.
    """
    rng, games = np.random.default_rng(args.seed), min(args.games, args.states)
    obs, actions, objects = [], [], []
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
    progress(f"sampled {len(obs)} states from {games} games", done=True)
    device = next(agent.parameters()).device
    return torch.as_tensor(np.stack(obs), device=device), torch.as_tensor(actions, device=device), objects


def explained_actions(logits: torch.Tensor, taken: torch.Tensor, explain: str) -> torch.Tensor:
    """The action explained at each state: the most probable one under the policy (`greedy`, the agent's
    decision; for a low-probability sampled action, deleting what matters can even raise its probability) or
    the one the agent took (`taken`)."""
    return logits.argmax(-1) if explain == "greedy" else taken


def floor_maps(method: str, n: int, heads: int, generator: torch.Generator) -> torch.Tensor:
    """n maps (n, 84, 84) of a floor, drawn with `generator` (on its device); heads: painted maps per state."""
    device = generator.device
    if method == "random":
        return torch.rand((n, 84, 84), generator=generator, device=device)
    if method == "painted_uniform":
        return paint_attention(torch.full((1, heads, 7, 7), 1 / 49, device=device)).sum(1).expand(n, 84, 84)
    exponential = -torch.rand((n, heads, 49), generator=generator, device=device).clamp_min(1e-12).log()
    dirichlet = exponential / exponential.sum(-1, keepdim=True)  # normalised Exp(1) draws: Dirichlet(1, ..., 1)
    return paint_attention(dirichlet.view(n, heads, 7, 7)).sum(1)


def explanation_maps(agent, obs, actions, methods, args: Args, floors: torch.Generator) -> tuple:
    """({method: relevance (S, 84, 84)} explaining each state's action, {method: seconds per state},
    {ig method: (S,) |sum of the attributions - (f(x) - f(x'))| / |f(x) - f(x')|, Integrated Gradients'
    completeness error}).

    Gradient maps differentiate the explained action's logit; perturbation scores the change of all logits.
    The noise of SmoothGrad and VarGrad (one shared pass, whose time counts for both) is seeded afresh
    with `seed` at every call: a retrained or re-initialised model gets the same noisy copies. The floors
    take their next draws from `floors`. Each map is |map| maxed over the 4 frames.
    """
    maps, seconds, incomplete, device = {}, {}, {}, obs.device
    with torch.no_grad():
        agent(obs[:1])  # warm-up: one-time costs are not the first method's
    for method in methods:
        if method in maps:  # vargrad, computed with smoothgrad
            continue
        start = time.perf_counter()
        if method in FLOORS:
            new = {method: floor_maps(method, len(obs), max(agent.attn_heads, 1), floors)}
        else:
            shared = [m for m in ("smoothgrad", "vargrad") if m in methods]
            group = shared if method in shared else [method]
            noise = torch.Generator(device=device).manual_seed(args.seed)
            settings = dict(samples=args.samples, stride=args.stride, chunk=args.chunk, ig_steps=args.ig_steps)
            new = saliency_maps(agent, obs, group, "action", action=actions, signed=True, generator=noise, **settings)
            if method.startswith("ig_"):
                x = obs.float() / 255
                with torch.no_grad():
                    ends = [agent(end)[0].gather(1, actions[:, None])[:, 0] for end in (x, baseline_of(method, x))]
                change = ends[0] - ends[1]
                error = (new[method].flatten(1).sum(1) - change).abs() / change.abs().clamp_min(1e-12)
                incomplete[method] = error.cpu().numpy()
            new = {m: collapse_frames(v.abs()) for m, v in new.items()}  # (S, 4, 84, 84) -> (S, 84, 84)
        if device.type == "cuda":
            torch.cuda.synchronize()
        for m, v in new.items():
            maps[m], seconds[m] = v, (time.perf_counter() - start) / len(obs)
    return maps, seconds, incomplete


def baseline_of(method: str, x: torch.Tensor) -> torch.Tensor:
    """The baseline x' of an Integrated Gradients method: black or the blurred frames."""
    return torch.zeros_like(x) if method == "ig_black" else gaussian_blur(x)


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
    counts = torch.as_tensor(np.round(np.asarray(fractions) * PLACES), device=x.device).long()  # (K,)
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


def mean_and_se(values) -> tuple:
    """(mean, standard error of the mean) of values over states (sample sd / sqrt(n); 0 for fewer than 2)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def margins(areas: dict) -> dict:
    """{method: {curve: (mean, se, floor)}}: each method's per-state area minus the strongest floor's, signed so
    that positive is better (deletion KL and insertion prob: higher is better; the other two: lower), paired
    over states. The strongest floor of a curve is the floor with the best mean area; {} without floors."""
    floors = [m for m in FLOORS if m in areas]
    result = {m: {} for m in areas if floors}
    for curve, higher in HIGHER_IS_BETTER.items():
        sign = 1.0 if higher else -1.0
        strongest = max(floors, key=lambda f: sign * areas[f][curve].mean()) if floors else None
        for method in result:
            result[method][curve] = (*mean_and_se(sign * (areas[method][curve] - areas[strongest][curve])), strongest)
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


def sanity_check(agent, map_fn, seed: int, progress=None, floors: Optional[dict] = None, frames=None) -> tuple:
    """({method: {step label: rank correlation with the trained agent's map, mean over states}},
    {method: {"value": floor, "floor": which floor, "input": correlation with the input}}).

    map_fn(model) -> {method: maps (N, ...)} computes the maps of the same N states with a given model.
    floors: {floor name: maps (N, ...)} that know nothing of the model; a method's floor is the largest mean
    correlation of its trained maps with one of them, what the map's geometry alone gives ({} without floors).
    frames (N, ...): the input, for each trained map's correlation with it (Adebayo et al.'s limiting case: a
    map equal to the input stays at 1 whatever is re-initialised).
    """
    trained = map_fn(agent)
    result = {method: {} for method in trained}
    steps = cascade(agent, seed)
    for i, (label, model) in enumerate(steps):
        if progress:
            progress(f"sanity check: re-initialised down to {label} ({i + 1}/{len(steps)})")
        for method, m in map_fn(model).items():
            result[method][label] = float(spearman(trained[method], m).mean())
    by_geometry = {}
    for method in (m for m in trained if floors and m not in FLOORS):
        value, floor = max((float(spearman(trained[method], maps).mean()), f) for f, maps in floors.items())
        by_geometry[method] = dict(value=value, floor=floor)
        if frames is not None:
            by_geometry[method]["input"] = float(spearman(trained[method], frames).mean())
    return result, by_geometry


# ----------------------------------------------------------------------------- the game's objects


def object_masks(objects: list, margin: int) -> dict:
    """{object name: (S, 84, 84) bool}: where each object is in the 4 stacked frames of each state, its box in
    each frame put into the observation (play.box_in_observation) and grown by `margin` px, joined over the
    frames. An object in none of a state's frames has an empty mask there. {} for a game without objects."""
    names = sorted({name for state in objects for frame in state for name in frame})
    masks = {name: np.zeros((len(objects), 84, 84), bool) for name in names}
    for s, state in enumerate(objects):
        for frame in state:
            for name, box in frame.items():
                if box is not None:
                    y0, x0, y1, x1 = box_in_observation(box, margin)
                    masks[name][s, y0:y1, x0:x1] = True
    return masks


def grounding(m: torch.Tensor, masks: dict) -> dict:
    """{object: {mass, mass_se, area, peak, states}} of maps m (S, 84, 84) >= 0, over the states where the object
    is on the screen and the map is not all zero: mean share of the map's mass inside the object's mask (and
    its standard error), mean share of the screen the mask covers, and the fraction of states whose maximum
    is reached inside the mask (the map's peak sees the object)."""
    m = m.detach().double().cpu().numpy()
    total, top = m.sum((1, 2)), m.max((1, 2))
    result = {}
    for name, mask in masks.items():
        keep = mask.any((1, 2)) & (total > 0)
        inside = np.where(mask, m, 0.0)
        share = inside.sum((1, 2))[keep] / total[keep]
        peak = inside.max((1, 2))[keep] >= top[keep] * (1 - 1e-6)  # the maximum, up to float sums in painting
        mass, mass_se = mean_and_se(share) if keep.any() else (float("nan"), float("nan"))
        result[name] = dict(mass=mass, mass_se=mass_se, area=float(mask[keep].mean()) if keep.any() else float("nan"),
                            peak=float(peak.mean()) if keep.any() else float("nan"), states=int(keep.sum()))  # fmt: skip
    return result


# ----------------------------------------------------------------------------- the report

KL, PROB = "KL(original policy || perturbed policy) (nats)", "probability of the explained action"
PANELS = (  # (curve, title, y label, which area is better), left to right, top to bottom
    ("deletion_kl", "Deletion: the policy moves away\nas the most relevant places are {done}", KL, "higher"),
    ("deletion_prob", "Deletion: the explained action's probability falls\nas the most relevant places are {done}", PROB, "lower"),
    ("insertion_kl", "Insertion: the policy comes back\nas the most relevant places are restored", KL, "lower"),
    ("insertion_prob", "Insertion: the explained action's probability returns\nas the most relevant places are restored", PROB, "higher"),
)  # fmt: skip
COLOURS = dict(zip(ALL_METHODS, ("tab:red", "tab:pink", "tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:olive",
                                 "tab:orange", "grey", "black", "dimgrey")))  # fmt: skip
DASHES = {"random": "--", "painted_uniform": ":", "painted_dirichlet": "-."}
EXPLAINED = {"greedy": "the most probable action (the agent's decision)", "taken": "the action the agent took"}


def summary(areas: dict, seconds: dict, sanity: dict, by_geometry: dict, objects: dict) -> dict:
    """{method: each area's mean and standard error over states, the margin over the strongest floor, seconds per
    state, {layer: rank correlation}, the sanity floor, the object grounding}."""
    results, margin = {}, margins(areas)
    for method, per_state in areas.items():
        r = {}
        for name in CURVES:
            r[f"{name}_auc"], r[f"{name}_auc_se"] = mean_and_se(per_state[name])
        r["margin"] = {c: dict(zip(("value", "se", "floor"), v)) for c, v in margin.get(method, {}).items()}
        r["seconds_per_state"], r["sanity"] = seconds[method], sanity.get(method, {})
        if method in by_geometry:
            r["sanity_floor"] = by_geometry[method]
        r["objects"] = objects.get(method, {})
        results[method] = r
    return results


def area_table(results: dict, explain: str) -> str:
    """Areas (mean ± standard error over states) and seconds per state, one row per method; the header says
    which action was explained."""
    action = {"greedy": "the most probable action", "taken": "the action taken"}[explain]
    lines = [f"| method (explains {action}) | deletion KL ↑ | deletion prob ↓ | insertion prob ↑ | insertion KL ↓ "
             "| s/state |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for method, r in results.items():
        cells = [f"{r[c + '_auc']:.3f} ± {r[c + '_auc_se']:.3f}" for c in CURVES] + [f"{r['seconds_per_state']:.3f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def margin_table(results: dict) -> str:
    """Each method's margin over the strongest floor of each score (positive: better), ± standard error."""
    floors = {c: r["margin"][c]["floor"] for r in results.values() if r["margin"] for c in CURVES}
    if not floors:
        return "(no floor among --method: no margins)"
    head = "| method | " + " | ".join(f"{c.replace('_', ' ')} (over {floors[c]})" for c in CURVES) + " |"
    lines = [head, "|---" + "|---:" * len(CURVES) + "|"]
    for method, r in results.items():
        if method not in FLOORS:
            lines.append(f"| {method} | " + " | ".join(f"{r['margin'][c]['value']:+.3f} ± {r['margin'][c]['se']:.3f}"
                                                        for c in CURVES) + " |")  # fmt: skip
    return "\n".join(lines)


def sanity_table(results: dict, layers: list) -> str:
    """Rank correlation with the trained map after each cascade step, beside the method's floor (geometry alone)."""
    lines = ["| method | floor (geometry alone) | input |" + "".join(f" {layer} |" for layer in layers),
             "|---|---|---:|" + "---:|" * len(layers)]  # fmt: skip
    for method, r in results.items():
        floor = r.get("sanity_floor")
        cell = f"{floor['value']:.2f} ({floor['floor']}) | {floor['input']:.2f}" if floor else "n/a (a floor) | "
        lines.append(f"| {method} | {cell} |" + "".join(f" {r['sanity'][layer]:.2f} |" for layer in layers))
    return "\n".join(lines)


def object_table(rows: dict) -> str:
    """Object grounding, one row per map (and attention head): mass share ± se vs screen share, peak on it."""
    names = sorted({name for r in rows.values() for name in r})
    if not names:
        return ""
    head = "| map |" + "".join(f" {n}: mass share | {n}: screen share | peak on {n} |" for n in names)
    lines = [head, "|---|" + "---:|" * (3 * len(names))]
    for label, r in rows.items():
        cells = [f"{r[n]['mass']:.3f} ± {r[n]['mass_se']:.3f} | {r[n]['area']:.3f} | {r[n]['peak']:.0%}"
                 for n in names]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_csv(path: str, results: dict, layers: list) -> None:
    columns = [f"{name}_auc{se}" for name in CURVES for se in ("", "_se")] + ["seconds_per_state"]
    names = sorted({n for r in results.values() for n in r["objects"]})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", *columns, *(f"margin_{c}" for c in CURVES), *(f"margin_{c}_se" for c in CURVES),
                         "sanity_floor", "sanity_input", *(f"sanity_{layer}" for layer in layers),
                         *(f"{n}_{k}" for n in names for k in ("mass", "mass_se", "area", "peak"))])  # fmt: skip
        for method, r in results.items():
            margin = [r["margin"].get(c, {}).get(k, "") for k in ("value", "se") for c in CURVES]
            objects = [r["objects"][n][k] for n in names for k in ("mass", "mass_se", "area", "peak")]
            floor = r.get("sanity_floor", {})
            sanity = [floor.get("value", ""), floor.get("input", ""), *(r["sanity"][layer] for layer in layers)]
            writer.writerow([method, *(r[c] for c in columns), *margin, *sanity, *objects])


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(path: str, curves: dict, fractions, results: dict, layers: list, title: str, baseline: str) -> None:
    """Deletion and insertion curves (mean over states, ± standard error shaded) per method, and the sanity
    check's correlations with each method's floor."""
    plt = pyplot()
    fig = plt.figure(figsize=(19, 10), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    style = {m: dict(color=c, ls=DASHES.get(m, "-"), lw=2.2 if m in FLOORS else 1.6) for m, c in COLOURS.items()}
    for i, (name, panel_title, ylabel, better) in enumerate(PANELS):
        ax = fig.add_subplot(grid[i // 2, i % 2])
        for method, c in curves.items():
            r = results[method]
            label = f"{method} ({r[name + '_auc']:.3f} ± {r[name + '_auc_se']:.3f})"
            mean, se = c[name].mean(0), c[name].std(0, ddof=1) / np.sqrt(len(c[name])) if len(c[name]) > 1 else 0
            ax.plot(100 * np.asarray(fractions), mean, label=label, **style[method])
            ax.fill_between(100 * np.asarray(fractions), mean - se, mean + se, color=style[method]["color"], alpha=0.12)
        done = "replaced" if name.startswith("deletion") else "restored"
        ax.set(xlabel=f"places {done}, most relevant first (% of the 84x84)", ylabel=ylabel, xlim=(0, 100))
        ax.set_title(panel_title.format(done="blurred" if baseline == "blur" else "blacked out"))
        ax.legend(title=f"area ± s.e. over states: {better} is better", fontsize=7.5, title_fontsize=8, ncol=2)
        ax.grid(alpha=0.3)
    ax = fig.add_subplot(grid[:, 2])
    ticks = ["trained"] + [f"+ {layer}" if i else layer for i, layer in enumerate(layers)]
    for method, r in results.items() if layers else ():
        if method in FLOORS:
            continue
        ax.plot(ticks, [1.0] + [r["sanity"][layer] for layer in layers], marker="o", label=method, **style[method])
        if "sanity_floor" in r:  # the floor of this method: what its geometry alone gives
            ax.plot(ticks, [r["sanity_floor"]["value"]] * len(ticks), color=style[method]["color"], ls=":", lw=1.2)
    ax.axhline(0, color="black", lw=0.8)
    ax.tick_params("x", rotation=30)
    ax.set(ylim=(-0.25, 1.05), xlabel="layers re-initialised, from the output down (cumulative)")
    ax.set(ylabel="Spearman rank correlation with the trained model's map (1: unchanged)")
    ax.set_title("Sanity check: a faithful map changes as the network is\nre-initialised from the top, "
                 "down to its floor (dotted)")  # fmt: skip
    note = ("Dotted: each method's floor, the correlation of its\ntrained map with maps that know nothing of the\n"
            "model (random, painted uniform or Dirichlet attention).\nAttention is computed below fc and the heads: it\n"
            "stays at 1 until the attention layers are re-initialised.")  # fmt: skip
    ax.text(0.03, 0.03, note, transform=ax.transAxes, fontsize=8)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_object_figure(path: str, rows: dict, title: str) -> None:
    """Per object: each map's (and head's) share of its mass on it ± s.e. as bars, and how often the map's peak
    is on it; the diamond is the object's share of the screen, where a map blind to it would be."""
    plt = pyplot()
    names = sorted({name for r in rows.values() for name in r})
    labels = list(rows)[::-1]  # top to bottom in the order of the table
    fig, axes = plt.subplots(1, 2 * len(names), figsize=(8 * len(names), 0.33 * len(labels) + 2.2),
                             layout="constrained", gridspec_kw=dict(width_ratios=[1.6, 1] * len(names)))  # fmt: skip
    y = np.arange(len(labels))
    colours = [COLOURS.get(label.split(" ")[0], "tab:red") for label in labels]
    chance = dict(marker="D", color="black", markerfacecolor="white", ls="none", ms=6, mew=1.5)
    for i, name in enumerate(names):
        mass, peak = axes[2 * i], axes[2 * i + 1]
        values = [rows[label][name] for label in labels]
        area = [v["area"] for v in values]
        mass.barh(y, [v["mass"] for v in values], xerr=[v["mass_se"] for v in values], color=colours, alpha=0.8)
        mass.plot(area, y, **chance, label="its share of the screen")
        mass.set(yticks=y, yticklabels=labels, xlabel="share of the map's mass (± s.e.)")
        mass.set_title(f"{name}: the map's mass on it ({values[0]['states']} states)")
        mass.legend(fontsize=8, loc="lower right")
        peak.barh(y, [100 * v["peak"] for v in values], color=colours, alpha=0.8)
        peak.plot(100 * np.asarray(area), y, **chance)
        peak.set(yticks=y, yticklabels=[], xlabel="% of the states", xlim=(0, 100))
        peak.set_title(f"{name}: the map's peak on it")
        for ax in (mass, peak):
            ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------- the command line


def main(argv=None) -> str:
    """Sample states, compute and score every map, print the tables and write JSON, CSV and PNGs; returns the folder."""
    args = tyro.cli(Args, args=argv)
    check_args(args)
    device = pick_device(args.cuda)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    agent, meta = load_checkpoint(args.checkpoint, device, args.env_id)
    methods = list(dict.fromkeys(args.method))
    if "attention" in methods and agent.attn_heads == 0:
        methods.remove("attention")
        print("note: this agent has no attention module; the attention map is skipped.")
    if not methods:
        raise UsageError("no method is left to score; add --method gradient (or another one).")
    progress = Progress()
    with output_folder(args.out, meta["run_name"], "faithfulness", args.force) as out:
        start = time.perf_counter()
        obs, taken, objects = sample_states(agent, meta["env_id"], args, progress, meta["env_options"])
        if meta["outputs"] == "q_values":  # a DQN: the curves follow its epsilon-greedy policy
            print(f"note: {Q_VALUES}")
        x = obs.float() / 255  # (S, 4, 84, 84)
        with torch.no_grad():
            clean = agent.activations(x)
        actions = explained_actions(clean["logits"], taken, args.explain)  # (S,)
        progress(f"maps of {len(obs)} states: {', '.join(methods)}")
        floors = torch.Generator(device=device).manual_seed(args.seed)
        maps, seconds, incomplete = explanation_maps(agent, obs, actions, methods, args, floors)  # {m: (S, 84, 84)}
        progress(f"maps: {time.perf_counter() - start:.0f} s", done=True)

        maps_in_order = {m: maps[m] for m in methods}
        curves, fractions = deletion_insertion(agent, obs, maps_in_order, actions, args.baseline, args.steps, args.chunk, args.seed, progress)  # fmt: skip
        areas = {m: {name: area_under_curve(c[name], fractions) for name in CURVES} for m, c in curves.items()}
        progress(f"deletion and insertion: {time.perf_counter() - start:.0f} s", done=True)

        some = np.unique(np.linspace(0, len(obs) - 1, min(args.sanity_states, len(obs))).round().astype(int))
        redraws = torch.Generator(device).manual_seed(args.seed + 1)  # floors: fresh draws at every step
        sanity, by_geometry, layers = {}, {}, [label for label, _ in cascade_steps(agent)] if len(some) else []
        if layers:
            sanity_maps = lambda model: explanation_maps(model, obs[some], actions[some], methods, args, redraws)[0]  # noqa: E731
            geometry = {f: floor_maps(f, len(some), max(agent.attn_heads, 1), redraws) for f in FLOORS}
            frames = collapse_frames(x[some])  # (N, 84, 84): the input, max over the 4 frames
            sanity, by_geometry = sanity_check(agent, sanity_maps, args.seed, progress, geometry, frames)
            progress(f"sanity check on {len(some)} states: {time.perf_counter() - start:.0f} s", done=True)

        masks = object_masks(objects, args.margin)
        grounded = {m: grounding(maps[m], masks) for m in methods} if masks else {}
        heads = {f"attention (head {h})": grounding(paint_attention(clean["attention"])[:, h], masks)
                 for h in range(agent.attn_heads)} if masks and "attention" in methods else {}  # fmt: skip
        results = summary(areas, seconds, sanity, by_geometry, grounded)
        report = dict(checkpoint=args.checkpoint, env_id=meta["env_id"], states=len(obs),
                      games=min(args.games, args.states), explained=args.explain, baseline=args.baseline,
                      ig_steps=args.ig_steps, margin_px=args.margin, sanity_states=len(some) if layers else 0,
                      ig_completeness_error={m: float(np.median(e)) for m, e in incomplete.items()})  # fmt: skip
        report["policy"] = played_policy(agent)
        with open(os.path.join(out, "faithfulness.json"), "w") as f:
            json.dump({**report, "methods": results, "attention_heads": heads}, f, indent=2)
        save_csv(os.path.join(out, "faithfulness.csv"), results, layers)
        title = (f"{meta['env_id']}, {len(obs)} states, {args.baseline} baseline: which explanation of "
                 f"{EXPLAINED[args.explain]} can you trust?")  # fmt: skip
        title += " (a DQN: its epsilon-greedy policy)" if meta["outputs"] == "q_values" else ""
        save_figure(os.path.join(out, "faithfulness.png"), curves, fractions, results, layers, title, args.baseline)
        rows = {**grounded, **heads}
        if rows:
            object_title = (f"{meta['env_id']}, {len(obs)} states: does each map look at the game's objects? "
                            f"(boxes + {args.margin} px)")  # fmt: skip
            save_object_figure(os.path.join(out, "objects.png"), rows, object_title)
        print(f"\n{title}\nExplained: {EXPLAINED[args.explain]}. Areas under the curves (x: fraction of the places, 0 "
              f"to 1), mean ± standard error over the {len(obs)} states; arrows: which way is better.\n")  # fmt: skip
        print(area_table(results, args.explain))
        print("\nMargin over the strongest floor of each score (floors: maps that know nothing of the model), paired "
              "over states; positive: better than every floor.\n")  # fmt: skip
        print(margin_table(results))
        if layers:
            print(f"\nSanity check on {len(some)} states: rank correlation with the trained model's map once "
                  "re-initialised down to each layer (lower: the map depends on those weights), beside the floor, "
                  "the correlation the trained map has with maps that know nothing of the model, and its "
                  "correlation with the input frames (max over the 4).\n")  # fmt: skip
            print(sanity_table(results, layers))
        if rows:
            print(f"\nThe game's objects (from the emulator's RAM; boxes in the 4 stacked frames + {args.margin} px): "
                  "share of each map's mass on an object against its share of the screen, and how often the "
                  "map's peak is on it.\n")  # fmt: skip
            print(object_table(rows))
        for m, e in incomplete.items():
            print(f"\n{m}: the attributions sum to f(x) - f(x') within {np.median(e):.1%} (median over states; "
                  f"90th percentile {np.quantile(e, 0.9):.1%}) with {args.ig_steps} steps.", end="")  # fmt: skip
        files = "faithfulness.json, faithfulness.csv, faithfulness.png" + (" and objects.png" if rows else "")
        print(f"\n\nwrote {files} to {out}")
    return out


if __name__ == "__main__":
    exit_on_bad_input(main)
