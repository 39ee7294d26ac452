"""Tests of interventions.py: the edited forward pass against the network computed by hand (the agent's own maps,
uniform maps, removed heads, one-hot steering), the seeds of the ablation's games, the dataset examples' crops,
the command line end to end, an agent without attention, a CleanRL DQN, bad input."""

import collections
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents import load_checkpoint
from atari_env import ENV_OPTIONS
from cli import exit_on_bad_input
from interventions import (
    NEAREST_PLACE,
    EditedAgent,
    ablation_conditions,
    after_attention,
    avoid_mask,
    box_sums,
    control_boxes,
    crop,
    kl_divergence,
    main,
    object_place,
    on_input,
    paint_background,
    place_centre,
    stacked_boxes,
    stacked_objects,
    steer,
    top_examples,
    uniform_map,
)
from play import play

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BREAKOUT = "BreakoutNoFrameskip-v4"
DEMO = os.path.join(ROOT, "checkpoints", "breakout_coef0.002.pt")  # trained: edits move its policy a lot
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
    assert set(saved["removal"]) == {"ball removed", "control for ball", "paddle removed", "control for paddle"}
    assert saved["removal"]["paddle removed"]["states"] == len(saved["states"])  # the paddle is always there


def test_an_agent_without_attention_gets_the_examples_and_a_note(tiny_baseline_checkpoint, tmp_path, capsys):
    report = cli(["--checkpoint", tiny_baseline_checkpoint, *TINY, "--out", str(tmp_path / "o")])
    assert list(report["ablation"]) == ["intact"] and "steering" not in report
    assert "no maps to ablate (part 1) or steer (part 2)" in report["notes"][0]
    assert "no attention module" in capsys.readouterr().out
    assert set(report["examples"]) == {"conv3", "heads"} and not report["examples"]["heads"]
    assert not os.path.exists(os.path.join(report["out"], "ablation.png"))
    assert "head0_mass_shifted" not in report["removal"]["ball removed"]  # no attention to move: the KL only
    assert report["removal"]["control for ball"]["kl_mean"] >= 0


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
    assert set(removal) == {"ball removed", "control for ball", "paddle removed", "control for paddle"}
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
