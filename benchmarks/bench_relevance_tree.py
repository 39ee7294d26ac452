"""Milliseconds per relevance tree (relevance_tree.build_tree) for the default sizes, on this CPU.

Trees are built for real Breakout observations (random play). The agent comes from a checkpoint,
or is a freshly initialised attention agent (same shapes and cost). render.py draws one tree per
frame, so the target is at most 10 ms per tree, forward pass included.

    python benchmarks/bench_relevance_tree.py [--checkpoint runs/<run_name>/run.pt]
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
from relevance_tree import build_tree, iter_nodes  # noqa: E402


@dataclass
class Args:
    checkpoint: Optional[str] = None
    """a `run.pt` to explain; default: a freshly initialised agent with 2 attention heads"""
    observations: int = 50
    """how many different game observations to time"""
    repeats: int = 5
    """trees built per observation (the median over all is reported)"""
    threads: int = 1
    """torch threads (relevance_tree.py uses 1: the tensors are tiny)"""


def game_observations(n: int) -> list:
    """n observations (4, 84, 84) uint8 of Breakout under random play, every 4th step."""
    env = make_env("BreakoutNoFrameskip-v4", seed=0)
    obs, _ = env.reset(seed=0)
    kept = []
    while len(kept) < n:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        kept.append(np.asarray(obs).copy())
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return kept


def time_ms(fn, repeats: int) -> list:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


if __name__ == "__main__":
    args = tyro.cli(Args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    agent = load_checkpoint(args.checkpoint)[0] if args.checkpoint else Agent(4, attn_heads=2).eval()
    observations = [torch.as_tensor(o)[None] for o in game_observations(args.observations)]
    for obs in observations[:5]:  # warm-up
        build_tree(agent, obs)

    full, given, forward, cpu, nodes = [], [], [], [], []
    for obs in observations:
        with torch.no_grad():
            activations = agent.activations(obs)
        start_cpu = time.process_time()
        full += time_ms(lambda o=obs: build_tree(agent, o), args.repeats)
        cpu.append((time.process_time() - start_cpu) * 1e3 / args.repeats)
        given += time_ms(lambda o=obs, a=activations: build_tree(agent, o, activations=a), args.repeats)
        with torch.no_grad():
            forward += time_ms(lambda o=obs: agent.activations(o), args.repeats)
        nodes.append(sum(1 for _ in iter_nodes(build_tree(agent, obs))))

    noise = [torch.randint(0, 256, (1, 4, 84, 84), dtype=torch.uint8) for _ in range(10)]  # dense: more peaks
    dense = [t for obs in noise for t in time_ms(lambda o=obs: build_tree(agent, o), args.repeats)]
    dense_nodes = statistics.median(sum(1 for _ in iter_nodes(build_tree(agent, obs))) for obs in noise)

    load = os.getloadavg()[0]
    print(f"relevance tree, default sizes (2 roots per head, 3 children, depth 5), {torch.get_num_threads()} thread(s)")
    print(f"{len(observations)} observations x {args.repeats}; nodes per tree: median {statistics.median(nodes):.0f}")
    print(
        f"  build_tree (forward pass included): median {statistics.median(full):6.2f} ms  (CPU {statistics.median(cpu):.2f} ms)"
    )
    print(f"  build_tree given the activations:   median {statistics.median(given):6.2f} ms")
    print(f"  dense worst case (random pixels, {dense_nodes:.0f} nodes): median {statistics.median(dense):6.2f} ms")
    print(f"  forward pass alone:                 median {statistics.median(forward):6.2f} ms")
    print(f"  load average during the run: {load:.1f} on {os.cpu_count()} CPUs")
