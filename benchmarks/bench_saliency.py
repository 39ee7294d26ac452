"""Seconds per frame of each saliency method, as `render.py` calls them: one (1, 4, 84, 84) observation at a time.

Prints the median wall-clock time per frame, the fastest frame, and the CPU time per frame summed over
torch's threads (on a machine shared with other jobs the wall time grows, the CPU time much less).

    python benchmarks/bench_saliency.py                      # random-weight attention agent, real Breakout frames
    python benchmarks/bench_saliency.py --checkpoint runs/<run>/run.pt --target action

Targets on the project's 2-core CPU: SmoothGrad with 50 samples <= 0.3 s, perturbation at stride 5 <= 0.5 s.
"""

import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from agents import load_checkpoint  # noqa: E402
from atari_env import make_env  # noqa: E402
from ppo_attention import Agent  # noqa: E402
from saliency import METHODS, saliency_map  # noqa: E402


@dataclass
class Args:
    checkpoint: Optional[str] = None
    """a `run.pt` to time (default: a freshly initialised 2-head attention agent; the speed is the same)"""
    target: str = "attention"
    """attention, action or value"""
    samples: int = 50
    """noisy copies for SmoothGrad and VarGrad"""
    stride: int = 5
    """perturbation grid spacing in pixels"""
    chunk: int = 128
    """copies per forward pass"""
    frames: int = 8
    """frames timed per method (after one warm-up frame)"""
    threads: Optional[int] = None
    """torch CPU threads (default: torch's choice)"""


def game_frames(n: int, seed: int = 1) -> list:
    """n + 1 real Breakout observations (1, 4, 84, 84) uint8, a few random steps apart."""
    env = make_env("BreakoutNoFrameskip-v4", seed=seed)
    obs, _ = env.reset(seed=seed)
    frames = []
    while len(frames) < n + 1:
        for _ in range(5):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset()
        frames.append(torch.as_tensor(np.asarray(obs))[None])
    return frames


def main(args: Args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    agent = load_checkpoint(args.checkpoint)[0] if args.checkpoint else Agent(4, 2).eval()
    frames = game_frames(args.frames)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load:.1f}, target {args.target}"
    )
    print(f"{'method':<14}{'setting':<14}{'wall s/frame':>14}{'min':>8}{'cpu s/frame':>13}")
    generator = torch.Generator().manual_seed(0)
    for method in METHODS:
        kw = dict(method=method, target=args.target, samples=args.samples, stride=args.stride, chunk=args.chunk)
        saliency_map(agent, frames[0], generator=generator, **kw)  # warm-up
        times, cpu = [], time.process_time()
        for obs in frames[1:]:
            start = time.perf_counter()
            saliency_map(agent, obs, generator=generator, **kw)
            times.append(time.perf_counter() - start)
        cpu = (time.process_time() - cpu) / len(times)  # all threads' CPU time: robust to a busy machine
        setting = {
            "smoothgrad": f"n={args.samples}",
            "vargrad": f"n={args.samples}",
            "perturbation": f"stride={args.stride}",
            "ig_black": "steps=64",
            "ig_blur": "steps=64",
        }
        print(
            f"{method:<14}{setting.get(method, ''):<14}{statistics.median(times):>14.3f}{min(times):>8.3f}{cpu:>13.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main(tyro.cli(Args))
