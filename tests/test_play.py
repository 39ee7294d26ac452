"""Tests of play.py: the single game against training's vector env, the play loop, loading checkpoints,
the agent's input contract, the line between a usage error and a bug, and the statistics over played games
(against scipy, plain loops and hand numbers)."""

import os
import subprocess
import sys

import ale_py
import gymnasium as gym
import numpy as np
import pytest
import torch
from ale_py.vector_env import AtariVectorEnv
from conftest import ROOT, bad_checkpoints
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from agents import load_checkpoint
from atari_env import FireAndNoopReset, make_env
from cli import UsageError, exit_on_bad_input, pick_device
from play import (
    bootstrap_over_games,
    box_in_observation,
    mean_and_se,
    mean_and_se_over_games,
    object_boxes,
    play,
    plus_minus,
)
from ppo_attention import Agent

FIRE = 1  # Breakout's


def test_single_env_matches_training_env_pixel_for_pixel():
    """make_env (gymnasium wrappers) feeds the agent what AtariVectorEnv fed it in training, through lost
    lives: the vector env with the training loop's rule (FIRE on the step after a lost life) and make_env
    (which presses FIRE itself and marks that step) agree frame for frame over a whole game."""
    from ale_py.vector_env import AtariVectorEnv

    venv = AtariVectorEnv(
        "breakout", 1, autoreset_mode="SameStep", noop_max=0, life_loss_info=True, reward_clipping=False
    )
    vobs, info = venv.reset(seed=3)
    lives, fire_next = info["lives"].copy(), np.zeros(1, bool)
    env = make_env("BreakoutNoFrameskip-v4", noop_max=0)
    obs, _ = env.reset(seed=3)
    rng, forced_steps = np.random.default_rng(0), 0
    for _ in range(3000):
        assert np.array_equal(vobs[0], obs)
        a = int(rng.integers(4))
        vobs, vr, term, trunc, info = venv.step(np.array([FIRE if fire_next[0] else a]))
        obs, r, terminated, truncated, env_info = env.step(a)
        assert vr[0] == r and env_info["forced"] == fire_next[0]
        forced_steps += env_info["forced"]
        fire_next, lives = term & (info["lives"] < lives), info["lives"].copy()
        if terminated or truncated:
            break
    assert terminated and forced_steps == 4  # a whole game: 5 lives, FIRE pressed after each of the first 4
    assert env.render().shape == (210, 160, 3)


def test_after_a_lost_life_the_game_presses_fire():
    """Breakout's ball waits for FIRE after a lost life: NOOPs alone change nothing, make_env's next step fires."""
    env = make_env("BreakoutNoFrameskip-v4", seed=0, noop_max=0)
    env.reset(seed=0)
    lives = env.unwrapped.ale.lives()
    while env.unwrapped.ale.lives() == lives:  # lose a life by standing still
        obs, _, _, _, info = env.step(0)
    obs, _, _, _, info = env.step(0)
    assert info["forced"]  # the step after the lost life: FIRE, whatever the agent chose
    after_fire = [env.step(0)[0][-1] for _ in range(5)]
    assert not np.array_equal(after_fire[0], after_fire[-1])  # the ball moves

    still = make_env("BreakoutNoFrameskip-v4", seed=0, noop_max=0).unwrapped  # the raw game (one frame a step)
    still.reset(seed=0)
    still.step(FIRE)
    while still.ale.lives() == lives:
        still.step(0)
    frames = [still.step(0)[0] for _ in range(240)]  # 60 agent steps of NOOP after the lost life: nothing moves
    assert all(np.array_equal(frames[0], f) for f in frames)


def test_load_checkpoint_refuses_bad_files_with_one_sentence(tmp_path, tiny_checkpoint):
    for name, (path, words) in bad_checkpoints(tmp_path, tiny_checkpoint).items():
        with pytest.raises(UsageError, match=words):
            load_checkpoint(str(path))


@pytest.mark.slow
def test_a_folder_without_run_pt_lists_the_agent_files_in_it(tmp_path, tiny_checkpoint):
    """--checkpoint checkpoints/: not "checkpoints/run.pt does not exist" but the files it could have meant."""
    for name in ("b.pt", "a.zip", "dqn.cleanrl_model", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.pt").mkdir()  # a folder, not a file
    with pytest.raises(UsageError) as refused:
        load_checkpoint(str(tmp_path))
    files = ", ".join(str(tmp_path / f) for f in ("a.zip", "b.pt", "dqn.cleanrl_model"))
    folder = f"'{tmp_path}' is a folder without a run.pt (a run folder of ppo_attention.py)"
    assert str(refused.value) == f"{folder}; give one of its files: {files}."
    with pytest.raises(UsageError, match="is a folder without a run.pt .* no .pt, .zip or .cleanrl_model file"):
        load_checkpoint(str(tmp_path / "sub.pt"))
    load_checkpoint(os.path.dirname(tiny_checkpoint))  # a run folder loads its run.pt
    result = subprocess.run(  # the shipped agents' folder, as a newcomer types it
        [sys.executable, "saliency.py", "--checkpoint", "checkpoints/"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "'checkpoints/' is a folder" in result.stderr and "checkpoints/breakout_coef0.pt" in result.stderr


def test_play_is_seeded_and_greedy_is_deterministic(tiny_checkpoint):
    agent, meta = load_checkpoint(tiny_checkpoint)
    runs = [[(s.action, s.score) for s in play(agent, meta["env_id"], seed=5, max_steps=40)] for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 40
    other = [(s.action, s.score) for s in play(agent, meta["env_id"], seed=6, max_steps=40)]
    assert other != runs[0]
    for step in play(agent, meta["env_id"], seed=5, greedy=True, max_steps=20):
        assert step.action == int(np.argmax(step.probs)) or step.forced
        assert step.obs.shape == (4, 84, 84) and step.frame.shape == (210, 160, 3) and step.attention.shape == (2, 7, 7)
        assert step.probs.sum() == pytest.approx(1, abs=1e-5) and step.activations["fc"].shape == (1, 512)


def test_play_reports_forced_fire_and_running_score(tiny_checkpoint):
    agent, meta = load_checkpoint(tiny_checkpoint)
    steps = list(play(agent, meta["env_id"], seed=2))
    assert steps[-1].score == sum(s.reward for s in steps) and [s.t for s in steps] == list(range(len(steps)))
    forced = [s for s in steps if s.forced]
    assert len(forced) == 4 and all(s.action == FIRE for s in forced)  # a whole game of Breakout: 5 lives


def test_reset_presses_the_emulators_fire_and_noop_where_action_0_is_fire():
    """Backgammon's action set starts with FIRE and has no NOOP: the reset must not press action 0 as a no-op."""
    env = make_env("ALE/Backgammon-v5", noop_max=30)
    assert env.unwrapped.get_action_meanings()[0] == "FIRE"
    pressed, ale = [], env.unwrapped.ale

    class Recorder:  # the emulator, with every button press recorded
        def __getattr__(self, name):
            return getattr(ale, name)

        def act(self, action, *a):
            pressed.append(action)
            return ale.act(action, *a)

    env.unwrapped.ale = Recorder()
    for seed in range(3):
        pressed.clear()
        env.reset(seed=seed)
        assert pressed[0] == ale_py.Action.FIRE and set(pressed[1:]) <= {ale_py.Action.NOOP}


def test_backgammon_start_matches_the_vector_env_pixel_for_pixel():
    """With no no-ops, both press the emulator's FIRE once at reset (sticky actions off to compare)."""
    venv = AtariVectorEnv("backgammon", 1, noop_max=0, repeat_action_probability=0.0, autoreset_mode="SameStep")
    vobs, _ = venv.reset(seed=0)
    env = gym.make("ALE/Backgammon-v5", frameskip=1, repeat_action_probability=0.0)
    env = FrameStackObservation(AtariPreprocessing(FireAndNoopReset(env, 0), noop_max=0, frame_skip=4), 4, padding_type="zero")  # fmt: skip
    obs, _ = env.reset(seed=0)
    for action in [0, 1, 2, 0, 2]:
        assert np.array_equal(vobs[0], obs)
        vobs, *_ = venv.step(np.array([action]))
        obs, *_ = env.step(action)


BREAKOUT_RED = (200, 72, 72)  # the ball and the paddle (and the top row of bricks, which these checks leave out)
PLAYFIELD = (slice(93, 193), slice(8, 152))  # below the bricks, between the walls, down to the paddle's last row


def test_breakout_objects_from_ram_are_exactly_the_red_pixels_of_every_frame_of_a_game(tiny_checkpoint):
    """Over a whole game, from below the bricks to the paddle's last row (nothing else there has their colour):
    the ball's and paddle's boxes read from the RAM cover exactly the pixels of their colour in the colour frame,
    walls and overlaps included. (Below the paddle the ball shows 2 or 4 of its rows as it leaves.) In the
    observation, every lit pixel below the bricks is inside the boxes of the two max-pooled frames
    (`Step.objects`, mapped by box_in_observation), and a box above the paddle holds a lit pixel."""
    agent, meta = load_checkpoint(tiny_checkpoint)
    steps = ball_seen = 0
    for step in play(agent, meta["env_id"], seed=4):
        boxes = object_boxes(meta["env_id"], step.ram[1])  # ram[1]: the colour frame's emulator frame
        expected = np.zeros((210, 160), bool)
        for box in boxes.values():
            if box is not None:
                expected[box[0] : box[2], box[1] : box[3]] = True
        red = np.all(step.frame == BREAKOUT_RED, axis=-1)
        assert np.array_equal(red[PLAYFIELD], expected[PLAYFIELD]), (step.t, boxes)
        ball_seen += boxes["ball"] is not None and expected[PLAYFIELD].sum() > 64  # more than the paddle's 16x4
        lit, inside = step.obs[-1] > 0, np.zeros((84, 84), bool)
        for box in step.objects.values():
            if box is not None:
                y0, x0, y1, x1 = box_in_observation(box)
                inside[y0:y1, x0:x1] = True
                if 93 <= box[0] and box[2] <= 193:  # below the bricks, not leaving the screen: it shows
                    assert lit[y0:y1, x0:x1].any(), (step.t, box)
        assert not (lit & ~inside)[38:, 5:79].any(), step.t  # rows 38+: below the bricks (93 * 84 / 210 = 37.2)
        steps += 1
    assert steps > 150 and step.ram.shape == (2, 128) and ball_seen > 50  # a whole game, the ball checked often


def test_object_boxes_read_the_documented_addresses_and_map_into_the_observation():
    ram = np.zeros(128, np.uint8)
    ram[99], ram[101], ram[72] = 49 + 30, 100 - 9, 47 + 60
    assert object_boxes("BreakoutNoFrameskip-v4", ram) == {"ball": (100, 30, 104, 32), "paddle": (189, 60, 193, 76)}
    ram[99], ram[101], ram[72] = 49 + 7, 194 - 9, 47 + 144
    assert object_boxes("ALE/Breakout-v5", ram) == {"ball": (194, 8, 196, 9), "paddle": (189, 144, 193, 152)}  # walls
    ram[101] = 0
    assert object_boxes("ALE/Breakout-v5", ram)["ball"] is None  # off the screen
    assert object_boxes("PongNoFrameskip-v4", ram) == {}  # not checked against its frames: not known
    # AtariPreprocessing's area resize: frame rows y -> y * 84 / 210, columns x -> x * 84 / 160
    assert box_in_observation((100, 30, 104, 32)) == (40, 15, 42, 17)
    assert box_in_observation((0, 0, 210, 160)) == (0, 0, 84, 84)
    assert box_in_observation((100, 30, 104, 32), margin=3) == (37, 12, 45, 20)
    assert box_in_observation((1, 1, 3, 3), margin=5) == (0, 0, 7, 7)  # clipped to the image


def test_the_agent_refuses_unscaled_float_frames():
    agent = Agent(4, 2)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert torch.allclose(agent(frames)[0], agent(frames.float() / 255)[0], atol=1e-5)
    with pytest.raises(ValueError, match=r"uint8 or float frames / 255 in \[0, 1\], not torch.float32 up to 255"):
        agent(frames.float())
    with pytest.raises(ValueError, match="not torch.int64"):
        agent(frames.long())
    noisy = frames.float() / 255 + 0.3  # saliency's noisy copies go through the unchecked pass
    assert agent.activations(noisy, check=False)["logits"].shape == (2, 4)


@pytest.mark.slow
def test_a_usage_error_is_one_line_and_a_bug_keeps_its_traceback(capsys):
    def bad_input(argv):
        raise UsageError("--steps must be positive, got 0.")

    with pytest.raises(SystemExit) as stopped:
        exit_on_bad_input(bad_input)
    assert stopped.value.code == "error: --steps must be positive, got 0."

    def bug(argv):
        np.zeros(3).reshape(2, 2)  # a real ValueError deep inside

    with pytest.raises(ValueError, match="reshape"):
        exit_on_bad_input(bug)
    code = "import cli, numpy\ncli.exit_on_bad_input(lambda argv: numpy.zeros(3).reshape(2, 2))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" in result.stderr and "reshape" in result.stderr


def test_pick_device_sets_the_cpu_threads_only_when_asked():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert pick_device(False).type == "cpu" and torch.get_num_threads() == 3  # 0: left as it is
        assert pick_device(False, threads=1).type == "cpu" and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- statistics over played games


def test_mean_and_standard_error_match_scipy_and_one_value_has_no_error():
    stats = pytest.importorskip("scipy.stats")
    values = np.array([0.3, 1.2, 0.7, 0.9, 2.0])
    assert mean_and_se(values) == pytest.approx((values.mean(), stats.sem(values)))
    mean, se = mean_and_se([0.4])
    assert mean == 0.4 and np.isnan(se)  # fewer than 2: nan, as over games


def test_standard_errors_over_games_match_a_plain_loop_and_hand_numbers():
    values, games = np.array([1.0, 3.0, 2.0, 6.0, 4.0, 8.0]), np.array([0, 0, 1, 1, 2, 2])
    means = [2.0, 4.0, 6.0]  # equal games: the sd of the game means / sqrt(3) = 2 / sqrt(3)
    assert mean_and_se(values, games) == pytest.approx((4.0, np.std(means, ddof=1) / np.sqrt(3)))
    assert mean_and_se(values, games)[1] == pytest.approx(2 / np.sqrt(3))
    unequal, groups = np.array([1.0, 2.0, 3.0, 10.0, 0.0]), np.array([7, 7, 7, 9, 4])
    mean, total = unequal.mean(), 0.0  # the cluster-robust variance written out as a loop
    for g in set(groups.tolist()):
        total += sum(v - mean for v, h in zip(unequal, groups) if h == g) ** 2
    G = 3
    assert mean_and_se(unequal, groups) == pytest.approx((3.2, np.sqrt(G / (G - 1) * total) / 5))
    assert mean_and_se(unequal, groups)[1] == pytest.approx(
        np.sqrt(1.5 * (3.6**2 + 6.8**2 + 3.2**2)) / 5
    )  # -3.6, 6.8, -3.2
    assert np.isnan(mean_and_se([1.0, 2.0], [3, 3])[1])  # one game says nothing of the next
    assert mean_and_se(values, np.arange(6)) == pytest.approx(mean_and_se(values))  # one state a game: iid


def test_the_error_over_games_is_that_of_the_games_means_by_hand():
    # game 7 gives three states (1, 2, 3: mean 2), game 9 one (10): the mean of the two means is 6, and their
    # standard error sqrt(((2 - 6)^2 + (10 - 6)^2) / 1) / sqrt(2) = 4. Over the 4 states it would be 2.04.
    assert mean_and_se_over_games([1, 2, 3, 10], [7, 7, 7, 9]) == pytest.approx((6.0, 4.0, 2))
    rng = np.random.default_rng(3)
    values, games = rng.normal(size=40), rng.integers(0, 6, 40)
    means = []  # a plain loop over the games
    for g in sorted(set(games.tolist())):
        means.append(sum(v for v, h in zip(values, games) if h == g) / sum(1 for h in games if h == g))
    se = (sum((m - sum(means) / len(means)) ** 2 for m in means) / (len(means) - 1)) ** 0.5 / len(means) ** 0.5
    assert mean_and_se_over_games(values, games) == pytest.approx((sum(means) / len(means), se, len(means)))
    assert np.isnan(mean_and_se_over_games([1.0, 2.0], [4, 4])[1])  # one game: no error to give


def test_the_two_estimates_over_games_agree_when_games_give_as_many_states():
    """Every state weighing the same (mean_and_se with games) and every game weighing the same
    (mean_and_se_over_games) are one estimate when each game gives the same number of states, and not otherwise."""
    rng = np.random.default_rng(5)
    values, games = rng.normal(size=30), np.repeat([4, 1, 7, 2, 9], 6)
    assert mean_and_se(values, games) == pytest.approx(mean_and_se_over_games(values, games)[:2])
    assert mean_and_se([1, 2, 3, 10], [7, 7, 7, 9])[0] == 4.0  # the states' mean; the games' means' mean is 6


def test_the_cluster_bootstrap_resamples_whole_games_as_a_plain_loop_does():
    rng = np.random.default_rng(4)
    games = rng.integers(0, 5, 30)
    columns = dict(part=rng.uniform(0, 1, 30), whole=rng.uniform(1, 2, 30))
    statistic = lambda m: m["part"].mean() / m["whole"].mean()  # noqa: E731
    low, high = bootstrap_over_games(statistic, columns, games, resamples=500, seed=9)
    ids = sorted(set(games.tolist()))
    part = [np.mean(columns["part"][games == g]) for g in ids]
    whole = [np.mean(columns["whole"][games == g]) for g in ids]
    draws = np.random.default_rng(9).integers(0, len(ids), (500, len(ids)))
    values = [sum(part[i] for i in d) / sum(whole[i] for i in d) for d in draws]
    assert (low, high) == pytest.approx(tuple(np.quantile(values, [0.025, 0.975])))
    assert low < statistic(dict(part=np.array(part), whole=np.array(whole))) < high
    same = bootstrap_over_games(statistic, dict(part=[1.0, 1.0, 3.0, 3.0], whole=[2.0, 2.0, 6.0, 6.0]), [0, 0, 1, 1])
    assert same == pytest.approx((0.5, 0.5))  # every game gives the same ratio: no spread
    one = bootstrap_over_games(statistic, dict(part=[1.0, 3.0], whole=[2.0, 2.0]), [6, 6])
    assert np.isnan(one).all()  # one game: no interval, as no standard error


def test_a_table_shows_the_value_alone_where_there_is_no_error():
    assert plus_minus(0.12345, 0.0042) == "0.123 ± 0.004"
    assert plus_minus(12.3, 3.04, 0, unit="%") == "12% ± 3%"
    assert plus_minus(1.234e-4, 3e-5, 1, notation="e") == "1.2e-04 ± 3.0e-05"
    assert plus_minus(0.12345, float("nan")) == "0.123" and plus_minus(50, float("nan"), 0, unit="%") == "50%"
    assert plus_minus(*mean_and_se([2.0], [1]), 2) == "2.00"  # one game: the mean alone
