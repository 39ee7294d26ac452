"""Benchmark of explore.py: the size of the page and the time to write it, for each checkpoint.

Everything `explore.main` does is timed (load the checkpoint, play, every saliency map, tree and overlay image,
write the page); imports are not. The target of the issue that asked for the page: 300 steps of a demo agent with
every map, at most 25 MB, written in at most 90 s on this project's 2-core CPU.

    python benchmarks/bench_explore.py
    python benchmarks/bench_explore.py --checkpoint checkpoints/breakout_coef0.pt -- --samples 50
"""

import os
import sys
import tempfile
import time
from dataclasses import dataclass

import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import explore  # noqa: E402


@dataclass
class Args:
    checkpoint: tuple[str, ...] = ("checkpoints/breakout_coef0.pt", "checkpoints/breakout_coef5e-4.pt")
    """checkpoints to write a page of, one after the other (further explore.py flags go after a `--`)"""


def measure(checkpoint: str, out: str, flags: tuple) -> tuple:
    """(page size in MB, seconds, CPU seconds) of one `explore.main` call with its defaults and `flags`. It computes
    on one thread, so its CPU seconds are about the seconds it takes on an idle machine."""
    start, cpu = time.perf_counter(), time.process_time()
    path = explore.main(["--checkpoint", checkpoint, "--out", out, "--force", *flags])
    return os.path.getsize(path) / 1e6, time.perf_counter() - start, time.process_time() - cpu


if __name__ == "__main__":
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, flags = tyro.cli(Args, args=argv[:split]), tuple(argv[split + 1 :])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for checkpoint in args.checkpoint:
            size, seconds, cpu = measure(checkpoint, os.path.join(folder, os.path.basename(checkpoint)), flags)
            rows.append(f"| {checkpoint} | {' '.join(flags) or 'defaults'} | {size:.1f} | {seconds:.0f} | {cpu:.0f} |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nexplore.py, {os.cpu_count()} CPU cores, load average {load} (others' work slows it)")
    print("| checkpoint | flags | page MB | seconds | CPU seconds |\n|---|---|---:|---:|---:|")
    print("\n".join(rows))
