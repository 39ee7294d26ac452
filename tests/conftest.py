"""Shared fixtures: one tiny real training run (Breakout, 2 envs, 1 iteration) for every script's tests."""

import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ppo_attention import Args, train  # noqa: E402


def tiny_args(runs_dir, **kw) -> Args:
    """A real run small enough for a test: 2 envs x 32 steps per iteration."""
    base = dict(
        env_id="BreakoutNoFrameskip-v4",
        total_timesteps=64,
        num_envs=2,
        num_steps=32,
        num_minibatches=2,
        update_epochs=1,
        runs_dir=str(runs_dir),
        cuda=False,
    )
    base.update(kw)
    return Args(**base)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of a `run.pt` from a 64-step Breakout run with 2 attention heads."""
    return train(tiny_args(tmp_path_factory.mktemp("runs")))[0]


@pytest.fixture(scope="session")
def tiny_baseline_checkpoint(tmp_path_factory):
    """Path of a `run.pt` from a 64-step Breakout run of the plain Nature-CNN agent (no attention)."""
    return train(tiny_args(tmp_path_factory.mktemp("runs_base"), attn_heads=0))[0]


def assert_clean_error(result, *words):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in result.stderr, result.stderr


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
