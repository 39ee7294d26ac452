"""Tests of interventions.py and its modules (interventions_edits.py, interventions_objects.py,
interventions_report.py): the edited forward pass against the network computed by hand (the agent's own maps,
uniform maps, removed heads, one-hot steering and its baselines), activation patching's identities, the controls and
the ball moved by the game (checked against the RAM and the pixels), the seeds of the ablation's games, the dataset
examples' crops, the command line end to end, an agent without attention, a CleanRL DQN, bad input. (The errors over
games are tested with play.py's statistics, in tests/test_play.py.)"""

import collections
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents import load_checkpoint
from atari_env import ENV_OPTIONS, make_env, render_step
from cli import exit_on_bad_input
from interventions import (
    Args,
    ablation_conditions,
    head_ablation,
    main,
    object_steering,
    own_peaks,
    random_places,
    stacked_objects,
    steer,
    top_examples,
)
from interventions_edits import (
    FAR,
    NEAREST_PLACE,
    EditedAgent,
    after_attention,
    kl_divergence,
    object_place,
    place_distance,
    uniform_map,
)
from interventions_objects import (
    attention_paths,
    avoid_mask,
    box_sums,
    control_boxes,
    empty_control_boxes,
    empty_playfield,
    paint_background,
    paste_change,
    patched_logits,
    replay_and_move,
    stacked_boxes,
)
from interventions_report import crop, on_input, place_centre
from play import (
    PLAYFIELD,
    box_in_observation,
    observed_boxes,
    play,
    playfield_in_observation,
    shifted,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BREAKOUT = "BreakoutNoFrameskip-v4"
DEMO = os.path.join(ROOT, "checkpoints", "breakout_coef5e-4.pt")  # trained: edits move its policy a lot
TINY = ["--games", "2", "--max-steps", "40", "--states", "24", "--steer-states", "4", "--figures", "1"]
TINY += ["--examples", "3", "--no-cuda"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """On 2 cores shared with other jobs, two torch threads make small passes ~10x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo():
    return load_checkpoint(DEMO)[0]


@pytest.fixture(scope="module")
def states(demo):
    """12 real observations of a Breakout game of the demo agent (ball and paddle in play)."""
    return torch.as_tensor(np.stack([s.obs for s in play(demo, "BreakoutNoFrameskip-v4", 2, max_steps=60)][::5]))


def by_hand(agent, features, weights) -> torch.Tensor:
    """The policy logits from features (B, 64, 7, 7) masked by `weights` (B, 7, 7), written out from the README's
    table of the network: masked = features * weights, fc with ReLU, actor."""
    masked = features * weights[:, None]
    return F.linear(F.relu(F.linear(masked.reshape(len(masked), -1), agent.fc.weight, agent.fc.bias)),
                    agent.actor.weight, agent.actor.bias)  # fmt: skip


def cli(argv):
    return exit_on_bad_input(main, argv)


# ----------------------------------------------------------------------------- the edited forward pass


@torch.no_grad()
def test_the_agents_own_maps_give_its_own_policy_and_value(demo, states):
    a = demo.activations(states)
    out = after_attention(demo, a["features"], a["attention"])
    for name in ("masked", "fc", "logits", "value"):
        torch.testing.assert_close(out[name], a[name], rtol=1e-5, atol=1e-6)
    same = EditedAgent(demo, {}).activations(states)  # no edit: the agent itself
    assert torch.equal(same["logits"], a["logits"])


@torch.no_grad()
def test_the_uniform_map_reproduces_the_policy_computed_by_hand(demo, states):
    a = demo.activations(states)
    A, u = a["attention"], 1 / 49
    expected = {
        "all heads uniform": by_hand(demo, a["features"], torch.full_like(A[:, 0], 2 * u)),
        "head 0 uniform": by_hand(demo, a["features"], u + A[:, 1]),
        "head 1 uniform": by_hand(demo, a["features"], A[:, 0] + u),
        "head 0 removed": by_hand(demo, a["features"], A[:, 1]),
        "head 1 removed": by_hand(demo, a["features"], A[:, 0]),
    }
    conditions = ablation_conditions(2)
    assert set(conditions) == {"intact", *expected}
    for name, logits in expected.items():
        edited = EditedAgent(demo, conditions[name]).activations(states)
        torch.testing.assert_close(edited["logits"], logits, rtol=1e-4, atol=1e-5)
        assert kl_divergence(a["logits"], edited["logits"]).mean() > 1e-3, name  # the edit matters: not a no-op
    assert torch.allclose(uniform_map().sum(), torch.tensor(1.0))


@torch.no_grad()
def test_steering_to_one_place_gives_the_policy_of_features_masked_by_hand_at_that_place(demo, states):
    a = demo.activations(states)
    all_heads, head1 = steer(demo, states, [0, 1]), steer(demo, states, [1])  # (S, 49, A)
    for p in (0, 10, 24, 38, 48):
        onehot = torch.zeros(len(states), 7, 7)
        onehot[:, p // 7, p % 7] = 1
        expected = by_hand(demo, a["features"], 2 * onehot).softmax(-1)  # both heads' whole mass at p
        torch.testing.assert_close(all_heads[:, p], expected, rtol=1e-4, atol=1e-5)
        expected = by_hand(demo, a["features"], a["attention"][:, 0] + onehot).softmax(-1)  # head 0 as it was
        torch.testing.assert_close(head1[:, p], expected, rtol=1e-4, atol=1e-5)
    assert (all_heads.amax(1) - all_heads.amin(1)).max() > 0.3  # the place matters: the test could fail


def test_kl_divergence_matches_the_sum_written_out():
    p, q = torch.tensor([[0.5, 0.25, 0.25]]), torch.tensor([[0.25, 0.25, 0.5]])
    expected = 0.5 * np.log(2) + 0.25 * np.log(0.5)
    assert abs(float(kl_divergence(p.log(), q.log())) - expected) < 1e-6


# ----------------------------------------------------------------------------- the ablation's games


@pytest.mark.slow
def test_every_condition_plays_the_same_seeds_with_the_shared_play_loop(tiny_checkpoint, tmp_path):
    report = cli(["--checkpoint", tiny_checkpoint, *TINY, "--seed", "5", "--out", str(tmp_path / "o")])
    ablation = report["ablation"]
    assert list(ablation) == ["intact", "head 0 uniform", "head 1 uniform", "head 0 removed", "head 1 removed",
                              "all heads uniform"]  # fmt: skip
    for r in ablation.values():
        assert r["seeds"] == [5, 6]
    agent, meta = load_checkpoint(tiny_checkpoint)
    conditions = ablation_conditions(2)
    for name in ("intact", "head 1 removed"):  # each game is play.play's game of that seed, with the edited agent
        player = EditedAgent(agent, conditions[name])
        for i, seed in enumerate((5, 6)):
            game = list(play(player, meta["env_id"], seed, max_steps=40))
            assert (ablation[name]["scores"][i], ablation[name]["steps"][i]) == (game[-1].score, len(game))

    # the files, and what they say
    out = report["out"]
    names = set(os.listdir(out))
    assert {"interventions.json", "ablation.png", "removal.png", "examples_conv3.png", "examples"} <= names
    assert len([n for n in names if n.startswith("steering_")]) == 1
    assert len(os.listdir(os.path.join(out, "examples"))) == 64 + 2
    with open(os.path.join(out, "interventions.json")) as f:
        saved = json.load(f)
    assert saved["ablation"]["intact"]["seeds"] == [5, 6] and len(saved["states"]) <= 24
    assert set(saved["steering"]["configs"]) == {"all heads", "head 0 alone", "head 1 alone"}
    assert len(saved["steering"]["states"]) == 4 and set(saved["examples"]) == {"conv3", "heads"}
    assert 0 <= saved["heads"]["0-1"]["same_peak"] <= 1 and len(saved["heads"]["entropy"]) == 2
    edits = {"removed", "control for", "painted control for"}
    assert set(saved["removal"]) - {"ball moved"} == {f"ball {e}" if e == "removed" else f"{e} ball" for e in edits} | {
        f"paddle {e}" if e == "removed" else f"{e} paddle" for e in edits
    }
    assert saved["removal"]["paddle removed"]["states"] == len(saved["states"])  # the paddle is always there
    assert set(saved["removal_paths"]) - {"ball moved"} == {"ball removed", "paddle removed"}
    for r in saved["steering"]["configs"].values():
        assert {"all_places", "own_peak", "random_place"} <= set(r) and r["games"] == 2
    assert saved["work"]["agent_steps_played"] == sum(sum(r["steps"]) for r in ablation.values())


@pytest.mark.slow
def test_an_agent_without_attention_gets_the_examples_and_a_note(tiny_baseline_checkpoint, tmp_path, capsys):
    report = cli(["--checkpoint", tiny_baseline_checkpoint, *TINY, "--out", str(tmp_path / "o")])
    assert list(report["ablation"]) == ["intact"] and "steering" not in report
    assert "no maps to ablate (part 1) or steer (part 2)" in report["notes"][0]
    assert "no attention module" in capsys.readouterr().out
    assert set(report["examples"]) == {"conv3", "heads"} and not report["examples"]["heads"]
    assert not os.path.exists(os.path.join(report["out"], "ablation.png"))
    assert "head0_mass_shifted" not in report["removal"]["ball removed"]  # no attention to move: the KL only
    assert report["removal"]["control for ball"]["kl_mean"] >= 0 and not report["removal_paths"]


@pytest.mark.slow
def test_a_cleanrl_dqn_plays_its_trainers_game_and_its_kl_is_that_of_its_epsilon_greedy_policy(
    cleanrl_dqn, tmp_path, capsys, monkeypatch
):
    """An agent trained elsewhere (CleanRL's dqn_atari.py file, which does not name its game): --env-id, the game as
    CleanRL's wrappers showed it (meta["env_options"]), parts 3 and 4 with the note, and part 3's KL that of the
    policy it plays, epsilon-greedy: 0 where the greedy action stays, (1 - eps) log((1 - eps + eps/A) / (eps/A))
    where it changes."""
    import interventions

    options, real_play = [], interventions.play

    def spy(*args, **kwargs):
        options.append(kwargs.get("env_options"))
        return real_play(*args, **kwargs)

    monkeypatch.setattr(interventions, "play", spy)
    report = cli(["--checkpoint", cleanrl_dqn, "--env-id", BREAKOUT, *TINY, "--out", str(tmp_path / "o")])
    assert options == [ENV_OPTIONS["cleanrl"]] * 2  # both intact games, as CleanRL's Atari wrappers made them
    agent, meta = load_checkpoint(cleanrl_dqn, env_id=BREAKOUT)
    games = {seed: list(play(agent, BREAKOUT, seed, max_steps=40, env_options=meta["env_options"])) for seed in (1, 2)}
    assert all(s["action"] == games[s["seed"]][s["t"]].action for s in report["states"])  # the states of those games
    assert report["parts"] == ["removal", "examples"] and report["policy"] == "epsilon-greedy, epsilon 0.01"
    printed = capsys.readouterr().out
    assert "no maps to ablate (part 1) or steer (part 2)" in printed
    assert "part 3's KL is that of the policy it plays, epsilon-greedy, epsilon 0.01" in printed
    flip = 0.99 * np.log((0.99 + 0.0025) / 0.0025)
    assert f"{flip:.2f} nats where it changes" in printed
    removal = report["removal"]
    assert {"ball removed", "control for ball", "paddle removed", "control for paddle"} <= set(removal)
    for r in removal.values():
        assert r["kl_mean"] == pytest.approx(flip * r["action_changed_mean"], rel=1e-4, abs=1e-6)
        assert "head0_mass_shifted" not in r
    assert max(r["action_changed_mean"] for r in removal.values()) > 0  # some decisions changed: the KL was not 0
    assert len(report["examples"]["conv3"]) == 64 and not report["examples"]["heads"]
    assert {"removal.png", "examples_conv3.png", "interventions.json"} <= set(os.listdir(report["out"]))


def test_each_stacked_frame_gets_the_objects_of_the_step_it_shows():
    """This project's stack goes on after a lost life; SB3's restarts with zeros and CleanRL's with copies of the
    new first frame, whose objects are that frame's, not those of the steps before."""
    frames = [np.full((84, 84), 10 + t, np.uint8) for t in range(6)]
    objects = [{"ball": (t, 0, t + 1, 1)} for t in range(6)]
    zero = np.zeros((84, 84), np.uint8)
    recent = collections.deque(maxlen=4)
    seen = []
    for t, obs in enumerate(
        [
            [zero, zero, zero, frames[0]],  # a game's start: zero padding
            [zero, zero, frames[0], frames[1]],
            [zero, frames[0], frames[1], frames[2]],
            [frames[0], frames[1], frames[2], frames[3]],
            [zero, zero, zero, frames[4]],  # SB3: a new episode after a lost life
            [frames[5]] * 4,  # CleanRL: a new episode, the first frame repeated
        ]
    ):
        recent.append((frames[t], objects[t]))
        seen.append(stacked_objects(np.stack(obs), recent))
    assert seen[0] == [None, None, None, objects[0]] and seen[2] == [None, *objects[:3]]
    assert seen[3] == objects[:4]
    assert seen[4] == [None, None, None, objects[4]] and seen[5] == [objects[5]] * 4


# ----------------------------------------------------------------------------- dataset examples and drawing


def test_top_examples_rank_states_by_their_strongest_place_and_skip_silent_ones():
    activation = torch.zeros(4, 7, 7)
    activation[0, 2, 3], activation[2, 6, 0], activation[2, 1, 1], activation[3, 0, 6] = 0.5, 2.0, 1.0, 0.1
    assert top_examples(activation, 3) == [(2, 6, 0, 2.0), (0, 2, 3, 0.5), (3, 0, 6, pytest.approx(0.1))]
    assert top_examples(activation, 9)[-1][0] == 3  # state 1 is 0 everywhere: never an example
    moments = [(1, 100), (1, 0), (1, 95), (2, 95)]  # (game seed, step): state 0 is 5 steps from state 2
    assert [e[0] for e in top_examples(activation, 9, moments)] == [2, 3]


def test_a_crop_is_the_units_receptive_field_of_the_frames_maximum():
    obs = np.random.default_rng(0).integers(0, 256, (4, 84, 84), dtype=np.uint8)
    assert np.array_equal(crop(obs, 6, 2), obs.max(0)[48:84, 16:52])
    assert crop(obs, 0, 0).shape == (36, 36)


def test_each_pixel_shows_the_place_whose_receptive_field_is_centred_nearest():
    for p in range(49):
        x, y = place_centre(p)  # the centre of place p's field, in input pixels
        assert (NEAREST_PLACE[int(y)], NEAREST_PLACE[int(x)]) == (p // 7, p % 7)
    m = np.arange(49.0).reshape(7, 7)
    assert on_input(m)[0, 83] == 6 and on_input(m)[83, 0] == 42 and on_input(m).shape == (84, 84)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--checkpoint", "{tmp}/nope.pt"], "does not exist"),
        (["--games", "0"], "--games must be at least 1"),
        (["--steer-states", "0"], "--steer-states must be at least 1"),
        (["--figures", "-1"], "--figures must be 0 or more"),
        (["--parts"], "--parts needs at least one"),
    ],
)
def test_bad_input_is_one_sentence_and_writes_nothing(tiny_checkpoint, tmp_path, capsys, argv, words):
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        cli(["--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "o"), *argv])
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: ") and words in message, message
    assert len(message.splitlines()) == 1 and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_no_empty_folder(tiny_checkpoint, tmp_path, monkeypatch):
    import interventions

    def interrupted(*a, **kw):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(interventions, "play", interrupted)
    with pytest.raises(SystemExit) as exit_:
        cli(["--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "o")])
    assert exit_.value.code == 130 and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- taking objects away


@pytest.fixture(scope="module")
def open_field_state(demo):
    """A real state of the demo agent's game whose ball, in all 4 stacked frames, is below the bricks and above
    the paddle (the objects of each frame kept as interventions.py keeps them)."""
    recent = [None] * 3
    for step in play(demo, "BreakoutNoFrameskip-v4", 1, max_steps=400):
        recent = (recent + [step.objects])[-4:]
        balls = [o and o["ball"] for o in recent]
        if all(b is not None and b[0] >= 100 and b[2] <= 180 for b in balls):
            return dict(obs=step.obs, objects=recent, t=step.t)
    pytest.fail("no state with the ball in the open in 400 steps")


def test_removing_the_ball_changes_exactly_the_balls_pixels(open_field_state):
    state = open_field_state
    removed = paint_background(state["obs"], stacked_boxes(state, "ball"))
    # the reference, found another way: below the bricks (rows 38+), above the paddle (rows < 75) and between the
    # walls (columns 5-78) the only lit pixels of a Breakout frame are the ball's
    ball = np.zeros((4, 84, 84), bool)
    ball[:, 38:75, 5:79] = state["obs"][:, 38:75, 5:79] > 0
    assert ball.sum(axis=(1, 2)).min() > 0  # the ball shows in every frame
    assert np.array_equal(removed != state["obs"], ball)
    assert (removed[ball] == 0).all()  # painted with Breakout's black background
    assert np.array_equal(paint_background(state["obs"], stacked_boxes(state, "paddle"))[:, :75], state["obs"][:, :75])


def test_the_control_box_touches_no_object_and_changes_about_as_much(open_field_state):
    state, rng = open_field_state, np.random.default_rng(0)
    boxes = stacked_boxes(state, "ball")
    avoid = avoid_mask(state, ["ball", "paddle"])
    removed_change = np.abs(paint_background(state["obs"], boxes).astype(int) - state["obs"]).sum()
    for _ in range(5):
        moved = control_boxes(state["obs"], boxes, avoid, rng)
        offsets = {(m[0] - b[0], m[1] - b[1]) for m, b in zip(moved, boxes)}
        assert len(offsets) == 1 and offsets != {(0, 0)}  # the same shape, moved as one
        for k, (y0, x0, y1, x1) in enumerate(moved):
            assert 0 <= y0 < y1 <= 84 and 0 <= x0 < x1 <= 84 and not avoid[k, y0:y1, x0:x1].any()
            assert (y1 - y0, x1 - x0) == (boxes[k][2] - boxes[k][0], boxes[k][3] - boxes[k][1])
        change = np.abs(paint_background(state["obs"], moved).astype(int) - state["obs"]).sum()
        assert abs(change - removed_change) <= 0.25 * removed_change and change > 0


def test_box_sums_match_a_loop():
    image = np.random.default_rng(1).integers(0, 9, (84, 84))
    sums = box_sums(image, 3, 5)
    assert sums.shape == (82, 80)
    for y, x in ((0, 0), (10, 40), (81, 79)):
        assert sums[y, x] == image[y : y + 3, x : x + 5].sum()


def test_an_objects_place_is_the_one_centred_nearest_it():
    assert object_place((40, 15, 42, 17)) == 3 * 7 + 0  # centre (41, 16): place centres are at 18 + 8k (42, 18)
    assert object_place((75, 60, 78, 76)) == 6 * 7 + 6  # the paddle, at the bottom right
    assert object_place((0, 0, 2, 2)) == 0


# ----------------------------------------------------------------------------- steering's baselines


@torch.no_grad()
def test_steering_onto_the_own_peak_equals_masking_by_hand_there(demo, states):
    a = demo.activations(states)
    A = a["attention"]
    rows = torch.arange(len(states))
    for heads in ([0, 1], [1]):
        peak = own_peaks(A, heads)
        onehot = torch.zeros(len(states), 7, 7)
        onehot.view(len(states), 49)[rows, peak] = 1
        weights = 2 * onehot if heads == [0, 1] else A[:, 0] + onehot  # head 0 as it was, head 1 at its own peak
        expected = by_hand(demo, a["features"], weights).softmax(-1)
        torch.testing.assert_close(steer(demo, states, heads)[rows, peak], expected, rtol=1e-4, atol=1e-5)
        # the own peak is where the steered heads' summed map is highest, found another way
        summed = A[:, heads].sum(1)
        assert all(summed[i].flatten()[peak[i]] == summed[i].max() for i in range(len(states)))
    assert not torch.equal(own_peaks(A, [0]), own_peaks(A, [1]))  # the penalised agent's heads look apart


def test_random_places_are_seeded_and_uniform():
    from scipy.stats import chisquare

    assert np.array_equal(random_places(100, 1), random_places(100, 1))
    assert not np.array_equal(random_places(100, 1), random_places(100, 2))
    places = random_places(4900, 5)
    assert places.min() >= 0 and places.max() <= 48
    assert chisquare(np.bincount(places, minlength=49)).pvalue > 1e-3  # no place favoured


def test_steering_onto_an_object_is_compared_state_by_state_with_its_baselines():
    changed = torch.zeros(3, 49, dtype=torch.bool)
    changed[0, 24] = changed[0, 0] = changed[0, 48] = True  # state 0: the object at 24 (centre); far places: 40 of 49
    changed[1, 10] = changed[1, 11] = True  # state 1: the object at 10; own peak 11
    changed[2] = True  # state 2: every place changes the action
    at, own, rand, games = [(0, 24), (1, 10), (2, 3)], np.array([24, 11, 5]), np.array([0, 30, 7]), [1, 1, 2]
    r = object_steering(changed, at, own, rand, games)
    grid = np.arange(49)
    assert (place_distance(grid, 24) >= FAR).sum() == 24  # the border ring of the 7x7 grid
    far0 = 2 / 24  # places 0 and 48 of the 24 far from the centre
    far1 = 0.0  # place 11 is next to place 10: not far
    assert r["states"] == 3 and r["games"] == 2
    assert r["on_object"][0] == pytest.approx((1 + 1) / 2 / 2 + 1 / 2)  # game 1: both states; game 2: one
    assert r["far"][0] == pytest.approx(((far0 + far1) / 2 + 1) / 2)
    assert r["own_peak"][0] == pytest.approx(((1 + 1) / 2 + 1) / 2)
    assert r["random_place"][0] == pytest.approx(((1 + 0) / 2 + 1) / 2)
    assert r["on_object_minus_random_place"][0] == pytest.approx(((0 + 1) / 2 + 0) / 2)
    assert r["on_object_minus_far"][0] == pytest.approx(((1 - far0 + 1 - far1) / 2 + 0) / 2)


# ----------------------------------------------------------------------------- through which path


@torch.no_grad()
def test_activation_patching_gives_each_policy_back_exactly_and_mixes_them_otherwise(demo, open_field_state):
    state = open_field_state
    obs = torch.as_tensor(np.stack([state["obs"], paint_background(state["obs"], stacked_boxes(state, "ball"))]))
    intact, removed = demo.activations(obs[:1].expand(2, -1, -1, -1)), demo.activations(obs)
    # batches of the same size: the same matrix products, bit for bit
    assert torch.equal(patched_logits(demo, intact, intact), intact["logits"])
    assert torch.equal(patched_logits(demo, removed, removed), removed["logits"])
    kept, alone = patched_logits(demo, removed, intact)[1], patched_logits(demo, intact, removed)[1]
    for mixed in (kept, alone):  # each mix is a third policy: neither the intact one nor the removal's
        assert kl_divergence(intact["logits"][1], mixed) > 1e-4 and kl_divergence(removed["logits"][1], mixed) > 1e-4
    expected = by_hand(demo, removed["features"][1:], intact["attention"][0].sum(0)[None])  # features masked by hand
    torch.testing.assert_close(kept[None], expected, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_the_shares_of_the_paths_are_the_kl_ratios_of_the_games_means(demo, states):
    intact = demo.activations(states)
    edited = demo.activations(states.flip(-1))  # the frames mirrored: an edit that moves everything
    games = [1] * 6 + [2] * 6
    r = attention_paths(demo, intact, edited, games, seed=0)
    kl = {k: kl_divergence(intact["logits"], q).numpy() for k, q in (
        ("full", edited["logits"]), ("kept", patched_logits(demo, edited, intact)),
        ("alone", patched_logits(demo, intact, edited)))}  # fmt: skip
    game_mean = {k: (v[:6].mean() + v[6:].mean()) / 2 for k, v in kl.items()}
    assert r["full"]["kl"][0] == pytest.approx(game_mean["full"], rel=1e-5)
    assert r["share_through_attention"]["value"] == pytest.approx(1 - game_mean["kept"] / game_mean["full"], rel=1e-5)
    assert r["share_attention_alone"]["value"] == pytest.approx(game_mean["alone"] / game_mean["full"], rel=1e-5)
    low, high = r["share_through_attention"]["interval"]
    assert low <= r["share_through_attention"]["value"] <= high


# ----------------------------------------------------------------------------- the location-matched control


def test_the_location_matched_control_lies_on_empty_playfield_and_changes_exactly_as_much(open_field_state):
    state, rng = open_field_state, np.random.default_rng(0)
    boxes = stacked_boxes(state, "ball")
    avoid = avoid_mask(state, ["ball", "paddle"])
    playfield = playfield_in_observation(PLAYFIELD["breakout"])
    assert playfield == (13, 5, 78, 79)  # rows 32-195 and columns 8-151 of the 210x160 frame, wholly
    empty = empty_playfield(state["obs"], avoid, playfield)
    removed = paint_background(state["obs"], boxes)
    for _ in range(5):
        targets = empty_control_boxes(state["obs"], boxes, empty, rng)
        offsets = {(t[0] - b[0], t[1] - b[1]) for t, b in zip(targets, boxes)}
        assert len(offsets) == 1 and next(iter(offsets))[0] == 0  # moved as one, at the ball's own height
        for k, (y0, x0, y1, x1) in enumerate(targets):
            grown = (slice(y0 - 1, y1 + 1), slice(x0 - 1, x1 + 1))
            assert (
                playfield[0] <= y0 - 1 and y1 + 1 <= playfield[2] and playfield[1] <= x0 - 1 and x1 + 1 <= playfield[3]
            )
            assert (state["obs"][:, grown[0], grown[1]] == 0).all()  # black in all 4 frames: no brick, wall, object
            assert not avoid[:, grown[0], grown[1]].any()  # 2 pixels or more from every object of every frame
        control = paste_change(state["obs"], removed, boxes, targets)
        assert (control != state["obs"]).sum() == (removed != state["obs"]).sum() > 0  # as many pixels
        change = lambda x: np.abs(x.astype(int) - state["obs"]).sum()  # noqa: E731
        assert change(control) == change(removed)  # by exactly as much
        inside = np.zeros_like(state["obs"], bool)
        for k, (y0, x0, y1, x1) in enumerate(targets):
            inside[k, y0:y1, x0:x1] = True
        assert not (control != state["obs"])[~inside].any()  # and nowhere else


# ----------------------------------------------------------------------------- the ball moved by the game


@pytest.fixture(scope="module")
def sampled(demo):
    """The states of one intact game of the demo agent (300 steps), as interventions.py samples them; its actions."""
    args = Args(checkpoint="-", games=1, max_steps=300, states=300, parts=("removal",))
    _, _, states, actions = head_ablation(demo, BREAKOUT, args, lambda *a, **k: None)
    return states, actions


def test_the_ball_moved_by_the_game_is_where_the_ram_says_in_every_stacked_frame(sampled):
    states, actions = sampled
    chosen = [s for s in states if s["objects"][-1]["ball"] is not None][::6]  # every 6th state showing the ball
    playfield = playfield_in_observation(PLAYFIELD["breakout"])
    empties = [empty_playfield(s["obs"], avoid_mask(s, ["ball", "paddle"]), playfield) for s in chosen]
    moved, work = replay_and_move(BREAKOUT, None, actions, chosen, "ball", empties, np.random.default_rng(0))
    assert len(moved) >= len(chosen) / 3 and work["replayed"] > 0  # most states move; bounces are left out
    env, saved = make_env(BREAKOUT), []  # the game replayed here, independently: the emulator before each step
    env.reset(seed=1)
    for action in actions[1]:
        saved.append(env.unwrapped.ale.cloneState())
        env.step(action)
    for i, (obs, (dy, dx)) in moved.items():
        state = chosen[i]
        old, new = state["objects"][-1]["ball"], shifted(state["objects"][-1]["ball"], dy, dx)
        assert place_distance(object_place(box_in_observation(old)), object_place(box_in_observation(new))) >= FAR
        for k, (objects, step) in enumerate(zip(state["objects"], state["steps"])):
            if objects is None or objects["ball"] is None:
                assert np.array_equal(obs[k], state["obs"][k])  # a frame without the ball stays as it was
                continue
            frame, rams = render_step(env, saved[step - 1], actions[1][step - 1], {99: dx, 101: dy})
            assert np.array_equal(frame, obs[k])
            # where the RAM says: play.py's box of the ball after the step, from the RAM of both pooled frames
            assert observed_boxes(BREAKOUT, rams)["ball"] == shifted(objects["ball"], dy, dx)
            # and where the pixels say: the new box lit on black, the old one darker (its pixels may share the light
            # of a brick or the paddle next to the ball), nothing else changed
            y0, x0, y1, x1 = box_in_observation(shifted(objects["ball"], dy, dx))
            a0, b0, a1, b1 = box_in_observation(objects["ball"])
            assert (obs[k][y0:y1, x0:x1] > 0).any() and not state["obs"][k][y0:y1, x0:x1].any()
            before, after = state["obs"][k][a0:a1, b0:b1].astype(int), obs[k][a0:a1, b0:b1].astype(int)
            assert (after <= before).all() and (after < before).any()
            elsewhere = np.ones((84, 84), bool)
            elsewhere[a0:a1, b0:b1] = elsewhere[y0:y1, x0:x1] = False
            assert np.array_equal(obs[k][elsewhere], state["obs"][k][elsewhere])
    env.close()


def test_a_replay_that_is_not_the_game_played_is_a_bug(sampled):
    states, actions = sampled
    chosen = [s for s in states if s["objects"][-1]["ball"] is not None and s["t"] > 50][:1]
    wrong = {1: [3 - a if a in (2, 3) else a for a in actions[1]]}  # RIGHT and LEFT swapped
    with pytest.raises(RuntimeError, match="replay of game 1 differs"):
        replay_and_move(BREAKOUT, None, wrong, chosen, "ball", [np.ones((84, 84), bool)], np.random.default_rng(0))


@pytest.mark.slow
def test_one_game_gives_no_error_bars_but_the_figures_and_tables_still_come(tiny_checkpoint, tmp_path, capsys):
    """With one game there is no standard error over games (nan in the JSON, and no bootstrap interval): the tables
    show the values alone, and the figure draws without error bars (an SB3 agent explained by every script plays
    one game)."""
    argv = ["--games", "1", "--max-steps", "40", "--states", "24", "--parts", "ablation", "removal", "--no-cuda"]
    report = cli(["--checkpoint", tiny_checkpoint, *argv, "--out", str(tmp_path / "o")])
    removed = report["removal"]["ball removed"]
    assert np.isnan(removed["kl_se"]) and removed["games"] == 1
    assert np.isnan(report["removal_paths"]["ball removed"]["share_through_attention"]["interval"]).all()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "(mean" not in line]
    assert any(line.startswith("| ball removed | ") for line in rows)
    assert not any("nan" in line or "±" in line for line in rows)  # the values alone
    assert os.path.getsize(os.path.join(report["out"], "removal.png")) > 0
