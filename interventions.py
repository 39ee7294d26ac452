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

This file holds parts 1, 2 and 4 and the command line; part 3 is in interventions_objects.py, the edited forward
pass and the places of the 7x7 grid that all parts use in interventions_edits.py, the tables and figures in
interventions_report.py.

Yang et al. 2018 (arXiv 1812.11276), rl-attention (AI Safety Camp 3: Nikulin, Kosch, Steuer, Cunningham 2019,
github.com/dniku/rl-attention) and Mott et al. 2019 (arXiv 1906.02500) show attention maps and read them as
explanations, without editing them.

    python interventions.py --checkpoint runs/<run_name>/run.pt
    python interventions.py --checkpoint runs/<run_name>/dqn_atari.cleanrl_model --env-id BreakoutNoFrameskip-v4
"""

import collections
import json
import os
import time
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import numpy as np
import torch
import tyro

from agents import load_checkpoint, played_policy
from cli import SAYS_ITS_DEFAULT, Progress, UsageError, exit_on_bad_input, output_folder, pick_device
from interventions_edits import (
    FAR,
    PLACES,
    EditedAgent,
    after_attention,
    kl_divergence,
    object_place,
    one_hot_maps,
    place_distance,
    replace_heads,
    uniform_map,
)
from interventions_objects import object_removal, objects_known
from interventions_report import show_ablation, show_examples, show_removal, show_steering
from play import OBJECT_READERS, box_in_observation, mean_and_se, mean_and_se_over_games, play, plus_minus
from ppo_attention import Agent

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
    """a game is cut after this many agent steps (counted in the table); the demo agents' games last 850 to 2,400"""
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
    out: Annotated[Optional[str], SAYS_ITS_DEFAULT] = None
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


# ----------------------------------------------------------------------------- part 1: head ablation


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
        progress(f"ablation, {name}: score {plus_minus(score, score_se, 2)} over {len(games)} games", done=True)
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
    """({config: its statistics}, {config: policies (S, 49, A)}, intact policies (S, A), the steered states, their
    intact attention maps (S, H, 7, 7)).

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
    return results, policies, intact, steered, attention


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


# ----------------------------------------------------------------------------- the command line


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
    device = pick_device(args.cuda, args.threads)
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
            show_ablation(out, ablation, agreement, heads, args.games, args.seed, title)
        seconds["games"] = time.perf_counter() - start
        if "steering" in parts:
            results, policies, intact, steered, attention = attention_steering(agent, states, args, progress)
            show_steering(out, results, policies, intact, steered, attention, names, args.figures, title)
            report["steering"] = dict(states=[dict(seed=s["seed"], t=s["t"]) for s in steered], configs=results)
            seconds["steering"] = time.perf_counter() - start - sum(seconds.values())
        if "removal" in parts:
            results, paths, typical = object_removal(
                agent, states, args.seed, progress, env_id, meta["env_options"], actions
            )
            show_removal(out, results, paths, typical, heads, report["policy"], title)
            report["removal"], report["removal_paths"] = results, paths
            report["removal_examples"] = {  # the state drawn for each object
                name: dict(seed=e["state"]["seed"], t=e["state"]["t"], offset=e["offset"])
                for name, e in typical.items()
            }
            seconds["removal"] = time.perf_counter() - start - sum(seconds.values())
        if "examples" in parts:
            progress(f"dataset examples: {len(states)} states")
            examples = dataset_examples(agent, states, args.examples)
            show_examples(out, examples, states, title, progress)
            report["examples"] = {
                layer: {str(u): [dict(zip(("state", "y", "x", "value"), e)) for e in ex] for u, ex in units.items()}
                for layer, units in examples.items()
            }
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
