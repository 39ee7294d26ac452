"""Shared fixtures: one tiny real training run (Breakout, 2 envs, 1 iteration) for every script's tests."""

import os
import sys

import pytest

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
