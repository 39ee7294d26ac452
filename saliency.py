"""Saliency maps of a trained Atari agent: which input pixels its attention, action or value depend on.

`saliency_maps(agent, obs, methods, target)` maps (B, 4, 84, 84) observations to one (B, 4, 84, 84)
map per method:

- attention: the agent's own attention painted onto the input: each 7x7 unit adds its weight to
  its 36x36 receptive field (transposed convolution, all-ones kernel, stride 8), so a pixel gets
  the attention mass of the units that see it, in [0, 1] per head (heads summed unless `head`).
- gradcam (Selvaraju et al. 2017): on conv3's 7x7 grid, the grid of the attention, ReLU(sum_k alpha_k A_k)
  with alpha_k the mean over the 49 places of d target / d A_k and A the conv3 maps as the layers above
  read them: after the ReLU, and L2-normalised per place in an agent with attention; painted onto the
  input like the attention.
- gradient (Simonyan et al. 2013): |d target / d input|.
- smoothgrad (Smilkov et al. 2017): |mean gradient| over `samples` copies x + N(0, (noise x range)^2).
- vargrad (Adebayo et al. 2018): the variance of those same gradients (one pass gives both).
- ig_black, ig_blur (Integrated Gradients, Sundararajan et al. 2017): |(x - x') * the mean gradient at
  x' + alpha (x - x')|, alpha = (k + 1/2) / `ig_steps` (midpoint rule), from a black baseline x' = 0 or
  from the frames blurred (sigma 3). The attributions sum to target(x) - target(x') (completeness).
- perturbation (Greydanus et al. 2018): 1/2 ||f(I) - f(I')||^2 with I' the frames blurred
  (sigma 3) under a Gaussian mask (sigma^2 = 25) at each point of a grid every `stride` px.

Targets: `action` (the chosen action's logit; perturbation: all logits), `value` (V(s)),
`attention` (log-attention at each head's peak; perturbation: the attention maps). A `Score` holds the target,
as captum's `forward_func`: it maps the network's activations of a batch to one number per row, and
`score[rows]` keeps each row's action and peak for the copies of an observation. For a DQN (a Q-value
agent, see play.QValueAgent) the logits are the Q-values: `action` explains the greedy action's Q-value
Q(s, a*), `value` max_a Q(s, a).

Any policy network, not only this project's `Agent`: `AnyPolicy(model)` gives a `torch.nn.Module` that maps a
batch of observations to logits what the maps need (see README, "Explain your own agent").

    python saliency.py --checkpoint runs/<run_name>/run.pt --steps 20 60 120 --target action
"""

import functools
import math
import os
import time
from dataclasses import dataclass, replace
from typing import Annotated, Literal, Optional, get_args

import numpy as np
import torch
import torch.nn.functional as F
import tyro

from agents import load_checkpoint
from cli import SAYS_ITS_DEFAULT, UsageError, exit_on_bad_input, output_folder, pick_device
from play import play_to
from ppo_attention import Agent

Method = Literal["attention", "gradcam", "gradient", "smoothgrad", "vargrad", "ig_black", "ig_blur", "perturbation"]
Target = Literal["action", "value", "attention"]
METHODS, TARGETS = get_args(Method), get_args(Target)
GRID = 7  # conv3's maps and the attention are GRID x GRID
PLACES = GRID * GRID  # places of that grid, each unit seeing a 36x36 receptive field
FRAME_TITLES = ["game frame: max over the 4", "frame t-3", "frame t-2", "frame t-1", "frame t (newest)"]
SHOWN = {  # what each map's numbers are, in words
    "attention": "attention mass of the\nunits that see a pixel",
    "gradcam": "Grad-CAM on conv3,\npainted like the attention",
    "gradient": "|gradient|",
    "smoothgrad": "|mean gradient|\nover noisy copies",
    "vargrad": "variance of the gradient\nover noisy copies",
    "ig_black": "|integrated gradients|\nfrom black",
    "ig_blur": "|integrated gradients|\nfrom the blurred frames",
    "perturbation": "output change when\nblurred around a pixel",
}


@dataclass
class Args:
    """Play the checkpoint's game and write, for each chosen step, a figure of every saliency map."""

    checkpoint: str
    """a `run.pt` of ppo_attention.py (or its run folder), a CleanRL .pt/.cleanrl_model or a Stable-Baselines3 .zip"""
    env_id: Optional[str] = None
    """the game of a CleanRL or SB3 agent whose file does not name it, e.g. BreakoutNoFrameskip-v4"""
    steps: tuple[int, ...] = (20, 60, 120)
    """agent steps of the game to explain (0 = the first observation); one figure each"""
    method: Annotated[tuple[Method, ...], SAYS_ITS_DEFAULT] = ()
    """maps to draw, one figure row each (default: all eight; attention only for agents that have it)"""
    target: Target = "action"
    """what the gradient and perturbation maps explain: the taken action's logit, V(s), or the attention peaks"""
    head: Annotated[Optional[int], SAYS_ITS_DEFAULT] = None
    """one attention head for the attention map and target (default: all heads summed)"""
    action: Annotated[Optional[int], SAYS_ITS_DEFAULT] = None
    """the action whose logit --target action explains (default: the action the agent takes; a DQN's greedy action)"""
    samples: int = 50
    """noisy copies per observation for SmoothGrad and VarGrad"""
    noise: float = 0.15
    """standard deviation of that noise, as a fraction of the input range [0, 1]"""
    ig_steps: int = 256
    """points on the path from the baseline of Integrated Gradients (midpoint rule); 256 leave the sums 4.7-6.2%
    (median) short of f(x) - f(black) on the demo agents' states, 0.5-0.8% short of f(x) - f(blurred)"""
    stride: int = 5
    """grid spacing in pixels of the perturbation method"""
    chunk: int = 128
    """noisy, interpolated or perturbed copies per forward pass (bounds memory)"""
    seed: int = 1
    """seed of the game, of the agent's sampled actions and of the noise"""
    greedy: bool = False
    """take the most probable action instead of sampling from the policy"""
    out: Annotated[Optional[str], SAYS_ITS_DEFAULT] = None
    """output folder (default: a new runs/<run_name>/saliency__<unix time>/)"""
    force: bool = False
    """write into an --out folder that already holds files"""
    cuda: bool = True
    """compute on CUDA when it is available"""


# ----------------------------------------------------------------------------- the maps


def check_options(
    agent: Optional[Agent], method, target, head, action, samples, noise, stride, chunk, ig_steps=64
) -> None:
    """Raise UsageError (one sentence) for a setting the maps cannot be computed with (agent None: skip its checks)."""
    if method not in METHODS:
        raise UsageError(f"unknown method '{method}'; choose from {', '.join(METHODS)}.")
    if target not in TARGETS:
        raise UsageError(f"unknown target '{target}'; choose from {', '.join(TARGETS)}.")
    for name, value in (("samples", samples), ("stride", stride), ("chunk", chunk), ("ig_steps", ig_steps)):
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
    if not noise >= 0 or math.isinf(noise):  # also rejects NaN
        raise UsageError(f"--noise must be a finite number >= 0, got {noise}.")
    if agent is None:
        return
    if agent.attn_heads == 0 and "attention" in (method, target):
        what = "attention map" if method == "attention" else "attention target; use --target action or value"
        raise UsageError(f"this agent has no attention module (a plain Nature CNN), so it has no {what}.")
    if target == "value" and not getattr(agent, "has_value", True):
        raise UsageError("this policy gives no value V(s) (a model returning logits alone), so it has no value target.")
    if head is not None and not 0 <= head < max(agent.attn_heads, 1):
        raise UsageError(f"--head {head} is out of range; this agent has {agent.attn_heads} attention head(s).")
    actions = [] if action is None else torch.as_tensor(action).flatten().tolist()
    if any(not 0 <= a < agent.n_actions for a in actions):
        raise UsageError(f"--action {action} is out of range; this game has actions 0 to {agent.n_actions - 1}.")


def paint_attention(attention: torch.Tensor) -> torch.Tensor:
    """Each 7x7 unit paints its 36x36 receptive field with its weight: (B, H, 7, 7) -> (B, H, 84, 84).

    A transposed convolution with an all-ones 36x36 kernel at stride 8 (rl-attention's overlay):
    the value at a pixel is the attention mass of the units whose receptive field covers it. Any map
    on the same 7x7 grid (Grad-CAM on conv3) is painted the same way.
    """
    B, H = attention.shape[:2]
    size, stride = Agent.RECEPTIVE_FIELDS["attention"]
    kernel = attention.new_ones(1, 1, size, size)
    return F.conv_transpose2d(attention.reshape(B * H, 1, GRID, GRID), kernel, stride=stride).view(B, H, 84, 84)


def bilinear_grid(grid: torch.Tensor) -> torch.Tensor:
    """A 7x7 map drawn bilinearly between the centres of its units' receptive fields: (B, H, 7, 7) -> (B, H, 84, 84).

    Unit (y, x) sees pixels [8y, 8y + 36) (stride 8, field 36): its field's centre is at pixel 8y + 17.5. Pixel
    i lies at grid coordinate (i - 17.5) / 8, clamped to [0, 6] (the map is constant beyond the outermost
    centres); the painted drawing (`paint_attention`) gives a pixel the sum of the units that see it instead.
    """
    size, stride = Agent.RECEPTIVE_FIELDS["attention"]
    n = 84
    pos = ((torch.arange(n, dtype=grid.dtype, device=grid.device) - (size - 1) / 2) / stride).clamp(0, GRID - 1)
    lo = pos.floor().long().clamp(max=GRID - 2)
    w = pos - lo  # (84,) weight of the upper neighbour
    interp = torch.zeros(n, GRID, dtype=grid.dtype, device=grid.device)  # (84, 7) row weights
    interp[torch.arange(n), lo] = 1 - w
    interp[torch.arange(n), lo + 1] = w
    return interp @ grid @ interp.T


def collapse_frames(m: torch.Tensor) -> torch.Tensor:
    """One map per observation from a map of its 4 stacked frames: the maximum over them. (..., 4, 84, 84) -> (..., 84, 84)."""
    return m.amax(-3)


def as_float_input(agent: Agent, obs) -> torch.Tensor:
    """Observations (B, 4, 84, 84) as float input in [0, 1], on the agent's device (uint8 / 255)."""
    weight = next(agent.parameters())
    x = torch.as_tensor(obs, device=weight.device)
    if x.dim() != 4 or tuple(x.shape[1:]) != (4, 84, 84):
        raise ValueError(f"observations must be shaped (B, 4, 84, 84), got {tuple(x.shape)}.")
    return x.to(weight.dtype).div(255.0) if x.dtype == torch.uint8 else x.to(weight.dtype)


@dataclass(frozen=True, eq=False)
class Score:
    """What a map explains, as captum's `forward_func`: the network's activations of N rows -> one number per row.

    target: `action` (the logit of each row's `action`), `value` (V(s)) or `attention` (log A_h[peak_h] at each
    row's `peak`, summed over the heads, or of `head` alone). `score[rows]` is the score of some rows with their
    own action and peak: the noisy or interpolated copies of observation b explain observation b's.
    """

    target: Target
    action: Optional[torch.Tensor] = None  # (N,) action index; needed by the action target
    peak: Optional[torch.Tensor] = None  # (N, H) index in 0..48 of each head's peak; needed by the attention target
    head: Optional[int] = None  # one attention head (default: all heads summed)

    @classmethod
    def explaining(cls, clean: dict, target: Target, head: Optional[int] = None, action=None) -> "Score":
        """The score of a batch given its clean activations: each head's peak there, and `action` (int or (B,))
        or, when None, each observation's greedy action."""
        peak = clean["attn_logits"].flatten(2).argmax(-1)  # (B, H)
        greedy = clean["logits"].argmax(-1)  # (B,)
        action = greedy if action is None else torch.as_tensor(action, device=greedy.device).long().expand_as(greedy)
        return cls(target, action, peak, head)

    def __post_init__(self):
        for target, needed in (("action", "action"), ("attention", "peak")):
            if self.target == target and getattr(self, needed) is None:
                raise ValueError(f"the {target} target needs each row's {needed}.")

    def __getitem__(self, rows) -> "Score":
        """The score of the rows `rows` (a slice or an index tensor) of the batch, each with its action and peak."""
        action, peak = (None if v is None else v[rows] for v in (self.action, self.peak))
        return replace(self, action=action, peak=peak)

    def __call__(self, activations: dict) -> torch.Tensor:
        """The scalar each gradient method differentiates, one per row: (N,).

        A softmax map sums to 1 whatever the input, so `attention` uses log A_h[peak_h], not the plain sum.
        """
        if self.target == "value":
            return activations["value"][:, 0]
        if self.target == "action":
            return activations["logits"].gather(1, self.action[:, None])[:, 0]
        log_attention = F.log_softmax(activations["attn_logits"].flatten(2), dim=-1)  # (N, H, 49)
        at_peak = log_attention.gather(2, self.peak[:, :, None])[:, :, 0]  # (N, H)
        return at_peak.sum(1) if self.head is None else at_peak[:, self.head]

    def outputs(self, activations: dict) -> torch.Tensor:
        """The vector f whose change 1/2 ||f(I) - f(I')||^2 perturbation scores: (N, K), every logit (the action
        target), V(s), or the attention maps (of `head`)."""
        if self.target == "value":
            return activations["value"]
        if self.target == "action":
            return activations["logits"]
        attention = activations["attention"]  # (N, H, 7, 7)
        return (attention if self.head is None else attention[:, self.head]).flatten(1)


def input_gradients(agent, inputs, score: Score) -> torch.Tensor:
    """d score / d input of every row of inputs (N, 4, 84, 84), float input that may leave [0, 1]: (N, 4, 84, 84).

    The rows do not interact, so one backward pass of the summed score gives every row's own gradient.
    """
    inputs = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(score(agent.activations(inputs, check=False)).sum(), inputs)[0]


def gradient_moments(agent, x, score: Score, samples, noise, chunk, generator):
    """Mean and variance over `samples` noisy copies of each observation's input gradient.

    The B * samples copies go through the network `chunk` at a time. Copy k of observation b gets the
    (b * samples + k)-th standard normal draw, whatever `chunk`.
    """
    B, n = x.shape[0], samples
    total = torch.zeros(x.shape, dtype=torch.float64, device=x.device)  # (B, 4, 84, 84)
    total_sq = torch.zeros_like(total)
    for start in range(0, B * n, chunk):
        rows = torch.arange(start, min(start + chunk, B * n), device=x.device)
        obs_of_row = rows // n  # copies are laid out observation-major
        noisy = x[obs_of_row]  # (C, 4, 84, 84), a copy
        if noise > 0:  # Gaussian noise on the float input, no uint8 round trip
            noisy += noise * torch.randn(noisy.shape, generator=generator, device=x.device)
        grad = input_gradients(agent, noisy, score[obs_of_row]).double()
        total.index_add_(0, obs_of_row, grad)
        total_sq.index_add_(0, obs_of_row, grad * grad)
    mean = total / n
    var = (total_sq / n - mean * mean).clamp_min(0.0)  # population variance, float64 sums
    return mean.to(x.dtype), var.to(x.dtype)


def integrated_gradients(agent, x, baseline, score: Score, steps, chunk) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017) of each observation: (B, 4, 84, 84), signed.

    (x - x') times the mean of the input gradient at x' + alpha_k (x - x'), alpha_k = (k + 1/2) / steps for
    k = 0 .. steps - 1 (the midpoint rule). Completeness: the attributions sum to score(x) - score(x'), up to
    the rule's error. The B * steps points go through the network `chunk` at a time.
    """
    B = x.shape[0]
    total = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    for start in range(0, B * steps, chunk):
        rows = torch.arange(start, min(start + chunk, B * steps), device=x.device)
        b, alpha = rows // steps, ((rows % steps).to(x.dtype) + 0.5) / steps
        points = baseline[b] + alpha.view(-1, 1, 1, 1) * (x[b] - baseline[b])  # (C, 4, 84, 84), inside [0, 1]
        total.index_add_(0, b, input_gradients(agent, points, score[b]).double())
    return ((x - baseline).double() * total / steps).to(x.dtype)


def gradcam(agent, x, score: Score, chunk) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) on conv3's 7x7 grid: (B, 7, 7), >= 0.

    A: conv3's maps as every layer above reads them, (B, 64, 7, 7): `features`, the output after its ReLU,
    L2-normalised over the channels at each place in an agent with attention (both the attention module and
    the masked features read that), conv3's rectified output itself in a plain Nature CNN. alpha_k = mean
    over the 49 places of d score / d A_k; the map is ReLU(sum_k alpha_k A_k). Not the raw conv3 output of
    an attention agent: what reads it is blind to its scale at each place, so there the gradient is
    orthogonal to it, sum_k (d score / d A_k(p)) A_k(p) = 0, and the map is mostly noise. (captum's
    LayerGradCam on the conv3 module would take A before the ReLU.)
    """
    maps = []
    for start in range(0, x.shape[0], chunk):
        rows = slice(start, start + chunk)
        alpha, features = gradcam_weights(agent, x[rows], score[rows])
        maps.append(F.relu((alpha[:, :, None, None] * features).sum(1)))
    return torch.cat(maps)


def gradcam_weights(agent, x, score: Score) -> tuple:
    """Grad-CAM's alpha (B, 64), the mean over the 49 places of d score / d A_k, and A (B, 64, 7, 7) (see
    `gradcam`): the map at place p is ReLU(sum_k alpha_k A_k(p)), channel k's share alpha_k A_k(p)."""
    with torch.enable_grad():  # the input asks for a graph (the weights may be frozen); the pass stops at A
        a = agent.activations(x.detach().requires_grad_(True), check=False)
        (grad,) = torch.autograd.grad(score(a).sum(), a["features"])
    return grad.mean((2, 3)), a["features"].detach()


@functools.lru_cache(maxsize=8)
def perturbation_masks(stride: int, device: str, size: int = 84, sigma2: float = 25.0) -> torch.Tensor:
    """Gaussian masks exp(-d^2 / (2 sigma^2)) centred on a grid every `stride` px: (G*G, 1, 84, 84)."""
    centres = torch.arange(0, size, stride, dtype=torch.float32, device=device)  # (G,)
    pixels = torch.arange(size, dtype=torch.float32, device=device)
    along = torch.exp(-((pixels[None, :] - centres[:, None]) ** 2) / (2 * sigma2))  # (G, 84), separable
    return (along[:, None, :, None] * along[None, :, None, :]).reshape(-1, 1, size, size)


def gaussian_blur(x: torch.Tensor, sigma: float = 3.0) -> torch.Tensor:
    """Separable Gaussian blur of each (84, 84) image of x (B, C, 84, 84), reflected at the borders."""
    radius = int(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    B, C, H, W = x.shape
    y = F.pad(x.reshape(B * C, 1, H, W), (radius,) * 4, mode="reflect")
    y = F.conv2d(y, kernel.view(1, 1, 1, -1))  # along rows
    y = F.conv2d(y, kernel.view(1, 1, -1, 1))  # along columns
    return y.view(B, C, H, W)


def upsample_grid(scores: torch.Tensor, stride: int, size: int = 84) -> torch.Tensor:
    """Bilinear interpolation of scores (B, G, G) given at pixels 0, stride, 2 stride, ... to (B, size, size)."""
    G = scores.shape[-1]
    pos = torch.arange(size, dtype=scores.dtype, device=scores.device) / stride  # pixel in grid units
    lo = pos.floor().long().clamp(max=G - 1)
    hi = (lo + 1).clamp(max=G - 1)
    w = (pos - lo).clamp(0, 1)
    interp = torch.zeros(size, G, dtype=scores.dtype, device=scores.device)  # (84, G) row weights
    interp[torch.arange(size), lo] += 1 - w
    interp[torch.arange(size), hi] += w
    return interp @ scores @ interp.T


@torch.inference_mode()
def perturbation_saliency(agent, x, score: Score, stride, chunk) -> torch.Tensor:
    """Greydanus et al. 2018 scores on a grid every `stride` px, upsampled: (B, 84, 84). The vector f is
    score.outputs (every logit, V(s) or the attention maps), the same for every row."""
    masks = perturbation_masks(stride, str(x.device))  # (P, 1, 84, 84), computed once per stride
    P, B = masks.shape[0], x.shape[0]
    clean = score.outputs(agent.activations(x))  # (B, K)
    change = gaussian_blur(x) - x  # I' = I + M (blur(I) - I): (B, 4, 84, 84)
    scores = torch.empty(B * P, dtype=x.dtype, device=x.device)
    for start in range(0, B * P, chunk):
        rows = torch.arange(start, min(start + chunk, B * P), device=x.device)
        b, p = rows // P, rows % P
        perturbed = x[b] + masks[p] * change[b]  # (C, 4, 84, 84): same mask on the 4 stacked frames
        out = score.outputs(agent.activations(perturbed, check=False))
        scores[rows] = 0.5 * (out - clean[b]).pow(2).sum(1)
    return upsample_grid(scores.view(B, math.isqrt(P), math.isqrt(P)), stride)


def saliency_maps(
    agent: Agent,
    obs,
    methods=METHODS,
    target: str = "action",
    head: Optional[int] = None,
    action=None,
    samples: int = 50,
    noise: float = 0.15,
    stride: int = 5,
    chunk: int = 128,
    signed: bool = False,
    generator: Optional[torch.Generator] = None,
    ig_steps: int = 64,
) -> dict:
    """{method: saliency map (B, 4, 84, 84) float32} for a batch of observations, on the agent's device.

    obs: (B, 4, 84, 84) uint8 frames, or float input already in [0, 1] (tensor or array).
    target: action | value | attention (see the module docstring). head: one attention head
    (default: all heads summed). action: int or (B,) actions whose logit is explained (default:
    each observation's greedy action). samples, noise: SmoothGrad/VarGrad copies and their std as a
    fraction of [0, 1]; both come from the same copies. stride: perturbation grid in px. chunk:
    copies per forward pass. signed: the signed gradient / mean gradient / integrated gradients
    instead of their absolute value. generator: torch.Generator for the noise (the global RNG when
    None). ig_steps: points of Integrated Gradients' midpoint rule.
    Raises UsageError with one sentence for a bad setting.
    """
    for method in methods:
        check_options(agent, method, target, head, action, samples, noise, stride, chunk, ig_steps)
    x = as_float_input(agent, obs)  # (B, 4, 84, 84) in [0, 1]
    with torch.inference_mode():
        clean = agent.activations(x)
    score, maps = Score.explaining(clean, target, head, action), {}
    if "attention" in methods:
        attention = clean["attention"] if head is None else clean["attention"][:, head : head + 1]  # (B, H, 7, 7)
        maps["attention"] = paint_attention(attention).sum(1, keepdim=True).expand_as(x).clone()
    if "gradcam" in methods:
        maps["gradcam"] = paint_attention(gradcam(agent, x, score, chunk)[:, None]).expand_as(x).clone()
    if "perturbation" in methods:
        maps["perturbation"] = perturbation_saliency(agent, x, score, stride, chunk)[:, None].expand_as(x).clone()
    if "gradient" in methods:
        mean, _ = gradient_moments(agent, x, score, 1, 0.0, chunk, generator)
        maps["gradient"] = mean if signed else mean.abs()
    if "smoothgrad" in methods or "vargrad" in methods:  # one pass over the noisy copies for both
        mean, var = gradient_moments(agent, x, score, samples, noise, chunk, generator)
        maps["smoothgrad"], maps["vargrad"] = mean if signed else mean.abs(), var
    for method, baseline in (("ig_black", torch.zeros_like), ("ig_blur", gaussian_blur)):
        if method in methods:
            ig = integrated_gradients(agent, x, baseline(x), score, ig_steps, chunk)
            maps[method] = ig if signed else ig.abs()
    return {m: maps[m] for m in methods}


def saliency_map(agent: Agent, obs, method: str = "smoothgrad", target: str = "action", **kw) -> torch.Tensor:
    """One method's map (B, 4, 84, 84); the keywords are those of `saliency_maps`."""
    return saliency_maps(agent, obs, (method,), target, **kw)[method]


def target_label(target: str, head: Optional[int], action_name: str, q_values: bool = False) -> str:
    """What a map explains, in words (q_values: a DQN's, whose logits are Q-values)."""
    if target == "action":
        return f"Q(s, {action_name}), the greedy action's Q-value" if q_values else f"the logit of {action_name}"
    if target == "value":
        return "V(s) = max_a Q(s, a)" if q_values else "the value V(s)"
    return f"the log-attention at head {head}'s peak" if head is not None else "the log-attention at the heads' peaks"


# ----------------------------------------------------------------------------- any policy network


class AnyPolicy(torch.nn.Module):
    """Any policy network, as the maps here and faithfulness.py's scores read this project's `Agent`.

    model: a torch.nn.Module from a batch of 4 stacked 84x84 frames (B, 4, 84, 84) to logits (B, A) (or a DQN's
    Q-values), or to (logits, V(s)) for the value target. It gets float frames times `input_scale`: 255 for a
    network that divides its input by 255 itself (CleanRL's, SB3's), 1 for one that takes [0, 1]. layers: {name:
    module} for the methods that read a layer; `activations` holds each module's output under its name (Grad-CAM
    reads "conv3": the last convolution's rectified maps, e.g. the ReLU after it). There is no attention module:
    the attention map and target are refused with one sentence, as is the value target without V(s).
    """

    attn_heads = 0

    def __init__(self, model: torch.nn.Module, input_scale: float = 255.0, layers: Optional[dict] = None):
        super().__init__()
        self.model, self.input_scale, self.layers, self.has_value = model, input_scale, dict(layers or {}), True
        device = next(model.parameters()).device
        with torch.no_grad():
            probe = self.activations(torch.zeros(1, 4, 84, 84, device=device))
        self.n_actions, self.has_value = probe["logits"].shape[-1], "value" in probe

    def activations(self, x: torch.Tensor, check: bool = True) -> dict:
        """{"logits", "value" (if the model gives it), "attention" and "attn_logits" (B, 0, 7, 7), every layer}."""
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif check and (not x.is_floating_point() or bool(((x < 0) | (x > 1)).any())):
            raise ValueError(
                f"AnyPolicy takes uint8 frames or float frames / 255 in [0, 1], not {x.dtype} up to {x.max():g}."
            )
        out = {}
        hooks = [m.register_forward_hook(lambda m, i, o, name=name: out.update({name: o})) for name, m in self.layers.items()]  # fmt: skip
        try:
            outputs = self.model(x * self.input_scale)
        finally:
            for hook in hooks:
                hook.remove()
        if isinstance(outputs, (tuple, list)):  # (logits, V(s))
            out["logits"], out["value"] = outputs[0], outputs[1].reshape(-1, 1)
        else:
            out["logits"] = outputs
        if "conv3" in out:  # what Grad-CAM reads: in a plain Nature CNN, conv3's rectified maps
            out.setdefault("features", out["conv3"])
        out["attention"] = out["attn_logits"] = x.new_zeros(x.shape[0], 0, GRID, GRID)
        return out

    def forward(self, x: torch.Tensor) -> tuple:  # (logits, value or None, attention (B, 0, 7, 7)), as the Agent's
        out = self.activations(x)
        return out["logits"], out.get("value"), out["attention"]


# ----------------------------------------------------------------------------- the command line


def save_figure(path: str, maps: dict, step, title: str, heads: int) -> None:
    """One row per method: the map (max over the 4 frames) on the colour frame, then on each stacked frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(maps), 5, figsize=(13, 2.7 * len(maps) + 0.6), squeeze=False, layout="constrained")
    for row, (method, m) in enumerate(maps.items()):  # m: (4, 84, 84), >= 0
        if method == "attention":  # a fixed scale: the painted mass of the heads shown, at most 1 each
            top, label = max(heads, 1), f"attention mass (0 to {max(heads, 1)}, fixed scale)"
        else:  # one scale for the row, so the 4 frames' relative weight shows
            top, label = max(float(m.max()), 1e-30), "fraction of the row's maximum"
        on_frame = F.interpolate(collapse_frames(torch.as_tensor(m))[None, None], size=(210, 160), mode="nearest")
        images = [(step.frame, on_frame[0, 0].numpy())] + [(step.obs[k], m[k]) for k in range(4)]
        for col, (image, heat) in enumerate(images):
            ax = axes[row, col]
            heat = np.clip(heat / top, 0, 1)
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            ax.imshow(heat, cmap="inferno", vmin=0, vmax=1, alpha=np.sqrt(heat) * 0.85)
            ax.set(xticks=[], yticks=[])
            ax.set_title(FRAME_TITLES[col], fontsize=9)
        axes[row, 0].set_ylabel(f"{method}\n{SHOWN[method]}", fontsize=9)
        norm = plt.Normalize(0, top if method == "attention" else 1)
        fig.colorbar(plt.cm.ScalarMappable(norm, "inferno"), ax=axes[row, :], fraction=0.02, pad=0.01, label=label)
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def explained_action(action: Optional[int], step, q_values: bool) -> int:
    """The action whose logit the maps explain: --action, else the one the agent took, or a DQN's greedy one."""
    if action is not None:
        return action
    return int(step.activations["logits"][0].argmax()) if q_values else step.action


def main(argv=None) -> str:
    """Play, compute every method's maps at each chosen step, write the figures and the .npz; returns the folder."""
    args = tyro.cli(Args, args=argv)
    steps = sorted(set(args.steps))
    if not steps or steps[0] < 0:
        raise UsageError(f"--steps must be one or more numbers >= 0, got {list(args.steps)}.")
    options = (args.target, args.head, args.action, args.samples, args.noise, args.stride, args.chunk, args.ig_steps)
    for method in args.method or METHODS:  # the settings are checked before anything is loaded or played
        check_options(None, method, *options)
    agent, meta = load_checkpoint(args.checkpoint, pick_device(args.cuda), args.env_id)
    methods = list(dict.fromkeys(args.method)) or [m for m in METHODS if agent.attn_heads or m != "attention"]
    if not args.method and not agent.attn_heads:
        print("note: this agent has no attention module, so its maps are all but the attention map.")
    for method in methods:
        check_options(agent, method, *options)
    names, q_values = meta["action_names"], meta["outputs"] == "q_values"
    with output_folder(args.out, meta["run_name"], "saliency", args.force) as out:
        kept, played = play_to(agent, meta["env_id"], steps, args.seed, args.greedy, meta["env_options"])
        explained = {t: explained_action(args.action, kept[t], q_values) for t in steps}
        generator = torch.Generator(device=agent.conv1.weight.device).manual_seed(args.seed)
        maps = {m: np.zeros((len(steps), 4, 84, 84), np.float32) for m in methods}
        for i, t in enumerate(steps):
            step, action = kept[t], explained[t]
            start = time.perf_counter()
            signed = saliency_maps(agent, step.obs[None], methods, args.target, args.head, action, args.samples,
                                   args.noise, args.stride, args.chunk, signed=True, generator=generator,
                                   ig_steps=args.ig_steps)  # fmt: skip
            for method, m in signed.items():
                maps[method][i] = m[0].cpu().numpy()
            title = (
                f"{meta['env_id']}, step {t}: the agent takes {names[step.action]} | the maps explain "
                f"{target_label(args.target, args.head, names[action], q_values)}"
            )
            path = os.path.join(out, f"step_{t:05d}.png")
            save_figure(path, {m: np.abs(maps[m][i]) for m in methods}, step, title, agent.attn_heads)
            print(f"step {t}: {len(methods)} maps in {time.perf_counter() - start:.2f} s -> {path}", flush=True)
        settings = dict(target=args.target, head=-1 if args.head is None else args.head, env_id=meta["env_id"])
        settings |= dict(action_names=names, samples=args.samples, noise=args.noise, stride=args.stride, seed=args.seed)
        settings |= dict(ig_steps=args.ig_steps)
        np.savez_compressed(
            os.path.join(out, "saliency.npz"),
            **{f"maps_{m}": maps[m] for m in methods},
            steps=steps,
            observations=np.stack([kept[t].obs for t in steps]),
            frames=np.stack([kept[t].frame for t in steps]),
            actions=[kept[t].action for t in steps],
            explained_actions=[explained[t] for t in steps],
            episode_actions=played,
            methods=methods,
            **settings,
        )
        print(f"wrote {os.path.join(out, 'saliency.npz')}")
    return out


if __name__ == "__main__":
    exit_on_bad_input(main)
