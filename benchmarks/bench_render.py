"""Benchmark of render.py: agent steps per second written to the MP4, for each overlay.

Everything `render.main` does is timed (load the checkpoint, play each game once, draw and encode
H.264), divided by the number of frames written. Without --checkpoint a tiny checkpoint is trained
first (64 steps of Breakout): speed does not depend on how well the agent plays, but an untrained
agent loses its games in ~150-250 steps, so several are played (a seeded ALE reset reloads the ROM,
~0.15 s a game).

    python benchmarks/bench_render.py
    python benchmarks/bench_render.py --checkpoint runs/<run_name>/run.pt
"""

import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Optional

import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import render  # noqa: E402
from ppo_attention import Args as TrainArgs  # noqa: E402
from ppo_attention import train  # noqa: E402


@dataclass
class Args:
    checkpoint: Optional[str] = None
    """checkpoint to render (default: train a tiny 64-step Breakout checkpoint in a temporary folder)"""
    games: int = 4
    """games per measurement (whole games, --max-steps unset) for the fast overlays"""
    slow_steps: int = 60
    """agent steps (one game, cut) for SmoothGrad saliency (50 noisy copies per frame)"""
    scale: int = 3
    """--scale of the videos"""


CASES = [  # (label, render flags, fast?)
    ("attention", ["--overlay", "attention"], True),
    ("none", ["--overlay", "none"], True),
    ("tree", ["--overlay", "tree"], True),
    ("saliency gradient/action", ["--overlay", "saliency", "--method", "gradient"], True),
    ("saliency smoothgrad/action (50 samples)", ["--overlay", "saliency", "--method", "smoothgrad"], False),
]


def tiny_checkpoint(folder: str) -> str:
    args = TrainArgs(total_timesteps=64, num_envs=2, num_steps=32, num_minibatches=2, update_epochs=1)
    return train(replace(args, runs_dir=folder, cuda=False))[0]


def measure(checkpoint: str, out: str, settings: list, games: int, max_steps: Optional[int], scale: int) -> tuple:
    """(steps written, seconds) of one `render.main` call (imports excluded)."""
    argv = ["--checkpoint", checkpoint, "--out", out, "--force", "--scale", str(scale), "--episodes", str(games)]
    argv += ["--max-steps", str(max_steps)] if max_steps else []
    start = time.perf_counter()
    result = render.main(argv + settings)
    return result["frames"], time.perf_counter() - start


if __name__ == "__main__":
    args = tyro.cli(Args)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or tiny_checkpoint(folder)
        rows = []
        for label, settings, fast in CASES:
            games, max_steps = (args.games, None) if fast else (1, args.slow_steps)
            n, seconds = measure(checkpoint, os.path.join(folder, "video"), settings, games, max_steps, args.scale)
            rows.append(f"| {label} | {n} | {seconds:.1f} | {n / seconds:.0f} |")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"\nrender.py, --scale {args.scale}, {os.cpu_count()} CPU cores, load average {load} (others' work slows it)"
        )
        print("| overlay | steps | seconds | steps/s |\n|---|---:|---:|---:|")
        print("\n".join(rows))
