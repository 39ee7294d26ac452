"""Tests of saliency.py: the maths of each method against simple references, the CLI end to end, bad input."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents import load_checkpoint
from ppo_attention import Agent
from saliency import METHODS, Score, gaussian_blur, gradcam, main, paint_attention, saliency_map, saliency_maps

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # the functions must work where the agent is

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "saliency.py")
TARGETS = ("attention", "action", "value")


def cli(argv):
    """The command line in this process, as `python saliency.py` runs it."""
    from cli import exit_on_bad_input

    return exit_on_bad_input(main, argv)


@pytest.fixture(scope="module")
def agent(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)[0]


def random_obs(batch=1, seed=0) -> torch.Tensor:
    """Random uint8 observations (B, 4, 84, 84)."""
    return torch.randint(0, 256, (batch, 4, 84, 84), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def reference_target(agent, x, target, peak, action) -> torch.Tensor:
    """The documented target of one float input (1, 4, 84, 84), written out plainly."""
    a = agent.activations(x, check=False)  # finite differences step just outside [0, 1]
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
    # float32 through a deep network: batches of different sizes round differently (~1e-6 of the map's scale)
    torch.testing.assert_close(smooth, grad, rtol=1e-4, atol=1e-4 * float(grad.abs().max()))
    assert float(var.abs().max()) <= 1e-8 * float(grad.abs().max()) ** 2
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
        torch.testing.assert_close(smooth[b], grads.mean(0), rtol=1e-4, atol=1e-4 * scale)
        torch.testing.assert_close(var[b], grads.var(0, unbiased=False), rtol=1e-3, atol=1e-4 * scale**2)
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


# ----------------------------------------------------------------------------- the score: what a map explains


def made_up_activations(rows=4, heads=2, actions=5, seed=0) -> dict:
    """Activations of `rows` rows as a network gives them, random: logits, V(s), attention logits and maps."""
    g = torch.Generator().manual_seed(seed)
    attn_logits = torch.randn(rows, heads, 7, 7, generator=g, dtype=torch.float64)
    attention = attn_logits.flatten(2).softmax(-1).view_as(attn_logits)
    logits = torch.randn(rows, actions, generator=g, dtype=torch.float64)
    return dict(logits=logits, value=torch.randn(rows, 1, generator=g), attn_logits=attn_logits, attention=attention)


def test_score_is_each_rows_logit_value_or_log_attention_at_its_peaks():
    """Against a plain loop: logit[n, action[n]], V(s), and sum over the chosen heads of log A_h[peak_h] with A_h
    the softmax of head h's 49 logits, log(exp(z_p) / sum_q exp(z_q)) written out."""
    a = made_up_activations()
    action, peak = torch.tensor([4, 0, 2, 2]), torch.tensor([[0, 48], [7, 7], [30, 1], [12, 40]])
    z = a["attn_logits"].flatten(2)  # (4, 2, 49)

    def log_attention(n, h):
        return float(z[n, h, peak[n, h]]) - math.log(sum(math.exp(float(v)) for v in z[n, h]))

    for head, heads in ((None, (0, 1)), (1, (1,))):
        score = Score("attention", action, peak, head)
        expected = [sum(log_attention(n, h) for h in heads) for n in range(4)]
        assert score(a).tolist() == pytest.approx(expected, rel=1e-12)
        assert score.outputs(a).equal(a["attention"][:, list(heads)].flatten(1))  # (4, 49 x heads)
    assert Score("action", action)(a).tolist() == [float(a["logits"][n, action[n]]) for n in range(4)]
    assert Score("action", action).outputs(a).equal(a["logits"])  # perturbation: every logit
    assert Score("value")(a).equal(a["value"][:, 0]) and Score("value").outputs(a).equal(a["value"])
    for target in ("action", "attention"):  # each needs its rows' action or peak
        with pytest.raises(ValueError, match=f"the {target} target needs"):
            Score(target)


def test_score_rows_keep_each_rows_action_and_peak():
    """score[rows] of the copies' activations is score of the observations they copy: row i of the copies gets
    observation rows[i]'s action and peak (index tensors as the noisy and interpolated copies use, and slices)."""
    a = made_up_activations(rows=3)
    score = Score("attention", torch.tensor([1, 3, 0]), torch.tensor([[5, 9], [20, 48], [0, 33]]))
    for rows in (torch.tensor([2, 0, 0, 1, 2]), slice(1, 3)):
        copies = {name: value[rows] for name, value in a.items()}
        picked = score[rows]
        assert picked.action.equal(score.action[rows]) and picked.peak.equal(score.peak[rows])
        for target in ("action", "value", "attention"):
            same = Score(target, score.action, score.peak)
            torch.testing.assert_close(same[rows](copies), same(a)[rows], rtol=0, atol=0)


def test_each_observation_of_a_batch_explains_its_own_action(agent):
    """A batch of two observations explaining different actions, the rows of IG's path and Grad-CAM's chunks
    straddling them, gives each observation the map it gets alone."""
    obs, action = random_obs(2, seed=18), [0, agent.n_actions - 1]
    methods = ("gradcam", "gradient", "ig_black")
    batch = saliency_maps(agent, obs, methods, "action", action=action, ig_steps=3, chunk=4, signed=True)
    for b in range(2):
        alone = saliency_maps(agent, obs[b : b + 1], methods, "action", action=action[b], ig_steps=3, signed=True)
        for method in methods:
            scale = float(alone[method].abs().max())
            torch.testing.assert_close(batch[method][b : b + 1], alone[method], rtol=1e-4, atol=1e-4 * scale)
    other = saliency_map(agent, obs[:1], "gradient", "action", action=action[1], signed=True)  # the other action
    assert not torch.allclose(batch["gradient"][:1], other, rtol=1e-2, atol=1e-2 * float(other.abs().max()))


# ----------------------------------------------------------------------------- Grad-CAM and Integrated Gradients
# captum is the reference (a test dependency only). Tolerance of every comparison: 1e-4 of the largest value plus
# 1e-4 relative; float32 sums taken in another order (captum's batches, ours) differ by ~1e-6 of the scale.


def captum_close(ours, reference):
    reference = reference.detach().to(ours.dtype)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4 * float(reference.abs().max()))
    assert float(reference.abs().max()) > 0


def logits_of(model):
    return lambda x: model.activations(x, check=False)["logits"]


def grad_cam_args(model, obs):
    x = obs.float() / 255
    with torch.no_grad():
        a = model.activations(x)
    peak, action = a["attn_logits"].flatten(2).argmax(-1), a["logits"].argmax(-1)
    return x, Score("action", action, peak), action


def test_gradcam_of_a_plain_cnn_matches_captum_on_the_rectified_conv3_maps(tiny_baseline_checkpoint):
    """The plain Nature CNN as CleanRL writes it, an nn.Sequential whose ReLU after conv3 is a module: captum's
    LayerGradCam hooks that ReLU's output, the rectified maps this project's Grad-CAM uses, where many units
    are off. Hooking the conv3 module itself (captum's usual use) takes the maps before the ReLU: another map."""
    captum = pytest.importorskip("captum.attr")
    agent = load_checkpoint(tiny_baseline_checkpoint)[0]
    a = agent
    cnn = torch.nn.Sequential(a.conv1, torch.nn.ReLU(), a.conv2, torch.nn.ReLU(), a.conv3, torch.nn.ReLU(),
                              torch.nn.Flatten(), a.fc, torch.nn.ReLU(), a.actor)  # fmt: skip
    x, score, action = grad_cam_args(agent, random_obs(3, seed=11))
    torch.testing.assert_close(cnn(x), agent(x)[0])  # the same network
    ours = gradcam(agent, x, score, chunk=2)  # (3, 7, 7), two chunks
    on_relu = captum.LayerGradCam(cnn, cnn[5]).attribute(x, target=action, relu_attributions=True)
    captum_close(ours, on_relu[:, 0])
    assert float((agent.activations(x)["conv3"] == 0).float().mean()) > 0.1  # the ReLU matters here
    before_relu = captum.LayerGradCam(cnn, cnn[4]).attribute(x, target=action, relu_attributions=True)[:, 0]
    before_relu = before_relu.detach()
    assert not torch.allclose(ours, before_relu, rtol=1e-2, atol=1e-2 * float(before_relu.abs().max()))


def test_gradcam_of_the_attention_agent_matches_captum_on_the_normalised_features(agent):
    """Everything above conv3 in the attention agent reads `features`, conv3's rectified output L2-normalised
    per place: the input of attn_hidden, and of the masked features too. captum's LayerGradCam on attn_hidden's
    input keeps that very tensor, so its gradient takes both paths: the reference."""
    captum = pytest.importorskip("captum.attr")
    x, score, action = grad_cam_args(agent, random_obs(3, seed=12))
    ours = gradcam(agent, x, score, chunk=128)
    reference = captum.LayerGradCam(logits_of(agent), agent.attn_hidden).attribute(
        x, target=action, relu_attributions=True, attribute_to_layer_input=True
    )
    captum_close(ours, reference[:, 0])


def test_why_not_the_raw_conv3_maps_of_the_attention_agent(agent):
    """Read through an L2 normalisation per place, the target is blind to conv3's scale there, so its gradient
    is orthogonal to conv3's output at every place: sum_k (d target / d A_k(p)) A_k(p) = 0 (Euler, degree 0)."""
    x = (random_obs(2, seed=17).float() / 255).requires_grad_(True)  # the loaded agent's weights are frozen
    a = agent.activations(x)
    (grad,) = torch.autograd.grad(a["logits"][:, 0].sum(), a["conv3"])
    conv3 = a["conv3"].detach()
    along = (grad * conv3).sum(1)  # (2, 7, 7)
    assert float(along.abs().max()) <= 1e-5 * float((grad.abs() * conv3).sum(1).max())
    assert float((grad.abs() * conv3).sum(1).max()) > 0


def test_gradcam_map_is_painted_like_the_attention(agent):
    obs = random_obs(2, seed=13)
    x, score, _ = grad_cam_args(agent, obs)
    m = saliency_map(agent, obs, "gradcam")
    assert m.shape == (2, 4, 84, 84) and torch.equal(m[:, 0], m[:, 3])
    torch.testing.assert_close(m[:, 0], paint_attention(gradcam(agent, x, score, chunk=128)[:, None])[:, 0])


@pytest.mark.parametrize("baseline", ["black", "blur"])
def test_integrated_gradients_match_captum(agent, baseline):
    """captum's IntegratedGradients with the same rule (riemann_middle) and number of steps, batch of 2 states."""
    captum = pytest.importorskip("captum.attr")
    obs, steps = random_obs(2, seed=14), 16
    x, _, action = grad_cam_args(agent, obs)
    base = torch.zeros_like(x) if baseline == "black" else gaussian_blur(x)
    ours = saliency_map(agent, obs, f"ig_{baseline}", "action", signed=True, ig_steps=steps, chunk=10)
    reference = captum.IntegratedGradients(logits_of(agent)).attribute(
        x, baselines=base, target=action, n_steps=steps, method="riemann_middle"
    )
    captum_close(ours, reference)
    assert torch.equal(saliency_map(agent, obs, f"ig_{baseline}", "action", ig_steps=steps, chunk=10), ours.abs())


@pytest.mark.parametrize("target", ("action", "value"))
def test_integrated_gradients_are_exactly_complete_for_a_network_without_biases(target):
    """A ReLU network without biases is positively homogeneous, f(a x) = a f(x), so on the path from black its
    gradient is constant and any number of steps integrates it exactly: the attributions sum to f(x) - f(0)."""
    torch.manual_seed(0)
    model = Agent(4, attn_heads=0).double()
    with torch.no_grad():
        for layer in (model.conv1, model.conv2, model.conv3, model.fc, model.actor, model.critic):
            layer.bias.zero_()
    x = random_obs(2, seed=16).double() / 255
    with torch.no_grad():
        logits, value, _ = model(x)
    action = logits.argmax(-1)
    change = logits.gather(1, action[:, None])[:, 0] if target == "action" else value[:, 0]  # f(0) = 0
    ig = saliency_map(model, x, "ig_black", target, signed=True, ig_steps=3, action=action)
    torch.testing.assert_close(ig.flatten(1).sum(1), change, rtol=1e-10, atol=1e-12)
    assert float(change.abs().min()) > 0


@pytest.mark.parametrize("target", TARGETS)
def test_integrated_gradients_converge_to_completeness(agent, target):
    """The attention agent in float64, from the blurred frames: the attributions sum to target(x) - target(x')
    up to the midpoint rule's error alone, which is under 5% of |target(x) - target(x')| at 128 steps and
    smaller than at 8 steps. (From black the target swings along the path and changes fastest in the
    darkest frames: the sum converges much more slowly there, see the README.)"""
    model = Agent(agent.n_actions, agent.attn_heads).double()
    model.load_state_dict(agent.state_dict())
    x = random_obs(2, seed=15).double() / 255
    base = gaussian_blur(x)
    peak, action = zip(*(clean_peak_and_action(model, x[i : i + 1]) for i in range(2)))
    with torch.no_grad():
        change = torch.stack([reference_target(model, x[i : i + 1], target, peak[i], action[i])
                              - reference_target(model, base[i : i + 1], target, peak[i], action[i]) for i in range(2)])  # fmt: skip
    errors = []
    for steps in (8, 128):
        ig = saliency_map(model, x, "ig_blur", target, signed=True, ig_steps=steps, action=torch.tensor(action))
        errors.append(float(((ig.flatten(1).sum(1) - change).abs() / change.abs()).max()))
    assert errors[1] < 0.05 and errors[1] < errors[0], errors


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


# ----------------------------------------------------------------------------- attention painted onto the input


def coverage_counts() -> np.ndarray:
    """How many of the 7x7 units see each input pixel, counted with a plain loop over their receptive fields."""
    counts = np.zeros((84, 84))
    for y in range(7):
        for x in range(7):
            counts[8 * y : 8 * y + 36, 8 * x : 8 * x + 36] += 1
    return counts


@pytest.mark.parametrize("cell", [(0, 0), (2, 3), (6, 6)])
def test_one_hot_attention_paints_exactly_its_receptive_field_with_one(cell):
    a = torch.zeros(1, 2, 7, 7)
    a[0, 1, cell[0], cell[1]] = 1
    painted = paint_attention(a)
    assert painted.shape == (1, 2, 84, 84) and painted[0, 0].abs().max() == 0
    expected = torch.zeros(84, 84)
    expected[8 * cell[0] : 8 * cell[0] + 36, 8 * cell[1] : 8 * cell[1] + 36] = 1
    assert torch.equal(painted[0, 1], expected)


def test_uniform_attention_paints_the_coverage_counts_over_49():
    painted = paint_attention(torch.full((3, 1, 7, 7), 1 / 49))
    expected = torch.as_tensor(coverage_counts() / 49, dtype=torch.float32)
    for p in painted[:, 0]:
        torch.testing.assert_close(p, expected, rtol=1e-6, atol=1e-7)
    assert float(painted.max()) <= 1 + 1e-6  # at most all of a head's mass


@pytest.mark.parametrize("device", DEVICES)
def test_attention_map_is_the_agents_painted_attention(agent, device):
    model = Agent(agent.n_actions, agent.attn_heads).to(device)
    model.load_state_dict(agent.state_dict())
    obs = random_obs(2, seed=9).to(device)
    with torch.no_grad():
        attention = model(obs)[2]  # (2, H, 7, 7)
    both = saliency_map(model, obs, method="attention")
    assert both.device.type == device and torch.equal(both[:, 0], both[:, 3])  # the same in the 4 frames
    torch.testing.assert_close(both[:, 0], paint_attention(attention).sum(1))
    torch.testing.assert_close(
        saliency_map(model, obs, method="attention", head=1)[:, 2], paint_attention(attention)[:, 1]
    )


def test_smoothgrad_and_vargrad_come_from_one_pass_over_the_same_copies(agent, monkeypatch):
    obs, n = random_obs(1, seed=10), 6
    alone = {m: saliency_map(agent, obs, m, "action", samples=n, chunk=64, generator=torch.Generator().manual_seed(3))
             for m in ("smoothgrad", "vargrad")}  # fmt: skip
    rows = []
    real = Agent.activations
    monkeypatch.setattr(Agent, "activations", lambda self, x, **kw: rows.append(x.shape[0]) or real(self, x, **kw))
    both = saliency_maps(agent, obs, ("smoothgrad", "vargrad"), "action", samples=n, chunk=64,
                         generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert rows == [1, n]  # the clean forward pass, then one pass over the n noisy copies
    for m in both:
        torch.testing.assert_close(both[m], alone[m])


@pytest.mark.parametrize("device", DEVICES)
def test_every_method_runs_where_the_agent_is(agent, device):
    model = Agent(agent.n_actions, agent.attn_heads).to(device)
    model.load_state_dict(agent.state_dict())
    maps = saliency_maps(model, random_obs(1).to(device), samples=3, stride=10)
    assert {m.device.type for m in maps.values()} == {device} and all(float(m.max()) > 0 for m in maps.values())


# ----------------------------------------------------------------------------- the function's contract


@pytest.mark.parametrize("method", METHODS)
def test_maps_are_shaped_like_the_observations_for_uint8_and_float_input(agent, method):
    obs = random_obs(2, seed=8)
    g = torch.Generator().manual_seed(0)
    target = "action" if method == "gradcam" else "attention"  # Grad-CAM of the peaks can be all negative: 0
    from_uint8 = saliency_map(agent, obs, method, target, samples=3, generator=g, ig_steps=4)
    from_float = saliency_map(
        agent, obs.numpy() / 255.0, method, target, samples=3, generator=g.manual_seed(0), ig_steps=4
    )
    assert from_uint8.shape == (2, 4, 84, 84) and from_uint8.dtype == torch.float32
    assert float(from_uint8.min()) >= 0 and float(from_uint8.max()) > 0
    torch.testing.assert_close(from_uint8, from_float, rtol=1e-4, atol=1e-4 * float(from_uint8.max()))


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
        (dict(method="attention", head=5), "out of range"),
    ],
)
def test_bad_settings_raise_one_sentence(agent, kwargs, words):
    with pytest.raises(ValueError, match=words):
        saliency_map(agent, random_obs(), **{"method": "gradient", "target": "attention", **kwargs})


def test_attention_target_of_a_baseline_agent_is_refused(tiny_baseline_checkpoint):
    baseline = load_checkpoint(tiny_baseline_checkpoint)[0]
    with pytest.raises(ValueError, match="no attention module"):
        saliency_map(baseline, random_obs(), method="gradient", target="attention")
    with pytest.raises(ValueError, match="no attention map"):
        saliency_map(baseline, random_obs(), method="attention")
    assert saliency_map(baseline, random_obs(), method="gradient", target="value").shape == (1, 4, 84, 84)


# ----------------------------------------------------------------------------- the command line


def run_cli(*args, cwd=ROOT):
    """`python saliency.py ARGS` in a subprocess: (returncode, stdout, stderr)."""
    proc = subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=180)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.slow
def test_cli_writes_figures_and_maps(tiny_checkpoint, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "--checkpoint",
        tiny_checkpoint,
        "--steps",
        "3",
        "1",
        "--samples",
        "4",
        "--ig-steps",
        "4",
        "--out",
        str(out),
        "--no-cuda",
    )
    assert code == 0 and stderr == "", stderr
    assert "step 1: 8 maps" in stdout and "saliency.npz" in stdout
    for step in (1, 3):
        image = iio.imread(out / f"step_{step:05d}.png")
        assert image.ndim == 3 and image.shape[0] > 600 and image.shape[1] > 600 and image.std() > 10
    data = np.load(out / "saliency.npz")
    assert list(data["steps"]) == [1, 3]
    assert list(data["methods"]) == list(METHODS) and int(data["ig_steps"]) == 4
    for method in data["methods"]:
        m = data[f"maps_{method}"]
        assert m.shape == (2, 4, 84, 84) and m.dtype == np.float32 and np.isfinite(m).all() and np.abs(m).max() > 0
    assert data["observations"].shape == (2, 4, 84, 84) and data["observations"].dtype == np.uint8
    assert data["frames"].shape == (2, 210, 160, 3) and data["actions"].shape == (2,)
    assert data["episode_actions"].shape == (4,) and list(data["explained_actions"]) == list(data["actions"])
    assert data["maps_vargrad"].min() >= 0 and data["maps_gradient"].min() < 0  # raw maps: signed gradients
    assert data["maps_ig_blur"].min() < 0 and data["maps_gradcam"].min() >= 0  # signed IG; Grad-CAM is a ReLU
    assert data["maps_attention"].max() <= 2 + 1e-5  # two heads, at most 1 each


def test_cli_default_folders_never_clash_and_force_writes_into_a_used_one(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quick = ["--checkpoint", tiny_checkpoint, "--steps", "0", "--method", "gradient", "--no-cuda"]
    cli(quick)
    cli(quick)  # same second: a new folder all the same
    run_name = os.path.basename(os.path.dirname(tiny_checkpoint))
    folders = sorted(os.listdir(tmp_path / "runs" / run_name))
    assert len(folders) == 2 and all(f.startswith("saliency__") for f in folders)
    used = tmp_path / "runs" / run_name / folders[0]
    cli([*quick, "--out", str(used), "--force", "--method", "attention"])
    assert list(np.load(used / "saliency.npz")["methods"]) == ["attention"]


def test_baseline_agent_gets_every_map_but_attention(tiny_baseline_checkpoint, tmp_path):
    cli(["--checkpoint", tiny_baseline_checkpoint, "--steps", "2", "--samples", "2", "--out", str(tmp_path / "o")])
    assert "attention" not in list(np.load(tmp_path / "o" / "saliency.npz")["methods"])


@pytest.mark.slow
def test_ctrl_c_exits_130_without_traceback_and_leaves_no_empty_folder(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import play

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(play, "play", interrupted)
    with pytest.raises(SystemExit) as exit_:
        cli(["--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "o")])
    assert exit_.value.code == 130 and "stopped by Ctrl-C" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


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
        (["--checkpoint", "{tmp}"], "is a folder without a run.pt"),  # it lists the .pt files in it
        (["--action", "4"], "--action 4 is out of range"),
        (["--action", "-1"], "--action -1 is out of range"),
        (["--target", "attention", "--head", "2"], "--head 2 is out of range"),
        (["--checkpoint", "{baseline}", "--target", "attention"], "no attention module"),
        (["--checkpoint", "{baseline}", "--method", "attention"], "no attention map"),
        (["--samples", "0"], "--samples must be at least 1"),
        (["--noise", "-0.5"], "--noise must be"),
        (["--noise", "nan"], "--noise must be"),
        (["--stride", "0"], "--stride must be at least 1"),
        (["--chunk", "0"], "--chunk must be at least 1"),
        (["--ig-steps", "0"], "--ig-steps must be at least 1"),
        (["--steps", "-3"], "--steps must be"),
        (["--steps", "100000", "--method", "gradient"], "step 100000 is beyond the game"),
        (["--out", "{tmp}/a_file/sub"], "cannot write"),
        (["--out", "{tmp}/a_file"], "is a file"),
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
    assert isinstance(message, str) and message.startswith("error: ") and words in message, message
    assert len(message.splitlines()) == 1 and capsys.readouterr().err == ""
    assert not fresh.exists()  # nothing is left behind by a refused command
    assert (bad_files / "used" / "saliency.npz").read_bytes() == b""


@pytest.mark.slow
def test_cli_subprocess_bad_input_and_unknown_choice(tiny_checkpoint, tmp_path):
    code, _, stderr = run_cli("--checkpoint", "nope.pt", cwd=tmp_path)
    assert code == 1 and stderr.strip() == "error: checkpoint 'nope.pt' does not exist."
    code, _, stderr = run_cli("--checkpoint", tiny_checkpoint, "--method", "occlusion", cwd=tmp_path)
    assert code == 2 and "Traceback" not in stderr and "occlusion" in stderr and "smoothgrad" in stderr
    assert not os.listdir(tmp_path)
