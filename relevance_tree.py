"""Relevance trees: from each attention peak, layer by layer, down to the input pixels that made it.

A heat map says where the agent looks. A tree says which units, at which places and in which
layers, made the attention peak there (rl-attention's "squares", after Yang et al. 2018,
arXiv 1812.11276). It explains the attention, not the action. Relevance flows down with the z+
rule of layer-wise relevance propagation, LRP-alpha1-beta0 (Montavon et al. 2017; Bach et al.
2015 defined the alpha-beta rules):

    attention (H, 7, 7) -> attn_hidden (512 @ 1 place) -> conv3 (64 @ 1 place)
        -> conv2 (places in a 3x3 window) -> conv1 (4x4 window) -> input pixels (8x8 window, 4 frames)

Roots: the prominent local maxima of each head's map (relevance = attention weight). Lower unit j
gets max(z_jk, 0) / sum_i max(z_ik, 0) of unit k's relevance, z_jk = a_j w_jk; children are the
strongest channels (1x1 layers) or the peaks of the channel-summed relevance map (from conv3 down).
The root's step is contrasted: a softmax ignores any shift common to all 49 places, so a hidden
channel c contributes w_hc (a_c(p) - sum_q A_h(q) a_c(q)) to the peak p, its part of the peak's
logit minus the attention-weighted mean logit; a feature that raises every place alike gets nothing.
Each node records its layer, channel, position, relevance and receptive field (box84, box210).

An agent without attention (`--attn-heads 0`, CleanRL's and Stable-Baselines3's Nature CNN) has no attention to
start from. Its tree starts at the peaks of Grad-CAM on conv3 (saliency.gradcam: ReLU(sum_k alpha_k A_k(p)),
A conv3's rectified maps) for an action's logit, the greedy one unless told, and explains that logit instead:

    gradcam (7x7, relevance = the map's value) -> conv3 (64 @ 1 place, channel k's share alpha_k A_k(p))
        -> conv2 -> conv1 -> input pixels, as above.

    python relevance_tree.py --checkpoint runs/<run_name>/run.pt --steps 20 60 120
"""

import json
import os
import time
from dataclasses import dataclass
from typing import Annotated, Optional

import numpy as np
import torch
import torch.nn.functional as F
import tyro

from agents import load_checkpoint
from cli import SAYS_ITS_DEFAULT, UsageError, exit_on_bad_input, output_folder, pick_device
from play import play_to
from ppo_attention import Agent
from saliency import Score, explained_action, gradcam, gradcam_weights, target_label

LAYERS = ("attention", "attn_hidden", "conv3", "conv2", "conv1", "input")  # the tree's levels, top down
MAX_DEPTH = len(LAYERS) - 1  # layers below the attention
GRADCAM_LAYERS = ("gradcam", "conv3", "conv2", "conv1", "input")  # the tree of an agent without attention
BOX_GEOMETRY = {"attention": (36, 8), "attn_hidden": (36, 8), "gradcam": (36, 8), **Agent.RECEPTIVE_FIELDS}
BOX_GEOMETRY["input"] = (1, 1)
LAYER_COLOURS = {"attention": "#ff3b30", "attn_hidden": "#ff9f0a", "gradcam": "#ff3b30", "conv3": "#ffe620"}
LAYER_COLOURS |= {"conv2": "#30d158", "conv1": "#3fc8ff", "input": "#ff5ee1"}  # one colour per layer everywhere
TREE_FORMAT = 1  # version of the JSON document written by save_tree


@dataclass
class Args:
    """Play the checkpoint's game and write the relevance tree of each chosen step (PNG + JSON)."""

    checkpoint: str
    """a `run.pt` of ppo_attention.py (or its run folder), a CleanRL .pt/.cleanrl_model or a Stable-Baselines3 .zip"""
    env_id: Optional[str] = None
    """the game of a CleanRL or SB3 agent whose file does not name it, e.g. BreakoutNoFrameskip-v4"""
    steps: tuple[int, ...] = (20, 60, 120)
    """agent steps of the game to explain (0 = the first observation); one PNG + JSON each"""
    roots: int = 2
    """attention peaks per head: the roots of the tree"""
    children: int = 3
    """largest number of children per node (fewer where the contributions have fewer peaks)"""
    depth: int = MAX_DEPTH
    """layers to descend below the attention (1 attn_hidden, 2 conv3, 3 conv2, 4 conv1, 5 input pixels)"""
    threshold: float = 0.1
    """a peak must reach this fraction of its map's maximum (0 <= threshold < 1)"""
    seed: int = 1
    """seed of the game's no-op start and of the agent's sampled actions"""
    greedy: bool = False
    """take the most probable action instead of sampling from the policy"""
    out: Annotated[Optional[str], SAYS_ITS_DEFAULT] = None
    """output folder (default: a new runs/<run_name>/tree__<unix time>/)"""
    force: bool = False
    """write into an --out folder that already holds files"""
    cuda: bool = True
    """compute on CUDA when it is available"""


# ----------------------------------------------------------------------------- peaks


def find_peaks(maps: torch.Tensor, k: int, threshold: float = 0.1) -> tuple:
    """The k most prominent local maxima of each map, strongest first.

    maps (N, H, W) -> (values (N, k), flat indices (N, k), valid (N, k)); rows with fewer than k
    peaks are padded with valid=False. A peak is the first maximum, in reading order, of its own
    3x3 neighbourhood (a plateau gives one peak; outside the map does not count, so borders can be
    peaks), is positive and reaches threshold x the map's maximum.
    """
    N, H, W = maps.shape
    # max-pool comparison; the pool's index says which place holds the neighbourhood's first maximum
    _, winner = F.max_pool2d(maps.unsqueeze(1), 3, stride=1, padding=1, return_indices=True)
    flat = maps.reshape(N, H * W)
    own = torch.arange(H * W, device=maps.device)
    top = flat.amax(1, keepdim=True)
    is_peak = (winner.view(N, H * W) == own) & (flat > 0) & (flat >= threshold * top)
    scores = torch.where(is_peak, flat, torch.full_like(flat, -float("inf")))
    values, index = scores.topk(min(k, H * W), dim=1)
    return values, index, values > -float("inf")


def top_channels(relevance: torch.Tensor, k: int, threshold: float = 0.1) -> tuple:
    """Children at a 1x1 layer: the k channels with the most relevance. (N, C) -> like find_peaks."""
    values, index = relevance.topk(min(k, relevance.shape[1]), dim=1)
    valid = (values > 0) & (values >= threshold * values[:, :1])
    return values, index, valid


# ----------------------------------------------------------------------------- contributions


def unit_contributions(weight: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """z_j = a_j * w_jk for one unit k: its weights (Cin, kh, kw) times the activations under its window."""
    return window * weight


def relevance_below(window: torch.Tensor, weight: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """LRP z+ rule (LRP-alpha1-beta0) over each node's window, for many nodes at once.

    window (N, J): the non-negative lower activations under each node (J = Cin*kh*kw).
    weight (N, J) with relevance (N,): one upper unit per node; or weight (C, J) with relevance
    (N, C): the C units at each node's place, each with its own relevance.
    Returns (N, J): sum_c relevance_c * max(a_j w_jc, 0) / sum_i max(a_i w_ic, 0). As a_j >= 0,
    max(a_j w, 0) = a_j max(w, 0): two matrix products, no (N, C, J) tensor of contributions.
    """
    if relevance.dim() == 1:  # one unit per node
        z = unit_contributions(weight, window).clamp(min=0)  # (N, J): positive contributions
        total = z.sum(1)
        return z * torch.where(total > 0, relevance / total.clamp(min=1e-12), 0.0).unsqueeze(1)
    w_pos = weight.clamp(min=0)
    total = window @ w_pos.T  # (N, C): each unit's sum of positive contributions
    share = torch.where(total > 0, relevance / total.clamp(min=1e-12), 0.0)
    return window * (share @ w_pos)  # (N, J)


# ----------------------------------------------------------------------------- the tree


def boxes(layer: str, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Receptive fields of units (y, x): (N, 8) [y0, x0, y1, x1] in the 84x84 input, then in the 210x160 frame.

    End-exclusive. Frame rows are 210/84 = 5/2 input rows, columns 160/84 = 40/21: the start is
    rounded down and the end up, so a box inside another stays inside it in the frame too.
    """
    size, stride = BOX_GEOMETRY[layer]
    b84 = np.clip(np.stack([y * stride, x * stride, y * stride + size, x * stride + size], 1), 0, 84)
    b210 = (b84 * [5, 40, 5, 40] + [0, 0, 1, 20]) // [2, 21, 2, 21]
    return np.concatenate([b84, b210], 1)


def level_nodes(layer: str, channel, y, x, relevance) -> list:
    """The node dicts of one level, from (N,) tensors (children are filled in later)."""
    ints = torch.stack([channel, y, x], 1).cpu().numpy()  # one transfer per level, not per node
    rows = np.concatenate([ints, boxes(layer, ints[:, 1], ints[:, 2])], 1).tolist()
    return [
        {"layer": layer, "channel": r[0], "y": r[1], "x": r[2], "relevance": rel, "box84": r[3:7], "box210": r[7:]}
        | {"children": []}
        for r, rel in zip(rows, relevance.cpu().numpy().tolist())
    ]


def contrast(activations: dict, head: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Each hidden channel at the peak minus its attention-weighted mean over the places: (N, 512).

    d_c = a_c(p) - sum_q A_h(q) a_c(q) for head h = head[n] at p = (y[n], x[n]). Then sum_c w_hc d_c is the
    peak's logit minus the attention-weighted mean logit (the bias cancels), which a common shift leaves alone.
    """
    hid = activations["attn_hidden"][0].flatten(1)  # (512, 49)
    mean = activations["attention"][0].flatten(1) @ hid.T  # (H, 512): sum_q A_h(q) a_c(q)
    return hid[:, y * 7 + x].T - mean[head]


def descend(agent: Agent, activations: dict, layer: str, level: dict) -> tuple:
    """Relevance under every node of `level`: (relevance (N, Cin, k, k), k, stride of the window).

    level: head (N), channel (N), y (N), x (N), r (N, C): the relevance of each of the node's channels
    (C = 1 for the roots and the unit nodes of the 1x1 layers, the node's own channel); head: the root's.
    """
    y, x, ch = level["y"], level["x"], level["channel"]
    if layer == "gradcam":  # the map at p: sum_k alpha_k A_k(p), with A >= 0 (after conv3's ReLU)
        feats = activations["features"][0, :, y, x].T  # (N, 64)
        return relevance_below(feats, level["alpha"], level["r"][:, 0]).view(-1, 64, 1, 1), 1, 1
    if layer == "attention":  # contrasted logit: sum_c W[h, c] d_c, and d may be negative
        d = contrast(activations, ch, y, x)  # (N, 512)
        weight = agent.attn_logits.weight[ch, :, 0, 0] * d.sign()  # d w = |d| (w sign(d))
        return relevance_below(d.abs(), weight, level["r"][:, 0]).view(-1, 512, 1, 1), 1, 1
    if layer == "attn_hidden":  # pre_c = sum_j W[c, j] features_j; ELU is increasing
        feats = activations["features"][0, :, y, x].T  # (N, 64), >= 0; the L2 norm cancels in the shares
        # the node is relevant because it is above (or below) its mean: explained by what pushed it up (or down)
        sign = contrast(activations, level["head"], y, x).gather(1, ch[:, None]).sign()
        weight = agent.attn_hidden.weight[ch, :, 0, 0] * sign  # (N, 64)
        return relevance_below(feats, weight, level["r"][:, 0]).view(-1, 64, 1, 1), 1, 1
    conv = getattr(agent, layer)
    below, k, stride = activations[LAYERS[LAYERS.index(layer) + 1]][0], conv.kernel_size[0], conv.stride[0]
    patches = below.unfold(1, k, stride).unfold(2, k, stride)  # a view (Cin, H, W, k, k): every window
    window = patches[:, y, x].transpose(0, 1).reshape(len(y), -1)  # (N, Cin*k*k), the weight's order
    weight = conv.weight.flatten(1)  # (Cout, Cin*k*k)
    if layer == "conv3":  # unit nodes: the node's own channel
        r = relevance_below(window, weight[ch], level["r"][:, 0])
    else:  # place nodes: every channel at the place, with its own relevance
        r = relevance_below(window, weight, level["r"])
    return r.view(-1, below.shape[0], k, k), k, stride


def pick_children(level: dict, rel: torch.Tensor, k: int, stride: int, n: int, threshold: float) -> dict:
    """The next level: children of every node, from the relevance under it (N, Cin, k, k).

    At a 1x1 layer the children are channels at the node's place. Below, they are places: the peaks
    of the channel-summed map (per channel the top contributors are mostly the same place again),
    each carrying the relevance of all its channels, with the real channel that carries most of it.
    """
    if k == 1:
        values, index, valid = top_channels(rel[:, :, 0, 0], n, threshold)
        parent, slot = valid.nonzero(as_tuple=True)
        r, y, x = values[parent, slot].unsqueeze(1), level["y"][parent], level["x"][parent]
        return dict(parent=parent, head=level["head"][parent], channel=index[parent, slot], y=y, x=x, r=r)
    values, index, valid = find_peaks(rel.sum(1), n, threshold)
    parent, slot = valid.nonzero(as_tuple=True)
    place = index[parent, slot]
    r = rel.flatten(2)[parent, :, place]  # (M, Cin): relevance of each channel at the child's place
    y, x = level["y"][parent] * stride + place // k, level["x"][parent] * stride + place % k
    return dict(parent=parent, head=level["head"][parent], channel=r.argmax(1), y=y, x=x, r=r)


@torch.no_grad()
def build_tree(
    agent: Agent,
    obs,
    roots: int = 2,
    children: int = 3,
    depth: int = MAX_DEPTH,
    *,
    threshold=0.1,
    activations=None,
    action: Optional[int] = None,
):
    """The relevance tree of one observation: a list of root nodes (see the module docstring).

    obs: (4, 84, 84) or (1, 4, 84, 84) uint8. activations: `agent.activations(obs)` if already computed.
    Without attention the roots are Grad-CAM's peaks for the logit of `action` (default: the greedy action);
    depth then counts the same layers, attn_hidden left out (5: down to the input pixels, 1: the roots alone).
    Works wherever the agent is (CPU or CUDA); the nodes are plain Python. UsageError for bad sizes.
    """
    check_sizes(roots, children, depth, threshold)
    obs = torch.as_tensor(obs, device=agent.conv1.weight.device).reshape(1, 4, 84, 84)
    activations = dict(agent.activations(obs) if activations is None else activations)
    activations["input"] = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()

    if agent.attn_heads:
        heads = activations["attention"][0].float()  # (H, 7, 7)
        values, index, valid = find_peaks(heads, roots, threshold)
        head, slot = valid.nonzero(as_tuple=True)
        value, place = values[head, slot], index[head, slot]
        level = dict(head=head, channel=head, y=place // 7, x=place % 7, r=value.unsqueeze(1))
        path = LAYERS[: depth + 1]
    else:  # no attention: Grad-CAM's peaks on conv3's 7x7 grid, for the action's logit
        level, value = gradcam_roots(agent, activations, roots, threshold, action)
        path = ("gradcam", *(layer for layer in LAYERS[2 : depth + 1]))
    tree = parents = level_nodes(path[0], level["channel"], level["y"], level["x"], value)
    for layer, child_layer in zip(path[:-1], path[1:]):
        if not len(level["y"]):  # no node left to descend from (a Grad-CAM map of zeros has no peak)
            break
        rel, k, stride = descend(agent, activations, layer, level)
        level = pick_children(level, rel, k, stride, children, threshold)
        nodes = level_nodes(child_layer, level["channel"], level["y"], level["x"], level["r"].sum(1))
        for node, p in zip(nodes, level["parent"].tolist()):
            parents[p]["children"].append(node)
        parents = nodes
    return tree


def gradcam_map(agent: Agent, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Grad-CAM on conv3 (saliency.gradcam) for the logit of each row's action: x (B, 4, 84, 84) float input in
    [0, 1], action (B,) -> (B, 7, 7), >= 0. The map whose peaks are the roots of an agent without attention."""
    return gradcam(agent, x, Score("action", torch.as_tensor(action, device=x.device)), chunk=len(x))


def gradcam_roots(agent: Agent, activations: dict, roots: int, threshold: float, action: Optional[int]) -> tuple:
    """(level, relevance) of the roots of an agent without attention: the `roots` strongest peaks of Grad-CAM
    (saliency.gradcam) for the logit of `action` (default: the greedy one); the node's channel is that action."""
    x = activations["input"]
    logits = activations["logits"]
    chosen = torch.as_tensor([int(logits.argmax()) if action is None else action], device=x.device)
    values, index, valid = find_peaks(gradcam_map(agent, x, chosen), roots, threshold)  # (1, roots)
    value, place = values[valid], index[valid]
    alpha = gradcam_weights(agent, x, Score("action", chosen))[0].expand(len(place), -1)  # (N, 64), every root's
    level = dict(head=torch.zeros_like(place), channel=chosen.expand(len(place)), y=place // 7, x=place % 7)
    return level | dict(r=value.unsqueeze(1), alpha=alpha), value


def tree_layers(agent: Agent) -> tuple:
    """The layers of the agent's trees, from the roots down."""
    return LAYERS if agent.attn_heads else GRADCAM_LAYERS


def root_label(root: dict, short: bool = False) -> str:
    """What a root is, in words: an attention head's peak and its weight, or a Grad-CAM peak and its value."""
    if root["layer"] == "gradcam":
        return f"{'G' if short else 'Grad-CAM'} {root['relevance']:.2g}"  # in logit units, of any size
    return (
        f"h{root['channel']} {root['relevance']:.2f}" if short else f"head {root['channel']}: {root['relevance']:.2f}"
    )


def check_sizes(roots: int, children: int, depth: int, threshold: float) -> None:
    """UsageError (one sentence) for sizes the tree cannot have."""
    if roots <= 0 or children <= 0:
        raise UsageError(f"--roots and --children must be positive, got {roots} and {children}.")
    if not 0 <= depth <= MAX_DEPTH:
        raise UsageError(f"--depth must be between 0 and {MAX_DEPTH} ({', '.join(LAYERS[1:])}), got {depth}.")
    if not 0 <= threshold < 1:
        raise UsageError(f"--threshold must be at least 0 and below 1, got {threshold}.")


def iter_nodes(tree: list):
    """Every node of the tree with its depth (roots: 0), parents before their children."""
    stack = [(node, 0) for node in reversed(tree)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        stack.extend((child, depth + 1) for child in reversed(node["children"]))


def node_strength(tree: list) -> dict:
    """{id(node): relevance / the strongest relevance of its layer}, in (0, 1]: how boldly to draw each node."""
    strongest = {}
    for node, _ in iter_nodes(tree):
        strongest[node["layer"]] = max(strongest.get(node["layer"], 0.0), node["relevance"])
    return {id(n): n["relevance"] / max(strongest[n["layer"]], 1e-12) for n, _ in iter_nodes(tree)}


# ----------------------------------------------------------------------------- JSON


def save_tree(path: str, tree: list, **info) -> None:
    """Write the tree and plain metadata (env_id, step, action, ...) as one JSON document."""
    with open(path, "w") as f:
        json.dump({"format_version": TREE_FORMAT, **info, "tree": tree}, f)


def load_tree(path: str) -> tuple:
    """(tree, metadata) from a file written by save_tree; UsageError for anything else."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the tree file '{path}': {e}.") from None
    if not isinstance(doc, dict) or doc.get("format_version") != TREE_FORMAT or "tree" not in doc:
        raise UsageError(f"'{path}' is not a relevance tree written by relevance_tree.py.")
    tree = doc.pop("tree")
    return tree, doc


# ----------------------------------------------------------------------------- figure


def draw_tree(obs: np.ndarray, frame: np.ndarray, tree: list, title: str, path: str) -> None:
    """PNG: the tree over each of the 4 stacked frames (pixel nodes on their own frame), and the
    game frame with the roots' regions. Line width and opacity grow with a node's relevance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    strength = node_strength(tree)
    fig, axes = plt.subplots(1, 5, figsize=(18, 5), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.2]})
    for f, ax in enumerate(axes[:4]):
        ax.imshow(obs[f], cmap="gray", vmin=0, vmax=255, extent=(0, 84, 84, 0))
        rects, colours, widths, edges, pixels = [], [], [], [], []
        for node, _ in iter_nodes(tree):
            s, (y0, x0, y1, x1) = strength[id(node)], node["box84"]
            rgba = (*matplotlib.colors.to_rgb(LAYER_COLOURS[node["layer"]]), 0.35 + 0.65 * s)
            if node["layer"] == "input":  # a pixel: a dot on its own frame
                if node["channel"] == f:
                    pixels.append((x0 + 0.5, y0 + 0.5, rgba, 12 + 40 * s))
                continue
            d = {"attn_hidden": 1.2, "conv3": 2.4}.get(node["layer"], 0.0)  # share the 36 px square: nested
            rects.append(Rectangle((x0 + d, y0 + d), x1 - x0 - 2 * d, y1 - y0 - 2 * d))
            colours.append(rgba)
            widths.append(0.6 + 2.4 * s)
            for child in node["children"]:
                if child["layer"] != "input" or child["channel"] == f:
                    edges.append([((b[1] + b[3]) / 2, (b[0] + b[2]) / 2) for b in (node["box84"], child["box84"])])
        ax.add_collection(LineCollection(edges, colors=(1, 1, 1, 0.3), linewidths=0.5))
        ax.add_collection(PatchCollection(rects, facecolors="none", edgecolors=colours, linewidths=widths))
        if pixels:
            px, py, pc, ps = zip(*pixels)
            ax.scatter(px, py, c=list(pc), s=ps, marker="s", edgecolors="black", linewidths=0.4)
        ax.set(xlim=(0, 84), ylim=(84, 0), xticks=[], yticks=[])
        ax.set_title(["frame t-3", "frame t-2", "frame t-1", "frame t (newest)"][f])
    ax = axes[4]
    ax.imshow(frame)
    for root in tree:
        y0, x0, y1, x1 = root["box210"]
        colour = LAYER_COLOURS[root["layer"]]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=1 + 2 * strength[id(root)]))
    roots = "Grad-CAM's value" if tree and tree[0]["layer"] == "gradcam" else "head: attention weight"
    ax.set(xticks=[], yticks=[], title=f"game frame: the roots ({roots})")
    present = {node["layer"] for node, _ in iter_nodes(tree)} or {"attention"}
    handles = [Line2D([], [], color=c, lw=3, label=n) for n, c in LAYER_COLOURS.items() if n in present]
    fig.legend(handles=handles, loc="lower center", ncol=7, frameon=False, title="layer (bolder = more relevance)")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    label_roots(ax, tree)  # after the layout: the labels are placed where they will be drawn
    fig.savefig(path, dpi=110)
    plt.close(fig)


def label_roots(ax, tree: list) -> list:
    """Each root's label (`root_label`) in the top left corner of its box on the game frame, head by head; a label
    that would cover one placed before moves down a line until it covers none (heads often peak at the same
    place). Returns the labels (matplotlib Text)."""
    renderer, placed, labels = ax.figure.canvas.get_renderer(), [], []
    for root in sorted(tree, key=lambda r: (r["channel"], -r["relevance"])):  # head 0 first, then its weaker peaks
        y0, x0 = root["box210"][:2]
        label = ax.annotate(root_label(root), (x0 + 2, y0 + 2), xytext=(0, 0), textcoords="offset points",
                            color="white", fontsize=9, va="top", bbox=dict(fc="black", alpha=0.7, pad=1.5))  # fmt: skip
        box = label.get_window_extent(renderer).padded(3)  # pixels, the label's black box included
        line = (box.height + 1) * 72 / ax.figure.dpi  # points: the next line, clear of rounding
        while any(box.overlaps(other) for other in placed):
            label.set_position((0, label.get_position()[1] - line))
            box = label.get_window_extent(renderer).padded(3)
        placed.append(box)
        labels.append(label)
    return labels


# ----------------------------------------------------------------------------- command line


def main(argv=None) -> str:
    args = tyro.cli(Args, args=argv)
    check_sizes(args.roots, args.children, args.depth, args.threshold)
    steps = sorted(set(args.steps))
    if not steps or steps[0] < 0:
        raise UsageError(f"--steps must be one or more numbers >= 0, got {list(args.steps)}.")
    device = pick_device(args.cuda)
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: one thread is faster than two
    agent, meta = load_checkpoint(args.checkpoint, device, args.env_id)
    names, q_values = meta["action_names"], meta["outputs"] == "q_values"
    if agent.attn_heads == 0:
        print("note: this agent has no attention module, so its trees start at the peaks of Grad-CAM on conv3.")
    with output_folder(args.out, meta["run_name"], "tree", args.force) as out:
        kept, _ = play_to(agent, meta["env_id"], steps, args.seed, args.greedy, meta["env_options"])
        for t, step in sorted(kept.items()):
            start = time.perf_counter()
            explained = None if agent.attn_heads else explained_action(None, step, q_values)  # as saliency.py's
            tree = build_tree(agent, step.obs, args.roots, args.children, args.depth, threshold=args.threshold,
                              activations=step.activations, action=explained)  # fmt: skip
            ms = (time.perf_counter() - start) * 1e3
            stem = os.path.join(out, f"step_{t:05d}")
            settings = dict(roots=args.roots, children=args.children, depth=args.depth, threshold=args.threshold)
            info = dict(env_id=meta["env_id"], checkpoint=os.path.abspath(args.checkpoint), step=t, settings=settings)
            info |= dict(explains="attention" if explained is None else f"logit of {names[explained]}")
            save_tree(stem + ".json", tree, **info, action=step.action, action_name=names[step.action])
            n_nodes = sum(1 for _ in iter_nodes(tree))
            label = None if explained is None else target_label("action", None, names[explained], q_values)
            why = "why the agent looks where it looks" if label is None else f"what in conv3 raises {label}"
            title = f"{meta['env_id']}, step {t}: {why} (it takes {names[step.action]})"
            draw_tree(step.obs, step.frame, tree, title, stem + ".png")
            print(f"step {t}: {n_nodes} nodes in {ms:.1f} ms -> {stem}.png, .json", flush=True)
            if not tree:  # Grad-CAM is ReLU(...): zero where no conv3 feature raises the logit
                print(f"note: step {t} has no tree: Grad-CAM of {label} is zero everywhere (no conv3 feature "
                      "raises it).")  # fmt: skip
    print(f"done: {out}")
    return out


if __name__ == "__main__":
    exit_on_bad_input(main)
