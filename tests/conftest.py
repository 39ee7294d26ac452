"""Shared fixtures: one tiny real training run (Breakout, 2 envs, 1 iteration) for every script's tests, and
networks in the layouts of CleanRL's agents (agents trained elsewhere, see play.load_checkpoint)."""

import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from ppo_attention import Args, ppo_loss, train  # noqa: E402


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


def ppo_loss_on_rows(newlogprob, entropy, newvalue, attn_entropy, minibatch: dict, args: Args) -> tuple:
    """ppo_loss of a minibatch given as a dict of its (N,) rollout tensors (logprobs, advantages, returns, values),
    its rows scattered in reverse order over a batch twice as large whose other rows hold 99, as the training loop's
    shuffled mb_inds scatter them: the loss must read the batch at mb_inds."""
    n = len(newlogprob)
    mb_inds = torch.arange(2 * n - 1, 0, -2)  # (N,): rows 2N - 1, 2N - 3, ..., 1
    rollout = [minibatch[k].detach().float() for k in ("logprobs", "advantages", "returns", "values")]
    batch = [torch.full((2 * n,), 99.0).index_copy(0, mb_inds, v) for v in rollout]  # b_logprobs, ..., b_values
    return ppo_loss(newlogprob, entropy, newvalue, attn_entropy, *batch, mb_inds, args)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of a `run.pt` from a 64-step Breakout run with 2 attention heads."""
    return train(tiny_args(tmp_path_factory.mktemp("runs")))[0]


@pytest.fixture(scope="session")
def tiny_baseline_checkpoint(tmp_path_factory):
    """Path of a `run.pt` from a 64-step Breakout run of the plain Nature-CNN agent (no attention)."""
    return train(tiny_args(tmp_path_factory.mktemp("runs_base"), attn_heads=0))[0]


# ----------------------------------------------------------------------------- agents in CleanRL's layouts


class CleanRLPPOAgent(nn.Module):
    """The layout of CleanRL's ppo_atari.py Agent (written here for the tests): network, actor, critic."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
        )  # fmt: skip
        self.actor, self.critic = nn.Linear(512, n_actions), nn.Linear(512, 1)

    def forward(self, x):  # (logits, value), as get_action_and_value computes them
        hidden = self.network(x / 255.0)
        return self.actor(hidden), self.critic(hidden)


class CleanRLQNetwork(nn.Module):
    """The layout of CleanRL's dqn_atari.py QNetwork (written here for the tests): network.0 to network.9."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
            nn.Linear(512, n_actions),
        )  # fmt: skip

    def forward(self, x):
        return self.network(x / 255.0)


def with_trained_scale(network: nn.Module) -> nn.Module:
    """Weights of a trained agent's size (the default init gives logits near 0, where any mapping looks right)."""
    torch.manual_seed(0)
    for p in network.parameters():
        nn.init.normal_(p, std=0.05)
    return network


def cleanrl_init(network: nn.Module) -> nn.Module:
    """CleanRL's orthogonal init (gain sqrt 2) of every layer: decisions that move when the frames change."""
    for layer in network.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(layer.weight, 2**0.5)
    return network


@pytest.fixture(scope="session")
def cleanrl_dqn(tmp_path_factory):
    """Path of a `.cleanrl_model` (dqn_atari.py --save-model's file) whose name and folder do not name its game:
    the scripts need --env-id BreakoutNoFrameskip-v4."""
    path = tmp_path_factory.mktemp("cleanrl") / "dqn_atari.cleanrl_model"
    torch.manual_seed(2)  # seed 2: Q-values whose greedy action changes on some states when an object is taken away
    torch.save(cleanrl_init(CleanRLQNetwork(4)).state_dict(), path)
    return str(path)


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
