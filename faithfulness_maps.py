"""The maps faithfulness.py scores, by name, and how each is made for a batch of states.

- every saliency method of saliency.py (`METHODS`), explaining the action at each state;
- the two 7x7 maps on conv3's grid (`GRID_METHODS`: the attention and Grad-CAM), painted onto the input as
  saliency.py draws them, or drawn bilinearly between the centres of the units' fields (`BILINEAR`);
- the floors (`FLOORS`), maps that carry no information about the model: geometry alone (random pixels, a painted
  uniform 7x7 map, random 7x7 maps painted or drawn bilinearly) and the input alone (its edges, its intensity, what
  moved between the stacked frames).

`explanation_maps` makes them all, timed per state; `CURVES` names the four scores every map gets (deletion and
insertion, faithfulness.py), shared with the tables and figures of faithfulness_report.py.
"""

import time
from typing import Literal

import torch

from saliency import (
    METHODS,
    Score,
    bilinear_grid,
    collapse_frames,
    gaussian_blur,
    gradcam,
    paint_attention,
    saliency_maps,
)

GRID_METHODS = ("attention", "gradcam")  # maps on conv3's 7x7 grid, drawn onto the input
BILINEAR = ("attention_bilinear", "gradcam_bilinear")  # the same maps drawn bilinearly between field centres
GEOMETRY_FLOORS = ("random", "painted_uniform", "painted_dirichlet", "bilinear_dirichlet")
INPUT_FLOORS = ("edge", "intensity", "frame_difference")
FLOORS = (*GEOMETRY_FLOORS, *INPUT_FLOORS)
ALL_METHODS = (*METHODS, *BILINEAR, *FLOORS)
Method = Literal[ALL_METHODS]
CURVES = ("deletion_kl", "deletion_prob", "insertion_prob", "insertion_kl")
HIGHER_IS_BETTER = {"deletion_kl": True, "deletion_prob": False, "insertion_prob": True, "insertion_kl": False}


def floor_maps(method: str, n: int, heads: int, generator: torch.Generator, x=None) -> torch.Tensor:
    """n maps (n, 84, 84) of a floor, drawn with `generator` (on its device); heads: random 7x7 maps per state;
    x (n, 4, 84, 84) float input in [0, 1]: the input the input floors are computed from (no model)."""
    device = generator.device
    if method == "edge":  # the frames' edges: what blurring removes
        return collapse_frames((x - gaussian_blur(x)).abs())
    if method == "intensity":  # the frames themselves: bright pixels first
        return collapse_frames(x)
    if method == "frame_difference":  # what moved between consecutive stacked frames
        return (x[:, 1:] - x[:, :-1]).abs().amax(1)
    if method == "random":
        return torch.rand((n, 84, 84), generator=generator, device=device)
    if method == "painted_uniform":
        return paint_attention(torch.full((1, heads, 7, 7), 1 / 49, device=device)).sum(1).expand(n, 84, 84)
    exponential = -torch.rand((n, heads, 49), generator=generator, device=device).clamp_min(1e-12).log()
    dirichlet = (exponential / exponential.sum(-1, keepdim=True)).view(
        n, heads, 7, 7
    )  # normalised Exp(1): Dirichlet(1)
    return (paint_attention if method == "painted_dirichlet" else bilinear_grid)(dirichlet).sum(1)


def grid_maps(agent, x: torch.Tensor, actions: torch.Tensor, chunk: int, methods=GRID_METHODS) -> dict:
    """The maps on conv3's 7x7 grid: {"attention": (S, H, 7, 7) each head's softmax map (not for an agent without an
    attention module), "gradcam": (S, 1, 7, 7) Grad-CAM of the explained action's logit (saliency.gradcam)}, those
    of `methods`."""
    grids = {}
    if "gradcam" in methods:
        grids["gradcam"] = gradcam(agent, x, Score("action", actions), chunk)[:, None].detach()
    if "attention" in methods and agent.attn_heads:
        with torch.no_grad():
            grids["attention"] = agent.activations(x)["attention"]
    return grids


def explanation_maps(agent, obs, actions, methods, args, floors: torch.Generator) -> tuple:
    """({method: relevance (S, 84, 84)} explaining each state's action, {method: seconds per state},
    {ig method: (S,) |sum of the attributions - (f(x) - f(x'))| / |f(x) - f(x')|, Integrated Gradients'
    completeness error}, {grid method: (S, H, 7, 7)} the 7x7 maps before drawing).

    Gradient maps differentiate the explained action's logit; perturbation scores the change of all logits.
    The 7x7 maps are painted (saliency.paint_attention, as saliency.py draws them) or drawn bilinearly
    (saliency.bilinear_grid), heads summed. The noise of SmoothGrad and VarGrad (one shared pass, whose time
    counts for both) is seeded afresh with `seed` at every call: a retrained or re-initialised model gets the
    same noisy copies. The random floors take their next draws from `floors`. Each map is |map| maxed over the
    4 frames. args: faithfulness.py's Args (seed, samples, stride, chunk, ig_steps).
    """
    maps, seconds, incomplete, device = {}, {}, {}, obs.device
    x = obs.float() / 255
    with torch.no_grad():
        agent(obs[:1])  # warm-up: one-time costs are not the first method's
    grids, grid_seconds = {}, {}
    for method in GRID_METHODS:  # each 7x7 map once, for both drawings
        if method in methods or f"{method}_bilinear" in methods:
            start = time.perf_counter()
            grids |= grid_maps(agent, x, actions, args.chunk, (method,))
            grid_seconds[method] = (time.perf_counter() - start) / len(obs)
    for method in methods:
        if method in maps:  # vargrad, computed with smoothgrad
            continue
        start = time.perf_counter()
        if method in FLOORS:
            new = {method: floor_maps(method, len(obs), max(agent.attn_heads, 1), floors, x)}
        elif method in (*GRID_METHODS, *BILINEAR):
            grid = grids[method.removesuffix("_bilinear")]
            new = {method: (bilinear_grid if method in BILINEAR else paint_attention)(grid).sum(1)}
        else:
            shared = [m for m in ("smoothgrad", "vargrad") if m in methods]
            group = shared if method in shared else [method]
            noise = torch.Generator(device=device).manual_seed(args.seed)
            settings = dict(samples=args.samples, stride=args.stride, chunk=args.chunk, ig_steps=args.ig_steps)
            new = saliency_maps(agent, obs, group, "action", action=actions, signed=True, generator=noise, **settings)
            if method.startswith("ig_"):
                with torch.no_grad():
                    ends = [agent(end)[0].gather(1, actions[:, None])[:, 0] for end in (x, baseline_of(method, x))]
                change = ends[0] - ends[1]
                error = (new[method].flatten(1).sum(1) - change).abs() / change.abs().clamp_min(1e-12)
                incomplete[method] = error.cpu().numpy()
            new = {m: collapse_frames(v.abs()) for m, v in new.items()}  # (S, 4, 84, 84) -> (S, 84, 84)
        if device.type == "cuda":
            torch.cuda.synchronize()
        for m, v in new.items():
            maps[m], seconds[m] = v, (time.perf_counter() - start) / len(obs)
            seconds[m] += grid_seconds.get(m.removesuffix("_bilinear"), 0.0)  # the 7x7 map, then its drawing
    return maps, seconds, incomplete, grids


def baseline_of(method: str, x: torch.Tensor) -> torch.Tensor:
    """The baseline x' of an Integrated Gradients method: black or the blurred frames."""
    return torch.zeros_like(x) if method == "ig_black" else gaussian_blur(x)
