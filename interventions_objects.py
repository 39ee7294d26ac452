"""Part 3 of interventions.py: taking an object away, in the games whose objects play.py reads from the RAM.

On the sampled states whose newest frame shows the object (Breakout: ball, paddle):

- removed: the object painted over with the background in all 4 stacked frames (`paint_background`);
- moved: the ball drawn by the game itself elsewhere (`replay_and_move`: each game replayed from its seed and
  actions, the ball's RAM position shifted, each stacked step played again, checked against the RAM and the pixels);
- the location-matched control: the object's pixels copied into empty playfield (`empty_control_boxes`,
  `paste_change`: the same place kind, exactly as many pixels changed by as much);
- the painted control: equal boxes painted over elsewhere (`control_boxes`: on bricks, walls or score, changing the
  frames about as much; painting black over Breakout's black background would change nothing).

How far does each head's attention move (mass shifted, displacement of its peak), and the policy (KL)? Activation
patching (`attention_paths`: the edited frames' features with the intact attention, and the other way round) says
through which path the change reaches the decision. `object_removal` runs it all; means ± SE over games.
"""

import collections
import itertools
from typing import Optional

import numpy as np
import torch

from agents import log_action_probabilities
from atari_env import make_env, render_step
from interventions_edits import FAR, after_attention, kl_divergence, object_place, place_distance
from play import (
    FRAME_SIZE,
    OBJECT_READERS,
    PLAYFIELD,
    RAM_POSITIONS,
    bootstrap_over_games,
    box_in_observation,
    game_name,
    mean_and_se_over_games,
    movable,
    observed_boxes,
    per_game_means,
    playfield_in_observation,
    shifted,
    union_box,
)
from ppo_attention import Agent

# ----------------------------------------------------------------------------- taking an object away


def objects_known(env_id: str) -> bool:
    """Whether play.py reads this game's objects from the emulator's RAM (`play.OBJECT_READERS`)."""
    return game_name(env_id) in OBJECT_READERS


def stacked_boxes(state: dict, name: str) -> list:
    """The object's box in each of the 4 stacked frames, oldest first, in observation pixels (y0, x0, y1, x1),
    end-exclusive; None where it is not on the screen or the frame pads the game's start."""
    return [None if o is None or o.get(name) is None else box_in_observation(o[name]) for o in state["objects"]]


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


# ----------------------------------------------------------------------------- the object moved by the game
# Painting an object over leaves a frame the game would never show (the ball is in play but not drawn). The stronger
# test has the game draw it elsewhere: replay the game to just before each of the 4 agent steps whose frames the
# state stacks, add an offset to the object's position in the emulator's RAM (play.RAM_POSITIONS), and let the
# emulator play that one agent step again (atari_env.render_step). The object's trajectory over the 4 frames is the
# same, shifted; the rest of the frame is as it was.


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


# ----------------------------------------------------------------------------- statistics and paths


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
def object_removal(agent: Agent, states: list, seed: int, progress, env_id: str, env_options=None,
                   actions: Optional[dict] = None) -> tuple:  # fmt: skip
    """({condition: statistics}, {object: through which path}, {object: an example}) over the sampled states whose
    newest frame shows the object. Conditions: the object removed (painted over in every stacked frame that shows
    it); moved (drawn by the game elsewhere, for the objects of RAM_POSITIONS, given the games' actions); the
    location-matched control (the object's pixels copied into an empty part of the playfield: as many pixels
    changed by as much); the earlier control (equal boxes painted over elsewhere, where that changes the frames
    about as much: on bricks, walls or the score). Means ± SE over games."""
    names = sorted({n for s in states for o in s["objects"] if o for n in o})
    device, rng = next(agent.parameters()).device, np.random.default_rng(seed)
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
            paths[f"{name} removed"] = attention_paths(agent, intact, outs[f"{name} removed"], games, seed)
        if moved:
            idx, label = sorted(moved), f"{name} moved"
            outs[label] = run([moved[i][0] for i in idx])
            results[label] = moved_statistics(agent, name, [chosen[i] for i in idx], [moved[i] for i in idx],
                                              subset(intact, idx), outs[label])  # fmt: skip
            results[label] |= dict(states_shown=len(chosen), replayed_steps=work["replayed"])
            results[label]["rendered_steps"] = work["rendered"]
            if agent.attn_heads:
                paths[label] = attention_paths(agent, subset(intact, idx), outs[label], [games[i] for i in idx], seed)
        examples[name] = removal_example(agent, name, chosen, obs, edits, moved, intact, outs)
    progress(f"taking objects away: {', '.join(names)}", done=True)
    return results, paths, examples
