"""Tests of ppo_attention.py: the attention math, real tiny training runs, checkpoints, resume, bad input."""

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, tiny_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ppo_attention import (
    Agent,
    CheckpointError,
    attention_entropy,
    load_checkpoint,
    make_env,
    read_checkpoint,
    train,
)

TINY = ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1", "--no-cuda"]


def run_script(*argv, timeout=600):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "ppo_attention.py"), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def scalars(run_dir, tag):
    ea = EventAccumulator(str(run_dir))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


# ----------------------------------------------------------------------------- math


def test_entropy_uniform_maps_give_heads_times_ln49():
    logits = torch.zeros(3, 2, 7, 7)
    assert torch.allclose(attention_entropy(logits), torch.full((3, 2), math.log(49)), atol=1e-6)


def test_entropy_one_hot_map_gives_zero():
    logits = torch.full((1, 2, 7, 7), -1e4)
    logits[0, 0, 3, 4] = logits[0, 1, 0, 6] = 1e4
    assert torch.allclose(attention_entropy(logits), torch.zeros(1, 2), atol=1e-6)


def test_entropy_equals_direct_computation():
    logits = torch.randn(5, 3, 7, 7, generator=torch.Generator().manual_seed(0)) * 3
    p = torch.exp(logits.flatten(2)) / torch.exp(logits.flatten(2)).sum(-1, keepdim=True)
    direct = -(p * torch.log(p)).sum(-1)
    assert torch.allclose(attention_entropy(logits), direct, atol=1e-5)


def test_agent_shapes_and_attention_is_a_distribution_per_head():
    torch.manual_seed(0)
    agent = Agent(n_actions=6, attn_heads=3)
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    logits, value, attention = agent(obs)
    assert logits.shape == (5, 6) and value.shape == (5, 1) and attention.shape == (5, 3, 7, 7)
    assert (attention >= 0).all()
    assert torch.allclose(attention.sum((2, 3)), torch.ones(5, 3), atol=1e-5)
    acts = agent.activations(obs)
    expected = {"conv1": (32, 20, 20), "conv2": (64, 9, 9), "conv3": (64, 7, 7), "features": (64, 7, 7)}
    expected.update(attn_hidden=(512, 7, 7), attn_logits=(3, 7, 7), masked=(64, 7, 7))
    for name, shape in expected.items():
        assert acts[name].shape == (5, *shape), name
    # features are unit vectors over the channels at each place; uint8 and [0,1] float input agree
    assert torch.allclose(acts["features"].norm(dim=1), torch.ones(5, 7, 7), atol=1e-4)
    assert torch.allclose(agent(obs.float() / 255)[0], logits, atol=1e-5)


def test_baseline_agent_has_no_attention_module():
    agent = Agent(n_actions=4, attn_heads=0)
    assert not any("attn" in k for k in agent.state_dict())
    logits, value, attention = agent(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (2, 4) and attention.shape == (2, 0, 7, 7)
    assert attention_entropy(agent.activations(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))["attn_logits"]).shape == (
        2,
        0,
    )


def test_single_env_matches_training_env_pixel_for_pixel():
    """make_env (gymnasium wrappers) feeds the agent what AtariVectorEnv fed it in training."""
    from ale_py.vector_env import AtariVectorEnv

    venv = AtariVectorEnv(
        "breakout", 1, autoreset_mode="SameStep", noop_max=0, use_fire_reset=True, reward_clipping=False
    )
    vobs, _ = venv.reset(seed=3)
    env = make_env("BreakoutNoFrameskip-v4", noop_max=0)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(150):
        assert np.array_equal(vobs[0], obs)
        a = int(rng.integers(4))
        vobs, vr, *_ = venv.step(np.array([a]))
        obs, r, terminated, truncated, _ = env.step(a)
        assert vr[0] == r
        if terminated or truncated:
            break
    assert env.render().shape == (210, 160, 3)


@pytest.mark.parametrize("env_id, n_actions, sticky", [("PongNoFrameskip-v4", 6, 0.0), ("ALE/Breakout-v5", 4, 0.25)])
def test_common_ids_give_training_and_single_envs(env_id, n_actions, sticky):
    from ppo_attention import make_vector_env, resolve_atari_id

    assert resolve_atari_id(env_id)["repeat_action_probability"] == sticky
    envs = make_vector_env(env_id, 2)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8 and envs.single_action_space.n == n_actions
    env = make_env(env_id)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and env.action_space.n == n_actions


# ----------------------------------------------------------------------------- training end to end


def test_tiny_run_writes_loadable_checkpoint_and_attention_logs(tiny_checkpoint):
    agent, meta = load_checkpoint(tiny_checkpoint)
    assert not agent.training
    assert meta["env_id"] == "BreakoutNoFrameskip-v4" and meta["n_actions"] == 4
    assert meta["action_names"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert meta["global_step"] == 64 and meta["args"]["attn_coef"] == 5e-4
    ckpt = torch.load(tiny_checkpoint, weights_only=True)  # the contract: plain weights_only load
    assert "optimizer" in ckpt and ckpt["format_version"] == 1
    run_dir = os.path.dirname(tiny_checkpoint)
    entropy = scalars(run_dir, "losses/attention_entropy")
    assert [s for s, _ in entropy] == [64] and 0 < entropy[0][1] <= 2 * math.log(49) + 1e-4
    assert len(scalars(run_dir, "losses/attention_entropy_head1")) == 1
    for tag in ("charts/SPS", "losses/value_loss", "losses/approx_kl", "losses/explained_variance"):
        assert scalars(run_dir, tag)


def test_baseline_run_loads(tiny_baseline_checkpoint):
    agent, meta = load_checkpoint(tiny_baseline_checkpoint)
    assert meta["attn_heads"] == 0 and agent.attn_heads == 0


def test_same_seed_gives_same_losses(tmp_path):
    runs = [train(tiny_args(tmp_path / f"s{i}", total_timesteps=64))[0] for i in range(2)]
    a, b = (torch.load(p, weights_only=True)["model"] for p in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [scalars(os.path.dirname(p), "losses/value_loss") for p in runs]
    assert losses[0] == losses[1]


def test_penalty_lowers_attention_entropy(tmp_path):
    final = {}
    for coef in (0.0, 1.0):
        path, _ = train(tiny_args(tmp_path / str(coef), total_timesteps=256, update_epochs=2, attn_coef=coef))
        final[coef] = scalars(os.path.dirname(path), "losses/attention_entropy")[-1][1]
    assert final[1.0] < final[0.0] - 0.03, final


def test_ctrl_c_saves_and_resume_reaches_total(tmp_path):
    total = 64 * 40
    proc = subprocess.Popen(
        [sys.executable, "ppo_attention.py", *TINY, "--total-timesteps", str(total), "--runs-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:  # wait until training is under way
        if line.startswith("step"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (run_dir,) = [p for p in tmp_path.iterdir()]
    ckpt_path = run_dir / "run.pt"
    saved = read_checkpoint(str(ckpt_path))
    stopped_at = saved["global_step"]
    assert 0 < stopped_at < total and stopped_at % 64 == 0 and saved["iteration"] * 64 == stopped_at
    load_checkpoint(str(ckpt_path))  # complete and loadable

    resumed = run_script("--resume", str(ckpt_path))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run_dir.name} at step {stopped_at:,}" in resumed.stdout
    final = read_checkpoint(str(ckpt_path))
    assert final["global_step"] == total and final["iteration"] == 40
    steps = [s for s, _ in scalars(run_dir, "charts/learning_rate")]
    assert steps == sorted(steps) and steps[-1] == total and len(steps) == 40  # the counter continued, no gap
    lr = dict(scalars(run_dir, "charts/learning_rate"))
    assert lr[total] == pytest.approx(2.5e-4 / 40, rel=1e-4)  # the schedule continued too


# ----------------------------------------------------------------------------- bad input


def assert_clean_error(result, *words):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in result.stderr, result.stderr


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--env-id", "BreakoutNoFrameskp-v4"], ["unknown environment", "BreakoutNoFrameskip-v4"]),
        (["--env-id", "CartPole-v1"], ["not an Atari game"]),
        (["--total-timesteps", "0"], ["less than one batch"]),
        (["--total-timesteps", "10"], ["less than one batch"]),
        (["--attn-coef", "-0.1"], ["--attn-coef"]),
        (["--num-minibatches", "3"], ["does not divide"]),
        (["--num-envs", "0"], ["--num-envs"]),
    ],
)
def test_bad_flags(argv, words, tmp_path):
    result = run_script(*TINY, "--runs-dir", str(tmp_path), *argv)
    assert_clean_error(result, *words)
    assert not any(tmp_path.iterdir())  # nothing written


def test_unwritable_run_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    result = run_script(*TINY, "--total-timesteps", "64", "--runs-dir", str(blocker / "runs"))
    assert_clean_error(result, "cannot write the run folder")
    assert blocker.read_text() == "keep me"


def bad_checkpoints(tmp_path, good):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(open(good, "rb").read()[:5000])
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    mismatched = tmp_path / "mismatched.pt"
    ckpt = torch.load(good, weights_only=True)
    ckpt["model"]["fc.weight"] = torch.zeros(7, 7)
    torch.save(ckpt, mismatched)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format_version": 1, "model": {}, "evil": subprocess.CompletedProcess("x", 0)}, pickled)
    return {
        "missing": (tmp_path / "nope.pt", "does not exist"),
        "garbage": (garbage, "not a readable checkpoint"),
        "truncated": (truncated, "not a readable checkpoint"),
        "other": (other, "not a checkpoint written by ppo_attention.py"),
        "mismatched": (mismatched, "does not match the Agent architecture"),
        "pickled": (pickled, "pickled Python objects"),
    }


def test_load_checkpoint_refuses_bad_files_with_one_sentence(tmp_path, tiny_checkpoint):
    for name, (path, words) in bad_checkpoints(tmp_path, tiny_checkpoint).items():
        with pytest.raises(CheckpointError, match=words):
            load_checkpoint(str(path))


def test_resume_refuses_bad_files_and_leaves_them_alone(tmp_path, tiny_checkpoint):
    for name, (path, words) in bad_checkpoints(tmp_path, tiny_checkpoint).items():
        before = path.read_bytes() if path.exists() else None
        result = run_script("--resume", str(path), "--no-cuda")
        assert_clean_error(result, words)
        assert (path.read_bytes() if path.exists() else None) == before, name
