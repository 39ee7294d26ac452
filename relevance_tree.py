"""Relevance trees: from the attention peaks, layer by layer, down to the input pixels.

One heat map says *where* an agent looks. A relevance tree says *which units, at which
places, in which layers* produced what it saw there (the "squares" of the seed project,
after Yang et al. 2018, "Learn to Interpret Atari Agents", arXiv 1812.11276). Relevance
is passed down with the z+ rule of layer-wise relevance propagation (Bach et al. 2015,
"On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance
Propagation", PLoS ONE).

    attention (H x 7x7) -> attn_hidden (512 @ 1 place) -> conv3 (64 @ 1 place)
        -> conv2 (places in a 3x3 window) -> conv1 (places in a 4x4 window) -> input (pixels in an 8x8 window)

1. Roots: the prominent local maxima of each head's 7x7 attention map: a place that beats
   its 3x3 neighbourhood (ties go to the first place in reading order, so a plateau gives
   one peak; outside the map counts as -inf, so borders and corners can be peaks) and
   reaches `threshold` x the map's maximum. Strongest first, `roots` per head. A root's
   relevance is its attention weight (each head's map sums to 1).
2. Contributions: lower unit j adds z_j = a_j * w_jk to the pre-activation of unit k, over k's
   window (1x1 layers: all channels at k's place; convolutions: the kernel window). The z+
   rule gives j the share max(z_j, 0) / sum_i max(z_i, 0) of k's relevance (the bias takes
   none), so the whole window gets exactly k's relevance and any set of children at most that.
   - L2 normalisation (features = conv3 / ||conv3|| per place) multiplies all channels of a
     place by the same positive number, which cancels in the shares: conv3 units get the
     shares computed with the features that attn_hidden really reads.
   - ELU keeps the sign of its input, so relevance passes through it position-wise; an
     attn_hidden unit that helped its head by being *negative* (with a negative weight) is
     explained by the inputs that pushed it down (z_j times the sign of the unit).
3. Children: at the 1x1 layers (attn_hidden, conv3) the window is one place, so the children
   are the channels with the largest contributions (real channel numbers). From conv3 down the
   windows have an extent: the relevance map is summed over channels and its prominent peaks
   (same rule as the roots) are the children. We pick places, not (channel, place) pairs,
   because the picture is about places: per channel, the top contributors are mostly the same
   place again (one square drawn over another), and neighbouring places share most of their
   input pixels. Such a child stands for its whole place: its relevance is that of all its
   channels, the tree descends from all of them (LRP restricted to the window), and `channel`
   records the real channel that carries the largest part (the frame index for pixels).
4. Every node records its layer, channel (or head, or frame), position in its layer, relevance
   and its receptive field in the 84x84 input (rows [y*s, y*s + r): conv1 8 px stride 4, conv2
   20 px stride 8, conv3 / attention 36 px stride 8) and in the 210x160 game frame (the
   observation is a plain resize of the frame: rows x 210/84, columns x 160/84).

All nodes of one layer are computed together in a few tensor operations, so a tree with the
default sizes (2 heads x 2 roots, 3 children per node, down to the pixels: up to 1,456 nodes)
takes milliseconds, fast enough for render.py to draw one in every frame.

    python relevance_tree.py --checkpoint runs/<run_name>/run.pt --steps 10 50 100
"""

import json
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

LAYERS = ("attention", "attn_hidden", "conv3", "conv2", "conv1", "input")  # the tree's levels, top down
MAX_DEPTH = len(LAYERS) - 1  # layers below the attention
BOX_GEOMETRY = {"attention": (36, 8), "attn_hidden": (36, 8), **Agent.RECEPTIVE_FIELDS, "input": (1, 1)}
TREE_FORMAT = 1  # version of the JSON document written by save_tree


@dataclass
class Args:
    checkpoint: str
    """path of a `run.pt` written by ppo_attention.py (an agent with attention heads)"""
    steps: tuple[int, ...] = (10, 50, 100)
    """agent steps of the episode to explain (0 = the first observation); one PNG + JSON each"""
    roots: int = 2
    """attention peaks per head: the roots of the tree"""
    children: int = 3
    """largest number of children per node (fewer where the contributions have fewer peaks)"""
    depth: Optional[int] = None
    """layers to descend below the attention (1 attn_hidden, 2 conv3, 3 conv2, 4 conv1, 5 input pixels); default: 5"""
    threshold: float = 0.1
    """a peak must reach this fraction of its map's maximum (0 <= threshold < 1)"""
    seed: int = 1
    """seed of the game's no-op start and of the agent's sampled actions"""
    out: Optional[str] = None
    """output folder; default: a new folder trees/<run_name>__<date-time>/ (never overwrites)"""
    force: bool = False
    """write into an --out folder that already holds files (files with the same names are replaced)"""


# ----------------------------------------------------------------------------- peaks


def find_peaks(maps: torch.Tensor, k: int, threshold: float = 0.1) -> tuple:
    """The k most prominent local maxima of each map, strongest first.

    maps (N, H, W) -> (values (N, k), flat indices (N, k), valid (N, k)); rows with fewer
    than k peaks are padded with valid=False. A peak is the first maximum, in reading order,
    of its own 3x3 neighbourhood (so a plateau gives one peak; outside the map does not
    count, so borders and corners can be peaks), is positive and reaches threshold x the
    map's maximum.
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
    """LRP z+ rule over each node's window, for many nodes at once.

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
    ints = torch.stack([channel, y, x], 1).numpy()  # one conversion per level, not per node
    rows = np.concatenate([ints, boxes(layer, ints[:, 1], ints[:, 2])], 1).tolist()
    return [
        {
            "layer": layer,
            "channel": r[0],
            "y": r[1],
            "x": r[2],
            "relevance": rel,
            "box84": r[3:7],
            "box210": r[7:],
            "children": [],
        }
        for r, rel in zip(rows, relevance.numpy().tolist())
    ]


def descend(agent: Agent, acts: dict, layer: str, level: dict) -> tuple:
    """Relevance under every node of `level`: (relevance (N, Cin, k, k), k, stride of the window).

    level: channel (N), y (N), x (N), r (N, C): the relevance of each of the node's channels
    (C = 1 for the roots and the unit nodes of the 1x1 layers, the node's own channel).
    """
    y, x, ch = level["y"], level["x"], level["channel"]
    if layer == "attention":  # logit_h = sum_c W[h, c] hid_c, and hid may be negative (ELU)
        hid = acts["attn_hidden"][0, :, y, x].T  # (N, 512)
        weight = agent.attn_logits.weight[ch, :, 0, 0] * hid.sign()  # a w = |a| (w sign(a))
        return relevance_below(hid.abs(), weight, level["r"][:, 0]).view(-1, 512, 1, 1), 1, 1
    if layer == "attn_hidden":  # pre_c = sum_j W[c, j] features_j; ELU keeps the sign of pre_c
        feats = acts["features"][0, :, y, x].T  # (N, 64), >= 0
        sign = acts["attn_hidden"][0, ch, y, x].sign().unsqueeze(1)
        weight = agent.attn_hidden.weight[ch, :, 0, 0] * sign  # (N, 64)
        return relevance_below(feats, weight, level["r"][:, 0]).view(-1, 64, 1, 1), 1, 1
    conv = getattr(agent, layer)
    below, k, stride = acts[LAYERS[LAYERS.index(layer) + 1]][0], conv.kernel_size[0], conv.stride[0]
    patches = below.unfold(1, k, stride).unfold(2, k, stride)  # a view (Cin, H, W, k, k): every window
    window = patches[:, y, x].transpose(0, 1).reshape(len(y), -1)  # (N, Cin*k*k), the weight's order
    weight = conv.weight.flatten(1)  # (Cout, Cin*k*k)
    if layer == "conv3":  # unit nodes: the node's own channel
        r = relevance_below(window, weight[ch], level["r"][:, 0])
    else:  # place nodes: every channel at the place, with its own relevance
        r = relevance_below(window, weight, level["r"])
    return r.view(-1, below.shape[0], k, k), k, stride


def pick_children(level: dict, rel: torch.Tensor, k: int, stride: int, n: int, threshold: float) -> dict:
    """The next level: children of every node, from the relevance under it (N, Cin, k, k)."""
    if k == 1:  # a 1x1 layer: children are channels at the same place (unit nodes)
        values, index, valid = top_channels(rel[:, :, 0, 0], n, threshold)
        parent, slot = valid.nonzero(as_tuple=True)
        value = values[parent, slot]
        return dict(
            parent=parent,
            channel=index[parent, slot],
            y=level["y"][parent],
            x=level["x"][parent],
            r=value.unsqueeze(1),
        )
    values, index, valid = find_peaks(rel.sum(1), n, threshold)  # peaks of the channel-summed map
    parent, slot = valid.nonzero(as_tuple=True)
    place = index[parent, slot]
    r = rel.flatten(2)[parent, :, place]  # (M, Cin): relevance of each channel at the child's place
    return dict(
        parent=parent,
        channel=r.argmax(1),
        y=level["y"][parent] * stride + place // k,
        x=level["x"][parent] * stride + place % k,
        r=r,
    )


@torch.no_grad()
def build_tree(
    agent: Agent, obs, roots: int = 2, children: int = 3, depth: Optional[int] = None, *, threshold=0.1, acts=None
) -> list:
    """The relevance tree of one observation: a list of root nodes (see the module docstring).

    obs: (4, 84, 84) or (1, 4, 84, 84) uint8. depth: layers below the attention (default 5, the pixels).
    threshold: see find_peaks. acts: `agent.activations(obs)` if already computed (saves the forward pass).
    ValueError for bad sizes or an agent without attention.
    """
    depth = MAX_DEPTH if depth is None else depth
    check_sizes(roots, children, depth, threshold)
    if agent.attn_heads == 0:
        raise ValueError(
            "this agent has no attention module (trained with --attn-heads 0), so there are no attention peaks to start from."
        )
    obs = torch.as_tensor(obs).reshape(1, 4, 84, 84)
    acts = dict(agent.activations(obs) if acts is None else acts)
    acts["input"] = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()

    heads = acts["attention"][0]  # (H, 7, 7)
    values, index, valid = find_peaks(heads, roots, threshold)
    head, slot = valid.nonzero(as_tuple=True)
    value, place = values[head, slot], index[head, slot]
    width = heads.shape[-1]
    level = dict(channel=head, y=place // width, x=place % width, r=value.unsqueeze(1))
    tree = parents = level_nodes("attention", head, level["y"], level["x"], value)
    for layer, child_layer in zip(LAYERS[:depth], LAYERS[1 : depth + 1]):
        rel, k, stride = descend(agent, acts, layer, level)
        level = pick_children(level, rel, k, stride, children, threshold)
        nodes = level_nodes(child_layer, level["channel"], level["y"], level["x"], level["r"].sum(1))
        for node, p in zip(nodes, level["parent"].tolist()):
            parents[p]["children"].append(node)
        parents = nodes
    return tree


def check_sizes(roots: int, children: int, depth: int, threshold: float) -> None:
    """ValueError (one sentence) for sizes the tree cannot have."""
    if roots <= 0:
        raise ValueError(f"--roots must be positive, got {roots}.")
    if children <= 0:
        raise ValueError(f"--children must be positive, got {children}.")
    if not 0 <= depth <= MAX_DEPTH:
        raise ValueError(
            f"--depth must be between 0 and {MAX_DEPTH} (the layers below the attention: "
            f"{', '.join(LAYERS[1:])}), got {depth}."
        )
    if not 0 <= threshold < 1:
        raise ValueError(f"--threshold must be at least 0 and below 1, got {threshold}.")


def iter_nodes(tree: list):
    """Every node of the tree with its depth (roots: 0), parents before their children."""
    stack = [(node, 0) for node in reversed(tree)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        stack.extend((child, depth + 1) for child in reversed(node["children"]))


# ----------------------------------------------------------------------------- JSON


def save_tree(path: str, tree: list, **info) -> None:
    """Write the tree and plain metadata (env_id, step, action, ...) as one JSON document."""
    with open(path, "w") as f:
        json.dump({"format_version": TREE_FORMAT, **info, "tree": tree}, f)


def load_tree(path: str) -> tuple:
    """(tree, metadata) from a file written by save_tree; ValueError for anything else."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the tree file '{path}': {e}.") from None
    if not isinstance(doc, dict) or doc.get("format_version") != TREE_FORMAT or "tree" not in doc:
        raise ValueError(f"'{path}' is not a relevance tree written by relevance_tree.py.")
    tree = doc.pop("tree")
    return tree, doc


# ----------------------------------------------------------------------------- figure

LAYER_COLOURS = {
    "attention": "#ff2d2d",
    "attn_hidden": "#ff9f1c",
    "conv3": "#ffe14d",
    "conv2": "#3ddc84",
    "conv1": "#2ec4ff",
    "input": "#d66bff",
}
HEAD_COLOURS = ["#ff2d2d", "#2ec4ff", "#3ddc84", "#ffe14d"]
INSET = {"attn_hidden": 1.0, "conv3": 2.0}  # px: these share the attention's 36-px square, drawn nested


def draw_tree(obs: np.ndarray, frame: np.ndarray, tree: list, title: str, path: str) -> None:
    """PNG: the tree over each of the 4 stacked frames, and the game frame with the roots' regions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.patches import Patch, Rectangle

    nodes = list(iter_nodes(tree))
    strongest = {}  # line width and opacity are relative to the strongest node of the same layer
    for node, _ in nodes:
        strongest[node["layer"]] = max(strongest.get(node["layer"], 0.0), node["relevance"])
    fig, axes = plt.subplots(1, 5, figsize=(18, 4.6), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.2]})
    for f, ax in enumerate(axes[:4]):
        ax.imshow(obs[f], cmap="gray", vmin=0, vmax=255, extent=(0, 84, 84, 0))
        rects, edges, colours, widths = [], [], [], []
        for node, _ in nodes:
            if node["layer"] == "input" and node["channel"] != f:
                continue
            strength = node["relevance"] / max(strongest[node["layer"]], 1e-12)
            y0, x0, y1, x1 = node["box84"]
            d = INSET.get(node["layer"], 0.0)
            rects.append(Rectangle((x0 + d, y0 + d), x1 - x0 - 2 * d, y1 - y0 - 2 * d))
            colours.append((*matplotlib.colors.to_rgb(LAYER_COLOURS[node["layer"]]), 0.25 + 0.75 * strength))
            widths.append(0.4 + 2.0 * strength)
            for child in node["children"]:
                if child["layer"] != "input" or child["channel"] == f:
                    c0, c1 = [((b[1] + b[3]) / 2, (b[0] + b[2]) / 2) for b in (node["box84"], child["box84"])]
                    edges.append([c0, c1])
        ax.add_collection(LineCollection(edges, colors=(1, 1, 1, 0.35), linewidths=0.5))
        ax.add_collection(PatchCollection(rects, facecolors="none", edgecolors=colours, linewidths=widths))
        ax.set(xlim=(0, 84), ylim=(84, 0), xticks=[], yticks=[], title=f"frame t{f - 3}" if f < 3 else "frame t")
    ax = axes[4]
    ax.imshow(frame)
    for root in tree:
        y0, x0, y1, x1 = root["box210"]
        colour = HEAD_COLOURS[root["channel"] % len(HEAD_COLOURS)]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=2))
        ax.text(x0 + 2, y0 + 9, f"h{root['channel']} {root['relevance']:.2f}", color=colour, fontsize=8)
    ax.set(xticks=[], yticks=[], title="game frame: roots (head, attention)")
    handles = [Patch(edgecolor=c, facecolor="none", label=n) for n, c in LAYER_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=6, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- command line


def prepare_out(args: Args, run_name: str) -> tuple:
    """(output folder, whether we created it); ValueError if it cannot be used."""
    out = args.out
    if out is None:
        out = os.path.join("trees", f"{run_name}__{time.strftime('%Y%m%d-%H%M%S')}")
        base, n = out, 1
        while os.path.exists(out):
            n += 1
            out = f"{base}-{n}"
    elif os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out '{out}' is a file, not a folder.")
    elif os.path.isdir(out) and os.listdir(out) and not args.force:
        raise ValueError(f"--out '{out}' already holds files; choose another folder or add --force to write into it.")
    created = not os.path.exists(out)
    make_writable_folder(out)
    return out, created


def play(agent: Agent, env_id: str, steps: list, seed: int) -> dict:
    """Play one episode up to the last requested step: {step: (obs (4,84,84) uint8, frame, action)}."""
    env = make_env(env_id, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    wanted, last, kept = set(steps), max(steps), {}
    print(f"playing {env_id} up to step {last}", flush=True)
    for t in range(last + 1):
        with torch.no_grad():
            logits = agent.activations(torch.as_tensor(obs).unsqueeze(0))["logits"]
        action = int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
        if t in wanted:
            kept[t] = (np.asarray(obs).copy(), env.render(), action)
        if t == last:
            break
        obs, _, terminated, truncated, _ = env.step(action)
        if t and t % 200 == 0:
            print(f"  step {t}", flush=True)
        if terminated or truncated:
            env.close()
            raise ValueError(f"the episode ended after {t + 1} steps; --steps {last} lies beyond it.")
    env.close()
    return kept


def main(args: Args) -> None:
    depth = MAX_DEPTH if args.depth is None else args.depth
    check_sizes(args.roots, args.children, depth, args.threshold)
    if not args.steps or min(args.steps) < 0:
        raise ValueError(f"--steps must be one or more steps >= 0, got {' '.join(map(str, args.steps)) or 'none'}.")
    torch.set_num_threads(1)  # tiny tensors: one thread is faster than two
    agent, meta = load_checkpoint(args.checkpoint)
    if agent.attn_heads == 0:
        raise ValueError(
            f"'{args.checkpoint}' holds an agent without attention (--attn-heads 0): there are no attention peaks to start a tree from."
        )
    out, created = prepare_out(args, meta.get("run_name", "run"))
    try:
        kept = play(agent, meta["env_id"], sorted(set(args.steps)), args.seed)
    except ValueError:
        if created and not os.listdir(out):
            os.rmdir(out)
        raise
    names = meta.get("action_names") or [str(a) for a in range(meta["n_actions"])]
    for t, (obs, frame, action) in sorted(kept.items()):
        start = time.perf_counter()
        tree = build_tree(agent, obs, args.roots, args.children, depth, threshold=args.threshold)
        ms = (time.perf_counter() - start) * 1e3
        stem = os.path.join(out, f"step{t:05d}")
        info = dict(
            env_id=meta["env_id"],
            checkpoint=os.path.abspath(args.checkpoint),
            global_step=meta.get("global_step"),
            step=t,
            action=action,
            action_name=names[action],
            settings=dict(roots=args.roots, children=args.children, depth=depth, threshold=args.threshold),
        )
        save_tree(stem + ".json", tree, **info)
        n_nodes = sum(1 for _ in iter_nodes(tree))
        title = f"{meta['env_id']}  step {t}  action {names[action]}  ({n_nodes} nodes)"
        draw_tree(obs, frame, tree, title, stem + ".png")
        print(f"step {t}: {n_nodes} nodes in {ms:.1f} ms -> {stem}.png, .json", flush=True)
    print(f"done: {out}")


def cli(argv: Optional[list] = None) -> None:
    """The command line: bad input ends with one sentence on stderr and exit status 1."""
    args = tyro.cli(Args, args=argv)
    try:
        main(args)
    except (ValueError, CheckpointError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    cli()
