"""rl-attention's attention-coefficient sweep: run it (locally or as a SLURM job array) and plot it.

rl-attention (AI Safety Camp 3: Nikulin, Kosch, Steuer, Cunningham 2019; a write-up and the repository
dniku/rl-attention, no paper) trained PPO agents with attention under several attention-entropy penalties
(`--attn-coef`) and compared their scores with how sharp their attention became. This script runs
that grid (games x seeds x coefficients, and optionally a no-attention baseline), each grid point
an unchanged `ppo_attention.py` run, and draws per game the learning curves (mean +- sd over
seeds), the final-entropy-vs-final-score scatter and a table (CSV and markdown).

    python experiments/sweep.py run --env-ids BreakoutNoFrameskip-v4 --attn-coefs 0 5e-4 5e-3 --seeds 1 2 --workers 2
    python experiments/sweep.py slurm --env-ids BreakoutNoFrameskip-v4 --attn-coefs 0 5e-4 5e-3 --seeds 1 2
    python experiments/sweep.py plot sweeps/attn_coef

A sweep folder holds `sweep.json` (the grid), `logs/`, `figures/` and the runs, named by
`ppo_attention.py` `<env>__<exp_name>__<seed>__<start time>` with exp_name `coef<c>` or `baseline`.
Run i, for a local worker and a SLURM array task alike, is `sweep.py task <sweep folder> <i>`:
it skips the run if its `run.pt` is at the last step, continues it with
`ppo_attention.py --resume <run>/run.pt` if not, and starts it if no folder of it has a `run.pt`
(a folder without one was killed before its first checkpoint: it is neither resumed nor plotted).
Extra training flags for every run go after `--`, e.g. `-- --num-envs 2 --num-steps 32`.
"""

import csv
import dataclasses
import glob
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Annotated, Optional

import numpy as np
import tyro

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(ROOT, "ppo_attention.py")
SET_BY_SWEEP = ["--env-id", "--seed", "--total-timesteps", "--attn-coef", "--attn-heads", "--runs-dir", "--exp-name"]
SET_BY_SWEEP += ["--resume", "--cuda", "--no-cuda"]
SAYS_ITS_DEFAULT = tyro.conf.arg(help_behavior_hint="")  # the flag's help names its default: no "(default: None)"


@dataclass
class Grid:
    sweep_dir: str = "sweeps/attn_coef"
    """folder of the sweep: its grid (sweep.json), logs, runs and figures"""
    env_ids: tuple[str, ...] = ("BreakoutNoFrameskip-v4",)
    """games (rl-attention: Breakout, BeamRider, MsPacman, Frostbite, Enduro, Seaquest)"""
    attn_coefs: tuple[float, ...] = (0.0, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3)
    """attention-entropy coefficients, the `--attn-coef` of each run; the default is rl-attention's six"""
    seeds: tuple[int, ...] = (1, 2, 3)
    """seeds; every game and coefficient is trained once per seed"""
    baseline: bool = False
    """also train the plain Nature-CNN agent (`--attn-heads 0`) once per game and seed"""
    total_timesteps: int = 10_000_000
    """agent steps per run (rl-attention: 10M agent steps = 40M frames)"""
    attn_heads: int = 2
    """attention heads of the attention runs"""
    train_args: tyro.conf.Suppress[tuple[str, ...]] = ()
    """extra `ppo_attention.py` flags for every run (given after `--`)"""


@dataclass
class Run(Grid):
    """Run the sweep on this machine; finished runs are skipped, interrupted ones continue.
    Extra training flags for every run go after `--` (e.g. `-- --num-envs 2`)."""

    workers: int = 1
    """runs at a time; torch threads are split between them (OMP_NUM_THREADS = cpus // workers, unless set)"""
    cuda: bool = True
    """train on CUDA when it is available"""


@dataclass
class Slurm(Grid):
    """Write an sbatch job-array script for the sweep, one array task per run.
    Extra training flags for every run go after `--`."""

    max_concurrent: int = 0
    """at most this many tasks at once (`--array=0-N%M`); 0: no cap"""
    cpus_per_task: int = 8
    """CPU cores per task"""
    gpus: int = 1
    """GPUs per task (`--gres=gpu:N`); 0 trains on the CPUs"""
    time: str = "24:00:00"
    """time limit per task; 3 minutes before it the run stops as on Ctrl-C, saving a checkpoint"""
    partition: Annotated[Optional[str], SAYS_ITS_DEFAULT] = None
    """SLURM partition (default: the cluster's)"""


@dataclass
class Task:
    """Run, continue or skip run `index` of a sweep: what each local worker and each SLURM array task executes."""

    sweep_dir: tyro.conf.Positional[str]
    """folder of the sweep"""
    index: tyro.conf.Positional[int]
    """index of the run in the grid (0 .. runs-1)"""
    cuda: bool = True
    """train on CUDA when it is available"""


@dataclass
class Plot:
    """Draw the learning curves, the entropy-vs-score scatter and the results table of a sweep."""

    sweep_dir: tyro.conf.Positional[str]
    """folder of the sweep"""
    out_dir: Annotated[Optional[str], SAYS_ITS_DEFAULT] = None
    """where the figures and tables go (default: <sweep folder>/figures)"""


class SweepError(Exception):
    """Bad input; the message is one sentence for the user."""


# ----------------------------------------------------------------------------- the grid


def check_grid(cfg: Grid) -> None:
    """Reject a grid that cannot run, with one sentence, before anything is written."""
    if not cfg.env_ids or not cfg.seeds or not (cfg.attn_coefs or cfg.baseline):
        raise SweepError("the grid is empty: give at least one of --env-ids, --seeds and --attn-coefs (or --baseline).")
    for flag, values in [("env-ids", cfg.env_ids), ("seeds", cfg.seeds), ("attn-coefs", map(exp_name, cfg.attn_coefs))]:
        values = list(values)
        if len(set(values)) < len(values):
            raise SweepError(f"--{flag} names a value twice: {' '.join(map(str, values))}.")
    if min(cfg.attn_coefs, default=0) < 0:
        raise SweepError(f"--attn-coefs must be >= 0, got {min(cfg.attn_coefs):g}.")
    if cfg.total_timesteps <= 0 or cfg.attn_heads <= 0:
        raise SweepError("--total-timesteps and --attn-heads must be positive.")
    if set(SET_BY_SWEEP) & {a.split("=")[0] for a in cfg.train_args}:
        raise SweepError(f"after `--` give only training flags other than {', '.join(SET_BY_SWEEP)}.")
    check_env_ids(cfg.env_ids)


def check_env_ids(env_ids) -> None:
    """Each id must be an ale-py game with a fixed frame skip and pixels, as ppo_attention.py needs (atari_env.py
    says which; its import is slow, so it is imported only here)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's root
    from atari_env import resolve_atari_id
    from cli import UsageError

    for env_id in env_ids:
        try:
            resolve_atari_id(env_id)
        except UsageError as e:
            raise SweepError(str(e)) from None


def grid_of(cfg: Grid) -> dict:
    """The settings that define the runs: what sweep.json holds."""
    grid = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Grid) if f.name != "sweep_dir"}
    return json.loads(json.dumps(grid))  # tuples -> lists, as read back


def open_sweep(cfg: Grid) -> None:
    """Create the sweep folder and its sweep.json, or check that an existing one holds the same grid."""
    grid, path = grid_of(cfg), os.path.join(cfg.sweep_dir, "sweep.json")
    if not os.path.exists(path):
        os.makedirs(os.path.join(cfg.sweep_dir, "logs"), exist_ok=True)
        with open(path, "w") as f:
            json.dump(grid, f, indent=2)
    saved = read_grid(cfg.sweep_dir)
    for key in grid:
        if saved.get(key) != grid[key]:
            raise SweepError(
                f"'{cfg.sweep_dir}' holds another sweep ({key} is {saved.get(key)} there, {grid[key]} here); "
                "repeat its grid or choose another --sweep-dir."
            )


def read_grid(sweep_dir: str) -> dict:
    path = os.path.join(sweep_dir, "sweep.json")
    if not os.path.isfile(path):
        raise SweepError(f"'{sweep_dir}' is not a sweep folder (it has no sweep.json).")
    with open(path) as f:
        return json.load(f)


def exp_name(coef: Optional[float]) -> str:
    """`--exp-name` of a run: `coef0.0005`, or `baseline` for the agent without attention (coef None)."""
    return "baseline" if coef is None else f"coef{coef:g}"


def grid_runs(grid: dict) -> list:
    """Every run of the grid, in index order: games, then seeds, then coefficients (baseline first)."""
    coefs = [None] * grid["baseline"] + grid["attn_coefs"]
    return [
        dict(env_id=env_id, seed=seed, coef=coef, name=f"{env_id.replace('/', '-')}__{exp_name(coef)}__{seed}")
        for env_id in grid["env_ids"]
        for seed in grid["seeds"]
        for coef in coefs
    ]


# ----------------------------------------------------------------------------- one run


def run_dirs(sweep_dir: str, run: dict) -> list:
    """The folders ppo_attention.py made for this run, oldest first (it appends the start time)."""
    dirs = glob.glob(os.path.join(glob.escape(sweep_dir), glob.escape(run["name"]) + "__*"))
    dirs = [d for d in dirs if os.path.isdir(d) and d.rsplit("__", 1)[1].isdigit()]
    return sorted(dirs, key=lambda d: int(d.rsplit("__", 1)[1]))


def checkpoint_steps(run_dir: str) -> tuple:
    """(steps done, steps the run will do: total_timesteps rounded down to whole batches), from run.pt."""
    import torch

    path = os.path.join(run_dir, "run.pt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        batch = ckpt["args"]["num_envs"] * ckpt["args"]["num_steps"]
        return ckpt["global_step"], ckpt["args"]["total_timesteps"] // batch * batch
    except Exception:
        raise SweepError(f"'{path}' is not a readable checkpoint; move its run folder away to redo that run.") from None


def run_state(sweep_dir: str, run: dict) -> tuple:
    """('done' | 'resume' | 'new', the run's folder or None); only a folder with run.pt counts."""
    with_ckpt = [d for d in run_dirs(sweep_dir, run) if os.path.isfile(os.path.join(d, "run.pt"))]
    if not with_ckpt:
        return "new", None
    step, target = checkpoint_steps(with_ckpt[-1])
    return ("done" if step >= target else "resume"), with_ckpt[-1]


def train_command(sweep_dir: str, grid: dict, run: dict, cuda: bool) -> list:
    """The `ppo_attention.py` command that starts this run, as a user would type it."""
    heads = 0 if run["coef"] is None else grid["attn_heads"]
    return [
        sys.executable, TRAIN_SCRIPT, "--env-id", run["env_id"], "--seed", str(run["seed"]),
        "--total-timesteps", str(grid["total_timesteps"]), "--attn-heads", str(heads),
        "--attn-coef", f"{run['coef'] or 0:g}", "--runs-dir", os.path.abspath(sweep_dir),
        "--exp-name", exp_name(run["coef"]), "--cuda" if cuda else "--no-cuda", *grid["train_args"],
    ]  # fmt: skip


def task_command(sweep_dir: str, index, cuda: bool) -> list:
    """The command of run `index`: the same for a local worker and for a SLURM array task."""
    script, cuda_flag = os.path.abspath(__file__), "--cuda" if cuda else "--no-cuda"
    return [sys.executable, script, "task", os.path.abspath(sweep_dir), str(index), cuda_flag]


def run_task(cfg: Task) -> None:
    """Skip run `index` if it is finished, else become the training that continues or starts it."""
    grid = read_grid(cfg.sweep_dir)
    runs = grid_runs(grid)
    if not 0 <= cfg.index < len(runs):
        raise SweepError(f"run index {cfg.index} is outside the grid of {len(runs)} runs (0 .. {len(runs) - 1}).")
    state, run_dir = run_state(cfg.sweep_dir, runs[cfg.index])
    if state == "done":
        return print(f"run {cfg.index} is finished: {run_dir}")
    argv = train_command(cfg.sweep_dir, grid, runs[cfg.index], cfg.cuda)
    if state == "resume":  # only --resume and --cuda: ppo_attention.py takes the rest from the checkpoint
        cuda = "--cuda" if cfg.cuda else "--no-cuda"
        argv = [sys.executable, TRAIN_SCRIPT, "--resume", os.path.join(run_dir, "run.pt"), cuda]
    print("+ " + shlex.join(argv), flush=True)
    os.execv(argv[0], argv)  # the same process: Ctrl-C and SLURM's signal reach the training


# ----------------------------------------------------------------------------- locally


def last_line(path: str) -> str:
    """The last non-empty line of a log: the run's latest progress line."""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 4000))
        lines = f.read().decode(errors="replace").replace("\r", "\n").split("\n")
    return next((s.strip() for s in reversed(lines) if s.strip()), "")


def run_local(cfg: Run, runs: list, todo: list) -> int:
    """Run the runs `todo`, `cfg.workers` at a time, each Ctrl-C forwarded once to each; the exit code."""
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // cfg.workers))  # yours first
    env = dict(os.environ, OMP_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    stops = []  # one entry per Ctrl-C (or SIGTERM); the runs have their own session, so only we signal them
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stops.append(1))
    pending, running, codes = list(todo), {}, {}
    log = {i: os.path.join(cfg.sweep_dir, "logs", runs[i]["name"] + ".log") for i in todo}
    every, last_report = (10 if sys.stdout.isatty() else 30), time.monotonic()
    while running or (pending and not stops):
        while pending and len(running) < cfg.workers and not stops:
            i = pending.pop(0)
            with open(log[i], "a") as f:
                cmd = task_command(cfg.sweep_dir, i, cfg.cuda)
                running[i] = [subprocess.Popen(cmd, stdout=f, stderr=f, env=env, start_new_session=True), 0]
            print(f"started run {i} {runs[i]['name']} (log: {log[i]})", flush=True)
        for i, (p, signalled) in list(running.items()):
            if signalled < len(stops):
                how = "stops at once" if signalled else "saves a checkpoint and stops (Ctrl-C again: at once)"
                print(f"Ctrl-C: run {i} {how}", flush=True)
                p.send_signal(signal.SIGINT)
                running[i][1] += 1
            if p.poll() is not None:
                codes[i] = p.returncode
                del running[i]
                word = {0: "finished", 130: "stopped", -2: "stopped"}.get(p.returncode, f"FAILED (exit {p.returncode})")
                print(f"{word}: run {i} {runs[i]['name']} ({len(codes)} of {len(todo)} ended)", flush=True)
        if running and time.monotonic() - last_report >= every:
            last_report = time.monotonic()
            print(f"[{time.strftime('%H:%M:%S')}] {len(codes)} ended, {len(running)} running, {len(pending)} waiting")
            print("\n".join(f"  run {i} {runs[i]['name']}: {last_line(log[i])}" for i in running), flush=True)
        time.sleep(0.5)
    failed = [i for i, c in codes.items() if c not in (0, 130, -2)]
    print("".join(f"run {i} failed; see {log[i]}\n" for i in failed), end="")
    if stops or failed:
        print(f"restart with the same command (finished runs are skipped): python {shlex.join(sys.argv)}")
    return 130 if stops else 1 if failed else 0


# ----------------------------------------------------------------------------- on a SLURM cluster


def write_slurm(cfg: Slurm, n_runs: int) -> str:
    """An sbatch script with one array task per run, each running `task_command` of its index."""
    cap = f"%{cfg.max_concurrent}" if cfg.max_concurrent > 0 else ""
    command = task_command(cfg.sweep_dir, "INDEX", cfg.gpus > 0)
    command = " ".join('"$SLURM_ARRAY_TASK_ID"' if a == "INDEX" else shlex.quote(a) for a in command)
    sweep_dir = os.path.abspath(cfg.sweep_dir)
    lines = [
        "#!/bin/bash",
        f"# The sweep {sweep_dir}, one array task per run. Submit it again to continue interrupted runs.",
        f"#SBATCH --job-name={os.path.basename(sweep_dir)}",
        f"#SBATCH --array=0-{n_runs - 1}{cap}",
        f"#SBATCH --cpus-per-task={cfg.cpus_per_task}",
        *([f"#SBATCH --gres=gpu:{cfg.gpus}"] if cfg.gpus > 0 else []),
        f"#SBATCH --time={cfg.time}",
        *([f"#SBATCH --partition={cfg.partition}"] if cfg.partition else []),
        f"#SBATCH --output={sweep_dir}/logs/%A_%a.out",
        "#SBATCH --signal=B:INT@180",  # Ctrl-C 3 minutes before the time limit: the run saves a checkpoint
        "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK",
        f"exec {command}",  # exec: the signal reaches the training itself
    ]
    path = os.path.join(cfg.sweep_dir, "sweep.sbatch")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- plots and tables


def last_games_mean(returns: np.ndarray, window: int = 100) -> np.ndarray:
    """At each game, the mean score of the last `window` games; the last value is the run's score."""
    c = np.concatenate([[0.0], np.cumsum(returns)])
    n = np.arange(1, len(returns) + 1)
    return (c[n] - c[np.maximum(0, n - window)]) / np.minimum(n, window)


def read_run(run_dir: str, attention: bool) -> dict:
    """Smoothed scores by step, score and final attention entropy of a run, from its TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})  # 0: keep every value
    acc.Reload()
    tags = acc.Tags()["scalars"]
    games = acc.Scalars("charts/episodic_return") if "charts/episodic_return" in tags else []
    steps, scores = (
        np.array([(e.step, e.value) for e in sorted(games, key=lambda e: e.step)], dtype=float).reshape(-1, 2).T
    )
    curve = last_games_mean(scores)
    entropy = np.nan  # the baseline has no attention (it logs an entropy of 0)
    if attention and "losses/attention_entropy" in tags:
        entropy = acc.Scalars("losses/attention_entropy")[-1].value
    score = curve[-1] if len(curve) else np.nan
    return dict(game_steps=steps, curve=curve, games=len(scores), score=score, entropy=entropy)


def collect_runs(sweep_dir: str, grid: dict) -> list:
    """The runs of the grid that have a run.pt, with their numbers; other run folders are named and left out."""
    found = []
    for run in grid_runs(grid):
        state, run_dir = run_state(sweep_dir, run)
        for d in run_dirs(sweep_dir, run):
            if d != run_dir and not os.path.isfile(os.path.join(d, "run.pt")):
                print(f"note: left out {d} (no run.pt: killed before its first checkpoint, or still starting)")
            elif d != run_dir:
                print(f"note: left out {d} (an older folder of this run)")
        if run_dir is not None:
            step, target = checkpoint_steps(run_dir)
            if state != "done":
                print(f"note: {run['name']} is not finished ({step:,} of {target:,} steps): its numbers are partial")
            found.append(dict(run, dir=run_dir, steps=step, **read_run(run_dir, run["coef"] is not None)))
    if not found:
        raise SweepError(f"'{sweep_dir}' has no run with a checkpoint yet; start them with `sweep.py run`.")
    return found


def mean_sd(values) -> tuple:
    """Mean and sample standard deviation over seeds (sd NaN for one seed), ignoring missing values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0), np.nanstd(values, axis=0, ddof=1)


def summarise(runs: list) -> list:
    """One row per game and coefficient (baseline first): seeds, steps, score and entropy mean and sd."""
    rows = []
    for env_id in dict.fromkeys(r["env_id"] for r in runs):
        for coef in sorted({r["coef"] for r in runs if r["env_id"] == env_id}, key=lambda c: -1 if c is None else c):
            group = [r for r in runs if r["env_id"] == env_id and r["coef"] == coef]
            score, score_sd = mean_sd([r["score"] for r in group])
            entropy, entropy_sd = mean_sd([r["entropy"] for r in group])
            row = dict(env_id=env_id, coef=coef, seeds=len(group), steps=min(r["steps"] for r in group))
            rows.append(dict(row, score_mean=score, score_sd=score_sd, entropy_mean=entropy, entropy_sd=entropy_sd))
    return rows


def label(coef: Optional[float]) -> str:
    return "baseline (no attention)" if coef is None else f"--attn-coef {coef:g}"


def colours(rows: list) -> dict:
    """One colour per coefficient, in order along viridis; grey for the baseline."""
    import matplotlib

    coefs = sorted(r["coef"] for r in rows if r["coef"] is not None)
    cmap = matplotlib.colormaps["viridis"]
    return {None: "0.35", **{c: cmap(0.85 * k / max(1, len(coefs) - 1)) for k, c in enumerate(coefs)}}


def draw_curves(env_id: str, runs: list, rows: list):
    """Learning curves of one game: per coefficient, mean +- sd over seeds of the last-100-games score."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, ax = plt.subplots(figsize=(8, 5))
    x, colour = np.linspace(0, max(r["steps"] for r in runs if r["env_id"] == env_id), 200), colours(rows)
    for row in rows:
        group = [r for r in runs if r["env_id"] == env_id and r["coef"] == row["coef"] and r["games"]]
        if group:
            mean, sd = mean_sd([np.interp(x, r["game_steps"], r["curve"], left=np.nan, right=np.nan) for r in group])
            c, seeds = colour[row["coef"]], f"{len(group)} seed{'s' * (len(group) > 1)}"
            ax.plot(x, mean, "--" if row["coef"] is None else "-", color=c, label=f"{label(row['coef'])} ({seeds})")
            ax.fill_between(x, mean - sd, mean + sd, color=c, alpha=0.2, linewidth=0)
    if ax.lines:
        ax.legend(loc="best", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no finished games yet", transform=ax.transAxes, ha="center", color="0.4")
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set(xlabel="agent steps", ylabel="game score (mean of last 100 games)", xlim=(0, x[-1]))
    ax.set_title(f"{env_id}: learning curves (line: mean over seeds, band: ± sd)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def draw_scatter(env_id: str, runs: list, rows: list, heads: int):
    """Final attention entropy against final score: a dot per run, a cross (gid "mean") per coefficient."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colour, uniform = colours(rows), heads * np.log(49)
    for row in rows:
        c = colour[row["coef"]]
        if row["coef"] is None:  # no attention, so no entropy: its score as a line, its sd as a band
            ax.axhline(row["score_mean"], color=c, ls="--", label=f"{label(None)}: mean score ± sd")
            ax.axhspan(row["score_mean"] - row["score_sd"], row["score_mean"] + row["score_sd"], color=c, alpha=0.12)
            continue
        group = [r for r in runs if r["env_id"] == env_id and r["coef"] == row["coef"]]
        ax.scatter([r["entropy"] for r in group], [r["score"] for r in group], s=30, alpha=0.6, color=c)
        mean = (row["entropy_mean"], row["score_mean"])
        ax.scatter(*mean, marker="X", s=160, color=c, edgecolor="black", label=label(row["coef"]), gid="mean")
    ax.axvline(uniform, color="0.6", ls=":", label="uniform attention")
    ax.set(xlim=(0, uniform * 1.05), xlabel=f"final attention entropy (nats, {heads} heads; uniform = {uniform:.2f})")
    ax.set(ylabel="game score (mean of last 100 games)")
    ax.set_title(f"{env_id}: attention entropy vs score\n(dots: one run each; crosses: mean over seeds)")
    ax.legend(loc="best", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_tables(rows: list, runs: list, out_dir: str) -> str:
    """results.csv and results.md (per coefficient), runs.csv (per run); returns the markdown table."""

    def cell(v):  # CSV: "baseline" for no coefficient, empty for a missing number
        return "baseline" if v is None else "" if isinstance(v, float) and np.isnan(v) else float(v)

    def pm(mean, sd, fmt):
        return "n/a" if np.isnan(mean) else f"{mean:{fmt}}" + ("" if np.isnan(sd) else f" ± {sd:{fmt}}")

    for name, table, keys in [
        (
            "results.csv",
            rows,
            ["env_id", "coef", "seeds", "steps", "score_mean", "score_sd", "entropy_mean", "entropy_sd"],
        ),
        ("runs.csv", runs, ["env_id", "coef", "seed", "steps", "games", "score", "entropy", "dir"]),
    ]:
        with open(os.path.join(out_dir, name), "w", newline="") as f:
            header = [{"coef": "attn_coef", "dir": "run_dir"}.get(k, k) for k in keys]
            numbers = {"coef", "score", "score_mean", "score_sd", "entropy", "entropy_mean", "entropy_sd"}
            csv.writer(f).writerows([header] + [[cell(r[k]) if k in numbers else r[k] for k in keys] for r in table])
    head = "| game | attention coefficient | seeds | agent steps | final score (mean of last 100 games) |"
    md = [head + " final attention entropy (nats) |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        coef = label(None) if r["coef"] is None else f"{r['coef']:g}"
        score, entropy = pm(r["score_mean"], r["score_sd"], ".1f"), pm(r["entropy_mean"], r["entropy_sd"], ".2f")
        md.append(f"| {r['env_id']} | {coef} | {r['seeds']} | {r['steps']:,} | {score} | {entropy} |")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n\nScores and entropies: mean ± sd over seeds (sample sd).\n")
    return "\n".join(md)


def plot(cfg: Plot) -> None:
    """Per game, the learning curves and the scatter (PNG); for all games, the tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = read_grid(cfg.sweep_dir)
    runs = collect_runs(cfg.sweep_dir, grid)
    rows = summarise(runs)
    out_dir = cfg.out_dir or os.path.join(cfg.sweep_dir, "figures")
    os.makedirs(out_dir, exist_ok=True)
    for env_id in dict.fromkeys(r["env_id"] for r in runs):
        env_rows = [r for r in rows if r["env_id"] == env_id]
        scatter = draw_scatter(env_id, runs, env_rows, grid["attn_heads"])
        for what, fig in {"curves": draw_curves(env_id, runs, env_rows), "scatter": scatter}.items():
            fig.savefig(os.path.join(out_dir, f"{env_id.replace('/', '-')}_{what}.png"), dpi=120)
            plt.close(fig)
    print(write_tables(rows, runs, out_dir))
    print(f"wrote the curves and scatter of each game (PNG), results.csv, results.md and runs.csv to {out_dir}")


# ----------------------------------------------------------------------------- main


def parse_command(argv: list) -> tuple:
    """(the subcommand's settings, the training flags given after `--`)."""
    cut = argv.index("--") if "--" in argv else len(argv)  # training flags for every run follow `--`
    subcommands = {"run": Run, "slurm": Slurm, "plot": Plot, "task": Task}
    return tyro.extras.subcommand_cli_from_dict(subcommands, args=argv[:cut]), tuple(argv[cut + 1 :])


def main(argv: list) -> int:
    cfg, extra = parse_command(argv)
    if isinstance(cfg, (Task, Plot)):
        if extra:
            raise SweepError("training flags after `--` go with `run` and `slurm` only.")
        return (run_task if isinstance(cfg, Task) else plot)(cfg) or 0
    cfg = dataclasses.replace(cfg, train_args=extra)
    if isinstance(cfg, Run) and cfg.workers < 1:
        raise SweepError(f"--workers must be at least 1, got {cfg.workers}.")
    check_grid(cfg)
    open_sweep(cfg)
    runs = grid_runs(grid_of(cfg))
    plot_hint = f"python {shlex.join([sys.argv[0], 'plot', cfg.sweep_dir])}"
    if isinstance(cfg, Slurm):
        path = write_slurm(cfg, len(runs))
        print(f"wrote {path}: {len(runs)} array tasks, one per run; submit it with:\n  sbatch {path}")
        return print(f"submit it again to continue interrupted runs; plot with: {plot_hint}") or 0
    states = [run_state(cfg.sweep_dir, run)[0] for run in runs]
    todo = [i for i, s in enumerate(states) if s != "done"]
    print(f"sweep {cfg.sweep_dir}: {len(runs)} runs, {len(runs) - len(todo)} finished already, ", end="")
    print(f"{len(todo)} to run ({states.count('resume')} from their checkpoint), {cfg.workers} at a time")
    code = run_local(cfg, runs, todo) if todo else 0
    if code == 0:
        print(f"{'nothing to run' if not todo else 'all runs finished'}; plot with: {plot_hint}")
    return code


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SweepError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # Ctrl-C before any run started, or in `task` before the training took over
        sys.exit(130)
