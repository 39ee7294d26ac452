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
3. Taking an object away, in the games whose objects play.py reads from the emulator's RAM (Breakout: ball,
   paddle): the object painted over with the background in all 4 stacked frames. How far does each head's
   attention move (mass shifted, displacement of its peak), and the policy (KL)? The control paints an equal
   box elsewhere that touches no object and changes the frames about as much (painting black over Breakout's
   black background would change nothing). Part 2 also compares steering onto an object's place with steering
   far from it.
4. Dataset examples (Olah et al. 2017, "Feature Visualization", Distill): for each conv3 channel, and for each
   attention head at its peak, the sampled states that activate it most, as crops of the unit's 36x36
   receptive field.
5. An agent without attention (`--attn-heads 0`, and the CleanRL and Stable-Baselines3 agents that
   play.load_checkpoint reads) has no maps to edit: it gets parts 3 and 4 only. A DQN's KL is that of the policy
   it plays, epsilon-greedy (as in faithfulness.py), which changes only where its greedy action does.

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
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

from agents import load_checkpoint, log_action_probabilities, played_policy
from cli import Progress, UsageError, exit_on_bad_input, output_folder, pick_device
from play import OBJECT_READERS, box_in_observation, game_name, play
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

    def __call__(self, step, seed: int) -> None:
        if step.t == 0:
            if self.features:
                self.end_game()
            self.recent = collections.deque(maxlen=4)  # (newest frame, its objects) of the game's last 4 steps
        self.recent.append((step.obs[-1], step.objects))  # objects: {name: 210x160 box or None}
        if step.forced:  # the game pressed FIRE after a lost life: not the agent's decision
            return
        a = step.activations
        self.features.append(a["features"])
        self.attention.append(a["attention"])
        self.logits.append(a["logits"])
        objects = stacked_objects(step.obs, self.recent)  # one dict (or None: a padding frame) per stacked frame
        self.sample.offer(
            dict(seed=seed, t=step.t, obs=step.obs, frame=step.frame, action=step.action, objects=objects)
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
    """({condition: games and their statistics}, how alike the heads are, sampled states). The intact games are
    always played: their states are the ones the other parts use. env_options: `meta["env_options"]`."""
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
    agreement = {"entropy": np.mean([g["entropy"] for g in games], 0).tolist()}
    for pair in (k for k in games[0] if k != "entropy"):
        agreement[pair] = {m: float(np.mean([g[pair][m] for g in games])) for m in games[0][pair]}
    return results, agreement, watcher.sample.states()


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
    """({config: its statistics}, {config: policies (S, 49, A)}, intact policies (S, A), the steered states).

    For each object of the game (Breakout: ball, paddle) it also compares steering onto the object's place (the
    place whose receptive field is centred nearest the object in the newest frame) with steering onto the places
    far from it (3 or more places away along a row or column): how often does each change the chosen action?"""
    rng = np.random.default_rng(args.seed)
    steered = [states[i] for i in sorted(rng.permutation(len(states))[: args.steer_states])]
    device = next(agent.parameters()).device
    obs = torch.as_tensor(np.stack([s["obs"] for s in steered]), device=device)
    intact = agent.activations(obs)["logits"].float().softmax(-1)  # (S, A)
    grid = torch.arange(PLACES)
    far = torch.maximum((grid[:, None] // 7 - grid // 7).abs(), (grid[:, None] % 7 - grid % 7).abs()) >= 3
    names = sorted({n for s in steered for n in (s["objects"][-1] or {})})
    results, policies = {}, {}
    for config, heads in steering_configs(agent.attn_heads).items():
        progress(f"steering {config} onto each of the 49 places, {len(steered)} states")
        p = torch.cat([steer(agent, obs[i : i + 32], heads) for i in range(0, len(obs), 32)])  # (S, 49, A)
        policies[config] = p
        changed = (p.argmax(-1) != intact.argmax(-1)[:, None]).cpu()  # (S, 49)
        kl = kl_divergence(intact.log()[:, None], p.log()).mean(1).cpu()  # (S,)
        r = dict(heads=heads)
        r |= dict(zip(("action_changed_mean", "action_changed_se"), mean_and_se(changed.float().mean(1))))
        r |= dict(zip(("kl_mean", "kl_se"), mean_and_se(kl)))
        r["largest_swing_mean"] = float((p.amax(1) - p.amin(1)).amax(-1).mean())  # one action's largest swing
        r["objects"] = {}
        for name in names:
            at = [(i, object_place(box_in_observation(s["objects"][-1][name]))) for i, s in enumerate(steered)
                  if s["objects"][-1] and s["objects"][-1].get(name) is not None]  # fmt: skip
            if at:
                on_object = [float(changed[i, place]) for i, place in at]
                far_from_it = [float(changed[i, far[place]].float().mean()) for i, place in at]
                r["objects"][name] = dict(
                    states=len(at), on_object=mean_and_se(on_object), far=mean_and_se(far_from_it)
                )
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


def attention_moves(before: torch.Tensor, after: torch.Tensor) -> tuple:
    """(mass shifted (S, H): half the summed |change| of each head's map, 0 to 1; its peak's displacement (S, H)
    in places, the Euclidean distance on the 7x7 grid)."""
    shifted = 0.5 * (after - before).abs().flatten(2).sum(-1)
    p, q = before.flatten(2).argmax(-1), after.flatten(2).argmax(-1)
    moved = torch.hypot((p // 7 - q // 7).float(), (p % 7 - q % 7).float())
    return shifted, moved


@torch.no_grad()
def object_removal(agent: Agent, states: list, args: Args, progress) -> tuple:
    """({"<object> removed" / "control for <object>": statistics}, {object: an example}) over the sampled states
    whose newest frame shows the object: the object painted over in every stacked frame that shows it, and the
    control, an equal box elsewhere that changes the frames as much."""
    names = sorted({n for s in states for o in s["objects"] if o for n in o})
    device, rng, results, examples = next(agent.parameters()).device, np.random.default_rng(args.seed), {}, {}
    for name in names:
        progress(f"taking the {name} away")
        chosen, removed, control = [], [], []
        for s in states:
            boxes = stacked_boxes(s, name)
            if boxes[-1] is None:
                continue
            moved = control_boxes(s["obs"], boxes, avoid_mask(s, names), rng)
            if moved is None:
                continue
            chosen.append(dict(s, boxes=boxes, control=moved))
            removed.append(paint_background(s["obs"], boxes))
            control.append(paint_background(s["obs"], moved))
        if not chosen:
            continue
        obs = np.stack([s["obs"] for s in chosen])
        outs = [
            agent.activations(torch.as_tensor(x, device=device)) for x in (obs, np.stack(removed), np.stack(control))
        ]
        logp = [log_action_probabilities(agent, o["logits"]) for o in outs]  # the policy played (DQN: epsilon-greedy)
        for label, x, out, logq in ((f"{name} removed", removed, outs[1], logp[1]),
                                    (f"control for {name}", control, outs[2], logp[2])):  # fmt: skip
            kl = kl_divergence(logp[0], logq).cpu()
            changed = (outs[0]["logits"].argmax(-1) != out["logits"].argmax(-1)).float().cpu()
            shifted, moved = attention_moves(outs[0]["attention"].float(), out["attention"].float())
            x = np.stack(x)
            r = dict(states=len(chosen), pixels_changed=float((x != obs).sum((1, 2, 3)).mean()))
            r["summed_change"] = float(np.abs(x.astype(np.int64) - obs).sum((1, 2, 3)).mean())  # 0-255 per pixel
            r |= dict(zip(("kl_mean", "kl_se"), mean_and_se(kl)))
            r |= dict(zip(("action_changed_mean", "action_changed_se"), mean_and_se(changed)))
            for h in range(shifted.shape[1]):
                r[f"head{h}_mass_shifted"] = mean_and_se(shifted[:, h].cpu())
                r[f"head{h}_peak_moved"] = mean_and_se(moved[:, h].cpu())
            results[label] = r
        shifted = attention_moves(outs[0]["attention"].float(), outs[1]["attention"].float())[0].sum(1)
        typical = int((shifted - shifted.mean()).abs().argmin()) if shifted.numel() else 0  # closest to the mean
        examples[name] = dict(
            state=chosen[typical],
            images=[obs[typical], removed[typical], control[typical]],
            attention=[o["attention"][typical].float().cpu().numpy() for o in outs],
            kl=[0.0, *(float(kl_divergence(logp[0], logq)[typical]) for logq in logp[1:])],
        )
    progress(f"taking objects away: {', '.join(names)}", done=True)
    return results, examples


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
    head = "| condition | score (mean ± SE) | game length (steps) | KL from intact (nats, mean ± SE) | most probable action changed |"
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
            f"{nats(r['kl_mean'], r['kl_se'])} | {r['largest_swing_mean']:.2f} |"
        )
    return "\n".join(lines)


def steering_objects_table(results: dict) -> str:
    lines = ["| steered | object | states | action changed: steered onto its place | onto places far from it |"]
    lines.append("|---|---|---:|---:|---:|")
    for config, r in results.items():
        for name, o in r["objects"].items():
            (on, on_se), (far, far_se) = o["on_object"], o["far"]
            lines.append(f"| {config} | {name} | {o['states']} | {100 * on:.0f}% ± {100 * on_se:.0f}% | "
                         f"{100 * far:.0f}% ± {100 * far_se:.0f}% |")  # fmt: skip
    return "\n".join(lines)


def removal_table(results: dict, heads: int) -> str:
    columns = "".join(f" head {h}: mass shifted | head {h}: peak moved (places) |" for h in range(heads))
    lines = [
        f"| taken away | states | pixels changed (summed change) | KL from intact (nats) | action changed |{columns}"
    ]
    lines.append("|---|---:|---:|---:|---:|" + "---:|" * 2 * heads)
    for label, r in results.items():
        cells = [f"{r['states']}", f"{r['pixels_changed']:.0f} ({r['summed_change']:.0f})"]
        cells.append(nats(r["kl_mean"], r["kl_se"]))
        cells.append(f"{100 * r['action_changed_mean']:.0f}% ± {100 * r['action_changed_se']:.0f}%")
        for h in range(heads):
            cells += [f"{v:.2f} ± {e:.2f}" for v, e in (r[f"head{h}_mass_shifted"], r[f"head{h}_peak_moved"])]
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


def draw_removal(path: str, results: dict, examples: dict, heads: int, title: str) -> None:
    """Per object: a typical state as the agent saw it (4 frames maxed), with the object taken away and with the
    control's boxes painted instead, each with the attention (glow: all heads; circles: each head's peak) and the
    painted boxes outlined; then the means over states, object against control: the policy's KL, each head's
    attention mass shifted and its peak's displacement."""
    plt = pyplot()
    colours = head_colours(max(heads, 1)) / 255
    bars = [("KL(as it was || after), nats", ["policy"], "kl")]
    if heads:
        bars += [("attention mass shifted (0 to 1)", [f"head {h}" for h in range(heads)], "mass_shifted")]
        bars += [("the head's peak moved (places)", [f"head {h}" for h in range(heads)], "peak_moved")]
    fig, axes = plt.subplots(len(examples), 3 + len(bars), figsize=(7.5 + 2.6 * len(bars), 3.9 * len(examples) + 0.9),
                             squeeze=False, layout="constrained", width_ratios=[1, 1, 1] + [0.9] * len(bars))  # fmt: skip
    for row, (name, ex) in enumerate(examples.items()):
        boxes = (None, ex["state"]["boxes"], ex["state"]["control"])
        for col, what in enumerate(("as it was", f"{name} taken away", "control: an equal change\nelsewhere")):
            ax = axes[row, col]
            ax.imshow(ex["images"][col].max(0), cmap="gray", vmin=0, vmax=255, extent=(0, 84, 84, 0),
                      aspect=FRAME_ASPECT)  # fmt: skip
            attention = ex["attention"][col]
            if heads:
                heat = on_input(attention.sum(0).clip(0, 1))
                ax.imshow(heat, extent=(0, 84, 84, 0), aspect=FRAME_ASPECT, cmap="inferno", vmin=0, vmax=1,
                          alpha=0.7 * np.sqrt(heat), interpolation="nearest")  # fmt: skip
            for h in range(heads):
                x, y = place_centre(int(attention[h].argmax()))
                ax.plot(x, y, "o", ms=max(13 - 3.5 * h, 3), mfc="none", mec=colours[h], mew=2)
            for box in boxes[col] or []:
                if box is not None:
                    y0, x0, y1, x1 = box
                    ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="cyan", lw=1))
            ax.set(xticks=[], yticks=[], xlim=(0, 84), ylim=(84, 0))
            ax.set_title(f"{what}\npolicy's KL: {ex['kl'][col]:.3f}" if col else what, fontsize=9)
        axes[row, 0].set_ylabel(f"{name}: seed {ex['state']['seed']}, step {ex['state']['t']}", fontsize=9)
        for b, (label, groups, key) in enumerate(bars):
            ax = axes[row, 3 + b]
            for k, (what, colour) in enumerate(((f"{name} removed", "tab:red"), (f"control for {name}", "tab:gray"))):
                r = results[what]
                values = [(r["kl_mean"], r["kl_se"])] if key == "kl" else [r[f"head{h}_{key}"] for h in range(heads)]
                x = np.arange(len(groups)) + (k - 0.5) * 0.4
                ax.bar(x, [v for v, _ in values], yerr=[e for _, e in values], width=0.4, color=colour, capsize=3,
                       label=what if b == 0 else None)  # fmt: skip
            ax.set_xticks(np.arange(len(groups)), groups)
            ax.set_title(label, fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        axes[row, 3].legend(fontsize=8, title=f"{results[f'{name} removed']['states']} states", title_fontsize=8)
    key = ("Glow: the attention of all heads; circles: each head's peak (head 0 outermost); " if heads else
           "No attention to draw (the agent has none); ") + "cyan: the painted boxes, in all 4 stacked frames."  # fmt: skip
    fig.suptitle(f"{title} (bars: mean ± standard error over states)\n{key}", fontsize=10)
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
    print(f"\nHead ablation: {args.games} games per condition, seeds {args.seed}-{args.seed + args.games - 1} (the same "
          "for every condition). KL and action changes: on every state of the intact games, mean ± SE over games.\n")  # fmt: skip
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
    print(f"\nAttention steering: {len(steered)} states of the intact games, the attention forced onto each of the 49 "
          "places in turn; compared with the intact policy at the same state.\n")  # fmt: skip
    print(steering_table(results))
    if any(r["objects"] for r in results.values()):
        print("\nSteering onto an object's place (the place whose receptive field is centred nearest it) against the "
              "places 3 or more rows or columns away from it: share of states whose most probable action changes "
              "(far: mean over those places).\n")  # fmt: skip
        print(steering_objects_table(results))
    return dict(states=[dict(seed=s["seed"], t=s["t"]) for s in steered], configs=results)


def report_removal(out: str, agent: Agent, states: list, args: Args, title: str, progress) -> tuple:
    results, examples = object_removal(agent, states, args, progress)
    policy = played_policy(agent)
    title += ": taking objects away" + (
        "" if policy == "policy" else f"\nthe KL is that of the policy it plays, {policy}"
    )
    if examples:
        draw_removal(os.path.join(out, "removal.png"), results, examples, agent.attn_heads, title)
    print("\nTaking objects away: each object painted over with the background in all 4 stacked frames, on the sampled "
          "states that show it. The control paints the same boxes moved elsewhere, touching no object, where they "
          "change the frames about as much (summed |change| within 25%). Mean ± SE over states.\n")  # fmt: skip
    print(removal_table(results, agent.attn_heads))
    return results, {n: dict(seed=e["state"]["seed"], t=e["state"]["t"]) for n, e in examples.items()}


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
        ablation, agreement, states = head_ablation(agent, env_id, args, progress, meta["env_options"])
        report["ablation"], report["heads"] = ablation, agreement
        report["states"] = [dict(seed=s["seed"], t=s["t"], action=s["action"]) for s in states]
        if "ablation" in parts:
            report_ablation(out, ablation, agreement, heads, args, title)
        seconds["games"] = time.perf_counter() - start
        if "steering" in parts:
            report["steering"] = report_steering(out, agent, states, names, args, title, progress)
            seconds["steering"] = time.perf_counter() - start - sum(seconds.values())
        if "removal" in parts:
            report["removal"], report["removal_examples"] = report_removal(out, agent, states, args, title, progress)
            seconds["removal"] = time.perf_counter() - start - sum(seconds.values())
        if "examples" in parts:
            report["examples"] = report_examples(out, agent, states, args, title, progress)
            seconds["examples"] = time.perf_counter() - start - sum(seconds.values())
        seconds["total"] = time.perf_counter() - start
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
