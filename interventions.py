"""Does the agent act on what it attends to? Causal tests of the attention, each with a control.

Every other explanation in this project is correlational. The attention agent's decision passes *through*
its 7x7 maps (`masked = features * sum_h attention_h`, then fc, actor, critic), so the maps can be edited
inside the forward pass and the decision watched. `EditedAgent` is the agent with some heads' maps
replaced; `play.play` plays it like any agent.

1. Head ablation: N seeded games under each condition, the same seeds for all: intact; each head replaced by
   the uniform map (1/49 everywhere: the head still passes its mass, but looks nowhere in particular); each head
   removed from the mask (its map set to 0); all heads uniform. Score (mean +- standard error over games) and,
   on the states of the intact games, the KL of each condition's policy from the intact one.
2. Attention steering: on sampled states, every head's map (and each head alone, the others as they are) set
   to a one-hot map at each of the 49 places in turn. Each action's probability is a 7x7 map, drawn over the
   frame. The control is the intact policy: how often does the place change the chosen action?
3. Taking an object away (games whose objects are read from the emulator's RAM): see `removal`.
4. Dataset examples (Olah et al. 2017, "Feature Visualization", Distill): for each conv3 channel, and for each
   attention head at its peak, the sampled states that activate it most, as crops of the unit's 36x36
   receptive field.
5. An agent without attention (`--attn-heads 0`) has no maps to edit: it gets parts 3 and 4 only.

Yang et al. 2018 (arXiv 1812.11276), rl-attention (AI Safety Camp 3: Nikulin, Kosch, Steuer, Cunningham 2019,
github.com/dniku/rl-attention) and Mott et al. 2019 (arXiv 1906.02500) show attention maps and read them as
explanations, without editing them.

    python interventions.py --checkpoint runs/<run_name>/run.pt
"""

import json
import os
import time
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

from play import Progress, exit_on_bad_input, load_checkpoint, output_folder, pick_device, play
from ppo_attention import Agent, UsageError
from render import head_colours
from saliency import collapse_frames

PLACES = 49  # the 7x7 grid of the attention
RF_SIZE, RF_STRIDE = Agent.RECEPTIVE_FIELDS["conv3"]  # 36, 8: unit (y, x) sees rows [8y, 8y + 36)
Part = Literal["ablation", "steering", "removal", "examples"]
ALL_PARTS = ("ablation", "steering", "removal", "examples")
NO_ATTENTION_NOTE = (
    "this agent has no attention module (trained with --attn-heads 0): its conv3 features enter fc unweighted, so "
    "there are no maps to ablate (part 1) or steer (part 2); parts 3 and 4 do not need them."
)


@dataclass
class Args:
    """Causal tests of a checkpoint's attention: head ablation, attention steering, taking objects away, and
    dataset examples of the conv3 channels and attention heads. Prints tables, writes JSON and PNG figures."""

    checkpoint: str
    """a `run.pt` written by ppo_attention.py (or its run folder)"""
    parts: tuple[Part, ...] = ALL_PARTS
    """which tests to run (the intact games are always played: their states feed the other parts)"""
    games: int = 20
    """games per ablation condition, seeds --seed to --seed + games - 1, the same for every condition"""
    max_steps: int = 5000
    """a game is cut after this many agent steps (counted in the table); the demo agents need about 600"""
    states: int = 512
    """states sampled from the intact games for parts 2 to 4 (FIRE pressed by the game after a lost life excluded)"""
    steer_states: int = 32
    """of those, the states whose attention is steered onto each of the 49 places"""
    figures: int = 2
    """steering figures to draw (states spread over the steered ones)"""
    examples: int = 8
    """dataset examples per conv3 channel and per head"""
    seed: int = 1
    """first game seed (also the seed of the agent's sampled actions and of the state sample)"""
    greedy: bool = False
    """take the most probable action instead of sampling from the policy"""
    out: Optional[str] = None
    """output folder (default: a new runs/<run_name>/interventions__<unix time>/)"""
    force: bool = False
    """write into an --out folder that already holds files"""
    cuda: bool = True
    """compute on CUDA when it is available"""


def check_args(args: Args) -> None:
    """Reject a bad setting with one sentence (UsageError) before anything is loaded or written."""
    for name in ("games", "max_steps", "states", "steer_states", "examples"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if args.figures < 0:
        raise UsageError(f"--figures must be 0 or more, got {args.figures}.")
    if not args.parts:
        raise UsageError("--parts needs at least one of ablation, steering, removal, examples.")


# ----------------------------------------------------------------------------- editing the attention


def after_attention(agent: Agent, features: torch.Tensor, attention: torch.Tensor) -> dict:
    """The layers after the attention, run with `attention` (B, H, 7, 7) in place of the agent's own maps.

    These are the last lines of `Agent.activations` (a test checks that the agent's own maps give its own
    outputs): masked = features * sum_h attention_h, then fc, actor and critic. features: (B, 64, 7, 7).
    """
    masked = features * attention.sum(1, keepdim=True)
    fc = F.relu(agent.fc(masked.flatten(1)))
    return {"attention": attention, "masked": masked, "fc": fc, "logits": agent.actor(fc), "value": agent.critic(fc)}


def replace_heads(attention: torch.Tensor, maps: dict) -> torch.Tensor:
    """attention (B, H, 7, 7) with head h's map replaced by maps[h] ((7, 7) or (B, 7, 7)); other heads as they are."""
    edited = attention.clone()
    for h, m in maps.items():
        edited[:, h] = m.to(edited.device)
    return edited


def uniform_map(device=None) -> torch.Tensor:
    """The map that looks nowhere in particular: 1/49 at every place (a softmax of equal logits)."""
    return torch.full((7, 7), 1 / PLACES, device=device)


def one_hot_maps(device=None) -> torch.Tensor:
    """(49, 7, 7): map p puts all its mass on place p = 7 * y + x."""
    return torch.eye(PLACES, device=device).view(PLACES, 7, 7)


def ablation_conditions(heads: int) -> dict:
    """{condition name: {head: its replacement map}}: intact, each head uniform, each head removed (a zero map:
    it adds nothing to the mask), all heads uniform. Empty without attention (there is nothing to edit)."""
    if heads == 0:
        return {"intact": {}}
    conditions = {"intact": {}}
    conditions |= {f"head {h} uniform": {h: uniform_map()} for h in range(heads)}
    conditions |= {f"head {h} removed": {h: torch.zeros(7, 7)} for h in range(heads)}
    conditions["all heads uniform"] = {h: uniform_map() for h in range(heads)}
    return conditions


class EditedAgent(nn.Module):
    """The agent with some heads' maps replaced inside the forward pass (`maps`: {head: (7, 7) map}), so that
    everything after the attention (mask, fc, policy, value) follows the edited maps. It has the Agent's
    `activations`, so the shared play loop plays it like the agent itself."""

    def __init__(self, agent: Agent, maps: dict):
        super().__init__()
        self.agent, self.attn_heads, self.n_actions = agent, agent.attn_heads, agent.n_actions
        device = next(agent.parameters()).device
        self.maps = {h: m.to(device) for h, m in maps.items()}

    def activations(self, x: torch.Tensor, check: bool = True) -> dict:
        out = self.agent.activations(x, check)
        if not self.maps:
            return out
        return out | after_attention(self.agent, out["features"], replace_heads(out["attention"], self.maps))


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) in nats of the policies with these logits, over the last dimension."""
    logp, logq = F.log_softmax(logits_p.float(), -1), F.log_softmax(logits_q.float(), -1)
    return (logp.exp() * (logp - logq)).sum(-1)


def mean_and_se(values) -> tuple:
    """(mean, standard error of the mean); the error is nan for fewer than 2 values."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


# ----------------------------------------------------------------------------- part 1: head ablation


class StateSample:
    """A uniform sample of `size` states of the intact games (reservoir sampling with a seeded generator)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seen, self.kept, self.rng = size, 0, [], np.random.default_rng(seed)

    def offer(self, state: dict) -> None:
        if len(self.kept) < self.size:
            self.kept.append(state)
        elif (j := int(self.rng.integers(0, self.seen + 1))) < self.size:  # kept with chance size / seen
            self.kept[j] = state
        self.seen += 1

    def states(self) -> list:
        return sorted(self.kept, key=lambda s: (s["seed"], s["t"]))


def play_games(agent, env_id: str, seeds: list, args: Args, label: str, progress, on_step=None) -> list:
    """Play one game per seed with the shared play loop: [{seed, score, steps, truncated}]. on_step(step, seed)
    sees every step."""
    games = []
    for i, seed in enumerate(seeds):
        step = None
        for step in play(agent, env_id, seed, args.greedy, args.max_steps):
            if on_step is not None:
                on_step(step, seed)
            if step.t % 100 == 0:
                progress(f"{label}: game {i + 1}/{len(seeds)} (seed {seed}), step {step.t}, score {step.score:g}")
        games.append(dict(seed=seed, score=step.score, steps=step.t + 1, truncated=step.t + 1 == args.max_steps))
    return games


class IntactStates:
    """Watches the intact games: the policy of every ablation condition at each state (recomputed from the
    state's features, so all conditions are judged on the same states), and a sample of states for parts 2-4."""

    def __init__(self, agent: Agent, conditions: dict, sample: StateSample):
        self.agent, self.conditions, self.sample = agent, conditions, sample
        self.features, self.attention, self.logits, self.per_game = [], [], [], []

    def __call__(self, step, seed: int) -> None:
        if step.t == 0 and self.features:
            self.end_game()
        if step.forced:  # the game pressed FIRE after a lost life: not the agent's decision
            return
        a = step.activations
        self.features.append(a["features"])
        self.attention.append(a["attention"])
        self.logits.append(a["logits"])
        self.sample.offer(dict(seed=seed, t=step.t, obs=step.obs, frame=step.frame, action=step.action))

    @torch.no_grad()
    def end_game(self) -> None:
        """KL from the intact policy and how often the most probable action changes, per condition, this game."""
        features, attention, intact = (torch.cat(v) for v in (self.features, self.attention, self.logits))
        game = {}
        for name, maps in self.conditions.items():
            logits = (
                intact if not maps else after_attention(self.agent, features, replace_heads(attention, maps))["logits"]
            )
            changed = (logits.argmax(-1) != intact.argmax(-1)).float().mean()
            game[name] = (float(kl_divergence(intact, logits).mean()), float(changed))
        game["heads"] = head_agreement(attention.float())
        self.per_game.append(game)
        self.features, self.attention, self.logits = [], [], []


def head_agreement(attention: torch.Tensor) -> dict:
    """How alike the heads are, over states: each head's mean entropy (nats), and for each pair the share of states
    where both peak at the same place and the mean overlap of their maps (sum of the smaller weight, 0 to 1)."""
    flat = attention.flatten(2)  # (S, H, 49)
    entropy = -(flat * flat.clamp_min(1e-30).log()).sum(-1).mean(0)
    result = {"entropy": [float(e) for e in entropy]}
    for h in range(flat.shape[1]):
        for g in range(h + 1, flat.shape[1]):
            same = (flat[:, h].argmax(-1) == flat[:, g].argmax(-1)).float().mean()
            result[f"{h}-{g}"] = dict(
                same_peak=float(same), overlap=float(torch.minimum(flat[:, h], flat[:, g]).sum(-1).mean())
            )
    return result


def head_ablation(agent: Agent, env_id: str, args: Args, progress) -> tuple:
    """({condition: games and their statistics}, sampled states). The intact games are always played."""
    seeds = list(range(args.seed, args.seed + args.games))
    conditions = ablation_conditions(agent.attn_heads) if "ablation" in args.parts else {"intact": {}}
    watcher = IntactStates(agent, conditions, StateSample(args.states, args.seed))
    results = {}
    for k, (name, maps) in enumerate(conditions.items()):
        player = agent if not maps else EditedAgent(agent, maps)
        label = f"ablation {k + 1}/{len(conditions)}, {name}"
        games = play_games(player, env_id, seeds, args, label, progress, watcher if name == "intact" else None)
        if name == "intact":
            watcher.end_game()
        score, score_se = mean_and_se([g["score"] for g in games])
        kl, kl_se = mean_and_se([g[name][0] for g in watcher.per_game])
        changed, changed_se = mean_and_se([g[name][1] for g in watcher.per_game])
        results[name] = dict(
            maps={h: "uniform" if float(m.max()) > 0 else "removed" for h, m in maps.items()},
            seeds=[g["seed"] for g in games],
            scores=[g["score"] for g in games],
            steps=[g["steps"] for g in games],
            truncated=sum(g["truncated"] for g in games),
            score_mean=score,
            score_se=score_se,
            kl_mean=kl,
            kl_se=kl_se,
            action_changed_mean=changed,
            action_changed_se=changed_se,
        )
        progress(f"ablation, {name}: score {score:.2f} +- {score_se:.2f} over {len(games)} games", done=True)
    games = [g["heads"] for g in watcher.per_game]
    heads = {k: np.mean([g[k] for g in games], 0).tolist() if k == "entropy" else
             {m: float(np.mean([g[k][m] for g in games])) for m in games[0][k]} for k in games[0]}  # fmt: skip
    return results, heads, watcher.sample.states()


# ----------------------------------------------------------------------------- part 2: attention steering


def steering_configs(heads: int) -> dict:
    """{name: heads steered}: all heads onto the place, then each head alone (the others keep their own maps)."""
    return {"all heads": list(range(heads)), **{f"head {h} alone": [h] for h in range(heads)}}


@torch.no_grad()
def steer(agent: Agent, obs: torch.Tensor, heads: list) -> torch.Tensor:
    """The policy (S, 49, A) with the maps of `heads` set to a one-hot map at each place p in turn (the other
    heads keep their own maps). obs: (S, 4, 84, 84)."""
    a = agent.activations(obs)
    S, H = a["attention"].shape[:2]
    onehot = one_hot_maps(obs.device)  # (49, 7, 7)
    attention = a["attention"][:, None].expand(S, PLACES, H, 7, 7).clone()
    attention[:, :, heads] = onehot[None, :, None]
    features = a["features"][:, None].expand(S, PLACES, *a["features"].shape[1:])
    out = after_attention(agent, features.reshape(S * PLACES, 64, 7, 7), attention.view(S * PLACES, H, 7, 7))
    return out["logits"].float().softmax(-1).view(S, PLACES, -1)


@torch.no_grad()
def attention_steering(agent: Agent, states: list, args: Args, progress) -> tuple:
    """({config: its statistics}, {config: policies (S, 49, A)}, intact policies (S, A), the steered states)."""
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.permutation(len(states))[: args.steer_states])
    steered = [states[i] for i in chosen]
    device = next(agent.parameters()).device
    obs = torch.as_tensor(np.stack([s["obs"] for s in steered]), device=device)
    intact = agent.activations(obs)["logits"].float().softmax(-1)  # (S, A)
    results, policies = {}, {}
    for name, heads in steering_configs(agent.attn_heads).items():
        progress(f"steering {name} onto each of the 49 places, {len(steered)} states")
        p = steer(agent, obs, heads)  # (S, 49, A)
        policies[name] = p
        changed = (p.argmax(-1) != intact.argmax(-1)[:, None]).float().mean(1)  # (S,): share of places
        kl = kl_divergence(intact.log()[:, None], p.log()).mean(1)  # (S,)
        places_changing = (p.argmax(-1) != intact.argmax(-1)[:, None]).any(0).sum()
        spread = (p.amax(1) - p.amin(1)).amax(-1)  # (S,): the largest swing of one action's probability
        results[name] = dict(
            heads=heads,
            action_changed_mean=mean_and_se(changed.cpu())[0],
            action_changed_se=mean_and_se(changed.cpu())[1],
            kl_mean=mean_and_se(kl.cpu())[0],
            kl_se=mean_and_se(kl.cpu())[1],
            largest_swing_mean=mean_and_se(spread.cpu())[0],
            places_that_change_some_state=int(places_changing),
        )
    progress(f"steering: {len(steered)} states", done=True)
    return results, policies, intact, steered


# ----------------------------------------------------------------------------- part 4: dataset examples


def top_examples(activation: torch.Tensor, k: int) -> list:
    """The k states whose strongest place is strongest, one place per state: activation (S, 7, 7) ->
    [(state index, y, x, value)], strongest first; states where the unit is 0 everywhere are left out."""
    best, where = activation.flatten(1).max(1)  # (S,)
    order = torch.argsort(best, descending=True)[:k]
    return [(int(s), int(where[s]) // 7, int(where[s]) % 7, float(best[s])) for s in order if best[s] > 0]


def crop(obs: np.ndarray, y: int, x: int) -> np.ndarray:
    """The 36x36 receptive field of unit (y, x) in the observation, its 4 frames collapsed by their maximum."""
    image = collapse_frames(torch.as_tensor(obs)).numpy()
    return image[y * RF_STRIDE : y * RF_STRIDE + RF_SIZE, x * RF_STRIDE : x * RF_STRIDE + RF_SIZE]


@torch.no_grad()
def dataset_examples(agent: Agent, states: list, k: int) -> dict:
    """{"conv3": {channel: examples}, "heads": {head: examples}}: the sampled states that activate each conv3
    channel (at its strongest place) and each head's peak most."""
    device, chunks = next(agent.parameters()).device, []
    obs = torch.as_tensor(np.stack([s["obs"] for s in states]))
    for start in range(0, len(obs), 256):
        a = agent.activations(obs[start : start + 256].to(device))
        chunks.append((a["conv3"].float().cpu(), a["attention"].float().cpu()))
    conv3, attention = torch.cat([c for c, _ in chunks]), torch.cat([a for _, a in chunks])
    return {
        "conv3": {c: top_examples(conv3[:, c], k) for c in range(conv3.shape[1])},
        "heads": {h: top_examples(attention[:, h], k) for h in range(attention.shape[1])},
    }


# ----------------------------------------------------------------------------- tables


def ablation_table(results: dict) -> str:
    head = "| condition | score (mean ± SE) | game length (steps) | KL from intact (nats, mean ± SE) | most probable action changed |"
    lines = [head, "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        cut = f", {r['truncated']} cut" if r["truncated"] else ""
        lines.append(
            f"| {name} | {r['score_mean']:.2f} ± {r['score_se']:.2f} | {np.mean(r['steps']):.0f}{cut} | "
            f"{r['kl_mean']:.3f} ± {r['kl_se']:.3f} | {100 * r['action_changed_mean']:.1f}% |"
        )
    return "\n".join(lines)


def agreement_line(heads: dict) -> str:
    """How alike the heads are, in words."""
    text = "Attention entropy per head (intact games): " + ", ".join(f"{e:.2f}" for e in heads["entropy"]) + " nats"
    text += f" (uniform: {np.log(PLACES):.2f})."
    for pair, r in heads.items():
        if pair != "entropy":
            h, g = pair.split("-")
            text += (f" Heads {h} and {g} peak at the same place in {100 * r['same_peak']:.0f}% of states; their maps "
                     f"overlap by {r['overlap']:.2f} (1: identical).")  # fmt: skip
    return text


def steering_table(results: dict) -> str:
    head = "| steered onto each place | action changed (share of places, mean ± SE) | KL from intact (nats) | largest swing of an action's probability |"
    lines = [head, "|---|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {100 * r['action_changed_mean']:.1f}% ± {100 * r['action_changed_se']:.1f}% | "
            f"{r['kl_mean']:.3f} ± {r['kl_se']:.3f} | {r['largest_swing_mean']:.2f} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figures

FRAME_ASPECT = 210 / 160  # the 84x84 input is a resize of the 210x160 frame: draw it with the game's shape
NEAREST_PLACE = np.clip(np.round((np.arange(84) + 0.5 - RF_SIZE / 2) / RF_STRIDE), 0, 6).astype(int)


def on_input(m7: np.ndarray) -> np.ndarray:
    """A 7x7 map as an 84x84 image: each input pixel shows the place whose receptive field is centred nearest."""
    return m7[..., NEAREST_PLACE, :][..., NEAREST_PLACE]


def place_centre(p: int) -> tuple:
    """(x, y) in input pixels of the centre of place p's receptive field."""
    return (p % 7) * RF_STRIDE + RF_SIZE / 2, (p // 7) * RF_STRIDE + RF_SIZE / 2


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str, dpi: int = 80) -> None:
    """Write the figure atomically (a Ctrl-C leaves no half-written PNG) and close it."""
    fig.savefig(f"{path}.tmp.png", dpi=dpi)
    os.replace(f"{path}.tmp.png", path)
    pyplot().close(fig)


def draw_ablation(path: str, results: dict, heads: int, title: str) -> None:
    """Each condition's score (mean ± SE, one dot per game) and its policy's KL from the intact policy."""
    plt = pyplot()
    names = list(results)
    colours = head_colours(max(heads, 1)) / 255

    def colour(name):
        return next((colours[h] for h in range(heads) if name.startswith(f"head {h} ")), (0.45, 0.45, 0.5))

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.5 * len(names) + 1.8), layout="constrained", sharey=True)
    y = np.arange(len(names))[::-1]
    for yi, name in zip(y, names):
        r = results[name]
        hatch = "//" if "removed" in name else None
        left.barh(yi, r["score_mean"], xerr=r["score_se"], color=colour(name), hatch=hatch, alpha=0.8, capsize=4)
        jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(r["scores"]))
        left.plot(r["scores"], yi + jitter, "k.", ms=3, alpha=0.6)
        right.barh(yi, r["kl_mean"], xerr=r["kl_se"], color=colour(name), hatch=hatch, alpha=0.8, capsize=4)
    left.axvline(results["intact"]["score_mean"], color="k", ls="--", lw=1)
    left.set(yticks=y, yticklabels=names, xlabel="game score: bar = mean ± standard error, dot = one game")
    left.set_title("Score when the heads are edited (same seeds)")
    right.set(xlabel="KL(intact policy || edited policy), nats, on the intact games' states")
    right.set_title("How far the policy moves")
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    save(fig, path)


def draw_frame(ax, frame: np.ndarray) -> None:
    """The colour frame in the 84x84 input's coordinates, with the game's own shape."""
    ax.imshow(frame, extent=(0, 84, 84, 0), aspect=FRAME_ASPECT)
    ax.set(xticks=[], yticks=[], xlim=(0, 84), ylim=(84, 0))


def draw_steering(path: str, state: dict, policies: dict, intact: np.ndarray, attention: np.ndarray, names: list,
                  title: str) -> None:  # fmt: skip
    """One panel per (steered heads, action): the action's probability when the attention is forced onto each
    place, glowing over the frame (the brighter, the likelier; the game shows through where it is unlikely);
    circles mark where each head looks by itself."""
    plt = pyplot()
    configs, heads = list(policies), attention.shape[0]
    colours = head_colours(heads) / 255
    fig, axes = plt.subplots(len(configs), len(names), figsize=(2.3 * len(names) + 1.2, 3.0 * len(configs) + 0.9),
                             squeeze=False, layout="constrained")  # fmt: skip
    edges = [0, *(RF_STRIDE * k + RF_SIZE / 2 + RF_STRIDE / 2 for k in range(6)), 84]  # between the places' centres
    for row, config in enumerate(configs):
        for a, name in enumerate(names):
            ax = axes[row, a]
            draw_frame(ax, state["frame"])
            m = policies[config][:, a].reshape(7, 7)
            heat = on_input(m)
            image = ax.imshow(heat, extent=(0, 84, 84, 0), aspect=FRAME_ASPECT, cmap="inferno", vmin=0, vmax=1,
                              alpha=0.85 * np.sqrt(heat), interpolation="nearest")  # fmt: skip
            for e in edges[1:-1]:
                ax.axhline(e, color="white", lw=0.3, alpha=0.35)
                ax.axvline(e, color="white", lw=0.3, alpha=0.35)
            for h in range(heads):  # concentric, so that heads looking at the same place all show
                x, y = place_centre(int(attention[h].argmax()))
                ax.plot(x, y, "o", ms=max(13 - 3.5 * h, 3), mfc="none", mec=colours[h], mew=2)
            ax.set_title(f"P({name}): intact {intact[a]:.2f}\nsteered {m.min():.2f} to {m.max():.2f}", fontsize=9)
        others = [h for h in range(heads) if h not in steering_configs(heads)[config]]
        kept = f"\n({', '.join(f'head {h}' for h in others)} as it was)" if others else ""
        axes[row, 0].set_ylabel(f"{config} forced\nonto the place{kept}", fontsize=10)
    fig.colorbar(image, ax=axes, fraction=0.03, pad=0.01, label="probability of the action when steered there")
    fig.suptitle(f"{title}\nEach place glows with the action's probability when the attention is forced onto it.\n"
                 "Circles: where each head looks by itself, in its colour (head 0 outermost).", fontsize=10)  # fmt: skip
    save(fig, path)


def draw_examples(path: str, examples: list, states: list, title: str) -> None:
    """A dataset-examples figure: the strongest examples' receptive-field crops, each above its whole input
    (the 4 frames collapsed by their maximum) with the field outlined."""
    plt = pyplot()
    k = max(len(examples), 1)
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k + 0.4, 4.0), squeeze=False, layout="constrained")
    for i, (s, y, x, value) in enumerate(examples):
        obs = states[s]["obs"]
        axes[0, i].imshow(crop(obs, y, x), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes[0, i].set_title(f"{value:.2f} at place\n({y}, {x}) of the 7x7", fontsize=8)
        axes[1, i].imshow(collapse_frames(torch.as_tensor(obs)).numpy(), cmap="gray", vmin=0, vmax=255)
        box = plt.Rectangle((x * RF_STRIDE - 0.5, y * RF_STRIDE - 0.5), RF_SIZE, RF_SIZE, fill=False, ec="red", lw=1.5)
        axes[1, i].add_patch(box)
        axes[1, i].set_title(f"seed {states[s]['seed']}, step {states[s]['t']}", fontsize=7)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    if not examples:
        axes[0, 0].text(0.5, 0.5, "never active\non these states", ha="center", va="center", fontsize=9)
    fig.suptitle(title, fontsize=9)
    save(fig, path)


def draw_channel_overview(path: str, conv3: dict, states: list, title: str) -> None:
    """Every conv3 channel at a glance: its 4 strongest examples (receptive-field crops) as a 2x2 mosaic."""
    plt = pyplot()
    cols = 8
    rows = -(-len(conv3) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows + 0.6), squeeze=False, layout="constrained")
    for c, ax in zip(conv3, axes.flat):
        mosaic = np.empty((2 * RF_SIZE + 2, 2 * RF_SIZE + 2, 3), np.uint8)
        mosaic[:] = (40, 70, 170)  # blue gaps: no game pixel has this colour
        for i, (s, y, x, _) in enumerate(conv3[c][:4]):
            r, q = divmod(i, 2)
            mosaic[r * (RF_SIZE + 2) : r * (RF_SIZE + 2) + RF_SIZE, q * (RF_SIZE + 2) : q * (RF_SIZE + 2) + RF_SIZE] = (
                crop(states[s]["obs"], y, x)[..., None]
            )
        ax.imshow(mosaic, interpolation="nearest")
        top = f"peak {conv3[c][0][3]:.2f}" if conv3[c] else "never active"
        ax.set_title(f"channel {c}: {top}", fontsize=8)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    fig.suptitle(title, fontsize=10)
    save(fig, path)


# ----------------------------------------------------------------------------- the command line


def main(argv=None) -> dict:
    """Run the chosen parts, print their tables, write interventions.json and the figures; returns the report."""
    args = tyro.cli(Args, args=argv)
    check_args(args)
    agent, meta = load_checkpoint(args.checkpoint, pick_device(args.cuda))
    env_id, names, heads = meta["env_id"], meta["action_names"], agent.attn_heads
    parts = [p for p in ALL_PARTS if p in args.parts]
    notes = []
    if heads == 0 and {"ablation", "steering"} & set(parts):
        parts = [p for p in parts if p not in ("ablation", "steering")]
        notes.append(NO_ATTENTION_NOTE)
        print(f"note: {NO_ATTENTION_NOTE}")
    progress, threads = Progress(), torch.get_num_threads()
    report = dict(checkpoint=args.checkpoint, env_id=env_id, attn_heads=heads, action_names=names, parts=parts)
    report |= dict(games=args.games, seed=args.seed, greedy=args.greedy, max_steps=args.max_steps, notes=notes)
    with output_folder(args.out, meta["run_name"], "interventions", args.force) as out:
        start = time.perf_counter()
        torch.set_num_threads(1)  # passes of one observation gain nothing from threads; on a busy CPU they cost 20x
        try:
            ablation, agreement, states = head_ablation(agent, env_id, args, progress)
        finally:
            torch.set_num_threads(threads)
        report["ablation"], report["heads"] = ablation, agreement
        report["states"] = [dict(seed=s["seed"], t=s["t"], action=s["action"]) for s in states]
        title = f"{env_id}, {os.path.basename(args.checkpoint)}"
        if "ablation" in parts:
            draw_ablation(os.path.join(out, "ablation.png"), ablation, heads, f"{title}: head ablation")
            print(f"\nHead ablation: {args.games} games per condition, seeds {args.seed}-{args.seed + args.games - 1} "
                  "(the same for every condition). KL and action changes: on every state of the intact games, "
                  "mean ± SE over games.\n")  # fmt: skip
            print(ablation_table(ablation))
            print(f"\n{agreement_line(agreement)}")

        if "steering" in parts:
            results, policies, intact, steered = attention_steering(agent, states, args, progress)
            report["steering"] = dict(states=[dict(seed=s["seed"], t=s["t"]) for s in steered], configs=results)
            device = next(agent.parameters()).device
            obs = torch.as_tensor(np.stack([s["obs"] for s in steered]), device=device)
            with torch.no_grad():
                own = agent.activations(obs)["attention"].float().cpu().numpy()
            for i in np.unique(np.linspace(0, len(steered) - 1, args.figures).round().astype(int)):
                s = steered[i]
                path = os.path.join(out, f"steering_seed{s['seed']}_step{s['t']:05d}.png")
                draw_steering(path, s, {c: p[i].cpu().numpy() for c, p in policies.items()}, intact[i].cpu().numpy(),
                              own[i], names, f"{title}, seed {s['seed']}, step {s['t']}: attention steering")  # fmt: skip
            print(f"\nAttention steering: {len(steered)} states of the intact games, the attention forced onto each of "
                  "the 49 places in turn; compared with the intact policy at the same state.\n")  # fmt: skip
            print(steering_table(results))

        if "examples" in parts:
            progress(f"dataset examples: {len(states)} states")
            examples = dataset_examples(agent, states, args.examples)
            report["examples"] = {
                layer: {str(u): [dict(zip(("state", "y", "x", "value"), e)) for e in ex] for u, ex in units.items()}
                for layer, units in examples.items()
            }
            folder = os.path.join(out, "examples")
            os.makedirs(folder, exist_ok=True)
            for c, ex in examples["conv3"].items():
                progress(f"dataset examples: conv3 channel {c + 1}/{len(examples['conv3'])}")
                draw_examples(os.path.join(folder, f"conv3_channel{c:02d}.png"), ex, states,
                              f"conv3 channel {c}: the {len(ex)} of {len(states)} sampled states that activate it most "
                              "(top: its 36x36 receptive field; bottom: the whole input)")  # fmt: skip
            for h, ex in examples["heads"].items():
                draw_examples(os.path.join(folder, f"head{h}.png"), ex, states,
                              f"attention head {h}: the {len(ex)} of {len(states)} sampled states where its peak is "
                              "highest (top: the peak's receptive field; bottom: the whole input)")  # fmt: skip
            draw_channel_overview(os.path.join(out, "examples_conv3.png"), examples["conv3"], states,
                                  f"{title}: what each conv3 channel responds to, the 4 strongest of {len(states)} "
                                  "sampled states (crops of the 36x36 receptive field, 4 frames maxed)")  # fmt: skip
            progress(f"dataset examples: {len(examples['conv3'])} channels, {len(examples['heads'])} heads", done=True)

        report["seconds"] = time.perf_counter() - start
        path = os.path.join(out, "interventions.json")
        with open(f"{path}.tmp", "w") as f:
            json.dump(report, f, indent=2)
        os.replace(f"{path}.tmp", path)
        print(f"\nwrote interventions.json and the figures to {out} ({report['seconds']:.0f} s)")
        report["out"] = out
    return report


if __name__ == "__main__":
    exit_on_bad_input(main)
