"""Does the agent act on what it attends to? Causal tests of the attention, each with its controls.

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
   frame. How often does the place change the chosen action, against two baselines: the one-hot map at the
   heads' own peak (what making a map one-hot does by itself) and at a random place? Steering onto an object's
   place is compared with far places, the own peak and the random place, state by state.
3. Taking an object away, in the games whose objects play.py reads from the emulator's RAM (Breakout: ball,
   paddle): the object painted over with the background in all 4 stacked frames; the ball moved, drawn by the
   game itself elsewhere (each game replayed from its seed and actions, the ball's RAM position shifted, each
   stacked step played again, checked against the RAM and the pixels). How far does each head's attention move
   (mass shifted, displacement of its peak), and the policy (KL)? Two controls: the object's pixels copied into
   empty playfield (the same place kind, exactly as many pixels changed by as much), and equal boxes painted
   over elsewhere (on bricks, walls or score, changing the frames about as much; painting black over Breakout's
   black background would change nothing). Activation patching (the edited frames' features with the intact
   attention, and the other way round) says through which path the change reaches the decision.
4. Dataset examples (Olah et al. 2017, "Feature Visualization", Distill): for each conv3 channel, and for each
   attention head at its peak, the sampled states that activate it most, as crops of the unit's 36x36
   receptive field.
5. An agent without attention (`--attn-heads 0`, and the CleanRL and Stable-Baselines3 agents that
   play.load_checkpoint reads) has no maps to edit: it gets parts 3 and 4 only. A DQN's KL is that of the policy
   it plays, epsilon-greedy (as in faithfulness.py), which changes only where its greedy action does.

The sampled states come from a few games: every statistic over states is a mean of per-game means, with its
standard error over games (or a cluster-bootstrap interval over games), not over states.

Yang et al. 2018 (arXiv 1812.11276), rl-attention (AI Safety Camp 3: Nikulin, Kosch, Steuer, Cunningham 2019,
github.com/dniku/rl-attention) and Mott et al. 2019 (arXiv 1906.02500) show attention maps and read them as
explanations, without editing them.

    python interventions.py --checkpoint runs/<run_name>/run.pt
    python interventions.py --checkpoint runs/<run_name>/dqn_atari.cleanrl_model --env-id BreakoutNoFrameskip-v4
"""

import collections
import itertools
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
from gymnasium.wrappers import AtariPreprocessing, TransformObservation

from agents import load_checkpoint, log_action_probabilities, played_policy
from atari_env import make_env
from cli import Progress, UsageError, exit_on_bad_input, output_folder, pick_device
from play import FRAME_SIZE, OBJECT_READERS, OBS_SIZE, box_in_observation, game_name, observed_boxes, play
from ppo_attention import Agent
from render import head_colours
from saliency import collapse_frames

PLACES = 49  # the 7x7 grid of the attention
RF_SIZE, RF_STRIDE = Agent.RECEPTIVE_FIELDS["conv3"]  # 36, 8: unit (y, x) sees rows [8y, 8y + 36)
Part = Literal["ablation", "steering", "removal", "examples"]
ALL_PARTS = ("ablation", "steering", "removal", "examples")
NO_ATTENTION_NOTE = (
    "this agent has no attention module (the plain Nature CNN of --attn-heads 0, CleanRL and SB3): its conv3 "
    "features enter fc unweighted, so there are no maps to ablate (part 1) or steer (part 2); parts 3 and 4 do "
    "not need them."
)
Q_VALUES_NOTE = (
    "this agent is a DQN, whose outputs are Q-values: part 3's KL is that of the policy it plays, {policy} (the "
    "greedy action, or with probability epsilon a random one), as faithfulness.py's curves follow it. That policy "
    "changes only where the greedy action does: the KL is 0 where it stays and {flip:.2f} nats where it changes. "
    "softmax(Q) would follow the Q-values on a scale they do not have (they differ by hundredths)."
)


@dataclass
class Args:
    """Causal tests of a checkpoint's attention: head ablation, attention steering, taking objects away, and
    dataset examples of the conv3 channels and attention heads. Prints tables, writes JSON and PNG figures."""

    checkpoint: str
    """a `run.pt` of ppo_attention.py (or its run folder), a CleanRL .pt/.cleanrl_model or a Stable-Baselines3 .zip"""
    env_id: Optional[str] = None
    """the game of a CleanRL or SB3 agent whose file does not name it, e.g. BreakoutNoFrameskip-v4"""
    parts: tuple[Part, ...] = ALL_PARTS
    """which tests to run (the intact games are always played: their states feed the other parts)"""
    games: int = 20
    """games per ablation condition, seeds --seed to --seed + games - 1, the same for every condition"""
    max_steps: int = 5000
    """a game is cut after this many agent steps (counted in the table); the demo agents need about 600"""
    states: int = 512
    """states sampled from the intact games for parts 2 to 4 (FIRE pressed by the game after a lost life excluded)"""
    steer_states: int = 128
    """of those, the states whose attention is steered onto each of the 49 places"""
    figures: int = 2
    """steering figures to draw (states spread over the steered ones)"""
    examples: int = 8
    """dataset examples per conv3 channel and per head"""
    threads: int = 1
    """torch CPU threads: one observation per pass while playing, and on a CPU busy with other jobs, threads that
    wait for each other made parts 2-4 slower (49 s against 68 s on two threads, on the project's 2 cores)"""
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
    for name in ("games", "max_steps", "states", "steer_states", "examples", "threads"):
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
    it adds nothing to the mask), all heads uniform. Only intact without attention (there is nothing to edit)."""
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
    """KL(p || q) in nats of the policies with these logits (or log-probabilities), over the last dimension."""
    logp, logq = F.log_softmax(logits_p.float(), -1), F.log_softmax(logits_q.float(), -1)
    return (logp.exp() * (logp - logq)).sum(-1).clamp_min(0)  # >= 0; rounding can leave -1e-9


def mean_and_se(values) -> tuple:
    """(mean, standard error of the mean); the error is nan for fewer than 2 values."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


# ----------------------------------------------------------------------------- uncertainty over games
# The sampled states come from a few games, and states of one game are alike (the same bricks, the same habits):
# they are not independent draws. So every statistic over states is computed per game first, and its error is
# that of the mean over games (each game weighs the same, whatever number of states it gave).


def per_game_means(values, games) -> np.ndarray:
    """(G,) the mean of the values of each game, games in sorted order. values, games: one per state."""
    values, games = np.asarray(values, dtype=np.float64), np.asarray(games)
    return np.array([values[games == g].mean() for g in np.unique(games)])


def mean_and_se_over_games(values, games) -> tuple:
    """(mean, standard error, number of games) of a per-state value: the mean of the games' means and its standard
    error over games (nan for fewer than 2 games)."""
    means = per_game_means(values, games)
    return (*mean_and_se(means), len(means))


def bootstrap_over_games(statistic, columns: dict, games, resamples: int = 2000, seed: int = 0, level: float = 0.95):
    """The percentile interval (low, high) of statistic({name: (G,) per-game means}) over `resamples` bootstrap
    samples of whole games drawn with replacement (the pairs cluster bootstrap; Cameron and Miller 2015, "A
    practitioner's guide to cluster-robust inference", Journal of Human Resources 50(2)). For a statistic that is no
    mean of its own, such as a ratio of two means. columns: {name: per-state values}."""
    means = {name: per_game_means(v, games) for name, v in columns.items()}
    G = len(next(iter(means.values())))
    draws = np.random.default_rng(seed).integers(0, G, (resamples, G))  # (R, G): the games of each sample
    values = np.array([statistic({name: m[d] for name, m in means.items()}) for d in draws])
    low, high = np.nanquantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


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


def play_games(
    agent, env_id: str, seeds: list, args: Args, label: str, progress, on_step=None, env_options=None
) -> list:
    """Play one game per seed with the shared play loop: [{seed, score, steps, truncated}]. on_step(step, seed)
    sees every step. env_options: what the agent saw in training (`meta["env_options"]`; None: this project's)."""
    games = []
    for i, seed in enumerate(seeds):
        step = None
        for step in play(agent, env_id, seed, args.greedy, args.max_steps, env_options=env_options):
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
        self.actions = {}  # {seed: every action the game took, forced ones included}: part 3 replays the games

    def __call__(self, step, seed: int) -> None:
        if step.t == 0:
            if self.features:
                self.end_game()
            self.recent = collections.deque(maxlen=4)  # (newest frame, {t, objects}) of the game's last 4 steps
            self.actions[seed] = []
        self.actions[seed].append(step.action)
        self.recent.append((step.obs[-1], dict(t=step.t, objects=step.objects)))  # objects: {name: 210x160 box}
        if step.forced:  # the game pressed FIRE after a lost life: not the agent's decision
            return
        a = step.activations
        self.features.append(a["features"])
        self.attention.append(a["attention"])
        self.logits.append(a["logits"])
        shown = stacked_objects(step.obs, self.recent)  # per stacked frame: {t, objects} of its step, or None
        objects = [None if f is None else f["objects"] for f in shown]  # None: a frame that pads an episode
        steps = [None if f is None else f["t"] for f in shown]  # the step whose newest frame each frame is
        self.sample.offer(
            dict(seed=seed, t=step.t, obs=step.obs, frame=step.frame, action=step.action, objects=objects, steps=steps)
        )

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


def stacked_objects(obs: np.ndarray, recent) -> list:
    """The objects of each of the 4 stacked frames of obs, oldest first: those of the step whose newest frame it is,
    found by its pixels among `recent` ((newest frame, objects) of the last 4 steps, oldest first), else None (zeros
    that pad an episode's start). Within an episode frame k is step t - 3 + k's newest frame; where the trainer's
    wrappers began a new stack after a lost life (SB3's, CleanRL's), the older frames are zeros or copies of the
    new first frame (CleanRL, also at the game's start), not the frames of the steps before."""
    found = []
    for k, frame in enumerate(obs):
        own = len(recent) - 4 + k  # step t - 3 + k, where the stack went on
        candidates = ([recent[own]] if own >= 0 else []) + list(reversed(recent))
        found.append(next((objects for newest, objects in candidates if np.array_equal(newest, frame)), None))
    return found


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


def head_ablation(agent: Agent, env_id: str, args: Args, progress, env_options=None) -> tuple:
    """({condition: games and their statistics}, how alike the heads are, sampled states, {seed: the actions of its
    intact game}). The intact games are always played: their states are the ones the other parts use.
    env_options: `meta["env_options"]`."""
    seeds = list(range(args.seed, args.seed + args.games))
    conditions = ablation_conditions(agent.attn_heads) if "ablation" in args.parts else {"intact": {}}
    watcher = IntactStates(agent, conditions, StateSample(args.states, args.seed))
    results = {}
    for k, (name, maps) in enumerate(conditions.items()):
        player = agent if not maps else EditedAgent(agent, maps)
        label = f"ablation {k + 1}/{len(conditions)}, {name}"
        on_step = watcher if name == "intact" else None
        games = play_games(player, env_id, seeds, args, label, progress, on_step, env_options)
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
    games = [g["heads"] for g in watcher.per_game]  # how alike the heads are: the mean over games
    entropy = [mean_and_se([g["entropy"][h] for g in games]) for h in range(agent.attn_heads)]  # over games
    agreement = {"entropy": [e for e, _ in entropy], "entropy_se": [se for _, se in entropy]}
    for pair in (k for k in games[0] if k != "entropy"):
        agreement[pair] = {}
        for m in games[0][pair]:
            agreement[pair][m], agreement[pair][f"{m}_se"] = mean_and_se([g[pair][m] for g in games])
    return results, agreement, watcher.sample.states(), watcher.actions


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


def own_peaks(attention: torch.Tensor, heads: list) -> torch.Tensor:
    """(S,) the place where the steered heads' maps, summed, are highest: where they look by themselves. A one-hot
    map there keeps their place and only sharpens them: the baseline of steering. attention: (S, H, 7, 7)."""
    return attention[:, heads].sum(1).flatten(1).argmax(-1)


def random_places(n: int, seed: int) -> np.ndarray:
    """(n,) places drawn uniformly from the 49 with a generator seeded with `seed`: one place per state, as steering
    onto an object's place is one place per state."""
    return np.random.default_rng([seed, PLACES]).integers(0, PLACES, n)


FAR = 3  # "far from an object": 3 or more places away along a row or a column (Chebyshev distance on the 7x7 grid)


def place_distance(p, q):
    """The Chebyshev distance between places on the 7x7 grid (arrays or tensors of places)."""
    return np.maximum(abs(p // 7 - q // 7), abs(p % 7 - q % 7))


def object_steering(changed: torch.Tensor, at: list, own: np.ndarray, rand: np.ndarray, games: list) -> dict:
    """Steering onto an object's place against three baselines, on the states that show it: the places far from it,
    the heads' own peak, a random place. changed: (S, 49) bool, the action changed; at: [(state, object's place)].
    Each is a share of states (mean ± SE over games), and so is each paired difference (onto the object minus
    the baseline, state by state)."""
    grid = np.arange(PLACES)
    idx = [i for i, _ in at]
    values = dict(
        on_object=[float(changed[i, p]) for i, p in at],
        far=[float(changed[i, place_distance(grid, p) >= FAR].float().mean()) for i, p in at],
        own_peak=[float(changed[i, own[i]]) for i in idx],
        random_place=[float(changed[i, rand[i]]) for i in idx],
    )
    g = [games[i] for i in idx]
    result = dict(states=len(at), games=len(set(g)))
    result |= {name: mean_and_se_over_games(v, g)[:2] for name, v in values.items()}
    for base in ("far", "own_peak", "random_place"):
        difference = np.subtract(values["on_object"], values[base])
        result[f"on_object_minus_{base}"] = mean_and_se_over_games(difference, g)[:2]
    return result


@torch.no_grad()
def attention_steering(agent: Agent, states: list, args: Args, progress) -> tuple:
    """({config: its statistics}, {config: policies (S, 49, A)}, intact policies (S, A), the steered states).

    For each config (all heads, each head alone): how often the most probable action changes when the steered
    heads are forced onto each of the 49 places (all places), onto their own peak (a one-hot map where they look
    anyway: what a one-hot map does by itself), and onto one random place per state. For each object of the game
    (Breakout: ball, paddle): onto the object's place (the place whose receptive field is centred nearest the
    object in the newest frame) against the places far from it, the own peak and the random place. Means and
    standard errors over games (`mean_and_se_over_games`)."""
    rng = np.random.default_rng(args.seed)
    steered = [states[i] for i in sorted(rng.permutation(len(states))[: args.steer_states])]
    games = [s["seed"] for s in steered]
    device = next(agent.parameters()).device
    obs = torch.as_tensor(np.stack([s["obs"] for s in steered]), device=device)
    a = agent.activations(obs)
    intact, attention = a["logits"].float().softmax(-1), a["attention"].float()  # (S, A), (S, H, 7, 7)
    rand = random_places(len(steered), args.seed)
    names = sorted({n for s in steered for n in (s["objects"][-1] or {})})
    results, policies = {}, {}
    for config, heads in steering_configs(agent.attn_heads).items():
        progress(f"steering {config} onto each of the 49 places, {len(steered)} states")
        p = torch.cat([steer(agent, obs[i : i + 32], heads) for i in range(0, len(obs), 32)])  # (S, 49, A)
        policies[config] = p
        changed = (p.argmax(-1) != intact.argmax(-1)[:, None]).cpu()  # (S, 49)
        kl = kl_divergence(intact.log()[:, None], p.log()).cpu()  # (S, 49)
        own = own_peaks(attention, heads).cpu().numpy()
        rows, own_t, rand_t = (torch.as_tensor(x) for x in (np.arange(len(steered)), own, rand))
        r = dict(heads=heads, states=len(steered), games=len(set(games)))
        for name, c, k in (("all_places", changed.float().mean(1), kl.mean(1)),
                           ("own_peak", changed[rows, own_t].float(), kl[rows, own_t]),
                           ("random_place", changed[rows, rand_t].float(), kl[rows, rand_t])):  # fmt: skip
            r[name] = dict(action_changed=mean_and_se_over_games(c, games)[:2], kl=mean_and_se_over_games(k, games)[:2])
        r["largest_swing_mean"] = float((p.amax(1) - p.amin(1)).amax(-1).mean())  # one action's largest swing
        r["objects"] = {}
        for name in names:
            at = [(i, object_place(box_in_observation(s["objects"][-1][name]))) for i, s in enumerate(steered)
                  if s["objects"][-1] and s["objects"][-1].get(name) is not None]  # fmt: skip
            if at:
                r["objects"][name] = object_steering(changed, at, own, rand, games)
        results[config] = r
    progress(f"steering: {len(steered)} states", done=True)
    return results, policies, intact, steered


# ----------------------------------------------------------------------------- part 3: taking an object away


def objects_known(env_id: str) -> bool:
    """Whether play.py reads this game's objects from the emulator's RAM (`play.OBJECT_READERS`)."""
    return game_name(env_id) in OBJECT_READERS


def stacked_boxes(state: dict, name: str) -> list:
    """The object's box in each of the 4 stacked frames, oldest first, in observation pixels (y0, x0, y1, x1),
    end-exclusive; None where it is not on the screen or the frame pads the game's start."""
    return [None if o is None or o.get(name) is None else box_in_observation(o[name]) for o in state["objects"]]


def object_place(box: tuple) -> int:
    """The place (0..48) whose receptive field is centred nearest the centre of an observation box."""
    y0, x0, y1, x1 = box
    return int(NEAREST_PLACE[int((y0 + y1) / 2)] * 7 + NEAREST_PLACE[int((x0 + x1) / 2)])


def background_value(frame: np.ndarray) -> int:
    """The game's background in one 84x84 frame: its most common value (Breakout: 0, black)."""
    return int(np.bincount(frame.ravel(), minlength=256).argmax())


def paint_background(obs: np.ndarray, boxes: list) -> np.ndarray:
    """A copy of obs (4, 84, 84) with each frame's box (or None) painted in that frame's background value."""
    out = obs.copy()
    for k, box in enumerate(boxes):
        if box is not None:
            y0, x0, y1, x1 = box
            out[k, y0:y1, x0:x1] = background_value(obs[k])
    return out


def box_sums(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """The sum of image (84, 84) over every h x w box, by the box's top-left corner: (85 - h, 85 - w)."""
    c = np.pad(image.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]


def control_boxes(obs: np.ndarray, boxes: list, avoid: np.ndarray, rng, tolerance: float = 0.25) -> Optional[list]:
    """The control of removing an object: its boxes moved together by one offset to where they touch no object
    (avoid: (4, 84, 84) bool, the objects grown by 2 px), and where painting them changes the frames by about as
    much as removing the object does (sum of |pixel change| within `tolerance` of it, or the closest). One such
    offset is drawn with rng, so the controls spread over the screen. A box of empty screen would change no pixel
    (background painted on background): it would be no control at all. None when no offset fits."""
    change = [np.abs(f.astype(np.int64) - background_value(f)) for f in obs]  # what painting a pixel would change
    target, total = 0, np.zeros((169, 169))  # by offset (dy + 84, dx + 84)
    for k, box in enumerate(boxes):
        if box is None:
            continue
        y0, x0, y1, x1 = box
        h, w = y1 - y0, x1 - x0
        target += change[k][y0:y1, x0:x1].sum()
        sums = box_sums(change[k], h, w).astype(float)
        sums[box_sums(avoid[k], h, w) > 0] = np.nan  # the box would touch an object
        frame = np.full((169, 169), np.nan)
        frame[84 - y0 : 84 - y0 + 85 - h, 84 - x0 : 84 - x0 + 85 - w] = sums
        total += frame  # nan where the box would leave the image in this frame
    miss = np.abs(total - target)
    if np.isnan(miss).all():
        return None
    near = np.flatnonzero(miss <= max(tolerance * target, np.nanmin(miss)))
    dy, dx = np.divmod(rng.choice(near), 169) - np.array(84)
    return [None if b is None else (b[0] + dy, b[1] + dx, b[2] + dy, b[3] + dx) for b in boxes]


def avoid_mask(state: dict, names: list, margin: int = 2) -> np.ndarray:
    """(4, 84, 84) bool: True on every object of every stacked frame, grown by `margin` pixels."""
    avoid = np.zeros((4, 84, 84), bool)
    for k, objects in enumerate(state["objects"]):
        for box in (objects or {}).values():
            if box is not None:
                y0, x0, y1, x1 = box_in_observation(box, margin)
                avoid[k, y0:y1, x0:x1] = True
    return avoid


# The playfield of a game, in the 210x160 frame (y0, x0, y1, x1), end-exclusive: Breakout's is what its walls
# leave visible (play.breakout_objects), below the score and the top wall.
PLAYFIELD = {"breakout": (32, 8, 196, 152)}


def playfield_in_observation(box: tuple) -> tuple:
    """The observation pixels (y0, x0, y1, x1) wholly inside a 210x160 frame box: start rounded up, end down."""
    y0, x0, y1, x1 = box
    (h, w), n = FRAME_SIZE, OBS_SIZE
    return -(-y0 * n // h), -(-x0 * n // w), y1 * n // h, x1 * n // w


def empty_playfield(obs: np.ndarray, avoid: np.ndarray, playfield: tuple) -> np.ndarray:
    """(84, 84) bool: the pixels of the playfield (observation pixels, see playfield_in_observation) that are the
    background in all 4 stacked frames (no brick, wall, score or object passes there) and touch no object (avoid)."""
    empty = np.all([f == background_value(f) for f in obs], axis=0) & ~avoid.any(0)
    inside = np.zeros((84, 84), bool)
    y0, x0, y1, x1 = playfield
    inside[y0:y1, x0:x1] = True
    return empty & inside


def empty_control_boxes(obs: np.ndarray, boxes: list, empty: np.ndarray, rng, margin: int = 1) -> Optional[list]:
    """The location-matched control of removing an object: its boxes (one per stacked frame, or None) moved together
    by one offset to where each, grown by `margin` pixels, lies on `empty` pixels (see empty_playfield), at the
    object's own height where the playfield allows it (the offsets with the smallest vertical shift), the column
    drawn with rng. Copying the object's changed pixels there (paste_change) then changes exactly as many pixels
    by exactly as much as removing the object does. None when no offset fits."""
    valid = np.ones((169, 169), bool)  # by offset (dy + 84, dx + 84)
    for box in boxes:
        if box is None:
            continue
        y0, x0, y1, x1 = box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin
        h, w = y1 - y0, x1 - x0
        fits = np.zeros((169, 169), bool)
        fits[84 - y0 : 84 - y0 + 85 - h, 84 - x0 : 84 - x0 + 85 - w] = box_sums(~empty, h, w) == 0
        valid &= fits  # False where the grown box would leave the image or touch a non-empty pixel
    if not valid.any():
        return None
    dy, dx = np.nonzero(valid)
    level = np.abs(dy - 84) == np.abs(dy - 84).min()  # the object's own rows, or the nearest that fit
    pick = rng.choice(np.flatnonzero(level))
    dy, dx = int(dy[pick]) - 84, int(dx[pick]) - 84
    return [None if b is None else (b[0] + dy, b[1] + dx, b[2] + dy, b[3] + dx) for b in boxes]


def paste_change(obs: np.ndarray, removed: np.ndarray, boxes: list, targets: list) -> np.ndarray:
    """A copy of obs with, in each frame, the pixels that removing the object changed (obs != removed inside its
    box) copied to the same spot of the target box: the object's own pixels, drawn on empty background."""
    out = obs.copy()
    for k, (box, target) in enumerate(zip(boxes, targets)):
        if box is None:
            continue
        source = obs[k, box[0] : box[2], box[1] : box[3]]
        changed = source != removed[k, box[0] : box[2], box[1] : box[3]]
        out[k, target[0] : target[2], target[1] : target[3]][changed] = source[changed]
    return out


def attention_moves(before: torch.Tensor, after: torch.Tensor) -> tuple:
    """(mass shifted (S, H): half the summed |change| of each head's map, 0 to 1; its peak's displacement (S, H)
    in places, the Euclidean distance on the 7x7 grid)."""
    shifted = 0.5 * (after - before).abs().flatten(2).sum(-1)
    p, q = before.flatten(2).argmax(-1), after.flatten(2).argmax(-1)
    moved = torch.hypot((p // 7 - q // 7).float(), (p % 7 - q % 7).float())
    return shifted, moved


# ----------------------------------------------------------------------------- part 3: the object moved by the game
# Painting an object over leaves a frame the game would never show (the ball is in play but not drawn). The stronger
# test has the game draw it elsewhere: replay the game to just before each of the 4 agent steps whose frames the
# state stacks, add an offset to the object's position in the emulator's RAM, and let the emulator play that one
# agent step again. The object's trajectory over the 4 frames is the same, shifted; the rest of the frame is as it was.

# {game: {object: (RAM address of its x, RAM address of its y)}}: in the 210x160 frame x = RAM + a constant and
# y = RAM + a constant (play.breakout_objects: ball x = ram[99] - 49, y = ram[101] + 9), so adding (dy, dx) to them
# moves the object by (dy, dx) frame pixels. (Beside play.OBJECT_READERS it would belong in play.py.)
RAM_POSITIONS = {"breakout": {"ball": (99, 101)}}


def movable(env_id: str) -> list:
    """The objects of this game that the emulator can be told to draw elsewhere (RAM_POSITIONS)."""
    return list(RAM_POSITIONS.get(game_name(env_id), {}))


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


def shifted(box: Optional[tuple], dy: int, dx: int) -> Optional[tuple]:
    return None if box is None else (box[0] + dy, box[1] + dx, box[2] + dy, box[3] + dx)


def moved_frames(env, env_id: str, state: dict, saved: dict, actions: list, name: str, offset: tuple):
    """The state's observation with the object drawn by the game `offset` (dy, dx) frame pixels away in every stacked
    frame that shows it, or None where the game did not draw it there and nothing else (a bounce, a brick hit in
    the 4 emulator frames, the edge of the screen): the RAM read back after the step must put the object exactly at
    its box + offset (play.observed_boxes), and the frame may differ only within its old and new boxes.
    saved: {step: the emulator state before it}; actions: every action of the game."""
    x_address, y_address = RAM_POSITIONS[game_name(env_id)][name]
    dy, dx = offset
    out = state["obs"].copy()
    for k, (objects, s) in enumerate(zip(state["objects"], state["steps"])):
        box = (objects or {}).get(name)
        if box is None:
            continue
        rendered = render_step(env, saved[s - 1], actions[s - 1], {x_address: dx, y_address: dy})
        if rendered is None or observed_boxes(env_id, rendered[1])[name] != shifted(box, dy, dx):
            return None
        frame, allowed = rendered[0], np.zeros((84, 84), bool)
        for b in (box, shifted(box, dy, dx)):
            y0, x0, y1, x1 = box_in_observation(b)
            allowed[y0:y1, x0:x1] = True
        y0, x0, y1, x1 = box_in_observation(shifted(box, dy, dx))
        drawn = (frame != out[k])[y0:y1, x0:x1].any() or offset == (0, 0)  # the object shows at its new place
        if (frame != out[k])[~allowed].any() or not drawn:
            return None
        out[k] = frame
    return out


def move_offset(state: dict, name: str, empty: np.ndarray, rng, playfield: tuple, tries: int = 200):
    """Offsets (dy, dx) in frame pixels, drawn with rng, that keep the object's box in the playfield in every stacked
    frame that shows it, put it (grown by 1 pixel) on `empty` pixels, and its place in the newest frame FAR or more
    places from where it was: candidates for moved_frames, at most `tries` draws."""
    boxes = [o[name] for o in state["objects"] if o and o.get(name) is not None]
    top, left, bottom, right = union_box(boxes)
    place = object_place(box_in_observation(state["objects"][-1][name]))
    for _ in range(tries):
        dy = int(rng.integers(playfield[0] - top, playfield[2] - bottom + 1))
        dx = int(rng.integers(playfield[1] - left, playfield[3] - right + 1))
        if place_distance(place, object_place(box_in_observation(shifted(state["objects"][-1][name], dy, dx)))) < FAR:
            continue
        if all(
            empty[y0:y1, x0:x1].all() for y0, x0, y1, x1 in (box_in_observation(shifted(b, dy, dx), 1) for b in boxes)
        ):
            yield dy, dx


def replay_and_move(env_id: str, env_options, actions: dict, states: list, name: str, empties: list, rng,
                    renders: int = 3) -> tuple:  # fmt: skip
    """({state index: (observation with the object moved by the game, offset (dy, dx) in frame pixels)}, the work done
    {replayed: agent steps replayed, rendered: agent steps drawn again}) for the states whose newest frame shows the
    object. Each game is replayed from its seed with the actions it took (make_env with the agent's env_options),
    keeping the emulator state before every step that a stacked frame shows; a replayed observation that differs from
    the played one is a bug (RuntimeError). Per state at most `renders` offsets are tried (moved_frames checks each).
    Left out: a state whose object bounced (off a wall, brick or the paddle) in those steps: shifted, it would not
    have bounced there; and one whose frames the step cannot draw again (an SB3 or CleanRL stack restarted after a
    lost life: its first frame came after steps the agent did not see). empties: each state's empty_playfield."""
    playfield, work = PLAYFIELD[game_name(env_id)], dict(replayed=0, rendered=0)
    wanted = collections.defaultdict(list)  # {seed: indices of its states that show the object}
    for i, s in enumerate(states):
        if (s["objects"][-1] or {}).get(name) is not None:
            wanted[s["seed"]].append(i)
    result, env = {}, make_env(env_id, **(env_options or {}))  # one emulator for all games: loading one takes time
    try:
        for seed, indices in wanted.items():
            shown = {i: [s for o, s in zip(states[i]["objects"], states[i]["steps"]) if (o or {}).get(name)]
                     for i in indices}  # fmt: skip
            indices = [i for i in indices if all(s is not None and s > 0 for s in shown[i])]  # not from a reset
            if not indices:
                continue
            needed = {s - 1 for i in indices for s in shown[i]}
            played = {states[i]["t"]: states[i]["obs"] for i in indices}
            obs, _ = env.reset(seed=seed)
            saved, last = {}, max(needed | set(played))
            work["replayed"] += last
            for t in range(last + 1):
                if t in played and not np.array_equal(obs, played[t]):
                    raise RuntimeError(f"the replay of game {seed} differs from the game played at step {t}")
                if t in needed:
                    saved[t] = env.unwrapped.ale.cloneState()
                if t < last:
                    obs = env.step(actions[seed][t])[0]
            for i in indices:
                for offset in itertools.islice(move_offset(states[i], name, empties[i], rng, playfield), renders):
                    moved = moved_frames(env, env_id, states[i], saved, actions[seed], name, offset)
                    work["rendered"] += len(shown[i])
                    if moved is not None:
                        result[i] = (moved, offset)
                        break
    finally:
        env.close()
    return result, work


# ----------------------------------------------------------------------------- part 3: statistics and paths


def patched_logits(agent: Agent, features_of: dict, attention_of: dict) -> torch.Tensor:
    """Activation patching (Vig et al. 2020, "Causal mediation analysis for interpreting neural NLP", arXiv
    2004.12265; Meng et al. 2022, "Locating and editing factual associations in GPT", arXiv 2202.05262): the policy
    logits of the layers after the attention run with the features of one pass (agent.activations of some frames)
    and the attention maps of another."""
    return after_attention(agent, features_of["features"], attention_of["attention"])["logits"]


def change_statistics(agent: Agent, intact: dict, out: dict, obs: np.ndarray, edited: np.ndarray, games: list) -> dict:
    """How far an edit of the frames moves the policy and the attention, state by state, then mean ± SE over games:
    the pixels it changed, the played policy's KL from the intact one, how often the most probable action changed,
    and each head's attention mass shifted and peak's displacement. intact, out: agent.activations before and after."""
    logp, logq = (log_action_probabilities(agent, o["logits"]) for o in (intact, out))  # DQN: epsilon-greedy
    kl = kl_divergence(logp, logq).cpu()
    changed = (intact["logits"].argmax(-1) != out["logits"].argmax(-1)).float().cpu()
    r = dict(states=len(obs), games=len(set(games)), pixels_changed=float((edited != obs).sum((1, 2, 3)).mean()))
    r["summed_change"] = float(np.abs(edited.astype(np.int64) - obs).sum((1, 2, 3)).mean())  # 0-255 per pixel
    r |= dict(zip(("kl_mean", "kl_se"), mean_and_se_over_games(kl, games)))
    r |= dict(zip(("action_changed_mean", "action_changed_se"), mean_and_se_over_games(changed, games)))
    shift, moved = attention_moves(intact["attention"].float(), out["attention"].float())
    for h in range(shift.shape[1]):
        r[f"head{h}_mass_shifted"] = mean_and_se_over_games(shift[:, h].cpu(), games)[:2]
        r[f"head{h}_peak_moved"] = mean_and_se_over_games(moved[:, h].cpu(), games)[:2]
    return r


def share_of(part: str, whole: str):
    """The statistic mean(part) / mean(whole) of per-game means (for bootstrap_over_games)."""
    return lambda means: means[part].mean() / means[whole].mean()


def attention_paths(agent: Agent, intact: dict, out: dict, games: list, seed: int) -> dict:
    """Through which path does an edit of the frames move the policy? Activation patching on the layers after the
    attention: the edit as it is (features and attention maps of the edited frames: the full effect), with the intact
    attention patched in (the edited frames' features, the intact frames' maps: the effect that bypasses the
    attention), and with the edited maps alone (the intact frames' features, the edited frames' maps: the effect
    through the attention alone). KL from the intact policy and actions changed (mean ± SE over games), and the
    share of the full KL that goes through the attention, 1 - KL(intact attention) / KL(full), with the share the
    attention alone gives, KL(edited maps alone) / KL(full), each with a 95% cluster-bootstrap interval over games."""
    logits = dict(full=out["logits"], intact_attention=patched_logits(agent, out, intact))
    logits["attention_only"] = patched_logits(agent, intact, out)
    r, kls = dict(states=len(games), games=len(set(games))), {}
    for name, q in logits.items():
        kls[name] = kl_divergence(intact["logits"], q).cpu().numpy()
        changed = (intact["logits"].argmax(-1) != q.argmax(-1)).float().cpu()
        r[name] = dict(kl=mean_and_se_over_games(kls[name], games)[:2],
                       action_changed=mean_and_se_over_games(changed, games)[:2])  # fmt: skip
    for name, statistic in (("through_attention", lambda m: 1 - share_of("intact_attention", "full")(m)),
                            ("attention_alone", share_of("attention_only", "full"))):  # fmt: skip
        value = statistic({k: per_game_means(v, games) for k, v in kls.items()})
        r[f"share_{name}"] = dict(value=float(value), interval=bootstrap_over_games(statistic, kls, games, seed=seed))
    return r


def subset(activations: dict, indices: list) -> dict:
    """The activations (agent.activations) of some states of a batch."""
    return {k: v[indices] for k, v in activations.items()}


def peak_to_place(attention: torch.Tensor, places: np.ndarray) -> np.ndarray:
    """(S, H) the distance (Chebyshev, in places) from each head's peak to one place per state.
    attention: (S, H, 7, 7); places: (S,)."""
    peaks = attention.flatten(2).argmax(-1).cpu().numpy()
    return place_distance(peaks, places[:, None])


def passes(agent: Agent, obs: np.ndarray, device) -> dict:
    """What part 3 needs of agent.activations(obs): the features, the attention maps and the logits."""
    out = agent.activations(torch.as_tensor(obs, device=device))
    return {k: out[k] for k in ("features", "attention", "logits")}


def moved_statistics(agent: Agent, name: str, states: list, moved: list, intact: dict, out: dict) -> dict:
    """change_statistics of the object moved by the game (moved: [(observation, offset)] per state), with how far it
    moved (places) and, per head, the distance from the head's peak to the object's place: as it was, and after the
    move to its new place and to its old one (does the head follow it?)."""
    obs, edited, games = (
        np.stack(x) for x in ([s["obs"] for s in states], [m[0] for m in moved], [s["seed"] for s in states])
    )
    r = change_statistics(agent, intact, out, obs, edited, games.tolist())
    before = np.array([object_place(box_in_observation(s["objects"][-1][name])) for s in states])
    after = np.array(
        [object_place(box_in_observation(shifted(s["objects"][-1][name], *m[1]))) for s, m in zip(states, moved)]
    )
    r["offset_places"] = float(np.mean(place_distance(before, after)))
    for h in range(agent.attn_heads):
        near = dict(intact=peak_to_place(intact["attention"], before)[:, h],
                    to_new=peak_to_place(out["attention"], after)[:, h],
                    to_old=peak_to_place(out["attention"], before)[:, h])  # fmt: skip
        r[f"head{h}_peak_to_{name}"] = {k: mean_and_se_over_games(v, games)[:2] for k, v in near.items()}
    return r


def removal_example(agent: Agent, name: str, chosen: list, obs: np.ndarray, edits: dict, moved: dict, intact: dict,
                    outs: dict) -> dict:  # fmt: skip
    """The state to draw for an object: of those where the game could also move it (else of all), the one whose
    attention moved closest to the mean when the object was removed; its images, attention maps and KLs."""
    shift = attention_moves(intact["attention"].float(), outs[f"{name} removed"]["attention"].float())[0].sum(1)
    pool = sorted(moved) or range(len(chosen))
    typical = min(pool, key=lambda i: abs(float(shift[i] - shift.mean())))
    logp = log_action_probabilities(agent, intact["logits"][typical])
    where = {"removed": (f"{name} removed", typical), "control": (f"control for {name}", typical)}
    images = {"intact": obs[typical], "removed": edits[f"{name} removed"][typical]}
    images["control"] = edits[f"control for {name}"][typical]
    if typical in moved:
        where["moved"], images["moved"] = (f"{name} moved", sorted(moved).index(typical)), moved[typical][0]
    attention = {k: outs[label]["attention"][i].float().cpu().numpy() for k, (label, i) in where.items()}
    attention["intact"] = intact["attention"][typical].float().cpu().numpy()
    kl = {
        k: float(kl_divergence(logp, log_action_probabilities(agent, outs[label]["logits"][i])))
        for k, (label, i) in where.items()
    }
    offset = moved[typical][1] if typical in moved else None
    return dict(state=chosen[typical], images=images, attention=attention, kl=kl, offset=offset)


@torch.no_grad()
def object_removal(agent: Agent, states: list, args: Args, progress, env_id: str, env_options=None,
                   actions: Optional[dict] = None) -> tuple:  # fmt: skip
    """({condition: statistics}, {object: through which path}, {object: an example}) over the sampled states whose
    newest frame shows the object. Conditions: the object removed (painted over in every stacked frame that shows
    it); moved (drawn by the game elsewhere, for the objects of RAM_POSITIONS, given the games' actions); the
    location-matched control (the object's pixels copied into an empty part of the playfield: as many pixels
    changed by as much); the earlier control (equal boxes painted over elsewhere, where that changes the frames
    about as much: on bricks, walls or the score). Means ± SE over games."""
    names = sorted({n for s in states for o in s["objects"] if o for n in o})
    device, rng = next(agent.parameters()).device, np.random.default_rng(args.seed)
    playfield = playfield_in_observation(PLAYFIELD.get(game_name(env_id), (0, 0) + FRAME_SIZE))
    results, paths, examples = {}, {}, {}
    for name in names:
        progress(f"taking the {name} away")
        chosen, edits = [], collections.defaultdict(list)
        for s in states:
            boxes = stacked_boxes(s, name)
            if boxes[-1] is None:
                continue
            avoid = avoid_mask(s, names)
            empty = empty_playfield(s["obs"], avoid, playfield)
            painted, matched = (
                control_boxes(s["obs"], boxes, avoid, rng),
                empty_control_boxes(s["obs"], boxes, empty, rng),
            )
            if painted is None or matched is None:
                continue
            removed = paint_background(s["obs"], boxes)
            chosen.append(dict(s, boxes=boxes, control=matched, painted=painted, empty=empty))
            edits[f"{name} removed"].append(removed)
            edits[f"control for {name}"].append(paste_change(s["obs"], removed, boxes, matched))
            edits[f"painted control for {name}"].append(paint_background(s["obs"], painted))
        if not chosen:
            continue
        obs, games = np.stack([s["obs"] for s in chosen]), [s["seed"] for s in chosen]
        moved = {}
        if name in movable(env_id) and actions is not None:
            progress(f"replaying the games to move the {name}")
            moved, work = replay_and_move(env_id, env_options, actions, chosen, name, [s["empty"] for s in chosen], rng)
        run = lambda x: passes(agent, np.stack(x), device)  # noqa: E731
        intact = run(obs)
        outs = {label: run(x) for label, x in edits.items()}
        for label in (f"{name} removed", f"control for {name}", f"painted control for {name}"):
            results[label] = change_statistics(agent, intact, outs[label], obs, np.stack(edits[label]), games)
        if agent.attn_heads:
            paths[f"{name} removed"] = attention_paths(agent, intact, outs[f"{name} removed"], games, args.seed)
        if moved:
            idx, label = sorted(moved), f"{name} moved"
            outs[label] = run([moved[i][0] for i in idx])
            results[label] = moved_statistics(agent, name, [chosen[i] for i in idx], [moved[i] for i in idx],
                                              subset(intact, idx), outs[label])  # fmt: skip
            results[label] |= dict(states_shown=len(chosen), replayed_steps=work["replayed"])
            results[label]["rendered_steps"] = work["rendered"]
            if agent.attn_heads:
                paths[label] = attention_paths(
                    agent, subset(intact, idx), outs[label], [games[i] for i in idx], args.seed
                )
        examples[name] = removal_example(agent, name, chosen, obs, edits, moved, intact, outs)
    progress(f"taking objects away: {', '.join(names)}", done=True)
    return results, paths, examples


# ----------------------------------------------------------------------------- part 4: dataset examples


def top_examples(activation: torch.Tensor, k: int, moments: Optional[list] = None, apart: int = 10) -> list:
    """The k states whose strongest place is strongest, one place per state: activation (S, 7, 7) ->
    [(state index, y, x, value)], strongest first; states where the unit is 0 everywhere are left out.
    moments: (game seed, step) of each state; a state fewer than `apart` steps from a chosen one of the same
    game is skipped (it would show nearly the same picture again)."""
    best, where = activation.flatten(1).max(1)  # (S,)
    chosen = []
    for s in torch.argsort(best, descending=True).tolist():
        if len(chosen) == k or best[s] <= 0:
            break
        if moments is None or all(moments[c][0] != moments[s][0] or abs(moments[c][1] - moments[s][1]) >= apart
                                  for c, *_ in chosen):  # fmt: skip
            chosen.append((s, int(where[s]) // 7, int(where[s]) % 7, float(best[s])))
    return chosen


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
    moments = [(s["seed"], s["t"]) for s in states]
    return {
        "conv3": {c: top_examples(conv3[:, c], k, moments) for c in range(conv3.shape[1])},
        "heads": {h: top_examples(attention[:, h], k, moments) for h in range(attention.shape[1])},
    }


# ----------------------------------------------------------------------------- tables


def nats(mean: float, se: float) -> str:
    """A KL divergence ± its standard error; values below 0.001 in scientific notation, so that they do not read 0."""
    return f"{mean:.3f} ± {se:.3f}" if mean >= 1e-3 or mean == 0 else f"{mean:.1e} ± {se:.1e}"


def ablation_table(results: dict) -> str:
    head = "| condition | score (mean ± SE) | game length (steps) | KL from intact (nats, mean ± SE) | "
    head += "most probable action changed |"
    lines = [head, "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        cut = f", {r['truncated']} cut" if r["truncated"] else ""
        lines.append(
            f"| {name} | {r['score_mean']:.2f} ± {r['score_se']:.2f} | {np.mean(r['steps']):.0f}{cut} | "
            f"{nats(r['kl_mean'], r['kl_se'])} | {100 * r['action_changed_mean']:.1f}% |"
        )
    return "\n".join(lines)


def agreement_line(heads: dict) -> str:
    """How alike the heads are, in words."""
    entropies = ", ".join(f"{e:.2f} ± {se:.2f}" for e, se in zip(heads["entropy"], heads["entropy_se"]))
    text = f"Attention entropy per head (intact games, mean ± SE over games): {entropies} nats"
    text += f" (uniform: {np.log(PLACES):.2f})."
    for pair, r in heads.items():
        if "-" in pair:
            h, g = pair.split("-")
            text += (f" Heads {h} and {g} peak at the same place in {100 * r['same_peak']:.0f}% ± "
                     f"{100 * r['same_peak_se']:.0f}% of states; their maps overlap by {r['overlap']:.2f} ± "
                     f"{r['overlap_se']:.2f} (1: identical).")  # fmt: skip
    return text


def percent(value: tuple, digits: int = 0) -> str:
    """A share (mean, SE) as "12% ± 3%"."""
    mean, se = value
    return f"{100 * mean:.{digits}f}% ± {100 * se:.{digits}f}%"


def signed_percent(value: tuple) -> str:
    """A difference of shares (mean, SE) as "+12 ± 3 points"."""
    mean, se = value
    return f"{round(100 * mean):+d} ± {100 * se:.0f} points"  # round() gives an int: +0, never -0


def steering_table(results: dict) -> str:
    lines = ["| steered | states (games) | action changed: all 49 places | own peak | a random place | "
             "KL: all places | own peak | a random place | largest swing of an action's probability |"]  # fmt: skip
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        cells = [f"{r['states']} ({r['games']})"]
        cells += [percent(r[k]["action_changed"], 1) for k in ("all_places", "own_peak", "random_place")]
        cells += [nats(*r[k]["kl"]) for k in ("all_places", "own_peak", "random_place")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['largest_swing_mean']:.2f} |")
    return "\n".join(lines)


def steering_objects_table(results: dict) -> str:
    lines = ["| steered | object | states (games) | onto its place | far from it | own peak | a random place | "
             "onto it minus far | minus own peak | minus random place |"]  # fmt: skip
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for config, r in results.items():
        for name, o in r["objects"].items():
            cells = [f"{o['states']} ({o['games']})"]
            cells += [percent(o[k]) for k in ("on_object", "far", "own_peak", "random_place")]
            cells += [signed_percent(o[f"on_object_minus_{k}"]) for k in ("far", "own_peak", "random_place")]
            lines.append(f"| {config} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def removal_table(results: dict, heads: int) -> str:
    columns = "".join(f" head {h}: mass shifted | head {h}: peak moved (places) |" for h in range(heads))
    lines = [
        f"| edit | states (games) | pixels changed (summed change) | KL from intact (nats) | action changed |{columns}"
    ]
    lines.append("|---|---:|---:|---:|---:|" + "---:|" * 2 * heads)
    for label, r in results.items():
        cells = [f"{r['states']} ({r['games']})", f"{r['pixels_changed']:.0f} ({r['summed_change']:.0f})"]
        cells.append(nats(r["kl_mean"], r["kl_se"]))
        cells.append(percent((r["action_changed_mean"], r["action_changed_se"])))
        for h in range(heads):
            cells += [f"{v:.2f} ± {e:.2f}" for v, e in (r[f"head{h}_mass_shifted"], r[f"head{h}_peak_moved"])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def follow_table(results: dict, heads: int) -> str:
    """Where each head's peak is, before and after the game drew the object elsewhere."""
    lines = ["| moved | states (games) | moved by (places) | head | its peak to the object, as it was | after: to "
             "the new place | after: to the old place |", "|---|---:|---:|---|---:|---:|---:|"]  # fmt: skip
    for label, r in results.items():
        if "offset_places" not in r:
            continue
        name = label.removesuffix(" moved")
        for h in range(heads):
            d = r[f"head{h}_peak_to_{name}"]
            cells = [f"{v:.2f} ± {e:.2f}" for v, e in (d["intact"], d["to_new"], d["to_old"])]
            lines.append(
                f"| {label} | {r['states']} ({r['games']}) | {r['offset_places']:.1f} | {h} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def paths_table(paths: dict) -> str:
    lines = ["| edit | states (games) | KL: as it is | KL: intact attention patched in | KL: edited attention alone | "
             "share through the attention (95% interval) | attention alone / as it is | action changed: as it is / "
             "intact attention / attention alone |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for label, r in paths.items():
        cells = [f"{r['states']} ({r['games']})"] + [
            nats(*r[k]["kl"]) for k in ("full", "intact_attention", "attention_only")
        ]
        for k in ("through_attention", "attention_alone"):
            (low, high), value = r[f"share_{k}"]["interval"], r[f"share_{k}"]["value"]
            cells.append(f"{100 * value:.0f}% ({100 * low:.0f}% to {100 * high:.0f}%)")
        cells.append(
            " / ".join(
                f"{100 * r[k]['action_changed'][0]:.0f}%" for k in ("full", "intact_attention", "attention_only")
            )
        )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
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
                              alpha=0.65 * np.sqrt(heat), interpolation="nearest")  # fmt: skip
            for e in edges[1:-1]:
                ax.axhline(e, color="white", lw=0.3, alpha=0.35)
                ax.axvline(e, color="white", lw=0.3, alpha=0.35)
            for h in range(heads):  # concentric, so that heads looking at the same place all show
                x, y = place_centre(int(attention[h].argmax()))
                ax.plot(x, y, "o", ms=max(13 - 3.5 * h, 3), mfc="none", mec=colours[h], mew=2)
            for box in (state["objects"][-1] or {}).values():  # the game's objects, so that they stay in view
                if box is not None:
                    y0, x0, y1, x1 = box_in_observation(box, margin=1)
                    ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="cyan", lw=1))
            ax.set_title(f"P({name}): intact {intact[a]:.2f}\nsteered {m.min():.2f} to {m.max():.2f}", fontsize=9)
        others = [h for h in range(heads) if h not in steering_configs(heads)[config]]
        kept = f"\n({', '.join(f'head {h}' for h in others)} as it was)" if others else ""
        axes[row, 0].set_ylabel(f"{config} forced\nonto the place{kept}", fontsize=10)
    fig.colorbar(image, ax=axes, fraction=0.03, pad=0.01, label="probability of the action when steered there")
    fig.suptitle(f"{title}\nEach place glows with the action's probability when the attention is forced onto it.\n"
                 "Circles: where each head looks by itself, in its colour (head 0 outermost). Cyan: the game's objects "
                 "(from the RAM).", fontsize=10)  # fmt: skip
    save(fig, path)


def bar_top(mean: float, se: float) -> float:
    """The top of a bar and its error bar, for the axis limits: the error is nan with one game, and an axis that
    ends at 0 (every KL 0) cannot be drawn."""
    return max(mean + (0.0 if np.isnan(se) else se), 1e-3)


def union_box(boxes: list) -> Optional[tuple]:
    """The smallest box (y0, x0, y1, x1) holding all the given boxes (None ones left out); None when there are none."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def draw_removal(path: str, results: dict, paths: dict, examples: dict, heads: int, title: str) -> None:
    """Per object: a typical state as the agent saw it (4 frames maxed), with the object taken away, drawn by the game
    elsewhere, and the location-matched control, each with the attention (glow: all heads; circles: each head's peak)
    and the edited boxes outlined; then the means over games: the policy's KL for each edit, the KL through each path
    (activation patching), and each head's attention mass shifted."""
    plt = pyplot()
    colours = head_colours(max(heads, 1)) / 255
    panels = [("intact", "as it was"), ("removed", "taken away"), ("moved", "drawn elsewhere\nby the game"),
              ("control", "control: its pixels copied\ninto empty playfield")]  # fmt: skip
    panels = [p for p in panels if p[0] != "moved" or any("moved" in e["images"] for e in examples.values())]
    n_bars = 1 + 2 * bool(heads)
    fig, axes = plt.subplots(len(examples), len(panels) + n_bars, squeeze=False, layout="constrained",
                             figsize=(2.4 * len(panels) + 3.3 * n_bars, 3.7 * len(examples) + 1.0),
                             width_ratios=[1] * len(panels) + [1.35] * n_bars)  # fmt: skip
    for row, (name, ex) in enumerate(examples.items()):
        state = ex["state"]
        boxes = dict(removed=state["boxes"], control=state["control"])
        if ex["offset"] is not None:
            boxes["moved"] = [None if b is None else box_in_observation(shifted(o[name], *ex["offset"]))
                              for b, o in zip(state["boxes"], state["objects"])]  # fmt: skip
        boxes = {k: union_box(v) for k, v in boxes.items()}  # one outline around the edited boxes of the 4 frames
        for col, (key, what) in enumerate(panels):
            ax = axes[row, col]
            ax.set(xticks=[], yticks=[], xlim=(0, 84), ylim=(84, 0))
            if key not in ex["images"]:
                ax.text(42, 42, f"the {name} is\nnot moved here", ha="center", va="center", fontsize=9)
                ax.set_title(what, fontsize=9)
                continue
            ax.imshow(ex["images"][key].max(0), cmap="gray", vmin=0, vmax=255, extent=(0, 84, 84, 0),
                      aspect=FRAME_ASPECT)  # fmt: skip
            attention = ex["attention"][key]
            if heads:
                heat = on_input(attention.sum(0).clip(0, 1))
                ax.imshow(heat, extent=(0, 84, 84, 0), aspect=FRAME_ASPECT, cmap="inferno", vmin=0, vmax=1,
                          alpha=0.7 * np.sqrt(heat), interpolation="nearest")  # fmt: skip
            for h in range(heads):
                x, y = place_centre(int(attention[h].argmax()))
                ax.plot(x, y, "o", ms=max(13 - 3.5 * h, 3), mfc="none", mec=colours[h], mew=2)
            if boxes.get(key) is not None:  # grown by a pixel, so that the outline leaves the object in view
                y0, x0, y1, x1 = boxes[key]
                ax.add_patch(plt.Rectangle((x0 - 1.5, y0 - 1.5), x1 - x0 + 2, y1 - y0 + 2, fill=False, ec="cyan", lw=1))
            ax.set_title(f"{what}\npolicy's KL: {ex['kl'][key]:.3f}" if key != "intact" else what, fontsize=9)
        axes[row, 0].set_ylabel(f"{name}: seed {state['seed']}, step {state['t']}", fontsize=9)
        bars = axes[row, len(panels) :]
        edits = [(f"{name} removed", "taken\naway", "tab:red"), (f"{name} moved", "moved", "tab:purple"),
                 (f"control for {name}", "control:\nempty\nplayfield", "tab:gray"),
                 (f"painted control for {name}", "control:\npainted\nelsewhere", "silver")]  # fmt: skip
        edits = [e for e in edits if e[0] in results]
        ax = bars[0]
        for x, (label, short, colour) in enumerate(edits):
            r = results[label]
            ax.bar(x, r["kl_mean"], yerr=r["kl_se"], color=colour, capsize=3)
            ax.text(x, bar_top(r["kl_mean"], r["kl_se"]), f"{r['kl_mean']:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, 1.15 * max(bar_top(results[e[0]]["kl_mean"], results[e[0]]["kl_se"]) for e in edits))
        ax.set_xticks(range(len(edits)), [e[1] for e in edits], fontsize=8)
        ax.set_title(f"KL(as it was || edited), nats\nmean ± SE over {results[f'{name} removed']['games']} games",
                     fontsize=9)  # fmt: skip
        if heads:
            ax = bars[1]
            routes = [("full", "as it is", "tab:red"), ("intact_attention", "intact attention\npatched in", "tab:blue"),
                      ("attention_only", "edited attention\nalone", "tab:orange")]  # fmt: skip
            labels = [label for label in (f"{name} removed", f"{name} moved") if label in paths]
            for k, (route, short, colour) in enumerate(routes):
                x = np.arange(len(labels)) + (k - 1) * 0.27
                values = [paths[label][route]["kl"] for label in labels]
                ax.bar(x, [v for v, _ in values], yerr=[e for _, e in values], width=0.27, color=colour, capsize=3,
                       label=short)  # fmt: skip
            top = max(bar_top(*paths[label][route]["kl"]) for label in labels for route, *_ in routes)
            ax.set_ylim(0, 1.55 * top)  # room for the legend above the bars
            shares = [f"{100 * paths[label]['share_through_attention']['value']:.0f}%" for label in labels]
            ticks = [f"{label.split()[-1]}\n{s} via attention" for label, s in zip(labels, shares)]
            ax.set_xticks(range(len(labels)), ticks, fontsize=8)
            ax.legend(fontsize=7, loc="upper right")
            ax.set_title("Through which path? KL, nats\n(activation patching)", fontsize=9)
            ax = bars[2]
            shown = [e for e in edits if not e[0].startswith("painted")]  # the painted control moves nothing
            for k, (label, short, colour) in enumerate(shown):
                values = [results[label][f"head{h}_mass_shifted"] for h in range(heads)]
                x = np.arange(heads) + (k - (len(shown) - 1) / 2) * 0.8 / len(shown)
                ax.bar(x, [v for v, _ in values], yerr=[e for _, e in values], width=0.8 / len(shown), color=colour,
                       capsize=3, label=short.replace("\n", " "))  # fmt: skip
            ax.set_xticks(range(heads), [f"head {h}" for h in range(heads)])
            ax.set_ylim(0, 1.3)
            ax.set_yticks(np.linspace(0, 1, 6))
            ax.legend(fontsize=7, loc="upper right")
            ax.set_title("attention mass shifted (0 to 1)", fontsize=9)
        for ax in bars:
            ax.grid(axis="y", alpha=0.3)
    key = "Glow: the attention of all heads; circles: each head's peak (head 0 outermost); "
    key = (key if heads else "No attention to draw (the agent has none); ") + "cyan: the edited boxes, all 4 frames."
    fig.suptitle(f"{title}\n{key}", fontsize=10)
    save(fig, path, dpi=90)


def draw_examples(path: str, examples: list, states: list, title: str) -> None:
    """A dataset-examples figure: the strongest examples' receptive-field crops, each above its whole input
    (the 4 frames collapsed by their maximum) with the field outlined."""
    plt = pyplot()
    k = max(len(examples), 1)
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k + 0.4, 4.0), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.8, wspace=0.08, hspace=0.35)  # fixed: 66 figures
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


def report_ablation(out: str, ablation: dict, agreement: dict, heads: int, args: Args, title: str) -> None:
    draw_ablation(os.path.join(out, "ablation.png"), ablation, heads, f"{title}: head ablation")
    seeds = f"{args.seed}-{args.seed + args.games - 1}"
    print(f"\nHead ablation: {args.games} games per condition, seeds {seeds} (the same for every condition). KL and "
          "action changes: on every state of the intact games, mean ± SE over games.\n")  # fmt: skip
    print(ablation_table(ablation))
    print(f"\n{agreement_line(agreement)}")


def report_steering(out: str, agent: Agent, states: list, names: list, args: Args, title: str, progress) -> dict:
    results, policies, intact, steered = attention_steering(agent, states, args, progress)
    obs = torch.as_tensor(np.stack([s["obs"] for s in steered]), device=next(agent.parameters()).device)
    with torch.no_grad():
        own = agent.activations(obs)["attention"].float().cpu().numpy()
    shown = [i for i, s in enumerate(steered) if s["objects"][-1] and None not in s["objects"][-1].values()]
    shown = shown or list(range(len(steered)))  # states that show every object, where the game has them
    for i in [shown[j] for j in np.unique(np.linspace(0, len(shown) - 1, args.figures).round().astype(int))]:
        s = steered[i]
        path = os.path.join(out, f"steering_seed{s['seed']}_step{s['t']:05d}.png")
        draw_steering(path, s, {c: p[i].cpu().numpy() for c, p in policies.items()}, intact[i].cpu().numpy(), own[i],
                      names, f"{title}, seed {s['seed']}, step {s['t']}: attention steering")  # fmt: skip
    print(f"\nAttention steering: {len(steered)} states of the intact games, the steered heads forced onto each of the "
          "49 places in turn, onto their own peak (a one-hot map where they look anyway) and onto one random place "
          "per state; compared with the intact policy at the same state. Mean ± SE over games.\n")  # fmt: skip
    print(steering_table(results))
    if any(r["objects"] for r in results.values()):
        print(f"\nSteering onto an object's place (the place whose receptive field is centred nearest it) against "
              f"the places {FAR} or more rows or columns away from it (their mean), the heads' own peak and a random "
              "place, on the states that show the object: share of states whose most probable action changes, and "
              "the differences state by state. Mean ± SE over games.\n")  # fmt: skip
        print(steering_objects_table(results))
    return dict(states=[dict(seed=s["seed"], t=s["t"]) for s in steered], configs=results)


def report_removal(out: str, agent: Agent, states: list, args: Args, title: str, progress, env_id: str,
                   env_options, actions: dict) -> tuple:  # fmt: skip
    results, paths, examples = object_removal(agent, states, args, progress, env_id, env_options, actions)
    policy = played_policy(agent)
    title += ": taking objects away" + (
        "" if policy == "policy" else f"\nthe KL is that of the policy it plays, {policy}"
    )
    if examples:
        draw_removal(os.path.join(out, "removal.png"), results, paths, examples, agent.attn_heads, title)
    print("\nTaking objects away, on the sampled states that show the object: removed (painted over with the "
          "background in all 4 stacked frames); moved (drawn by the game elsewhere: its position in the RAM shifted); "
          "the control (its changed pixels copied into empty playfield: as many pixels changed by as much); the "
          "painted control (equal boxes painted over elsewhere, on bricks, walls or score, changing the frames about "
          "as much). Mean ± SE over games.\n")  # fmt: skip
    print(removal_table(results, agent.attn_heads))
    if any("offset_places" in r for r in results.values()) and agent.attn_heads:
        print("\nDoes the attention follow the object the game drew elsewhere? Distance (places, Chebyshev) from each "
              "head's peak to the object's place.\n")  # fmt: skip
        print(follow_table(results, agent.attn_heads))
    if paths:
        print("\nThrough which path? Activation patching: the edited frames' features with the intact attention maps "
              "(what bypasses the attention), and the intact features with the edited frames' maps (what goes through "
              "it alone). Share through the attention: 1 - KL(intact attention patched in) / KL(as it is), of the "
              "means over games, with a 95% cluster-bootstrap interval over games.\n")  # fmt: skip
        print(paths_table(paths))
    shown = {n: dict(seed=e["state"]["seed"], t=e["state"]["t"], offset=e["offset"]) for n, e in examples.items()}
    return results, paths, shown


def report_examples(out: str, agent: Agent, states: list, args: Args, title: str, progress) -> dict:
    progress(f"dataset examples: {len(states)} states")
    examples = dataset_examples(agent, states, args.examples)
    folder = os.path.join(out, "examples")
    os.makedirs(folder, exist_ok=True)
    for c, ex in examples["conv3"].items():
        progress(f"dataset examples: conv3 channel {c + 1}/{len(examples['conv3'])}")
        draw_examples(os.path.join(folder, f"conv3_channel{c:02d}.png"), ex, states,
                      f"conv3 channel {c}: the {len(ex)} of {len(states)} sampled states that activate it most "
                      "(top: its 36x36 receptive field; bottom: the whole input)")  # fmt: skip
    for h, ex in examples["heads"].items():
        draw_examples(os.path.join(folder, f"head{h}.png"), ex, states,
                      f"attention head {h}: the {len(ex)} of {len(states)} sampled states where its peak is highest "
                      "(top: the peak's receptive field; bottom: the whole input)")  # fmt: skip
    draw_channel_overview(os.path.join(out, "examples_conv3.png"), examples["conv3"], states,
                          f"{title}: what each conv3 channel responds to, the 4 strongest of {len(states)} sampled "
                          "states (crops of the 36x36 receptive field, 4 frames maxed)")  # fmt: skip
    progress(f"dataset examples: {len(examples['conv3'])} channels, {len(examples['heads'])} heads", done=True)
    print("\nDataset examples: examples_conv3.png (every channel) and examples/ (one figure per channel and head).")
    return {
        layer: {str(u): [dict(zip(("state", "y", "x", "value"), e)) for e in ex] for u, ex in units.items()}
        for layer, units in examples.items()
    }


def work_done(report: dict, states: int) -> dict:
    """What the run computed, in the units its time goes into: agent steps played (a forward pass of one observation
    and an emulator step each), steering rows (the layers after the attention for one state and place), forward
    passes of the removal part (one per state and edit), the agent steps replayed and drawn again to move an object,
    and the forward passes of the dataset examples."""
    work = dict(agent_steps_played=sum(sum(r["steps"]) for r in report["ablation"].values()))
    if "steering" in report:
        work["steering_rows"] = len(report["steering"]["states"]) * PLACES * len(report["steering"]["configs"])
    if "removal" in report:
        removal = report["removal"]
        work["removal_passes"] = sum(r["states"] for r in removal.values())
        work["removal_passes"] += sum(r["states"] for label, r in removal.items() if label.endswith(" removed"))
        work["replayed_steps"] = sum(r.get("replayed_steps", 0) for r in removal.values())
        work["rendered_steps"] = sum(r.get("rendered_steps", 0) for r in removal.values())
    if "examples" in report:
        work["examples_passes"] = states
    return work


def main(argv=None) -> dict:
    """Run the chosen parts, print their tables, write interventions.json and the figures; returns the report."""
    args = tyro.cli(Args, args=argv)
    check_args(args)
    device = pick_device(args.cuda)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    agent, meta = load_checkpoint(args.checkpoint, device, args.env_id)
    env_id, names, heads = meta["env_id"], meta["action_names"], agent.attn_heads
    parts, notes = [p for p in ALL_PARTS if p in args.parts], []
    if heads == 0 and {"ablation", "steering"} & set(parts):
        parts = [p for p in parts if p not in ("ablation", "steering")]
        notes.append(NO_ATTENTION_NOTE)
    if "removal" in parts and not objects_known(env_id):
        parts.remove("removal")
        notes.append(f"part 3 reads the game's objects from the RAM, known for {', '.join(OBJECT_READERS)} only.")
    if "removal" in parts and meta["outputs"] == "q_values":
        eps, n = agent.epsilon, agent.n_actions
        flip = (1 - eps) * np.log((1 - eps + eps / n) / (eps / n))  # KL between two epsilon-greedy policies
        notes.append(Q_VALUES_NOTE.format(policy=played_policy(agent), flip=flip))
    for note in notes:
        print(f"note: {note}")
    progress, title = Progress(), f"{env_id}, {os.path.basename(args.checkpoint)}"
    report = dict(checkpoint=args.checkpoint, env_id=env_id, attn_heads=heads, action_names=names, parts=parts)
    report["policy"] = played_policy(agent)  # what the KL follows: a DQN's epsilon-greedy policy
    report |= dict(games=args.games, seed=args.seed, greedy=args.greedy, max_steps=args.max_steps, notes=notes)
    seconds = report["seconds"] = {}
    with output_folder(args.out, meta["run_name"], "interventions", args.force) as out:
        start = time.perf_counter()
        ablation, agreement, states, actions = head_ablation(agent, env_id, args, progress, meta["env_options"])
        report["ablation"], report["heads"] = ablation, agreement
        report["states"] = [dict(seed=s["seed"], t=s["t"], action=s["action"]) for s in states]
        if "ablation" in parts:
            report_ablation(out, ablation, agreement, heads, args, title)
        seconds["games"] = time.perf_counter() - start
        if "steering" in parts:
            report["steering"] = report_steering(out, agent, states, names, args, title, progress)
            seconds["steering"] = time.perf_counter() - start - sum(seconds.values())
        if "removal" in parts:
            removal = report_removal(out, agent, states, args, title, progress, env_id, meta["env_options"], actions)
            report["removal"], report["removal_paths"], report["removal_examples"] = removal
            seconds["removal"] = time.perf_counter() - start - sum(seconds.values())
        if "examples" in parts:
            report["examples"] = report_examples(out, agent, states, args, title, progress)
            seconds["examples"] = time.perf_counter() - start - sum(seconds.values())
        seconds["total"] = time.perf_counter() - start
        report["work"] = work_done(report, len(states))
        path = os.path.join(out, "interventions.json")
        with open(f"{path}.tmp", "w") as f:  # a Ctrl-C leaves no half-written file
            json.dump(report, f, indent=2)
        os.replace(f"{path}.tmp", path)
        took = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        print(f"\nwrote interventions.json and the figures to {out} ({took})")
        report["out"] = out
    return report


if __name__ == "__main__":
    exit_on_bad_input(main)
