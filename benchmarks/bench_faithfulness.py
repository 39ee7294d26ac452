"""Benchmark of faithfulness.py: seconds of the default run (128 states from 8 games, every method, both drawings
of the 7x7 maps and every floor, SmoothGrad/VarGrad 50 samples, Integrated Gradients 256 steps, perturbation
stride 5, sanity check of every map on 8 states and of the 7x7 maps on their grid on all 128 with 3 seeds,
object grounding), in total and per phase.

`faithfulness.main` runs as the command line runs it; its phases are timed by wrapping the functions that
do them (a phase called inside another counts for the outer one: the sanity check's maps are the sanity
check's). Wall-clock and CPU seconds (all threads) are printed: on a machine shared with other jobs the
wall time grows, and torch threads waiting for each other can burn CPU time too. Without --checkpoint a
tiny checkpoint is trained first (64 steps of Breakout): the speed does not depend on how well the agent
plays, but its games are short.

    python benchmarks/bench_faithfulness.py
    python benchmarks/bench_faithfulness.py --checkpoint runs/<run_name>/run.pt --threads 1

Target on the project's 2-core CPU: the default run in at most 3 minutes.
"""

import functools
import os
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Optional

import torch
import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import faithfulness  # noqa: E402
from ppo_attention import Args as TrainArgs  # noqa: E402
from ppo_attention import train  # noqa: E402


@dataclass
class Args:
    checkpoint: Optional[str] = None
    """checkpoint to score (default: train a tiny 64-step Breakout checkpoint in a temporary folder)"""
    threads: Optional[int] = None
    """torch CPU threads (default: faithfulness.py's --threads, 0: every core); the run itself sets --threads to this"""
    extra: str = ""
    """further faithfulness.py flags, in quotes after an equals sign: --extra="--states 8" (default: the default run)"""


PHASES = {  # a function faithfulness.py calls by its own name (wrapped there to time it): phase
    "sample_states": "play the games, sample the states",
    "explanation_maps": "maps of every method",
    "policy_curves": "deletion and insertion",
    "sanity_check": "sanity check (cascading randomisation)",
    "grid_sanity": "sanity check of the 7x7 maps on their grid (3 seeds)",
    "save_figure": "figure",
    "save_object_figure": "figure of the objects",
}


def tiny_checkpoint(folder: str) -> str:
    args = TrainArgs(total_timesteps=64, num_envs=2, num_steps=32, num_minibatches=2, update_epochs=1)
    return train(replace(args, runs_dir=folder, cuda=False))[0]


def timed(name: str, fn, wall: dict, cpu: dict, active: list):
    """fn, adding its wall-clock and CPU seconds to wall[name] and cpu[name] unless another phase is running."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if active:  # inside another phase: counted there
            return fn(*args, **kwargs)
        active.append(name)
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            wall[name] += time.perf_counter() - start
            cpu[name] += time.process_time() - start_cpu
            active.pop()

    return wrapper


def main(args: Args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or tiny_checkpoint(folder)
        wall, cpu, active = defaultdict(float), defaultdict(float), []
        for name in PHASES:
            setattr(faithfulness, name, timed(name, getattr(faithfulness, name), wall, cpu, active))
        argv = ["--checkpoint", checkpoint, "--out", os.path.join(folder, "out"), *shlex.split(args.extra)]
        argv += ["--threads", str(args.threads)] if args.threads else []
        start, start_cpu, load_start = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        faithfulness.main(argv)
        total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    load = f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (1-minute)"
    print(f"\nfaithfulness.py {args.extra or '(defaults)'} on {os.path.basename(checkpoint)}: "
          f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, load average {load} "
          "(others' work slows it)")  # fmt: skip
    print("| phase | wall s | CPU s |\n|---|---:|---:|")
    for name, label in PHASES.items():
        print(f"| {label} | {wall[name]:.1f} | {cpu[name]:.1f} |")
    rest, rest_cpu = total - sum(wall.values()), total_cpu - sum(cpu.values())
    print(
        f"| other (load, write, table) | {rest:.1f} | {rest_cpu:.1f} |\n| **total** | **{total:.1f}** | **{total_cpu:.1f}** |"
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
