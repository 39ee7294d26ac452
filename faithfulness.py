"""Which explanation can you trust? Deletion, insertion and sanity checks of every saliency map of an Atari agent.

Plays the checkpoint's game, samples `--states` states from several games, and explains the action the
agent took at each with every map of saliency.py (attention, gradient, smoothgrad, vargrad, perturbation)
and a random map, the floor every method must beat. A *place* is one of the 84x84 pixel positions, in
all 4 stacked frames at once, ranked by the map's maximum over the frames (`collapse_frames`).

- deletion (Petsiuk et al. 2018, RISE, arXiv 1806.07421): replace the places, most relevant first, by a
  blurred (Greydanus' sigma 3) or black copy and follow KL(original policy || perturbed policy) and the
  probability of the chosen action. A map that found what matters moves the policy early: a large KL
  area, a small probability area.
- insertion: the reverse. From the fully blurred (or black) frames, restore the most relevant places first:
  the probability comes back early (large area), the KL falls early (small area).
- cascading randomisation (Adebayo et al. 2018, arXiv 1810.03292): re-initialise the network from the top
  down (actor+critic, fc, attention, conv3, conv2, conv1, cumulatively) with the training script's
  `layer_init`, and give the Spearman rank correlation of each new map with the trained model's. A map
  that stays the same when the weights are destroyed explains the input, not the model.

Huber et al. 2021 (arXiv 2101.07312) compared saliency methods for Atari agents in the same three ways:
insertion, sanity checks and run time.

    python faithfulness.py --checkpoint runs/<run_name>/run.pt
"""

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

from play import Progress, exit_on_bad_input, load_checkpoint, output_folder, pick_device, play
from ppo_attention import UsageError, layer_init
from saliency import METHODS, as_float_input, check_options, collapse_frames, gaussian_blur, saliency_maps

ALL_METHODS = (*METHODS, "random")
Method = Literal["attention", "gradient", "smoothgrad", "vargrad", "perturbation", "random"]
CURVES = ("deletion_kl", "deletion_prob", "insertion_prob", "insertion_kl")
CASCADE = (  # re-initialised from the output down, cumulatively: (label, layers)
    ("actor+critic", ("actor", "critic")),
    ("fc", ("fc",)),
    ("attention", ("attn_logits", "attn_hidden")),
    ("conv3", ("conv3",)),
    ("conv2", ("conv2",)),
    ("conv1", ("conv1",)),
)
Q_VALUES = (
    "this agent is a DQN, whose outputs are Q-values. The curves follow softmax(Q) in place of a policy (KL of "
    "softmax(Q') from softmax(Q), and the greedy action's probability under it), and the maps explain the greedy "
    "action. Q-values are sums of clipped rewards, so at temperature 1 a difference of one point of reward between "
    "two actions makes odds of e to 1; the KL is 0 exactly when every Q-value moves by the same amount (the "
    "decision and the advantages unchanged). The greedy policy itself changes only when the argmax does."
)
INIT_STD = {"actor": 0.01, "critic": 1.0}  # the training script's layer_init; sqrt(2) for every other layer
PLACES = 84 * 84


@dataclass
class Args:
    """Score every saliency map of a checkpoint by deletion, insertion, cascading randomisation and run time."""

    checkpoint: str
    """a `run.pt` of ppo_attention.py (or its run folder), a CleanRL .pt/.cleanrl_model or a Stable-Baselines3 .zip"""
    env_id: Optional[str] = None
    """the game of a CleanRL or SB3 agent whose file does not name it, e.g. BreakoutNoFrameskip-v4"""
    states: int = 32
    """states to explain, spread over --games games, drawn at random steps of each game"""
    games: int = 4
    """games the states come from (seeds --seed, --seed + 1, ...)"""
    max_steps: int = 1000
    """states are drawn from the first this many agent steps of each game"""
    method: tuple[Method, ...] = ALL_METHODS
    """maps to score (attention is skipped, with a note, for an agent without attention)"""
    baseline: Literal["blur", "black"] = "blur"
    """what replaces a deleted place: the frames blurred (Gaussian, sigma 3 px) or black"""
    steps: int = 20
    """intervals of the deletion and insertion curves (at least 20: at most 5% of the places per step)"""
    samples: int = 50
    """noisy copies per state for SmoothGrad and VarGrad"""
    stride: int = 5
    """grid spacing in pixels of the perturbation method"""
    sanity_states: int = 8
    """states (of --states, evenly spread) for the sanity check, which recomputes every map 5-6 times; 0 skips it"""
    chunk: int = 128
    """network inputs per forward pass (bounds memory)"""
    seed: int = 1
    """seed of the games, the sampled states and actions, the noise, the random map and the re-initialisation"""
    greedy: bool = False
    """take the most probable action instead of sampling from the policy"""
    out: Optional[str] = None
    """output folder (default: a new runs/<run_name>/faithfulness__<unix time>/)"""
    force: bool = False
    """write into an --out folder that already holds files"""
    cuda: bool = True
    """compute on CUDA when it is available"""


def check_args(args: Args) -> None:
    """Reject a bad setting with one sentence (UsageError) before anything is loaded or written."""
    for name in ("states", "games", "max_steps"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.steps < 20:
        raise UsageError(f"--steps must be at least 20 (at most 5% of the places per step), got {args.steps}.")
    if args.sanity_states < 0:
        raise UsageError(f"--sanity-states must be 0 (no sanity check) or more, got {args.sanity_states}.")
    check_options(None, "smoothgrad", "action", None, None, args.samples, 0.15, args.stride, args.chunk)


# ----------------------------------------------------------------------------- states and maps


def sample_states(agent, env_id: str, args: Args, progress, env_options: Optional[dict] = None) -> tuple:
    """(observations (S, 4, 84, 84) uint8, taken actions (S,)) on the agent's device, S <= --states.

    Game g is played from seed `seed + g`; its share of the states is a uniform sample (reservoir
    sampling, numpy Generator seeded with `seed`) of its first `max_steps` steps. Steps where the game
    pressed FIRE after a lost life are left out: the agent did not choose that action.
    """
    rng, games, threads = np.random.default_rng(args.seed), min(args.games, args.states), torch.get_num_threads()
    obs, actions = [], []
    torch.set_num_threads(1)  # passes of one observation gain nothing from threads; on a busy CPU they cost 20x
    try:
        for g, share in enumerate(len(part) for part in np.array_split(np.arange(args.states), games)):
            kept, seen = [], 0
            for step in play(agent, env_id, args.seed + g, args.greedy, args.max_steps, env_options):
                progress(f"playing game {g + 1}/{games}: step {step.t}")
                if step.forced:
                    continue
                if len(kept) < share:
                    kept.append((step.t, step.obs, step.action))
                elif (j := int(rng.integers(0, seen + 1))) < share:  # each step so far is kept with chance share/seen
                    kept[j] = (step.t, step.obs, step.action)
                seen += 1
            if len(kept) < share:
                print(f"note: game {g + 1} gave only {len(kept)} of its {share} states (it ended after {seen} steps).")
            obs += [o for _, o, _ in sorted(kept, key=lambda k: k[0])]
            actions += [a for _, _, a in sorted(kept, key=lambda k: k[0])]
    finally:
        torch.set_num_threads(threads)
    progress(f"sampled {len(obs)} states from {games} games", done=True)
    device = next(agent.parameters()).device
    return torch.as_tensor(np.stack(obs), device=device), torch.as_tensor(actions, device=device)


def explanation_maps(agent, obs, actions, methods, args: Args, random_maps: torch.Generator) -> tuple:
    """({method: relevance (S, 84, 84)} explaining each state's taken action, {method: seconds per state}).

    Gradient maps differentiate the taken action's logit; perturbation scores the change of all logits.
    The noise of SmoothGrad and VarGrad (one shared pass, whose time counts for both) is seeded afresh
    with `seed` at every call: a retrained or re-initialised model gets the same noisy copies. The
    random map takes its next draw from `random_maps`. Each map is |map| maxed over the 4 frames.
    """
    maps, seconds, device = {}, {}, obs.device
    with torch.no_grad():
        agent(obs[:1])  # warm-up: one-time costs are not the first method's
    for method in methods:
        if method in maps:  # vargrad, computed with smoothgrad
            continue
        start = time.perf_counter()
        if method == "random":
            new = {"random": torch.rand((len(obs), 84, 84), generator=random_maps, device=device)}
        else:
            shared = [m for m in ("smoothgrad", "vargrad") if m in methods]
            group = shared if method in shared else [method]
            noise = torch.Generator(device=device).manual_seed(args.seed)
            settings = dict(samples=args.samples, stride=args.stride, chunk=args.chunk, generator=noise)
            new = saliency_maps(agent, obs, group, "action", action=actions, **settings)
            new = {m: collapse_frames(v.abs()) for m, v in new.items()}  # (S, 4, 84, 84) -> (S, 84, 84)
        if device.type == "cuda":
            torch.cuda.synchronize()
        for m, v in new.items():
            maps[m], seconds[m] = v, (time.perf_counter() - start) / len(obs)
    return maps, seconds


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
    logp = agent(x)[0].float().log_softmax(-1)  # (S, A) the original policy
    flat = {name: torch.empty(S * K, device=x.device) for name in CURVES}
    rows_per_pass = max(chunk // 2, 1)  # a deletion and an insertion input per row
    for start in range(0, S * K, rows_per_pass):
        rows = torch.arange(start, min(start + rows_per_pass, S * K), device=x.device)
        s, k = rows // K, rows % K
        replaced = (ranks[s] < counts[k, None]).view(-1, 1, 84, 84)  # (C, 1, 84, 84), the same in all 4 frames
        inputs = torch.cat([torch.where(replaced, base[s], x[s]), torch.where(replaced, x[s], base[s])])
        logq = agent(inputs)[0].float().log_softmax(-1).view(2, len(rows), -1)  # (2, C, A): deletion, insertion
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


def sanity_check(agent, map_fn, seed: int, progress=None) -> dict:
    """{method: {step label: rank correlation with the trained agent's map, mean over states}}.

    map_fn(model) -> {method: maps (N, ...)} computes the maps of the same N states with a given model.
    """
    trained = map_fn(agent)
    result = {method: {} for method in trained}
    steps = cascade(agent, seed)
    for i, (label, model) in enumerate(steps):
        if progress:
            progress(f"sanity check: re-initialised down to {label} ({i + 1}/{len(steps)})")
        for method, m in map_fn(model).items():
            result[method][label] = float(spearman(trained[method], m).mean())
    return result


# ----------------------------------------------------------------------------- the report

KL, PROB = "KL(original policy || perturbed policy) (nats)", "probability of the chosen action"
PANELS = (  # (curve, title, y label, which area is better), left to right, top to bottom
    ("deletion_kl", "Deletion: the policy moves away\nas the most relevant places are {done}", KL, "higher"),
    ("deletion_prob", "Deletion: the chosen action's probability falls\nas the most relevant places are {done}", PROB, "lower"),
    ("insertion_kl", "Insertion: the policy comes back\nas the most relevant places are restored", KL, "lower"),
    ("insertion_prob", "Insertion: the chosen action's probability returns\nas the most relevant places are restored", PROB, "higher"),
)  # fmt: skip
COLOURS = dict(zip(ALL_METHODS, ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "grey")))


def summary(curves: dict, fractions, seconds: dict, sanity: dict) -> dict:
    """{method: the four areas under the mean curves, seconds per state, {layer: rank correlation}}."""
    results = {}
    for method, c in curves.items():
        areas = {f"{name}_auc": float(area_under_curve(c[name].mean(0), fractions)) for name in CURVES}
        results[method] = {**areas, "seconds_per_state": seconds[method], "sanity": sanity.get(method, {})}
    return results


def table(results: dict, layers: list) -> str:
    """The results as a Markdown table, one row per method."""
    head = "| method | deletion KL | deletion prob | insertion prob | insertion KL | s/state |"
    lines = [head + "".join(f" {layer} |" for layer in layers), "|---" + "|---:" * (5 + len(layers)) + "|"]
    for method, r in results.items():
        cells = [f"{r[name + '_auc']:.3f}" for name in CURVES] + [f"{r['seconds_per_state']:.3f}"]
        lines.append(f"| {method} | " + " | ".join(cells + [f"{r['sanity'][layer]:.2f}" for layer in layers]) + " |")
    return "\n".join(lines)


def save_csv(path: str, results: dict, layers: list) -> None:
    columns = [f"{name}_auc" for name in CURVES] + ["seconds_per_state"]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", *columns, *(f"sanity_{layer}" for layer in layers)])
        for method, r in results.items():
            writer.writerow([method, *(r[c] for c in columns), *(r["sanity"][layer] for layer in layers)])


def save_figure(path: str, curves: dict, fractions, results: dict, layers: list, title: str, baseline: str) -> None:
    """Deletion and insertion curves (mean over states) per method, and the sanity check's correlations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(17, 9), layout="constrained")
    grid = fig.add_gridspec(2, 3)
    style = {m: dict(color=c, ls="--" if m == "random" else "-", lw=2.2 if m == "random" else 1.6) for m, c in COLOURS.items()}  # fmt: skip
    for i, (name, panel_title, ylabel, better) in enumerate(PANELS):
        ax = fig.add_subplot(grid[i // 2, i % 2])
        for method, c in curves.items():
            label = f"{method} (area {results[method][name + '_auc']:.3f})"
            ax.plot(100 * np.asarray(fractions), c[name].mean(0), label=label, **style[method])
        done = "replaced" if name.startswith("deletion") else "restored"
        ax.set(xlabel=f"places {done}, most relevant first (% of the 84x84)", ylabel=ylabel, xlim=(0, 100))
        ax.set_title(panel_title.format(done="blurred" if baseline == "blur" else "blacked out"))
        ax.legend(title=f"area under the curve: {better} is better", fontsize=8, title_fontsize=8)
        ax.grid(alpha=0.3)
    ax = fig.add_subplot(grid[:, 2])
    ticks = ["trained"] + [f"+ {layer}" if i else layer for i, layer in enumerate(layers)]
    for method, r in results.items() if layers else ():
        first = np.nan if method == "random" else 1.0  # each random map is a new draw: no trained map to be 1 with
        ax.plot(ticks, [first] + [r["sanity"][layer] for layer in layers], marker="o", label=method, **style[method])
    ax.axhline(0, color="black", lw=0.8)
    ax.tick_params("x", rotation=30)
    ax.set(ylim=(-0.25, 1.05), xlabel="layers re-initialised, from the output down (cumulative)")
    ax.set(ylabel="Spearman rank correlation with the trained model's map (1: unchanged)")
    ax.set_title("Sanity check: a faithful map changes\nas the network is re-initialised from the top")
    note = "Attention is computed below fc and the heads,\nso it stays at 1 until the attention layers are\nre-initialised. The random map is redrawn\neach time: about 0."
    ax.text(0.03, 0.03, note, transform=ax.transAxes, fontsize=8)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------- the command line


def main(argv=None) -> str:
    """Sample states, compute and score every map, print the table and write JSON, CSV and PNG; returns the folder."""
    args = tyro.cli(Args, args=argv)
    check_args(args)
    agent, meta = load_checkpoint(args.checkpoint, pick_device(args.cuda), args.env_id)
    methods = list(dict.fromkeys(args.method))
    if "attention" in methods and agent.attn_heads == 0:
        methods.remove("attention")
        print("note: this agent has no attention module; the attention map is skipped.")
    if not methods:
        raise UsageError("no method is left to score; add --method gradient (or another one).")
    device, progress = next(agent.parameters()).device, Progress()
    with output_folder(args.out, meta["run_name"], "faithfulness", args.force) as out:
        start = time.perf_counter()
        obs, actions = sample_states(agent, meta["env_id"], args, progress, meta["env_options"])  # (S, 4, 84, 84), (S,)
        if meta["outputs"] == "q_values":  # a DQN: its maps explain, and the curves follow, its greedy action
            print(f"note: {Q_VALUES}")
            with torch.no_grad():
                actions = agent(obs)[0].argmax(-1)
        progress(f"maps of {len(obs)} states: {', '.join(methods)}")
        random_maps = torch.Generator(device=device).manual_seed(args.seed)
        maps, seconds = explanation_maps(agent, obs, actions, methods, args, random_maps)  # {m: (S, 84, 84)}
        progress(f"maps: {time.perf_counter() - start:.0f} s", done=True)

        maps = {m: maps[m] for m in methods}
        curves, fractions = deletion_insertion(agent, obs, maps, actions, args.baseline, args.steps, args.chunk, args.seed, progress)  # fmt: skip
        progress(f"deletion and insertion: {time.perf_counter() - start:.0f} s", done=True)

        some = np.unique(np.linspace(0, len(obs) - 1, min(args.sanity_states, len(obs))).round().astype(int))
        redraws = torch.Generator(device).manual_seed(args.seed + 1)  # the random map: a fresh draw at every step
        sanity, layers = {}, [label for label, _ in cascade_steps(agent)] if len(some) else []
        if layers:
            sanity_maps = lambda model: explanation_maps(model, obs[some], actions[some], methods, args, redraws)[0]  # noqa: E731
            sanity = sanity_check(agent, sanity_maps, args.seed, progress)
            progress(f"sanity check on {len(some)} states: {time.perf_counter() - start:.0f} s", done=True)

        results = summary(curves, fractions, seconds, sanity)
        report = dict(checkpoint=args.checkpoint, env_id=meta["env_id"], states=len(obs), baseline=args.baseline)
        report["policy"] = "softmax(Q)" if meta["outputs"] == "q_values" else "policy"  # what the curves follow
        with open(os.path.join(out, "faithfulness.json"), "w") as f:
            json.dump({**report, "methods": results}, f, indent=2)
        save_csv(os.path.join(out, "faithfulness.csv"), results, layers)
        title = f"{meta['env_id']}, {len(obs)} states, {args.baseline} baseline: which explanation of the chosen action can you trust?"
        title += (
            " (a DQN: its policy is softmax(Q), its chosen action the greedy one)" if "Q" in report["policy"] else ""
        )
        save_figure(os.path.join(out, "faithfulness.png"), curves, fractions, results, layers, title, args.baseline)
        print(f"\n{title}\nAreas under the mean curves (x: fraction of the places, 0 to 1); better: deletion KL higher, "
              "deletion prob lower, insertion prob higher, insertion KL lower. Layer columns (sanity check): rank "
              "correlation with the trained model's map once re-initialised down to that layer; lower: the map "
              "depends on those weights.\n")  # fmt: skip
        print(table(results, layers))
        print(f"\nwrote faithfulness.json, faithfulness.csv and faithfulness.png to {out}")
    return out


if __name__ == "__main__":
    exit_on_bad_input(main)
