"""Saliency maps of a trained Atari agent: which input pixels drive its attention, action or value.

Four methods, each answering "which pixels matter?" for a scalar *target* of the network:

- gradient (Simonyan et al. 2013, "Deep Inside Convolutional Networks"): d target / d input.
- smoothgrad (Smilkov et al. 2017, "SmoothGrad"): the mean of the gradient over `samples` noisy
  copies x + N(0, sigma^2) of the input, sigma = `noise` x the input range (here [0, 1]).
- vargrad (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"): the variance of those gradients.
- perturbation (Greydanus et al. 2018, "Visualizing and Understanding Atari Agents"): blur the frames
  around (i, j) with a Gaussian mask M (sigma^2 = 25), I' = I (1 - M) + blur(I) M (blur sigma 3),
  and score S(i, j) = 1/2 ||f(I) - f(I')||^2, on a grid every `stride` pixels, upsampled bilinearly.

Targets (the network is `ppo_attention.Agent`):

- action: the logit of one action (the agent's greedy action unless `action` is given).
  Perturbation scores the whole logit vector instead, as Greydanus et al. do.
- value: the critic's V(s).
- attention: each softmax map sums to 1 whatever the input, so the gradient of its plain sum is
  zero. The gradient methods differentiate log A_h[peak_h] = attn_logit_h[peak_h] - logsumexp(attn_logit_h),
  the log-attention at the head's peak (found on the clean input): "what makes the agent look there
  more, and elsewhere less". Unlike the seed's sum of logits it ignores the shift that softmax ignores.
  Perturbation scores 1/2 ||A_h - A'_h||^2 over the whole map. One head (`head`), or all heads summed.

What the maps show: `saliency_map` returns |gradient| and |mean gradient| (signed=True gives the
signed values, which the .npz keeps). The sign says whether brightening a pixel raises the target;
on Atari's bright-objects-on-dark frames it flips along every edge and is hard to read, while the
question here is *where*. Absolute value rather than the seed's square keeps a linear scale (squaring
leaves a few pixels visible). SmoothGrad averages the *signed* gradients first, so the noise cancels,
then takes the absolute value. VarGrad is the variance of the signed gradients (not of their squares,
the seed's bug), so it is >= 0 and in squared units. Perturbation scores are >= 0; the same mask
blurs all 4 stacked frames, so its map is the same in the 4 channels.

    python saliency.py --checkpoint runs/<run>/run.pt --steps 50 100 200 --target attention
"""

import functools
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
import tyro

from ppo_attention import Agent, CheckpointError, load_checkpoint, make_env, make_writable_folder

METHODS = ("gradient", "smoothgrad", "vargrad", "perturbation")
TARGETS = ("attention", "action", "value")
TITLES = {"gradient": "Gradient", "smoothgrad": "SmoothGrad", "vargrad": "VarGrad", "perturbation": "Perturbation"}
SHOWN = {"gradient": "|grad|", "smoothgrad": "|mean grad|", "vargrad": "var grad", "perturbation": "1/2 ||f - f'||^2"}


@dataclass
class Args:
    checkpoint: str
    """path of a `run.pt` written by ppo_attention.py"""
    steps: tuple[int, ...] = (20, 60, 120)
    """steps of the played game to explain (step 0 is the first observation); one figure each"""
    method: tuple[str, ...] = METHODS
    """one or several of: gradient, smoothgrad, vargrad, perturbation (one figure row each)"""
    target: str = "action"
    """what to explain: attention (log-attention at each head's peak), action (a logit) or value"""
    head: Optional[int] = None
    """attention head for --target attention (default: all heads summed)"""
    action: Optional[int] = None
    """action whose logit --target action explains (default: the action the agent takes at that step)"""
    samples: int = 50
    """noisy copies per frame for SmoothGrad and VarGrad"""
    noise: float = 0.15
    """standard deviation of the SmoothGrad/VarGrad noise, as a fraction of the input range [0, 1]"""
    stride: int = 5
    """grid spacing in pixels of the perturbation method"""
    chunk: int = 128
    """noisy or perturbed copies per forward pass (bounds memory)"""
    seed: int = 1
    """seed of the game, of the agent's action sampling and of the noise"""
    out: Optional[str] = None
    """output folder (default: a new folder saliency_out/<run_name>/<date-time>/, never overwritten)"""
    force: bool = False
    """write into an --out folder that already holds results (files of the same name are replaced)"""
    cuda: bool = False
    """compute on CUDA when it is available"""


# ----------------------------------------------------------------------------- the maps


def check_options(agent: Optional[Agent], method, target, head, action, samples, noise, stride, chunk) -> None:
    """Raise ValueError (one sentence) for a setting the maps cannot be computed with (agent None: skip its checks)."""
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}'; choose from {', '.join(METHODS)}.")
    if target not in TARGETS:
        raise ValueError(f"unknown target '{target}'; choose from {', '.join(TARGETS)}.")
    for name, value in (("samples", samples), ("stride", stride), ("chunk", chunk)):
        if value < 1:
            raise ValueError(f"--{name} must be at least 1, got {value}.")
    if not noise >= 0 or math.isinf(noise):  # also rejects NaN
        raise ValueError(f"--noise must be a finite number >= 0, got {noise}.")
    if agent is None:
        return
    if target == "attention" and agent.attn_heads == 0:
        raise ValueError(
            "this agent has no attention module (trained with --attn-heads 0); use --target action or value."
        )
    if head is not None and not 0 <= head < max(agent.attn_heads, 1):
        raise ValueError(f"--head {head} is out of range; this agent has {agent.attn_heads} attention head(s).")
    actions = [] if action is None else torch.as_tensor(action).flatten().tolist()
    if any(not 0 <= a < agent.n_actions for a in actions):
        raise ValueError(f"--action {action} is out of range; this game has actions 0 to {agent.n_actions - 1}.")


def as_float_input(agent: Agent, obs) -> torch.Tensor:
    """Observations (B, 4, 84, 84) as float input in [0, 1], on the agent's device and dtype (uint8 / 255)."""
    weight = next(agent.parameters())
    x = torch.as_tensor(obs, device=weight.device)
    if x.dim() != 4 or tuple(x.shape[1:]) != (4, 84, 84):
        raise ValueError(f"observations must be shaped (B, 4, 84, 84), got {tuple(x.shape)}.")
    return x.to(weight.dtype).div(255.0) if x.dtype == torch.uint8 else x.to(weight.dtype)


def gradient_target(acts: dict, target: str, heads: list, peak: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """The scalar each gradient method differentiates, one per row: (N,).

    peak: (N, H) index in 0..48 of each head's peak on the clean input; action: (N,) action index.
    """
    if target == "value":
        return acts["value"][:, 0]
    if target == "action":
        return acts["logits"].gather(1, action[:, None])[:, 0]
    log_attention = F.log_softmax(acts["attn_logits"].flatten(2), dim=-1)  # (N, H, 49)
    return log_attention.gather(2, peak[:, :, None])[:, heads, 0].sum(1)


def gradient_moments(agent, x, target, heads, peak, action, samples, noise, chunk, generator):
    """Mean and variance over `samples` noisy copies of each observation's input gradient.

    The B * samples copies go through the network `chunk` at a time, in one batch each: the rows
    do not interact, so one backward pass of the summed target gives every row's own gradient.
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
        noisy.requires_grad_(True)
        with torch.enable_grad():
            score = gradient_target(agent.activations(noisy), target, heads, peak[obs_of_row], action[obs_of_row])
            (grad,) = torch.autograd.grad(score.sum(), noisy)
        grad = grad.double()
        total.index_add_(0, obs_of_row, grad)
        total_sq.index_add_(0, obs_of_row, grad * grad)
    mean = total / n
    var = (total_sq / n - mean * mean).clamp_min(0.0)  # population variance, float64 sums
    return mean.to(x.dtype), var.to(x.dtype)


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


def perturbation_outputs(acts: dict, target: str, heads: list) -> torch.Tensor:
    """The vector f whose change 1/2 ||f(I) - f(I')||^2 perturbation scores: (N, K)."""
    if target == "value":
        return acts["value"]
    if target == "action":
        return acts["logits"]
    return acts["attention"][:, heads].flatten(1)


@torch.inference_mode()
def perturbation_saliency(agent, x, target, heads, stride, chunk) -> torch.Tensor:
    """Greydanus et al. 2018 scores on a grid every `stride` px, upsampled: (B, 84, 84)."""
    masks = perturbation_masks(stride, str(x.device))  # (P, 1, 84, 84), computed once per stride
    P, B = masks.shape[0], x.shape[0]
    clean = perturbation_outputs(agent.activations(x), target, heads)  # (B, K)
    change = gaussian_blur(x) - x  # I' = I + M (blur(I) - I): (B, 4, 84, 84)
    scores = torch.empty(B * P, dtype=x.dtype, device=x.device)
    for start in range(0, B * P, chunk):
        rows = torch.arange(start, min(start + chunk, B * P), device=x.device)
        b, p = rows // P, rows % P
        perturbed = x[b] + masks[p] * change[b]  # (C, 4, 84, 84): same mask on the 4 stacked frames
        out = perturbation_outputs(agent.activations(perturbed), target, heads)
        scores[rows] = 0.5 * (out - clean[b]).pow(2).sum(1)
    G = math.isqrt(P)
    return upsample_grid(scores.view(B, G, G), stride)


def saliency_map(
    agent: Agent,
    obs,
    method: str = "smoothgrad",
    target: str = "attention",
    head: Optional[int] = None,
    action=None,
    samples: int = 50,
    noise: float = 0.15,
    stride: int = 5,
    chunk: int = 128,
    signed: bool = False,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Saliency of `target` for a batch of observations, shaped like them: (B, 4, 84, 84) float32.

    obs: (B, 4, 84, 84) uint8 frames, or float input already in [0, 1] (tensor or array).
    method: gradient | smoothgrad | vargrad | perturbation; target: attention | action | value.
    head: one attention head (default: all heads summed). action: int or (B,) actions whose logit
    the gradient methods explain (default: each observation's greedy action).
    samples, noise: SmoothGrad/VarGrad noisy copies and their std as a fraction of [0, 1].
    stride: perturbation grid spacing in px. chunk: copies per forward pass (bounds memory).
    signed: return the signed gradient / mean gradient instead of its absolute value.
    generator: torch.Generator for the noise (reproducible maps); the global RNG when None. Copy k of
    observation b gets the (b * samples + k)-th (4, 84, 84) standard normal draw of it, whatever `chunk`.
    Raises ValueError with one sentence for a bad setting. Returns the map detached, on the agent's device.
    """
    check_options(agent, method, target, head, action, samples, noise, stride, chunk)
    x = as_float_input(agent, obs)  # (B, 4, 84, 84) in [0, 1]
    heads = list(range(agent.attn_heads)) if head is None else [head]
    if method == "perturbation":
        return perturbation_saliency(agent, x, target, heads, stride, chunk)[:, None].expand_as(x).contiguous()
    with torch.inference_mode():
        clean = agent.activations(x)
    peak = clean["attn_logits"].flatten(2).argmax(-1)  # (B, H) index of each head's peak, 0..48
    greedy = clean["logits"].argmax(-1)  # (B,)
    action = greedy if action is None else torch.as_tensor(action, device=x.device).long().expand_as(greedy)
    n = 1 if method == "gradient" else samples
    sigma = 0.0 if method == "gradient" else noise
    mean, var = gradient_moments(agent, x, target, heads, peak, action, n, sigma, chunk, generator)
    if method == "vargrad":
        return var
    return mean if signed else mean.abs()


# ----------------------------------------------------------------------------- the command line


def prepare_out_dir(args: Args, run_name: str) -> tuple:
    """Create the output folder (or check an explicit one); returns (path, whether we created it)."""
    out = args.out
    if out is None:
        base = os.path.join("saliency_out", run_name.replace("/", "-"), time.strftime("%Y%m%d-%H%M%S"))
        out, k = base, 2
        while os.path.exists(out):
            out, k = f"{base}-{k}", k + 1
    elif os.path.isdir(out) and not args.force:
        old = [f for f in os.listdir(out) if f == "saliency.npz" or (f.startswith("step_") and f.endswith(".png"))]
        if old:
            raise ValueError(f"--out '{out}' already holds results ({old[0]}); pass --force to replace them.")
    created = not os.path.isdir(out)
    make_writable_folder(out)
    return out, created


def play(agent: Agent, env_id: str, steps: list, seed: int, device) -> tuple:
    """Play one game with the agent (sampling its policy) up to the last of `steps`.

    Returns (observations (T, 4, 84, 84) uint8, {step: colour frame (210, 160, 3)}, actions (T,)), T <= steps[-1] + 1.
    """
    env = make_env(env_id, seed=seed)
    obs, _ = env.reset(seed=seed)
    observations, frames, actions = [], {}, []
    for t in range(steps[-1] + 1):
        observations.append(obs)
        if t in steps:
            frames[t] = env.render()  # the last emulator frame: the newest of the stack, in colour
        with torch.inference_mode():
            logits = agent(torch.as_tensor(obs, device=device)[None])[0]
        actions.append(int(torch.distributions.Categorical(logits=logits).sample()))
        if t % 10 == 0 or t == steps[-1]:
            print(f"\rplaying: step {t}/{steps[-1]}", end="", flush=True)
        if t == steps[-1]:
            break
        obs, _, terminated, truncated, _ = env.step(actions[-1])
        if terminated or truncated:
            break
    print(flush=True)
    env.close()
    return np.stack(observations), frames, np.array(actions)


def normalise(m: np.ndarray) -> tuple:
    """Map scaled to [0, 1] by its maximum, and that maximum."""
    top = float(m.max())
    return (m / top if top > 0 else np.zeros_like(m)), top


def overlay(ax, image, heat, cmap):
    """Heat map (values in [0, 1]) over an image, more opaque where it is hot."""
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.imshow(heat, cmap=cmap, vmin=0, vmax=1, alpha=np.clip(heat, 0, 1) ** 0.5 * 0.85)
    ax.set_xticks([])
    ax.set_yticks([])


def save_figure(path, maps: dict, obs, frame, step, action_name, target_label) -> None:
    """One row per method: the map (summed over the 4 frames) on the colour frame, then on each stacked frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = "inferno"  # perceptually uniform
    fig, axes = plt.subplots(len(maps), 5, figsize=(12, 2.6 * len(maps) + 0.5), squeeze=False, layout="constrained")
    for row, (method, m) in enumerate(maps.items()):
        shown = np.abs(m) if method in ("gradient", "smoothgrad") else m  # (4, 84, 84)
        total = torch.as_tensor(shown.sum(0))[None, None]  # (1, 1, 84, 84) -> colour frame size (210, 160)
        on_frame = F.interpolate(total, size=frame.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
        overlay(axes[row, 0], frame, normalise(np.clip(on_frame, 0, None))[0], cmap)
        axes[row, 0].set_title(f"{TITLES[method]}: 4 frames summed", fontsize=9)
        heat, top = normalise(shown)  # one scale for the 4 frames: their relative weight shows
        axes[row, 0].set_ylabel(f"{TITLES[method]}\n{SHOWN[method]}\nmax {top:.2e}", fontsize=9)
        for k in range(4):
            overlay(axes[row, k + 1], obs[k], heat[k], cmap)
            axes[row, k + 1].set_title(
                f"{TITLES[method]}: frame t{k - 3:+d}" if k < 3 else f"{TITLES[method]}: frame t", fontsize=9
            )
        bar = plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap=cmap)
        fig.colorbar(bar, ax=axes[row, :], fraction=0.02, pad=0.01, label="fraction of max")
    fig.suptitle(f"step {step} | target: {target_label} | agent's action: {action_name}", fontsize=11)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(args: Args) -> str:
    """Play, compute every method's maps at each step, write the figures and the .npz; returns the folder."""
    steps = sorted(set(args.steps))
    if not steps or steps[0] < 0:
        raise ValueError(f"--steps must be one or more numbers >= 0, got {list(args.steps)}.")
    methods = list(dict.fromkeys(args.method))
    options = (args.target, args.head, args.action, args.samples, args.noise, args.stride, args.chunk)
    for method in methods:  # the settings are checked before anything is loaded or played
        check_options(None, method, *options)
    device = torch.device("cuda" if args.cuda and torch.cuda.is_available() else "cpu")
    agent, meta = load_checkpoint(args.checkpoint, device)
    for method in methods:
        check_options(agent, method, *options)
    out, created = prepare_out_dir(args, meta.get("run_name", "run"))
    torch.manual_seed(args.seed)
    observations, frames, actions = play(agent, meta["env_id"], steps, args.seed, device)
    if steps[-1] >= len(observations):
        if created:
            os.rmdir(out)
        raise ValueError(
            f"--steps {steps[-1]} is beyond the game, which ended after {len(observations)} steps (0 to {len(observations) - 1})."
        )

    names = meta["action_names"]
    generator = torch.Generator(device=device).manual_seed(args.seed)
    maps = {m: np.zeros((len(steps), 4, 84, 84), np.float32) for m in methods}
    explained = np.array([args.action if args.action is not None else actions[t] for t in steps])
    for i, t in enumerate(steps):
        for method in methods:
            start = time.perf_counter()
            m = saliency_map(agent, observations[t][None], method, args.target, args.head, explained[i], args.samples,
                             args.noise, args.stride, args.chunk, signed=True, generator=generator)  # fmt: skip
            maps[method][i] = m[0].cpu().numpy()
            print(f"step {t}: {method:<12} {time.perf_counter() - start:6.2f} s", flush=True)
        if args.target == "action":
            label = f"logit of {names[explained[i]]}" + (
                " (perturbation: all logits)" if "perturbation" in methods else ""
            )
        elif args.target == "attention":
            label = (
                f"log-attention at peak, head {args.head}"
                if args.head is not None
                else "log-attention at peaks, all heads"
            )
            label += " (perturbation: attention maps)" if "perturbation" in methods else ""
        else:
            label = "value V(s)"
        path = os.path.join(out, f"step_{t:05d}.png")
        save_figure(path, {m: maps[m][i] for m in methods}, observations[t], frames[t], t, names[actions[t]], label)
        print(f"wrote {path}", flush=True)

    np.savez_compressed(
        os.path.join(out, "saliency.npz"),
        **{f"maps_{m}": maps[m] for m in methods},
        steps=np.array(steps),
        observations=observations[steps],
        frames=np.stack([frames[t] for t in steps]),
        actions=actions[steps],
        episode_actions=actions,
        explained_actions=explained,
        methods=np.array(methods),
        target=np.array(args.target),
        head=np.array(-1 if args.head is None else args.head),
        action_names=np.array(names),
        env_id=np.array(meta["env_id"]),
        samples=np.array(args.samples),
        noise=np.array(args.noise),
        stride=np.array(args.stride),
        seed=np.array(args.seed),
    )
    print(f"wrote {os.path.join(out, 'saliency.npz')}", flush=True)
    return out


def cli(argv: Optional[list] = None) -> None:
    """The command line: bad input ends with one sentence on stderr and exit status 1."""
    args = tyro.cli(Args, args=argv)
    try:
        main(args)
    except (ValueError, CheckpointError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    cli()
