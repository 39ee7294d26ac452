"""The demo agents shipped in checkpoints/: they load, say what they are, and differ as rl-attention says."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from agents import load_checkpoint
from play import play
from ppo_attention import attention_entropy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "checkpoints", "*.pt")))
BREAKOUT = [p for p in SHIPPED if os.path.basename(p).startswith("breakout_")]
# <game>_coef<the coefficient, as --attn-coef takes it>.pt: the game, its env id and its action set
GAMES = {
    "breakout": ("BreakoutNoFrameskip-v4", ["NOOP", "FIRE", "RIGHT", "LEFT"]),
    "pong": ("PongNoFrameskip-v4", ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]),
}


def by_coef() -> dict:
    """{attention coefficient: path} of the shipped Breakout agents."""
    return {torch.load(p, weights_only=True)["args"]["attn_coef"]: p for p in BREAKOUT}


def test_two_breakout_agents_are_shipped_one_without_and_one_with_the_penalty():
    coefs = by_coef()
    assert len(BREAKOUT) == 2 and 0.0 in coefs and any(c > 0 for c in coefs), BREAKOUT


def test_a_pong_agent_with_rl_attentions_coefficient_is_shipped():
    others = [os.path.basename(p) for p in SHIPPED if p not in BREAKOUT]
    assert others == ["pong_coef5e-4.pt"], others


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_a_shipped_checkpoint_loads_and_names_its_game_and_coefficient(path):
    assert os.path.getsize(path) <= 8 * 2**20
    raw = torch.load(path, weights_only=True)
    assert "optimizer" not in raw  # weights and metadata only
    agent, meta = load_checkpoint(path)
    game, coef_in_name = os.path.basename(path).removesuffix(".pt").split("_coef")
    env_id, action_names = GAMES[game]
    assert meta["env_id"] == env_id and meta["action_names"] == action_names and meta["attn_heads"] == 2
    assert meta["global_step"] >= 1_000_000
    assert float(coef_in_name) == raw["args"]["attn_coef"]


@pytest.mark.slow
def test_the_penalised_agent_looks_more_sharply_over_three_games():
    coefs = by_coef()
    entropy = {}
    for coef, path in coefs.items():
        agent, meta = load_checkpoint(path)
        per_step = [
            attention_entropy(step.activations["attn_logits"].float())[0].sum().item()
            for seed in (1, 2, 3)
            for step in play(agent, meta["env_id"], seed=seed, max_steps=150)
        ]
        entropy[coef] = np.mean(per_step)
    penalised = max(coefs)
    assert entropy[penalised] < entropy[0.0], entropy


@pytest.mark.slow
def test_resuming_a_shipped_agent_is_refused_with_one_sentence(tmp_path):
    out = subprocess.run(
        [sys.executable, "ppo_attention.py", "--resume", SHIPPED[0], "--runs-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "no optimiser state" in out.stderr and len(out.stderr.strip().splitlines()) == 1
