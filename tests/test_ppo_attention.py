"""Tests of ppo_attention.py: the attention math, real tiny training runs, checkpoints, resume, bad input."""

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, assert_clean_error, bad_checkpoints, ppo_loss_on_rows, tiny_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import load_checkpoint
from atari_env import make_env, resolve_atari_id
from cli import read_checkpoint
from ppo_attention import Agent, Args, attention_entropy, resumed_args, train

TINY = ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1", "--no-cuda"]


def run_script(*argv, timeout=600):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "ppo_attention.py"), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def scalars(run_dir, tag):
    ea = EventAccumulator(str(run_dir))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


# ----------------------------------------------------------------------------- math


def test_entropy_uniform_maps_give_heads_times_ln49():
    logits = torch.zeros(3, 2, 7, 7)
    assert torch.allclose(attention_entropy(logits), torch.full((3, 2), math.log(49)), atol=1e-6)


def test_entropy_one_hot_map_gives_zero():
    logits = torch.full((1, 2, 7, 7), -1e4)
    logits[0, 0, 3, 4] = logits[0, 1, 0, 6] = 1e4
    assert torch.allclose(attention_entropy(logits), torch.zeros(1, 2), atol=1e-6)


def test_entropy_equals_direct_computation():
    logits = torch.randn(5, 3, 7, 7, generator=torch.Generator().manual_seed(0)) * 3
    p = torch.exp(logits.flatten(2)) / torch.exp(logits.flatten(2)).sum(-1, keepdim=True)
    direct = -(p * torch.log(p)).sum(-1)
    assert torch.allclose(attention_entropy(logits), direct, atol=1e-5)


def test_agent_shapes_and_attention_is_a_distribution_per_head():
    torch.manual_seed(0)
    agent = Agent(n_actions=6, attn_heads=3)
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    logits, value, attention = agent(obs)
    assert logits.shape == (5, 6) and value.shape == (5, 1) and attention.shape == (5, 3, 7, 7)
    assert (attention >= 0).all()
    assert torch.allclose(attention.sum((2, 3)), torch.ones(5, 3), atol=1e-5)
    activations = agent.activations(obs)
    expected = {"conv1": (32, 20, 20), "conv2": (64, 9, 9), "conv3": (64, 7, 7), "features": (64, 7, 7)}
    expected.update(attn_hidden=(512, 7, 7), attn_logits=(3, 7, 7), masked=(64, 7, 7))
    for name, shape in expected.items():
        assert activations[name].shape == (5, *shape), name
    # features are unit vectors over the channels at each place; uint8 and [0,1] float input agree
    assert torch.allclose(activations["features"].norm(dim=1), torch.ones(5, 7, 7), atol=1e-4)
    assert torch.allclose(agent(obs.float() / 255)[0], logits, atol=1e-5)


def test_baseline_agent_has_no_attention_module():
    agent = Agent(n_actions=4, attn_heads=0)
    assert not any("attn" in k for k in agent.state_dict())
    logits, value, attention = agent(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (2, 4) and attention.shape == (2, 0, 7, 7)
    assert attention_entropy(agent.activations(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))["attn_logits"]).shape == (
        2,
        0,
    )


@pytest.mark.parametrize("env_id, n_actions, sticky", [("PongNoFrameskip-v4", 6, 0.0), ("ALE/Breakout-v5", 4, 0.25)])
def test_common_ids_give_training_and_single_envs(env_id, n_actions, sticky):
    import ppo_attention

    assert resolve_atari_id(env_id)[1]["repeat_action_probability"] == sticky
    envs = ppo_attention.make_env(env_id, 2)  # the training vector env; atari_env.make_env: one game
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8 and envs.single_action_space.n == n_actions
    env = make_env(env_id)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and env.action_space.n == n_actions


# ----------------------------------------------------------------------------- training end to end


def test_tiny_run_writes_loadable_checkpoint_and_attention_logs(tiny_checkpoint):
    agent, meta = load_checkpoint(tiny_checkpoint)
    assert not any(p.requires_grad for p in agent.parameters())  # explained, never trained: frozen
    assert not agent.training
    assert meta["env_id"] == "BreakoutNoFrameskip-v4" and meta["n_actions"] == 4
    assert meta["action_names"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert meta["global_step"] == 64 and meta["args"]["attn_coef"] == 5e-4
    ckpt = torch.load(tiny_checkpoint, weights_only=True)  # the contract: plain weights_only load
    assert "optimizer" in ckpt and ckpt["format_version"] == 1 and ckpt["args"]["precision"] in ("fp32", "bf16")
    run_dir = os.path.dirname(tiny_checkpoint)
    entropy = scalars(run_dir, "losses/attention_entropy")
    assert [s for s, _ in entropy] == [64] and 0 < entropy[0][1] <= 2 * math.log(49) + 1e-4
    assert len(scalars(run_dir, "losses/attention_entropy_head1")) == 1
    for tag in ("charts/SPS", "losses/value_loss", "losses/approx_kl", "losses/explained_variance"):
        assert scalars(run_dir, tag)


def test_baseline_run_loads_and_logs_no_attention_entropy(tiny_baseline_checkpoint):
    agent, meta = load_checkpoint(tiny_baseline_checkpoint)
    assert meta["attn_heads"] == 0 and agent.attn_heads == 0
    ea = EventAccumulator(os.path.dirname(tiny_baseline_checkpoint))
    ea.Reload()
    tags = ea.Tags()["scalars"]
    assert "losses/value_loss" in tags and not [t for t in tags if "attention" in t]


@pytest.mark.slow
def test_same_seed_gives_same_losses(tmp_path):
    runs = [train(tiny_args(tmp_path / f"s{i}", total_timesteps=64))[0] for i in range(2)]
    a, b = (torch.load(p, weights_only=True)["model"] for p in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = [scalars(os.path.dirname(p), "losses/value_loss") for p in runs]
    assert losses[0] == losses[1]


@pytest.mark.slow
def test_penalty_lowers_attention_entropy(tmp_path):
    final = {}
    for coef in (0.0, 1.0):
        path, _ = train(tiny_args(tmp_path / str(coef), total_timesteps=256, update_epochs=2, attn_coef=coef))
        final[coef] = scalars(os.path.dirname(path), "losses/attention_entropy")[-1][1]
    assert final[1.0] < final[0.0] - 0.03, final


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_reaches_total(tmp_path):
    total = 64 * 40
    proc = subprocess.Popen(
        [sys.executable, "ppo_attention.py", *TINY, "--total-timesteps", str(total), "--runs-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:  # wait until training is under way
        if line.startswith("step"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (run_dir,) = [p for p in tmp_path.iterdir()]
    ckpt_path = run_dir / "run.pt"
    saved = read_checkpoint(str(ckpt_path))
    stopped_at = saved["global_step"]
    assert 0 < stopped_at < total and stopped_at % 64 == 0 and saved["iteration"] * 64 == stopped_at
    load_checkpoint(str(ckpt_path))  # complete and loadable

    resumed = run_script("--resume", str(ckpt_path))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run_dir.name}" in resumed.stdout and f"{stopped_at:,}/{total:,} steps" in resumed.stdout
    final = read_checkpoint(str(ckpt_path))
    assert final["global_step"] == total and final["iteration"] == 40
    steps = [s for s, _ in scalars(run_dir, "charts/learning_rate")]
    assert steps == sorted(steps) and steps[-1] == total and len(steps) == 40  # the counter continued, no gap
    lr = dict(scalars(run_dir, "charts/learning_rate"))
    assert lr[total] == pytest.approx(2.5e-4 / 40, rel=1e-4)  # the schedule continued too


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--env-id", "BreakoutNoFrameskp-v4"], ["not an RGB Atari id", "try BreakoutNoFrameskip-v4"]),
        (["--env-id", "breakout"], ["try BreakoutNoFrameskip-v4 or ALE/Breakout-v5"]),
        (["--env-id", "Breakout-v4"], ["fixed frame skip", "BreakoutNoFrameskip-v4"]),
        (["--env-id", "CartPole-v1"], ["not an RGB Atari id"]),
        (["--total-timesteps", "0"], ["--total-timesteps must be positive"]),
        (["--total-timesteps", "10"], ["--total-timesteps must hold an iteration"]),
        (["--attn-coef", "-0.1"], ["--attn-coef"]),
        (["--num-minibatches", "100"], ["--num-minibatches"]),
        (["--num-envs", "0"], ["--num-envs"]),
    ],
)
@pytest.mark.slow
def test_bad_flags(argv, words, tmp_path):
    result = run_script(*TINY, "--runs-dir", str(tmp_path), *argv)
    assert_clean_error(result, *words)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.slow
def test_unwritable_run_folder(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    result = run_script(*TINY, "--total-timesteps", "64", "--runs-dir", str(blocker / "runs"))
    assert_clean_error(result, "cannot make the run folder")
    assert blocker.read_text() == "keep me"


@pytest.mark.slow
def test_resume_refuses_bad_files_and_leaves_them_alone(tmp_path, tiny_checkpoint):
    for name, (path, words) in bad_checkpoints(tmp_path, tiny_checkpoint).items():
        before = path.read_bytes() if path.exists() else None
        result = run_script("--resume", str(path), "--no-cuda")
        assert_clean_error(result, words)
        assert (path.read_bytes() if path.exists() else None) == before, name


def test_suggested_env_ids_are_accepted():
    for bad in ("breakout", "Breakout-v4", "BreakoutNoFrameskp-v4", "ms_pacman", "ALE/Pong-v4", "pong"):
        with pytest.raises(ValueError) as e:
            resolve_atari_id(bad)
        suggested = str(e.value).split("try ")[1].rstrip(".").split(" or ")
        for env_id in suggested:
            resolve_atari_id(env_id)  # raises if the suggestion is refused too


@pytest.mark.slow
def test_help_hides_computed_fields_and_names_choices():
    out = run_script("--help").stdout
    assert "--batch-size" not in out and "--num-iterations" not in out and "--minibatch-size" not in out
    assert "{auto,fp32,bf16}" in out and "iteration" in out


# ----------------------------------------------------------------------------- the play loop


# ----------------------------------------------------------------------------- Ctrl-C and resume


@pytest.mark.slow
@pytest.mark.parametrize("presses", ["twice", "until it exits"])
def test_repeated_ctrl_c_ends_with_exit_130_no_traceback_and_the_run_saved(tmp_path, presses):
    """Whether a later Ctrl-C lands before the save, after it (the handler put back) or while Python shuts down, the
    process exits 130 with no traceback, and the run is saved. A tiny iteration ends within milliseconds, so on a
    quiet machine the second press of "twice" (50 ms later) often lands after the save."""
    proc = subprocess.Popen(
        [sys.executable, "ppo_attention.py", *TINY, "--total-timesteps", str(64 * 400), "--runs-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.readline()  # the run has started
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    while presses == "until it exits" and proc.poll() is None:
        time.sleep(0.002)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    (run_dir,) = tmp_path.iterdir()
    assert read_checkpoint(str(run_dir))["global_step"] > 0


@pytest.mark.slow
def test_train_in_process_puts_back_the_signal_handlers_it_found(tmp_path):
    """train() catches Ctrl-C and SIGTERM while it runs; afterwards the handlers installed before are back, so a
    notebook's or a test's Ctrl-C interrupts again."""
    presses = []

    def mine(signum, frame):
        presses.append(signum)

    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    try:
        signal.signal(signal.SIGINT, mine)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        train(tiny_args(tmp_path))
        assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # Python runs the handler at its next bytecode
        assert presses == [signal.SIGINT]
    finally:
        for sig, handler in zip((signal.SIGINT, signal.SIGTERM), before):
            signal.signal(sig, handler)


@pytest.mark.slow
def test_ctrl_c_twice_during_the_save_lets_it_finish(tmp_path, monkeypatch, capsys):
    """Ctrl-C asks once; more presses change nothing, so no press can interrupt the checkpoint being written."""
    import ppo_attention

    real_save = ppo_attention.save_checkpoint

    def save_under_ctrl_c(*a, **kw):
        os.kill(os.getpid(), signal.SIGINT)  # the first asks for a save and a stop
        os.kill(os.getpid(), signal.SIGINT)  # the second, while the checkpoint is written
        return real_save(*a, **kw)

    monkeypatch.setattr(ppo_attention, "save_checkpoint", save_under_ctrl_c)
    argv = [*TINY, "--total-timesteps", "6400", "--save-interval", "1", "--runs-dir", str(tmp_path)]
    handler = signal.getsignal(signal.SIGINT)
    assert ppo_attention.main(argv) == 130
    (run_dir,) = tmp_path.iterdir()
    assert read_checkpoint(str(run_dir))["global_step"] == 64  # the first iteration, saved whole
    assert capsys.readouterr().err.count("Ctrl-C: finishing this iteration, then saving it") == 2
    assert signal.getsignal(signal.SIGINT) is handler  # stopped by Ctrl-C, the handler found is back


@pytest.mark.slow
def test_ctrl_c_during_the_last_update_finishes_the_run(tmp_path, monkeypatch):
    """The last iteration's rollout is complete when Ctrl-C comes: the run ends normally, saved once."""
    import ppo_attention

    saves, calls = [], []
    real_losses, real_save = ppo_attention.ppo_loss, ppo_attention.save_checkpoint

    def losses_then_ctrl_c(*a, **kw):
        calls.append(1)
        if len(calls) == 2 * 2:  # the last minibatch of the second (last) iteration
            os.kill(os.getpid(), signal.SIGINT)
        return real_losses(*a, **kw)

    monkeypatch.setattr(ppo_attention, "ppo_loss", losses_then_ctrl_c)
    monkeypatch.setattr(ppo_attention, "save_checkpoint", lambda *a: saves.append(a[-1]["iteration"]) or real_save(*a))
    path, interrupted = train(tiny_args(tmp_path, total_timesteps=128))
    assert not interrupted and saves == [2] and read_checkpoint(path)["global_step"] == 128


@pytest.mark.slow
def test_resume_extends_the_run_and_refuses_other_changes(tmp_path, tiny_checkpoint):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(os.path.dirname(tiny_checkpoint), run_dir)
    changed = run_script("--resume", str(run_dir), "--attn-coef", "0.01")
    assert_clean_error(changed, "--attn-coef 0.01 differs from the saved run's 0.0005")
    assert read_checkpoint(str(run_dir / "run.pt"))["global_step"] == 64

    extended = run_script("--resume", str(run_dir), "--total-timesteps", "192")  # a run folder works as --resume
    assert extended.returncode == 0, extended.stderr
    ckpt = read_checkpoint(str(run_dir / "run.pt"))
    assert ckpt["global_step"] == 192 and ckpt["iteration"] == 3 and ckpt["args"]["total_timesteps"] == 192
    lr = dict(scalars(run_dir, "charts/learning_rate"))
    assert sorted(lr) == [64, 128, 192]  # logs continue from the saved step, no gap, no overlap
    assert lr[192] == pytest.approx(2.5e-4 / 3, rel=1e-4)  # the schedule is stretched to the new total
    assert ckpt["args"]["precision"] == read_checkpoint(tiny_checkpoint)["args"]["precision"]  # kept

    again = run_script("--resume", str(run_dir / "run.pt"))  # complete: nothing to do
    assert again.returncode == 0 and "done" in again.stdout and read_checkpoint(str(run_dir))["global_step"] == 192


def test_resume_uses_this_machines_device_not_the_saved_one(tmp_path, tiny_checkpoint):
    """A run saved with --no-cuda (on a CPU) resumes on the GPU of the machine it moves to, unless --no-cuda again."""
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["args"]["cuda"] = False
    torch.save(ckpt, saved := str(tmp_path / "cpu_run.pt"))
    assert resumed_args([], saved).cuda is True
    assert resumed_args(["--no-cuda"], saved).cuda is False
    assert resumed_args([], saved).num_envs == ckpt["args"]["num_envs"]  # every other setting is the saved one


@pytest.mark.slow
def test_weights_only_checkpoint_loads_but_cannot_resume(tmp_path, tiny_checkpoint):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    del ckpt["optimizer"]
    shipped = tmp_path / "shipped.pt"
    torch.save(ckpt, shipped)
    agent, meta = load_checkpoint(str(shipped))
    assert agent.attn_heads == 2 and meta["env_id"] == "BreakoutNoFrameskip-v4"
    assert_clean_error(run_script("--resume", str(shipped)), "no optimiser state")


# ----------------------------------------------------------------------------- bf16


def fixed_minibatch(n=64, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    env = make_env("BreakoutNoFrameskip-v4", seed=seed)
    obs, frames = env.reset(seed=seed)[0], []
    for _ in range(n):
        obs, *_ = env.step(env.action_space.sample())
        frames.append(np.asarray(obs))
    return dict(
        obs=torch.as_tensor(np.stack(frames)),
        actions=torch.randint(0, 4, (n,), generator=g),
        logprobs=torch.full((n,), float(np.log(0.25))) + 0.05 * torch.randn(n, generator=g),
        advantages=torch.randn(n, generator=g),
        returns=torch.randn(n, generator=g),
        values=0.1 * torch.randn(n, generator=g),
    )


def minibatch_loss(agent, minibatch, args, bf16: bool):
    """The training loop's loss of one minibatch: the forward pass under autocast, then `ppo_loss` in fp32."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        _, newlogprob, entropy, newvalue, attn_entropy = agent.get_action_and_value(
            minibatch["obs"], minibatch["actions"]
        )
    return ppo_loss_on_rows(newlogprob, entropy, newvalue, attn_entropy, minibatch, args)


def test_bf16_update_moves_the_loss_like_fp32():
    """The same Adam step on the same batch, from the same weights, in fp32 and under bf16 autocast."""
    mb, args = fixed_minibatch(), Args(attn_coef=1e-2)
    results = {}
    for bf16 in (False, True):
        torch.manual_seed(0)
        agent = Agent(4, 2)
        optimizer = torch.optim.Adam(agent.parameters(), lr=1e-3, eps=1e-5)
        before, stats = minibatch_loss(agent, mb, args, bf16)
        optimizer.zero_grad()
        before.backward()
        optimizer.step()
        after, _ = minibatch_loss(agent, mb, args, bf16)
        assert before.dtype == torch.float32 and stats["attention_entropy"].dtype == torch.float32
        results[bf16] = (before.item(), after.item(), stats)
    (b32, a32, s32), (b16, a16, s16) = results[False], results[True]
    assert a32 < b32 and a16 < b16  # the step lowers the loss in both
    assert b16 == pytest.approx(b32, abs=0.02) and a16 == pytest.approx(a32, abs=0.02)  # bf16 has ~3 digits
    for name in ("value_loss", "policy_loss", "entropy", "attention_entropy"):
        assert float(s16[name]) == pytest.approx(float(s32[name]), rel=0.02, abs=0.01), name


@pytest.mark.slow
def test_bf16_where_it_is_not_native_falls_back_with_one_sentence(tmp_path, monkeypatch, capsys):
    import ppo_attention

    monkeypatch.setattr(ppo_attention, "BF16_CPU_FLAGS", set())
    path, _ = train(tiny_args(tmp_path, precision="bf16"))
    assert "bf16 is not supported natively on this CPU; training in fp32 instead." in capsys.readouterr().out
    assert read_checkpoint(path)["args"]["precision"] == "fp32"
    monkeypatch.setattr(ppo_attention, "BF16_CPU_FLAGS", set(open("/proc/cpuinfo").read().split()))
    assert ppo_attention.resolve_precision("auto", torch.device("cpu")) == "bf16"
