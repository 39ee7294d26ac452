"""Benchmark of interventions.py: seconds of the default run (20 games per ablation condition, steering on 128
states with its baselines, objects taken away, moved by the game and patched on 512, dataset examples of 64
channels), in total and per part, and the work each part did.

`interventions.main` runs as the command line runs it and times its own parts (`seconds` of its report) and counts
its work (`work`: agent steps played, steering rows, forward passes, emulator steps replayed and drawn again); this
adds the CPU seconds (all threads) and the load average: on a machine shared with other jobs the wall time grows,
while the work does not, so the work says what a quiet machine would need. The speed depends on how long the
agent's games last, so the default is a demo agent.

    python benchmarks/bench_interventions.py
    python benchmarks/bench_interventions.py --checkpoint checkpoints/breakout_coef0.pt

Target on the project's 2-core CPU: the default run in at most 5 minutes.
"""

import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass

import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import interventions  # noqa: E402


@dataclass
class Args:
    checkpoint: str = os.path.join(ROOT, "checkpoints", "breakout_coef5e-4.pt")
    """checkpoint to test (default: the demo agent trained with the penalty)"""
    extra: str = ""
    """further interventions.py flags, in quotes after an equals sign: --extra="--games 5" (default: the default run)"""


def main(args: Args) -> None:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        argv = ["--checkpoint", args.checkpoint, "--out", os.path.join(folder, "out"), *shlex.split(args.extra)]
        start, start_cpu = time.perf_counter(), time.process_time()
        report = interventions.main(argv)
        total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    load = ", ".join(f"{x:.1f}" for x in load_before) + " before, " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\ninterventions.py {args.extra or '(defaults)'} on {os.path.basename(args.checkpoint)}: "
          f"{os.cpu_count()} CPU cores, load average {load} after (others' work slows it)")  # fmt: skip
    print("| part | wall s |\n|---|---:|")
    for part, seconds in report["seconds"].items():
        if part != "total":
            print(f"| {part} | {seconds:.1f} |")
    print(f"| **total**, with loading | **{total:.1f}** (CPU {total_cpu:.1f}) |")
    print("\n| work | count |\n|---|---:|")
    for what, count in report["work"].items():
        print(f"| {what.replace('_', ' ')} | {count:,} |")


if __name__ == "__main__":
    main(tyro.cli(Args))
