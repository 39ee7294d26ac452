"""Tests of saliency.py: the maths of each method against simple references, the CLI end to end, bad input."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ppo_attention import Agent, load_checkpoint
from saliency import cli, gaussian_blur, saliency_map

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "saliency.py")
TARGETS = ("attention", "action", "value")


@pytest.fixture(scope="module")
def agent(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)[0]


def random_obs(batch=1, seed=0) -> torch.Tensor:
    """Random uint8 observations (B, 4, 84, 84)."""
    return torch.randint(0, 256, (batch, 4, 84, 84), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def reference_target(agent, x, target, peak, action) -> torch.Tensor:
    """The documented target of one float input (1, 4, 84, 84), written out plainly."""
    a = agent.activations(x)
    if target == "value":
        return a["value"][0, 0]
    if target == "action":
        return a["logits"][0, action]
    log_attention = F.log_softmax(a["attn_logits"][0].flatten(1), dim=-1)  # (H, 49)
    return sum(log_attention[h, peak[h]] for h in range(agent.attn_heads))


def clean_peak_and_action(agent, x):
    with torch.no_grad():
        a = agent.activations(x)
    return a["attn_logits"][0].flatten(1).argmax(-1).tolist(), int(a["logits"][0].argmax())


# ----------------------------------------------------------------------------- gradient methods


@pytest.mark.parametrize("target", TARGETS)
def test_gradient_matches_central_finite_differences(agent, target):
    model = Agent(agent.n_actions, agent.attn_heads).double()
    model.load_state_dict(agent.state_dict())
    x = random_obs().double() / 255
    grad = saliency_map(model, x, method="gradient", target=target, signed=True)[0]
    peak, action = clean_peak_and_action(model, x)
    pixels = [tuple(int(i) for i in np.unravel_index(int(k), grad.shape)) for k in grad.abs().flatten().topk(4).indices]
    pixels += [(0, 40, 40), (3, 10, 70)]
    h = 1e-5
    for c, i, j in pixels:
        up, down = x.clone(), x.clone()
        up[0, c, i, j] += h
        down[0, c, i, j] -= h
        with torch.no_grad():
            fd = (
                reference_target(model, up, target, peak, action) - reference_target(model, down, target, peak, action)
            ) / (2 * h)
        assert float(fd) == pytest.approx(float(grad[c, i, j]), rel=1e-4, abs=1e-6 * float(grad.abs().max()))
    assert grad.abs().max() > 0


@pytest.mark.parametrize("target", TARGETS)
def test_smoothgrad_without_noise_is_the_gradient_and_vargrad_is_zero(agent, target):
    obs = random_obs(2, seed=1)
    grad = saliency_map(agent, obs, method="gradient", target=target, signed=True)
    smooth = saliency_map(agent, obs, method="smoothgrad", target=target, samples=6, noise=0.0, chunk=4, signed=True)
    var = saliency_map(agent, obs, method="vargrad", target=target, samples=6, noise=0.0, chunk=4)
    torch.testing.assert_close(smooth, grad, rtol=1e-5, atol=1e-7 * float(grad.abs().max()))
    assert float(var.abs().max()) <= 1e-10 * float(grad.abs().max()) ** 2
    assert saliency_map(agent, obs, method="gradient", target=target).equal(grad.abs())


@pytest.mark.parametrize("target", TARGETS)
def test_batched_noisy_gradients_equal_a_per_sample_loop(agent, target):
    """Two observations x 5 copies in chunks of 3 (chunks straddle observations) vs one copy at a time."""
    obs, samples, noise = random_obs(2, seed=2), 5, 0.15
    smooth = saliency_map(agent, obs, "smoothgrad", target, samples=samples, noise=noise, chunk=3, signed=True,
                          generator=torch.Generator().manual_seed(7))  # fmt: skip
    var = saliency_map(agent, obs, "vargrad", target, samples=samples, noise=noise, chunk=3,
                       generator=torch.Generator().manual_seed(7))  # fmt: skip
    eps = torch.randn(2 * samples, 4, 84, 84, generator=torch.Generator().manual_seed(7))  # copy k of obs b: row b*n+k
    for b in range(2):
        x = obs[b : b + 1].float() / 255
        peak, action = clean_peak_and_action(agent, x)
        grads = []
        for k in range(samples):
            noisy = (x + noise * eps[b * samples + k]).requires_grad_(True)
            grads.append(torch.autograd.grad(reference_target(agent, noisy, target, peak, action), noisy)[0][0])
        grads = torch.stack(grads)  # (samples, 4, 84, 84)
        scale = float(grads.abs().max())
        torch.testing.assert_close(smooth[b], grads.mean(0), rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(var[b], grads.var(0, unbiased=False), rtol=1e-3, atol=1e-5 * scale**2)
    assert var.max() > 0


def test_gradients_are_zero_on_frames_the_network_ignores(agent):
    model = Agent(agent.n_actions, agent.attn_heads)
    model.load_state_dict(agent.state_dict())
    with torch.no_grad():
        model.conv1.weight[:, :3] = 0  # only the newest frame reaches the network
    obs = random_obs(1, seed=3)
    for method in ("gradient", "smoothgrad", "vargrad"):
        m = saliency_map(model, obs, method=method, target="action", samples=4)
        assert float(m[0, :3].abs().max()) == 0.0 and float(m[0, 3].max()) > 0, method


# ----------------------------------------------------------------------------- perturbation


def left_eyed_agent() -> Agent:
    """A baseline agent whose fc layer only reads the leftmost column of conv3 units: it sees input columns 0..35."""
    torch.manual_seed(0)
    model = Agent(n_actions=4, attn_heads=0).eval()
    with torch.no_grad():
        model.fc.weight.view(512, 64, 7, 7)[..., 1:] = 0
        model.actor.weight.mul_(100)  # logits of order 1
    return model


@pytest.mark.parametrize("target", ("action", "value"))
def test_perturbation_is_zero_where_the_network_cannot_see_and_positive_where_it_looks(target):
    model = left_eyed_agent()
    m = saliency_map(model, random_obs(1, seed=4), method="perturbation", target=target, stride=5)
    assert m.shape == (1, 4, 84, 84) and torch.equal(m[0, 0], m[0, 3])
    top = float(m.max())
    assert top > 0
    assert float(m[..., 60:].max()) <= 1e-6 * top  # masks centred here barely reach column 35
    assert float(m[..., :30].min()) > 0 and float(m[..., :30].median()) > 1e-2 * top


def test_perturbation_grid_point_equals_greydanus_formula():
    model = left_eyed_agent()
    x = random_obs(1, seed=5).float() / 255
    m = saliency_map(model, x, method="perturbation", target="action", stride=5)
    yy, xx = torch.meshgrid(torch.arange(84.0), torch.arange(84.0), indexing="ij")
    mask = torch.exp(-((yy - 20) ** 2 + (xx - 15) ** 2) / (2 * 25.0))  # centre (20, 15) is on the stride-5 grid
    perturbed = x * (1 - mask) + gaussian_blur(x, 3.0) * mask
    with torch.no_grad():
        expected = 0.5 * (model(x)[0] - model(perturbed)[0]).pow(2).sum()
    assert float(m[0, 0, 20, 15]) == pytest.approx(float(expected), rel=1e-4)


def test_gaussian_blur_keeps_constants_and_matches_a_direct_sum():
    x = torch.rand(1, 1, 84, 84, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(gaussian_blur(torch.full((1, 2, 84, 84), 0.3)), torch.full((1, 2, 84, 84), 0.3))
    taps = torch.arange(-9, 10.0)
    w = torch.exp(-(taps[:, None] ** 2 + taps[None, :] ** 2) / 18)
    expected = (x[0, 0, 30:49, 40:59] * w).sum() / w.sum()  # pixel (39, 49), away from the borders
    assert float(gaussian_blur(x)[0, 0, 39, 49]) == pytest.approx(float(expected), rel=1e-5)


# ----------------------------------------------------------------------------- the function's contract


@pytest.mark.parametrize("method", ("gradient", "smoothgrad", "vargrad", "perturbation"))
def test_maps_are_shaped_like_the_observations_for_uint8_and_float_input(agent, method):
    obs = random_obs(2, seed=8)
    g = torch.Generator().manual_seed(0)
    from_uint8 = saliency_map(agent, obs, method, "attention", samples=3, generator=g)
    from_float = saliency_map(agent, obs.numpy() / 255.0, method, "attention", samples=3, generator=g.manual_seed(0))
    assert from_uint8.shape == (2, 4, 84, 84) and from_uint8.dtype == torch.float32
    assert float(from_uint8.min()) >= 0 and float(from_uint8.max()) > 0
    torch.testing.assert_close(from_uint8, from_float, rtol=1e-4, atol=1e-6 * float(from_uint8.max()))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(method="saliency"), "unknown method"),
        (dict(target="reward"), "unknown target"),
        (dict(head=2), "out of range"),
        (dict(action=4), "out of range"),
        (dict(samples=0), "at least 1"),
        (dict(noise=-0.1), ">= 0"),
        (dict(noise=float("nan")), ">= 0"),
        (dict(stride=0), "at least 1"),
    ],
)
def test_bad_settings_raise_one_sentence(agent, kwargs, words):
    with pytest.raises(ValueError, match=words):
        saliency_map(agent, random_obs(), **{"method": "gradient", "target": "attention", **kwargs})


def test_attention_target_of_a_baseline_agent_is_refused(tiny_baseline_checkpoint):
    baseline = load_checkpoint(tiny_baseline_checkpoint)[0]
    with pytest.raises(ValueError, match="no attention module"):
        saliency_map(baseline, random_obs(), method="gradient", target="attention")
    assert saliency_map(baseline, random_obs(), method="gradient", target="value").shape == (1, 4, 84, 84)


# ----------------------------------------------------------------------------- the command line


def run_cli(*args, cwd=ROOT):
    """`python saliency.py ARGS` in a subprocess: (returncode, stdout, stderr)."""
    proc = subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=180)
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_writes_figures_and_maps(tiny_checkpoint, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "--checkpoint", tiny_checkpoint, "--steps", "3", "1", "--samples", "4", "--out", str(out)
    )
    assert code == 0 and stderr == "", stderr
    assert "playing" in stdout and "perturbation" in stdout
    for step in (1, 3):
        image = iio.imread(out / f"step_{step:05d}.png")
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 10
    data = np.load(out / "saliency.npz")
    assert list(data["steps"]) == [1, 3] and list(data["methods"]) == [
        "gradient",
        "smoothgrad",
        "vargrad",
        "perturbation",
    ]
    for method in data["methods"]:
        m = data[f"maps_{method}"]
        assert m.shape == (2, 4, 84, 84) and m.dtype == np.float32 and np.isfinite(m).all() and np.abs(m).max() > 0
    assert data["observations"].shape == (2, 4, 84, 84) and data["observations"].dtype == np.uint8
    assert data["frames"].shape == (2, 210, 160, 3) and data["actions"].shape == (2,)
    assert data["episode_actions"].shape == (4,) and list(data["explained_actions"]) == list(data["actions"])
    assert data["maps_vargrad"].min() >= 0 and data["maps_gradient"].min() < 0  # raw maps: signed gradients


def test_cli_force_replaces_and_default_folders_never_clash(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quick = ["--checkpoint", tiny_checkpoint, "--steps", "0", "--method", "gradient", "--target", "value"]
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "saliency.npz").write_bytes(b"")
    cli([*quick, "--out", "used", "--force"])
    assert list(np.load(tmp_path / "used" / "saliency.npz")["methods"]) == ["gradient"]
    cli(quick)
    cli(quick)  # same second: a new folder all the same
    folders = [root for root, _, files in os.walk(tmp_path / "saliency_out") if "saliency.npz" in files]
    assert len(folders) == 2


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--checkpoint", "nope.pt"], "does not exist"),
        (["--method", "gradient", "occlusion"], "unknown method 'occlusion'"),
    ],
)
def test_cli_subprocess_bad_input_gives_one_sentence(tiny_checkpoint, tmp_path, argv, words):
    code, _, stderr = run_cli("--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "fresh"), *argv, cwd=tmp_path)
    assert code != 0 and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], stderr
    assert not (tmp_path / "fresh").exists()  # nothing is left behind by a refused command


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save(
        {"format_version": 1, "model": {"conv1.weight": torch.zeros(1)}, "n_actions": 4, "attn_heads": 2},
        tmp / "other.pt",
    )
    (tmp / "a_file").write_text("")
    (tmp / "used").mkdir()
    (tmp / "used" / "saliency.npz").write_bytes(b"")
    return tmp


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--checkpoint", "{tmp}/nope.pt"], "does not exist"),
        (["--checkpoint", "{tmp}/trunc.pt"], "not a readable checkpoint"),
        (["--checkpoint", "{tmp}/garbage.pt"], "garbage.pt'"),
        (["--checkpoint", "{tmp}/other.pt"], "does not match"),
        (["--method", "gradient", "occlusion"], "unknown method 'occlusion'"),
        (["--target", "reward"], "unknown target 'reward'"),
        (["--action", "4"], "--action 4 is out of range"),
        (["--action", "-1"], "--action -1 is out of range"),
        (["--target", "attention", "--head", "2"], "--head 2 is out of range"),
        (["--checkpoint", "{baseline}", "--target", "attention"], "no attention module"),
        (["--samples", "0"], "--samples must be at least 1"),
        (["--noise", "-0.5"], "--noise must be"),
        (["--noise", "nan"], "--noise must be"),
        (["--stride", "0"], "--stride must be at least 1"),
        (["--chunk", "0"], "--chunk must be at least 1"),
        (["--steps", "-3"], "--steps must be"),
        (["--steps", "100000", "--method", "gradient"], "--steps 100000 is beyond the game"),
        (["--out", "{tmp}/a_file/sub"], "cannot write"),
        (["--out", "{tmp}/used"], "--force"),
    ],
)
def test_cli_bad_input_gives_one_sentence(tiny_checkpoint, tiny_baseline_checkpoint, bad_files, capsys, argv, words):
    with open(tiny_checkpoint, "rb") as f:
        (bad_files / "trunc.pt").write_bytes(f.read()[:20000])
    fresh = bad_files / "fresh"
    argv = [a.format(tmp=bad_files, baseline=tiny_baseline_checkpoint) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        cli(["--checkpoint", tiny_checkpoint, "--out", str(fresh), *argv])
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: ") and words in message
    assert len(message.splitlines()) == 1 and capsys.readouterr().err == ""
    assert not fresh.exists()  # nothing is left behind by a refused command
