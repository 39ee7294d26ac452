"""Throughput of ppo_attention.py per precision, side by side in one run: full training, rollout, update.

    python benchmarks/bench_train.py                         # fp32 and bf16, defaults (8 envs x 128 steps)
    python benchmarks/bench_train.py --attn-heads 0 --iterations 20

- full training: `train()` itself (rollout + GAE + 4 epochs of updates + logging), steps/s between the
  first and the last iteration's logs (start-up excluded);
- rollout: the policy's forward pass (under the precision's autocast) + `AtariVectorEnv.step`;
- update: one minibatch of 256 through `ppo_losses`, backward, gradient clipping and Adam, ms per sample;
- env only: the games with random actions, the ceiling the rollout can reach.
Precisions alternate (fp32, bf16, fp32, bf16 ...) with --repeats, so a busy machine slows both alike.
"""

import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cli import pick_device  # noqa: E402
from ppo_attention import Agent, Args, make_env, ppo_loss, resolve_precision, train  # noqa: E402


@dataclass
class BenchArgs:
    env_id: str = "BreakoutNoFrameskip-v4"
    """the game"""
    precisions: tuple[str, ...] = ("fp32", "bf16")
    """precisions to compare (bf16 is skipped with a note where it is not native)"""
    iterations: int = 12
    """training iterations timed per precision (each num_envs x 128 agent steps)"""
    rollout_steps: int = 4096
    """agent steps for the rollout and env-only measurements"""
    num_envs: int = 8
    """parallel games (CleanRL default 8)"""
    attn_heads: int = 2
    """attention heads (0: plain Nature-CNN agent)"""
    repeats: int = 1
    """measurements per precision, interleaved; the best is reported"""
    cuda: bool = False
    """use CUDA when available"""


def bench_training(b: BenchArgs, precision: str) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tempfile.TemporaryDirectory() as runs:
        args = Args(env_id=b.env_id, num_envs=b.num_envs, attn_heads=b.attn_heads, cuda=b.cuda, runs_dir=runs)
        args.total_timesteps, args.save_interval, args.precision = (
            b.iterations * b.num_envs * 128,
            b.iterations,
            precision,
        )
        path, _ = train(args)
        ea = EventAccumulator(os.path.dirname(path))
        ea.Reload()
        events = ea.Scalars("charts/SPS")  # one per iteration: steady state between the first and the last
        return (events[-1].step - events[0].step) / (events[-1].wall_time - events[0].wall_time)


def bench_rollout(b: BenchArgs, device, bf16: bool) -> tuple:
    envs = make_env(b.env_id, b.num_envs)
    agent = Agent(int(envs.single_action_space.n), b.attn_heads).to(device).to(memory_format=torch.channels_last)
    obs, _ = envs.reset(seed=1)
    n = b.rollout_steps // b.num_envs
    start = time.perf_counter()
    for _ in range(n):
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            action = agent.get_action_and_value(torch.as_tensor(obs, device=device))[0]
        obs, *_ = envs.step(action.cpu().numpy())
    rollout = n * b.num_envs / (time.perf_counter() - start)
    rng, start = np.random.default_rng(0), time.perf_counter()
    for _ in range(n):
        envs.step(rng.integers(0, envs.single_action_space.n, b.num_envs))
    env_only = n * b.num_envs / (time.perf_counter() - start)
    envs.close()
    return rollout, env_only


def bench_update(b: BenchArgs, device, bf16: bool, size: int = 256, repeats: int = 8) -> float:
    """ms per sample of one minibatch update: forward, losses, backward, clipping, Adam."""
    torch.manual_seed(0)
    agent = Agent(4, b.attn_heads).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)
    mb = dict(obs=torch.randint(0, 256, (size, 4, 84, 84), dtype=torch.uint8), actions=torch.randint(0, 4, (size,)))
    mb |= {k: torch.randn(size) for k in ("logprobs", "advantages", "returns", "values")}
    mb = {k: v.to(device) for k, v in mb.items()}
    times = []
    for i in range(repeats + 2):  # two warm-up steps
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            _, newlogprob, entropy, newvalue, attn_entropy = agent.get_action_and_value(mb["obs"], mb["actions"])
        b = [mb[k] for k in ("logprobs", "advantages", "returns", "values")]
        loss, _ = ppo_loss(newlogprob, entropy, newvalue, attn_entropy, *b, torch.arange(size, device=device), Args())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times[2:]) / size * 1e3


if __name__ == "__main__":
    b = tyro.cli(BenchArgs)
    device = pick_device(b.cuda)
    cpu = platform.processor() or platform.machine()
    if device.type == "cpu" and os.path.exists("/proc/cpuinfo"):
        cpu = next((line.split(":")[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), cpu)
    print(
        f"{b.env_id}, {b.num_envs} envs, attn_heads={b.attn_heads}, {device} ({cpu}, {os.cpu_count()} CPUs), torch {torch.__version__}"
    )
    precisions = [p for p in b.precisions if p == "fp32" or resolve_precision("auto", device) == "bf16"]
    if len(precisions) < len(b.precisions):
        print("bf16 is not native on this machine: it is left out (it would be emulated, and slow).")
    results = {p: [] for p in precisions}
    for _ in range(b.repeats):
        for p in precisions:
            rollout, env_only = bench_rollout(b, device, p == "bf16")
            update = bench_update(b, device, p == "bf16")
            results[p].append((bench_training(b, p), rollout, update, env_only))
    print("\n| precision | full training steps/s | rollout steps/s | update ms/sample | env only steps/s |")
    print("|---|---:|---:|---:|---:|")
    for p, rows in results.items():
        train_sps, rollout, update, env_only = (
            max(r[0] for r in rows),
            max(r[1] for r in rows),
            min(r[2] for r in rows),
            max(r[3] for r in rows),
        )
        print(f"| {p} | {train_sps:.0f} | {rollout:.0f} | {update:.3f} | {env_only:.0f} |")
    print(
        f"load average after the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (other work slows every figure)"
    )
