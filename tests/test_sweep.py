"""Tests of experiments/sweep.py: a tiny real sweep, Ctrl-C and restart, the SLURM script, the numbers
of the plot against a hand computation on fabricated TensorBoard events, and bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import sweep  # noqa: E402

SWEEP = os.path.join(ROOT, "experiments", "sweep.py")
TINY = ["--", "--num-envs", "2", "--num-steps", "256", "--num-minibatches", "2", "--update-epochs", "1"]


def sweep_cli(*args, timeout=240):
    return subprocess.run([sys.executable, SWEEP, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def run_folders(sweep_dir):
    return sorted(d for d in os.listdir(sweep_dir) if "__" in d)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def snapshot(folder):
    """Every file under `folder` with its content, to show that nothing changed."""
    files = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                files[os.path.relpath(os.path.join(dirpath, name), folder)] = f.read()
    return files


# ----------------------------------------------------------------------------- a tiny real sweep


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """2 coefficients x 1 seed, one batch of 2 x 256 steps each, 2 workers: (sweep folder, the run's output)."""
    sweep_dir = str(tmp_path_factory.mktemp("tiny") / "sweep")
    args = ["run", "--sweep-dir", sweep_dir, "--attn-coefs", "0", "5e-3", "--seeds", "1", "--total-timesteps", "512"]
    result = sweep_cli(*args, "--workers", "2", "--no-cuda", *TINY)
    return sweep_dir, args, result


@pytest.mark.slow
def test_tiny_sweep_runs_and_plots(tiny_sweep):
    sweep_dir, _, result = tiny_sweep
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 runs, 0 finished already, 2 to run" in result.stdout and "all runs finished" in result.stdout
    folders = run_folders(sweep_dir)
    assert [f.rsplit("__", 1)[0] for f in folders] == [
        "BreakoutNoFrameskip-v4__coef0.005__1",
        "BreakoutNoFrameskip-v4__coef0__1",
    ]
    for f in folders:
        ckpt = torch.load(os.path.join(sweep_dir, f, "run.pt"), weights_only=True)
        assert ckpt["global_step"] == 512 and ckpt["args"]["attn_coef"] == float(f.split("__")[1][4:])
    with open(os.path.join(sweep_dir, "logs", "BreakoutNoFrameskip-v4__coef0.005__1.log")) as f:
        assert "ppo_attention.py --env-id BreakoutNoFrameskip-v4 --seed 1" in f.read()

    plotted = sweep_cli("plot", sweep_dir)
    assert plotted.returncode == 0, plotted.stderr
    out = os.path.join(sweep_dir, "figures")
    for name in ["BreakoutNoFrameskip-v4_curves.png", "BreakoutNoFrameskip-v4_scatter.png", "results.md"]:
        assert os.path.getsize(os.path.join(out, name)) > 0
    rows = read_csv(os.path.join(out, "results.csv"))
    assert [(r["attn_coef"], r["seeds"], r["steps"]) for r in rows] == [("0.0", "1", "512"), ("0.005", "1", "512")]
    runs = read_csv(os.path.join(out, "runs.csv"))
    assert sorted(os.path.basename(r["run_dir"]) for r in runs) == folders


@pytest.mark.slow
def test_restarting_a_finished_sweep_runs_nothing(tiny_sweep):
    sweep_dir, args, _ = tiny_sweep
    before = run_folders(sweep_dir)
    result = sweep_cli(*args, "--workers", "2", "--no-cuda", *TINY)
    assert result.returncode == 0, result.stderr
    assert "2 finished already, 0 to run" in result.stdout and "nothing to run" in result.stdout
    assert run_folders(sweep_dir) == before


@pytest.mark.slow
def test_ctrl_c_saves_the_runs_and_a_restart_continues_them(tmp_path):
    sweep_dir = str(tmp_path / "sweep")
    cmd = [sys.executable, SWEEP, "run", "--sweep-dir", sweep_dir, "--attn-coefs", "0", "5e-4", "--seeds", "1"]
    cmd += ["--total-timesteps", "1536", "--workers", "2", "--no-cuda", "--", "--num-envs", "2", "--num-steps", "128"]
    cmd += ["--num-minibatches", "1", "--update-epochs", "1"]  # 6 iterations of 256 steps
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = [os.path.join(sweep_dir, "logs", f"BreakoutNoFrameskip-v4__{n}__1.log") for n in ("coef0", "coef0.0005")]
    deadline = time.time() + 120
    while not all(os.path.exists(g) and "step " in open(g).read() for g in logs) and time.time() < deadline:
        time.sleep(0.2)  # until both finished an iteration: then the training has its Ctrl-C handler
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err + out and "restart with the same command" in out
    folders = run_folders(sweep_dir)
    for folder in folders:
        steps = torch.load(os.path.join(sweep_dir, folder, "run.pt"), weights_only=True)["global_step"]
        assert 0 < steps < 1536  # stopped early, with a checkpoint

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 to run (2 from their checkpoint)" in result.stdout
    assert run_folders(sweep_dir) == folders
    for folder in folders:
        path = os.path.join(sweep_dir, folder, "run.pt")
        assert torch.load(path, weights_only=True)["global_step"] == 1536
        log = open(os.path.join(sweep_dir, "logs", folder.rsplit("__", 1)[0] + ".log")).read()
        assert f"ppo_attention.py --resume {path} --no-cuda\n" in log and "stopped; continue: python" in log


# ----------------------------------------------------------------------------- SLURM


def test_slurm_script_has_one_task_per_run_with_the_local_command(tmp_path, monkeypatch):
    sweep_dir = str(tmp_path / "sweep")
    grid = ["--sweep-dir", sweep_dir, "--attn-coefs", "0", "5e-4", "--seeds", "1", "2", "3", "--baseline"]
    result = sweep_cli("slurm", *grid, "--max-concurrent", "2", "--partition", "gpu", "--", "--num-envs", "4")
    assert result.returncode == 0, result.stderr
    script = os.path.join(sweep_dir, "sweep.sbatch")
    assert f"sbatch {script}" in result.stdout
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    text = open(script).read()
    for line in ["--array=0-8%2", "--gres=gpu:1", "--partition=gpu", f"--output={sweep_dir}/logs/%A_%a.out"]:
        assert f"#SBATCH {line}\n" in text

    # what the local pool starts for run i (its Popen, recorded) ...
    started = []

    class FakeRun:
        def __init__(self, cmd, **kw):
            started.append(cmd)
            self.returncode = 0

        def poll(self):
            return 0

    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    cfg = sweep.Run(sweep_dir=sweep_dir, attn_coefs=(0.0, 5e-4), seeds=(1, 2, 3), baseline=True, workers=2)
    runs = sweep.grid_runs(sweep.grid_of(cfg))
    with monkeypatch.context() as patch:
        patch.setattr(sweep.subprocess, "Popen", FakeRun)
        patch.setattr(sweep.time, "sleep", lambda s: None)
        assert sweep.run_local(cfg, runs, list(range(9))) == 0
    signal.signal(signal.SIGINT, handlers[0])
    signal.signal(signal.SIGTERM, handlers[1])
    # ... is what array task i runs, as bash expands the script's command
    (exec_line,) = [line for line in text.splitlines() if line.startswith("exec ")]
    for i in range(9):
        env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(i))
        argv = subprocess.run(["bash", "-c", "printf '%s\\0' " + exec_line[5:]], env=env, capture_output=True)
        assert argv.stdout.decode().split("\0")[:-1] == started[i]
    assert [r["name"] for r in runs[:3]] == [
        f"BreakoutNoFrameskip-v4__{n}__1" for n in ("baseline", "coef0", "coef0.0005")
    ]


# ----------------------------------------------------------------------------- numbers on fabricated runs

SCORES = {  # (coef, seed) -> the game scores of a fabricated run (150 games: only the last 100 count)
    (None, 1): np.arange(150.0),
    (None, 2): np.arange(150.0) + 10,
    (0.0, 1): np.linspace(0, 30, 150),
    (0.0, 2): np.linspace(0, 50, 150),
    (5e-3, 1): np.full(150, 4.0),
    (5e-3, 2): np.r_[np.full(50, 100.0), np.full(100, 2.0)],
}
ENTROPY = {(None, 1): 0.0, (None, 2): 0.0, (0.0, 1): 7.5, (0.0, 2): 7.1, (5e-3, 1): 2.0, (5e-3, 2): 3.0}


@pytest.fixture
def fabricated(tmp_path):
    """A sweep folder of fake runs with known scores and entropies, plus a folder without run.pt."""
    sweep_dir = str(tmp_path / "fab")
    grid = sweep.grid_of(sweep.Grid(attn_coefs=(0.0, 5e-3), seeds=(1, 2), baseline=True, total_timesteps=2048))
    os.makedirs(sweep_dir)
    with open(os.path.join(sweep_dir, "sweep.json"), "w") as f:
        json.dump(grid, f)
    for (coef, seed), scores in SCORES.items():
        run_dir = os.path.join(sweep_dir, f"BreakoutNoFrameskip-v4__{sweep.exp_name(coef)}__{seed}__1700000000")
        with SummaryWriter(run_dir) as w:
            for k, score in enumerate(scores):
                w.add_scalar("charts/episodic_return", score, 10 * k)
            for step, entropy in [(1024, 7.7), (2048, ENTROPY[coef, seed])]:
                w.add_scalar("losses/attention_entropy", entropy, step)  # the baseline logs 0, like the real one
        args = dict(total_timesteps=2048, num_envs=8, num_steps=128)
        torch.save(dict(global_step=2048, args=args), os.path.join(run_dir, "run.pt"))
    killed = os.path.join(sweep_dir, "BreakoutNoFrameskip-v4__coef0__1__1800000000")  # newer, but no run.pt
    with SummaryWriter(killed) as w:
        w.add_scalar("charts/episodic_return", 1e6, 10)
        w.add_scalar("losses/attention_entropy", 0.1, 1024)
    return sweep_dir, grid


def by_hand(coef):
    """(score mean, score sd, entropy mean, entropy sd) over seeds 1 and 2: score = mean of the last 100 games."""
    scores = [SCORES[coef, s][-100:].mean() for s in (1, 2)]
    entropies = [ENTROPY[coef, s] for s in (1, 2)]
    return np.mean(scores), np.std(scores, ddof=1), np.mean(entropies), np.std(entropies, ddof=1)


def test_scatter_and_table_match_a_hand_computation(fabricated, capsys):
    sweep_dir, grid = fabricated
    runs = sweep.collect_runs(sweep_dir, grid)
    assert "left out" in capsys.readouterr().out and len(runs) == 6
    rows = sweep.summarise(runs)
    fig = sweep.draw_scatter("BreakoutNoFrameskip-v4", runs, rows, heads=2)
    crosses = [c.get_offsets()[0] for c in fig.axes[0].collections if c.get_gid() == "mean"]
    np.testing.assert_allclose(crosses, [[by_hand(c)[2], by_hand(c)[0]] for c in (0.0, 5e-3)], rtol=1e-6)

    sweep.plot(sweep.Plot(sweep_dir))
    table = read_csv(os.path.join(sweep_dir, "figures", "results.csv"))
    assert [r["attn_coef"] for r in table] == ["baseline", "0.0", "0.005"]
    for row, coef in zip(table, [None, 0.0, 5e-3]):
        score, score_sd, entropy, entropy_sd = by_hand(coef)
        assert row["seeds"] == "2" and row["steps"] == "2048"
        assert float(row["score_mean"]) == pytest.approx(score) and float(row["score_sd"]) == pytest.approx(score_sd)
        if coef is None:
            assert row["entropy_mean"] == row["entropy_sd"] == ""
        else:
            assert float(row["entropy_mean"]) == pytest.approx(entropy, rel=1e-6)
            assert float(row["entropy_sd"]) == pytest.approx(entropy_sd, rel=1e-5)
    md = open(os.path.join(sweep_dir, "figures", "results.md")).read()
    assert f"| baseline (no attention) | 2 | 2,048 | {by_hand(None)[0]:.1f} ± {by_hand(None)[1]:.1f} | n/a |" in md
    assert os.path.exists(os.path.join(sweep_dir, "figures", "BreakoutNoFrameskip-v4_curves.png"))


# ----------------------------------------------------------------------------- bad input

GRID = ["--attn-coefs", "0", "5e-3", "--seeds", "1", "2", "--baseline", "--total-timesteps", "2048"]
BAD = {
    "empty grid": ["run", "--attn-coefs", "--seeds", "1"],
    "negative coefficient": ["run", "--attn-coefs", "-0.001", "5e-3", "--seeds", "1", "2"],
    "unknown game": ["run", "--env-ids", "Breakot-v4", *GRID],
    "no workers": ["run", *GRID, "--workers", "0"],
    "another grid": [
        "run",
        "--attn-coefs",
        "0",
        "5e-4",
        "--seeds",
        "1",
        "2",
        "--baseline",
        "--total-timesteps",
        "2048",
    ],
    "flag set by the sweep": ["slurm", *GRID, "--", "--seed", "3"],
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_sentence_and_overwrites_nothing(case, fabricated):
    sweep_dir, _ = fabricated
    before = snapshot(sweep_dir)
    args = BAD[case]
    result = sweep_cli(args[0], "--sweep-dir", sweep_dir, *args[1:])
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert snapshot(sweep_dir) == before
    if case == "unknown game":
        assert "BreakoutNoFrameskip-v4" in result.stderr


@pytest.mark.parametrize("with_grid", [True, False])
def test_plot_of_a_folder_without_runs_is_refused(tmp_path, with_grid):
    if with_grid:
        json.dump(sweep.grid_of(sweep.Grid()), open(tmp_path / "sweep.json", "w"))
    result = sweep_cli("plot", tmp_path)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert not os.path.exists(tmp_path / "figures")
