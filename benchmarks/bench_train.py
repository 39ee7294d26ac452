"""Throughput of ppo_attention.py: full training and rollout collection alone, in agent steps per second.

    python benchmarks/bench_train.py                  # defaults: 8 envs x 128 steps, 10 iterations
    python benchmarks/bench_train.py --iterations 20 --attn-heads 0

Full training runs `train()` itself (rollout + GAE + 4 epochs of updates + logging) and reports the
steps/s of the iterations after the first (which pays for start-up). Rollout only times the policy's
forward pass + `AtariVectorEnv.step` as in the rollout loop; "env only" steps the games with random
actions, the ceiling the rollout can reach.
"""

import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ppo_attention import Agent, Args, make_vector_env, train  # noqa: E402


@dataclass
class BenchArgs:
    env_id: str = "BreakoutNoFrameskip-v4"
    """the game"""
    iterations: int = 10
    """training iterations to time (each is num_envs x num_steps agent steps)"""
    rollout_steps: int = 4096
    """agent steps for the rollout-only and env-only measurements"""
    num_envs: int = 8
    """parallel games (CleanRL default 8)"""
    attn_heads: int = 2
    """attention heads (0: plain Nature-CNN agent)"""
    cuda: bool = False
    """use CUDA when available"""


def bench_training(b: BenchArgs) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory() as runs:
        args = Args(env_id=b.env_id, num_envs=b.num_envs, attn_heads=b.attn_heads, cuda=b.cuda, runs_dir=runs)
        args.total_timesteps = b.iterations * args.num_envs * args.num_steps
        args.save_interval = b.iterations  # one checkpoint, at the end
        path, _ = train(args)
        ea = EventAccumulator(os.path.dirname(path))
        ea.Reload()
        # wall time between the first and the last iteration's logs: steady state, start-up excluded
        events = ea.Scalars("charts/SPS")
        return (events[-1].step - events[0].step) / (events[-1].wall_time - events[0].wall_time)


def bench_rollout(b: BenchArgs, device) -> tuple:
    envs = make_vector_env(b.env_id, b.num_envs)
    agent = Agent(int(envs.single_action_space.n), b.attn_heads).to(device).to(memory_format=torch.channels_last)
    obs, _ = envs.reset(seed=1)
    n = b.rollout_steps // b.num_envs
    start = time.perf_counter()
    for _ in range(n):
        with torch.no_grad():
            action = agent.get_action_and_value(torch.as_tensor(obs, device=device))[0]
        obs, *_ = envs.step(action.cpu().numpy())
    rollout = n * b.num_envs / (time.perf_counter() - start)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(n):
        envs.step(rng.integers(0, envs.single_action_space.n, b.num_envs))
    env_only = n * b.num_envs / (time.perf_counter() - start)
    envs.close()
    return rollout, env_only


if __name__ == "__main__":
    b = tyro.cli(BenchArgs)
    device = torch.device("cuda" if torch.cuda.is_available() and b.cuda else "cpu")
    print(
        f"{b.env_id}, {b.num_envs} envs, attn_heads={b.attn_heads}, {device}, torch {torch.__version__}, {os.cpu_count()} CPUs"
    )
    rollout, env_only = bench_rollout(b, device)
    print(f"env only (random actions): {env_only:7.0f} steps/s")
    print(f"rollout (policy + env):    {rollout:7.0f} steps/s")
    print(
        f"full training:             {bench_training(b):7.0f} steps/s  ({b.iterations} iterations of {b.num_envs * 128})"
    )
