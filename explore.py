"""Explore a game in the browser: one self-contained HTML page with every step's frame, maps and relevance tree.

rl-attention's write-up ends with a plan it never finished: "a Javascript program to allow users to explore the
way a trained model plays a game in interactive 3D, selecting the filters that they want to explore and seeing
the most relevant nodes drawn out". This script writes that page. It plays one game with the shared play loop
(`play.play`) and writes one HTML file that works offline when double-clicked: plotly.js is embedded in it (what
plotly's `include_plotlyjs=True` embeds) and nothing is fetched from the network. At every step of the game:

- **Navigation**: a step slider, play/pause (15 steps a second, the game's real time), the arrow keys.
- **Frame**: the colour frame with a choice of overlay, drawn by overlays.py's `draw_attention`, `draw_saliency`
  and `draw_tree`, the very functions that draw render.py's videos: the attention of all heads and of each head, each
  saliency method of `saliency.saliency_maps` (whatever methods `saliency.METHODS` holds), the relevance tree.
- **Decision**: the policy as bars, V(s) and the score; over the game, curves of the policy and V(s) with a cursor.
  A DQN (play.QValueAgent): its Q-values as bars from the lowest to the highest, max_a Q(s, a), and their curves.
- **The relevance tree in 3D** (`relevance_tree.build_tree`): the input frame (max over the 4 stacked frames) is
  the floor; conv1, conv2, conv3, attn_hidden and the attention are planes above it, each unit at the centre of
  its receptive field; the nodes sit at their units' places, edges run from parent to child, wider with more
  relevance. Drag to rotate, scroll to zoom, click a node to select it. An agent without attention (CleanRL's,
  SB3's, `--attn-heads 0`): the tree starts at Grad-CAM's peaks on conv3 for the explained action's logit (a
  DQN: its greedy action's Q-value), a plane above conv3's in place of attn_hidden's and the attention's.
- **Filters**: selecting a node outlines its receptive field on the frame and shows its channel's activation map
  at this step; selecting a channel (conv1-3, attention head or Grad-CAM, input frame) shows its map and
  highlights the tree's nodes that run through it (the nodes of that channel, their ancestors and descendants).

The page holds every step's overlays as lossless WebP images and the activation maps of every conv channel as
bytes (each map scaled by its own maximum, which the page keeps), deflated; a few lines of JavaScript,
static/explore.js, tie the views together (it and static/explore.css are inlined into the page). Size and time grow linearly with the number of steps (see the README):
`--steps` and `--every` choose which steps go in.

    python explore.py --checkpoint checkpoints/breakout_coef5e-4.pt
    python explore.py --checkpoint checkpoints/breakout_coef0.pt --steps 300 600 --every 2 --samples 50

Sources: rl-attention (Nikulin, Kosch, Steuer, Cunningham 2019; `tree_visualization/visualization.html`, its
prototype, and the write-up's plan); the "Agent" TensorBoard plugin (Schreiber, Steuer 2018), which explored
agents step by step; Yang et al. 2018 (the attention module and its trees); the saliency methods of saliency.py.
"""

import base64
import io
import json
import os
import time
import zlib
from dataclasses import dataclass
from html import escape
from typing import Annotated, Literal, Optional

import numpy as np
import plotly.graph_objects as go
import torch
import tyro
from PIL import Image
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

import render
from agents import QValueAgent, load_checkpoint
from cli import SAYS_ITS_DEFAULT, Progress, UsageError, exit_on_bad_input, output_folder, pick_device
from overlays import draw_attention, draw_saliency, draw_tree, upscale
from play import play
from relevance_tree import (
    BOX_GEOMETRY,
    LAYER_COLOURS,
    MAX_DEPTH,
    build_tree,
    check_sizes,
    gradcam_map,
    iter_nodes,
    node_strength,
    tree_layers,
)
from saliency import METHODS, TARGETS, as_float_input, collapse_frames, explained_action, saliency_maps, target_label


@dataclass
class Args:
    """Play the checkpoint's game and write one self-contained HTML page to explore it step by step."""

    checkpoint: str
    """a `run.pt` of ppo_attention.py (or its run folder), a CleanRL .pt/.cleanrl_model or a Stable-Baselines3 .zip"""
    env_id: Optional[str] = None
    """the game of a CleanRL or SB3 agent whose file does not name it, e.g. BreakoutNoFrameskip-v4"""
    steps: tuple[int, int] = (0, 300)
    """the agent steps on the page: first and last (excluded); the game is played from its start, and the
    range ends early where the game does"""
    every: int = 1
    """keep every n-th step of the range: a longer stretch of the game in the same page size and time"""
    seed: int = 1
    """seed of the game (no-op start), of the agent's sampled actions and of the saliency noise"""
    greedy: bool = False
    """take the most probable action instead of sampling from the policy"""
    methods: Annotated[tuple[Literal[METHODS], ...], SAYS_ITS_DEFAULT] = ()
    """saliency methods to draw (default: every method of saliency.py but `attention`, which the attention
    overlays show)"""
    target: Literal[TARGETS] = "action"
    """what the saliency maps explain: the taken action's logit (a DQN: its greedy action's Q-value), V(s) (a DQN:
    max_a Q(s, a)), or the attention peaks"""
    samples: int = 16
    """noisy copies per step for SmoothGrad and VarGrad (saliency.py uses 50: less noisy, 3x slower)"""
    grid: int = 8
    """grid spacing in input pixels of the perturbation saliency (saliency.py uses 5: finer, 2.4x slower)"""
    roots: int = 2
    """attention peaks per head (without attention: Grad-CAM's peaks): the roots of each step's relevance tree"""
    children: int = 3
    """largest number of children per node of the tree"""
    scale: int = 3
    """each game pixel becomes scale x scale image pixels (2 to 4; the page shows the frame 480 px wide)"""
    out: Annotated[Optional[str], SAYS_ITS_DEFAULT] = None
    """output folder (default: a new runs/<run_name>/explore__<unix time>/)"""
    force: bool = False
    """write into an --out folder that already holds files"""
    threads: int = 0
    """torch CPU threads, 0 for every core (1.4x faster than 1 on the project's 2 cores); 1 on a CPU others use"""
    cuda: bool = True
    """compute on CUDA when it is available"""


BATCH = 32  # steps explained together: one saliency_maps call (and its noise generator's draws) per batch
Z_STEP = 14  # height between two layers of the 3D tree, in input pixels

# ----------------------------------------------------------------------------- explaining each step


def check_args(args: Args) -> None:
    """Reject bad numbers with one sentence (UsageError) before anything is loaded or written."""
    first, last = args.steps
    if not 0 <= first < last:
        raise UsageError(f"--steps must be two numbers 0 <= first < last, got {first} {last}.")
    if args.every < 1:
        raise UsageError(f"--every must be at least 1, got {args.every}.")
    if not 2 <= args.scale <= 4:
        raise UsageError(f"--scale must be between 2 and 4, got {args.scale}.")
    if args.samples < 1 or args.grid < 1:
        raise UsageError(f"--samples and --grid must be at least 1, got {args.samples} and {args.grid}.")
    if args.threads < 0:
        raise UsageError(f"--threads must be 0 or more, got {args.threads}.")
    check_sizes(args.roots, args.children, MAX_DEPTH, 0.1)


MASS = "the attention mass of a head's units that see a pixel (fixed scale: the fullest tint is all of its attention)"
LEGENDS = {  # what each overlay of the frame shows, in words
    "frame": "The colour frame of the newest of the 4 stacked frames.",
    "attention": f"Tint: {MASS}, in the colour of the strongest head at each pixel, blended at most half over the "
    "game. Outline: where a head's mass reaches half its maximum.",
    "head": f"Tint: {MASS}. Outline: where its mass reaches half its maximum.",
    "saliency": "How much each pixel changes {what} ({method}), max over the 4 stacked frames, scaled by the frame's "
    "99th percentile (inferno colours, blended at most half over the game).",
    "tree": "Squares: the receptive fields of the tree's nodes, one colour per layer (conv1 blue, conv2 green, conv3 "
    "yellow, attn_hidden orange, attention red), bolder with more relevance; input pixels in pink; labels: head and "
    "attention weight of each root.",
    "gradcam tree": "Squares: the receptive fields of the tree of what in conv3 raises {what}, one colour per layer "
    "(conv1 blue, conv2 green, conv3 yellow, Grad-CAM's peaks red), bolder with more relevance; input pixels in pink; "
    "labels: Grad-CAM's value at each root (G).",
}


def explained_words(target: str, q_values: bool) -> str:
    """What a map of the page explains, in saliency.py's words: the logit of the action taken, or a DQN's Q(s, a*)."""
    return target_label(target, None, "a*" if q_values else "the action taken", q_values)


def overlays(heads: int, methods: tuple, target: str, q_values: bool = False) -> list:
    """(key, name in the menu, what it shows) of every overlay of the page's frame, in the order of the menu."""
    found = [("frame", "the game only", LEGENDS["frame"])]
    if heads:
        found.append(("attention", "attention: all heads", LEGENDS["attention"]))
        found += [(f"head{h}", f"attention: head {h}", LEGENDS["head"]) for h in range(heads)]
    what = explained_words(target, q_values)
    found += [(m, f"saliency: {m}", LEGENDS["saliency"].format(what=what, method=m)) for m in methods]
    tree = LEGENDS["tree"] if heads else LEGENDS["gradcam tree"].format(what=explained_words("action", q_values))
    return found + [("tree", "relevance tree", tree)]


OPENS_ON = ("attention", "perturbation", "ig_blur", "gradient")  # the overlay the page opens on: the first it has


def opening_overlay(keys: list) -> str:
    """The overlay the page opens on: the agent's own attention (all heads); without attention, the saliency
    method that faithfulness.py found most faithful on the shipped agents, of those the page has (README, "Which
    explanation can you trust?": perturbation, then IG from the blurred frames, then the gradient), else the
    first map it has; never the bare game while there is a map."""
    return next((k for k in OPENS_ON if k in keys), next((k for k in keys if k != "frame"), "frame"))


def kept_steps(agent, env_id: str, args: Args, env_options: Optional[dict] = None):
    """The play loop's steps in --steps, every --every-th (the game is played from its start, as the agent's
    trainer showed it: `meta["env_options"]`)."""
    first, last = args.steps
    for step in play(agent, env_id, args.seed, args.greedy, max_steps=last, env_options=env_options):
        if step.t >= first and (step.t - first) % args.every == 0:
            yield step


def batches(steps, size: int):
    batch = []
    for step in steps:
        batch.append(step)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def webp(view: np.ndarray) -> str:
    """A lossless WebP data URI of an image (h, w, 3) uint8."""
    buffer = io.BytesIO()
    Image.fromarray(view).save(buffer, "WEBP", lossless=True, method=2)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode()


def quantized(maps: np.ndarray) -> tuple:
    """Maps (C, n, n) >= 0 as round(255 x value / the map's maximum), and the maxima: ((C, n, n) uint8, (C,))."""
    top = maps.reshape(len(maps), -1).max(1).clip(min=1e-12)
    return np.round(255 * maps.clip(min=0) / top[:, None, None]).astype(np.uint8), top


def step_maps(step) -> dict:
    """The maps the page keeps of a step, by layer: quantized((C, n, n)) of the 4 stacked input frames, the 3D
    view's floor (their maximum), conv1, conv2, conv3 and the attention (all >= 0)."""
    obs = torch.as_tensor(step.obs).float()
    maps = {"input": obs, "floor": collapse_frames(obs)[None]}
    maps |= {layer: step.activations[layer][0] for layer in ("conv1", "conv2", "conv3", "attention")}
    return {k: quantized(v.float().cpu().numpy()) for k, v in maps.items() if len(v)}


def tree_rows(tree: list, layers: tuple) -> list:
    """The tree as rows, parents first: [layer index in `layers` (the tree's, relevance_tree.tree_layers), channel,
    y, x, relevance, parent row (-1: root), strength (relevance / its layer's strongest), centre x, centre y in the
    input, frame box y0, x0, y1, x1]."""
    strength, row_of, rows = node_strength(tree), {}, []
    parent_of = {id(c): id(n) for n, _ in iter_nodes(tree) for c in n["children"]}
    for node, _ in iter_nodes(tree):
        row_of[id(node)] = len(rows)
        y0, x0, y1, x1 = node["box84"]
        rows.append([layers.index(node["layer"]), node["channel"], node["y"], node["x"],
                     float(f"{node['relevance']:.4g}"), row_of.get(parent_of.get(id(node)), -1),
                     round(strength[id(node)], 3), (x0 + x1) / 2, (y0 + y1) / 2, *node["box210"]])  # fmt: skip
    return rows


def overlay_images(step, saliency: dict, tree: list, heads: int, s: int) -> dict:
    """The frame under every overlay of the page, drawn by overlays.py as in render.py's videos:
    {key: (210 s, 160 s, 3)}. saliency: {method: (84, 84) map}; tree: build_tree's."""
    images = {"frame": upscale(step.frame, s)}
    if heads:
        images["attention"] = draw_attention(step.frame, step.attention, s)
        images |= {f"head{h}": draw_attention(step.frame, step.attention, s, [h]) for h in range(heads)}
    images |= {method: draw_saliency(step.frame, m84, s) for method, m84 in saliency.items()}
    return images | {"tree": draw_tree(step.frame, tree, s)}


def hidden_maps(step, tree: list, gradcam: Optional[tuple] = None) -> dict:
    """{channel: its 7x7 map} of the tree's 7x7 layer whose maps the page keeps only where the tree passes: the
    attn_hidden channels in the tree (of its 512); without attention, gradcam = (the explained action, its
    Grad-CAM map (7, 7)), the map whose peaks are the roots (its channel: the action)."""
    if gradcam is not None:
        return {gradcam[0]: np.round(gradcam[1].float().cpu().numpy(), 4).tolist()}
    channels = sorted({node["channel"] for node, _ in iter_nodes(tree) if node["layer"] == "attn_hidden"})
    return {c: np.round(step.activations["attn_hidden"][0, c].float().cpu().numpy(), 4).tolist() for c in channels}


def explain(agent, batch: list, args: Args, methods: tuple, generator) -> list:
    """Everything the page shows of each step of a batch: numbers, tree, maps and the frame's overlay images."""
    obs = np.stack([step.obs for step in batch])  # (B, 4, 84, 84)
    explained = [explained_action(None, step, isinstance(agent, QValueAgent)) for step in batch]  # a DQN: greedy
    kw = dict(action=explained, samples=args.samples, stride=args.grid, generator=generator)
    maps = saliency_maps(agent, obs, methods, args.target, **kw) if methods else {}
    maps = {m: collapse_frames(v).cpu().numpy() for m, v in maps.items()}  # (B, 84, 84) each
    records, heads, layers = [], agent.attn_heads, tree_layers(agent)
    cams = None if heads else gradcam_map(agent, as_float_input(agent, obs), torch.as_tensor(explained))  # (B, 7, 7)
    for b, step in enumerate(batch):
        action = None if heads else explained[b]  # without attention the tree starts at Grad-CAM's peaks for it
        tree = build_tree(agent, step.obs, args.roots, args.children, activations=step.activations, action=action)
        images = overlay_images(step, {m: maps[m][b] for m in methods}, tree, heads, args.scale)
        hidden = hidden_maps(step, tree, None if heads else (action, cams[b]))
        records.append(dict(t=step.t, probs=step.probs.tolist(), value=step.value, score=step.score,
                            action=step.action, forced=step.forced, reward=step.reward, maps=step_maps(step),
                            tree=tree_rows(tree, layers), hidden=hidden, q=step.activations["logits"][0].tolist(),
                            images={k: webp(v) for k, v in images.items()}))  # fmt: skip
    return records


# ----------------------------------------------------------------------------- the page's figures (plotly)


def layer_planes(layers: tuple) -> list:
    """(layer, units a side, height) of each plane of the 3D tree, from the input floor up to the roots' layer
    (`layers`: the tree's, top down: relevance_tree.tree_layers)."""
    sides = {"input": 84, "conv1": 20, "conv2": 9, "conv3": 7, "attn_hidden": 7, "attention": 7, "gradcam": 7}
    return [(layer, sides[layer], Z_STEP * k) for k, layer in enumerate(layers[::-1])]


def unit_centres(layer: str, n: int) -> np.ndarray:
    """Centres in input pixels of a layer's units along one axis: unit i sees [i s, i s + r)."""
    size, stride = BOX_GEOMETRY[layer]
    return np.arange(n) * stride + size / 2


def tree_figure(layers: tuple) -> go.Figure:
    """The 3D view of trees through `layers` (top down): floor (trace 0), a translucent plane and lattice per layer,
    then the traces JavaScript fills at each step: edges by relevance (3 widths), nodes, the nodes through the
    chosen channel, the chosen node."""
    planes, top = layer_planes(layers), len(layers) - 1
    colourscale = [[k / top, LAYER_COLOURS[layer]] for k, layer in enumerate(layers)]
    centres = np.arange(84) + 0.5
    fig = go.Figure(go.Surface(x=centres, y=centres, z=np.zeros((84, 84)), surfacecolor=np.zeros((84, 84)),
                               colorscale="gray", cmin=0, cmax=255, showscale=False, hoverinfo="skip",
                               lighting=dict(ambient=1, diffuse=0, specular=0, fresnel=0), name="input"))  # fmt: skip
    lattice = dict(x=[], y=[], z=[], c=[])
    for layer, n, z in planes[1:]:
        c = unit_centres(layer, n)
        fig.add_trace(go.Surface(x=c, y=c, z=np.full((n, n), z), surfacecolor=np.zeros((n, n)), opacity=0.15,
                                 colorscale=[[0, LAYER_COLOURS[layer]], [1, LAYER_COLOURS[layer]]], showscale=False,
                                 hoverinfo="skip", name=layer))  # fmt: skip
        for v in c:  # one line along each row and column of units
            for xs, ys in (([c[0], c[-1]], [v, v]), ([v, v], [c[0], c[-1]])):
                lattice["x"] += xs + [None]
                lattice["y"] += ys + [None]
                lattice["z"] += [z, z, None]
                lattice["c"] += [layers.index(layer)] * 3
    fig.add_trace(go.Scatter3d(**{k: lattice[k] for k in "xyz"}, mode="lines", hoverinfo="skip", opacity=0.35,
                               line=dict(color=lattice["c"], colorscale=colourscale, cmin=0, cmax=top, width=1)))  # fmt: skip
    for width in (1.5, 4, 8):  # edges whose child has strength below 1/3, below 2/3, above
        fig.add_trace(go.Scatter3d(x=[], y=[], z=[], mode="lines", hoverinfo="skip", opacity=0.8,
                                   line=dict(color=[], colorscale=colourscale, cmin=0, cmax=top, width=width)))  # fmt: skip
    fig.add_trace(go.Scatter3d(x=[], y=[], z=[], mode="markers", hovertemplate="%{text}<extra></extra>", text=[],
                               marker=dict(size=[], color=[], opacity=1), name="nodes"))  # fmt: skip
    fig.add_trace(go.Scatter3d(x=[], y=[], z=[], mode="lines+markers", hoverinfo="skip", line=dict(color="white", width=3),
                               marker=dict(size=12, symbol="circle-open", color="white"), name="through the channel"))  # fmt: skip
    fig.add_trace(go.Scatter3d(x=[], y=[], z=[], mode="markers", hoverinfo="skip",
                               marker=dict(size=22, symbol="diamond-open", color="white"), name="selected"))  # fmt: skip
    axis = dict(range=[0, 84], title="", showbackground=False, gridcolor="#333", zeroline=False)
    zaxis = dict(range=[-1, planes[-1][2] + 2], title="", tickvals=[z for _, _, z in planes], showbackground=False,
                 ticktext=[layer for layer, _, _ in planes], gridcolor="#333")  # fmt: skip
    fig.update_layout(
        template="plotly_dark", paper_bgcolor=render.BACKGROUND, showlegend=False, margin=dict(l=0, r=0, t=0, b=0),
        scene=dict(xaxis=axis, yaxis={**axis, "range": [84, 0]}, zaxis=zaxis, aspectmode="manual",
                   aspectratio=dict(x=1, y=1, z=0.9), camera=dict(eye=dict(x=-0.3, y=-1.9, z=0.8))),
        uirevision="keep",  # the learner's rotation and zoom survive every update
    )  # fmt: skip
    return fig


def decision_figure(records: list, names: list, q_values: bool = False) -> go.Figure:
    """Trace 0: the policy at the current step as bars. Below: each action's probability and V(s) over the game;
    shapes 0 and 1 are the cursor at the current step. A DQN's (q_values): its Q-values, as render.py's panel shows
    them (bars from the lowest to the highest: they differ by little), and max_a Q(s, a)."""
    t, key = [r["t"] for r in records], "q" if q_values else "probs"
    titles = ("Q(s, a) at this step (bars: lowest to highest)", "Q(s, a) over the game",
              "max Q(s, a) over the game") if q_values else ("policy at this step", "policy over the game",
                                                             "V(s) over the game")  # fmt: skip
    fig = make_subplots(rows=3, cols=1, row_heights=[0.3, 0.4, 0.3], vertical_spacing=0.12, subplot_titles=titles)
    hover = "y" if q_values else "x+y"  # a DQN's bars start at the lowest Q-value: its labels give the values
    fig.add_trace(go.Bar(x=records[0][key], y=names, orientation="h", showlegend=False, hoverinfo=hover), 1, 1)
    palette = ["#5a82c8", "#ffa51e", "#30d158", "#ff5ee1", "#3fc8ff", "#ffe620", "#ff3b30", "#bf5af2", "#aaaaaa"]
    for a, name in enumerate(names):
        curve = [r[key][a] for r in records]
        fig.add_trace(go.Scatter(x=t, y=curve, name=name, line=dict(width=1, color=palette[a % len(palette)])), 2, 1)
    fig.add_trace(go.Scatter(x=t, y=[r["value"] for r in records], name=titles[2].split(" over")[0],
                             showlegend=False, line=dict(width=1.5, color="#ebebeb")), 3, 1)  # fmt: skip
    for row in (2, 3):
        fig.add_vline(x=t[0], line=dict(color="#ffa51e", width=1.5), row=row, col=1)
    fig.update_xaxes(range=[0, 1], row=1, col=1)  # a DQN's: the page sets it to its Q-values' range at each step
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_layout(template="plotly_dark", paper_bgcolor=render.BACKGROUND, plot_bgcolor="#1c1c24",
                      margin=dict(l=60, r=10, t=30, b=25), legend=dict(orientation="h", y=-0.08), hovermode="closest")  # fmt: skip
    return fig


def activation_figure() -> go.Figure:
    """The chosen channel's activation map at the current step (JavaScript fills it); shape 0 marks the node's unit."""
    fig = go.Figure(go.Heatmap(z=[[0]], colorscale="Inferno", zmin=0, zmax=1, colorbar=dict(thickness=10)))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_xaxes(constrain="domain")
    fig.update_layout(template="plotly_dark", paper_bgcolor=render.BACKGROUND, margin=dict(l=30, r=10, t=30, b=20),
                      title=dict(text="choose a node or a channel", font=dict(size=13)))  # fmt: skip
    return fig


# ----------------------------------------------------------------------------- the page


def packed_maps(records: list) -> tuple:
    """Every step's maps as one run of bytes (step by step, layer by layer, channel by channel, row by row), and
    where each layer lies in a step's bytes, its channels' maxima at each step and over the game."""
    layers = list(records[0]["maps"])
    shapes = {layer: records[0]["maps"][layer][0].shape for layer in layers}  # (C, n, n)
    offsets = np.cumsum([0] + [int(np.prod(shapes[layer])) for layer in layers])
    scales, chunks = {layer: [] for layer in layers}, []
    for r in records:
        for layer in layers:
            q, top = r["maps"][layer]
            chunks.append(q.tobytes())
            scales[layer].append([float(f"{v:.6g}") for v in top])
    where = {layer: dict(channels=shapes[layer][0], n=shapes[layer][1], offset=int(offsets[k]), scale=scales[layer],
                         max=np.max(scales[layer], 0).tolist()) for k, layer in enumerate(layers)}  # fmt: skip
    return where, int(offsets[-1]), b"".join(chunks)


def packed(records: list, meta: dict, args: Args, methods: tuple, agent) -> tuple:
    """(the page's data as JSON, the maps of every step as bytes, the overlay images by overlay)."""
    maps, bytes_per_step, raw = packed_maps(records)
    heads, layers, q_values = agent.attn_heads, tree_layers(agent), meta["outputs"] == "q_values"
    keys = [key for key, _, _ in overlays(heads, methods, args.target, q_values)]
    images = {key: [r["images"][key] for r in records] for key in keys}
    fields = ("t", "probs", "value", "score", "action", "forced", "reward", "tree", "hidden") + ("q",) * q_values
    data = dict(
        title=f"{render.agent_title(meta)}: {meta['env_id']}, seed {args.seed}",
        checkpoint=meta["path"], env_id=meta["env_id"], action_names=meta["action_names"], heads=heads,
        seed=args.seed, greedy=args.greedy, target=args.target, methods=list(methods), samples=args.samples,
        layers=list(layers), keyed="attn_hidden" if heads else "gradcam", colours=LAYER_COLOURS,
        overlays=overlays(heads, methods, args.target, q_values), opens_on=opening_overlay(keys), z_step=Z_STEP,
        maps=maps, bytes_per_step=bytes_per_step, q_values=q_values, value_name="max Q(s, a)" if q_values else "V(s)",
        epsilon=meta.get("epsilon"), steps={f: [r[f] for r in records] for f in fields}, taken=render.TAKEN,
        bar=render.BAR, figures={"decision": decision_figure(records, meta["action_names"], q_values),
                                 "activation": activation_figure(), "tree3d": tree_figure(layers)},
    )  # fmt: skip
    data["figures"] = {k: json.loads(f.to_json()) for k, f in data["figures"].items()}
    return data, raw, images


def deflated(raw: bytes) -> str:
    return base64.b64encode(zlib.compress(raw, 6)).decode()


STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")  # the page's style and script


def static_text(name: str) -> str:
    """A file of static/ (explore.css, explore.js), read at run time to be inlined into the page."""
    with open(os.path.join(STATIC, name), encoding="utf-8") as f:
        return f.read()


def page_html(data: dict, maps: bytes, images: dict) -> str:
    """The whole page, one self-contained file: style (static/explore.css), controls, the data in script elements,
    plotly.js, and the script that ties the views together (static/explore.js)."""
    chosen = {data["opens_on"]: " selected"}  # the overlay the page opens on
    options = "".join(f'<option value="{k}"{chosen.get(k, "")}>{name}</option>' for k, name, _ in data["overlays"])
    note = TREE_NOTE if data["heads"] else GRADCAM_TREE_NOTE.format(what=explained_words("action", data["q_values"]))
    tree = f"<div id=tree3d></div><p class=note>{escape(note)}</p>"
    dqn = f"<p class=note>{escape(Q_VALUES_NOTE.format(epsilon=data['epsilon']))}</p>" if data["q_values"] else ""
    pieces = [
        f"<!doctype html><html><head><meta charset=utf-8><title>{escape(data['title'])}</title><style>{static_text('explore.css')}</style>",
        "</head><body><header>",
        f"<h1>{escape(data['title'])}</h1><div class=row><button id=play title='play / pause (space)'>&#9654;</button>",
        "<input id=slider type=range min=0 value=0><span id=stats></span></div></header><main>",
        f"<section><select id=overlay>{options}</select><div id=view><img id=frame alt='the game'>",
        "<svg id=boxes viewBox='0 0 160 210' preserveAspectRatio=none></svg></div><p id=legend></p></section>",
        f"<section>{tree}</section>",
        f"<section><div id=decision></div>{dqn}<div class=row><label>node <select id=node></select></label></div>",
        "<div class=row><label>channel <select id=layer></select></label><select id=channel></select></div>",
        "<div id=activation></div></section></main>",
        f"<script type=application/json id=images>{json.dumps(images)}</script>",
        f"<script type=text/plain id=data>{deflated(json.dumps(data).encode())}</script>",
        f"<script type=text/plain id=maps>{deflated(maps)}</script>",
        f"<script>{get_plotlyjs()}</script><script>{static_text('explore.js')}</script></body></html>",
    ]
    return "".join(pieces)


def read_page(path: str) -> dict:
    """What a page holds, read back (for tests and notebooks): {"data": the JSON, "maps": {layer: (T, C, n, n)
    values}, "images": {overlay: [(h, w, 3) uint8 per step]}}."""
    text = open(path, encoding="utf-8").read()

    def script(name: str) -> str:
        start = text.index(f"id={name}>") + len(f"id={name}>")
        return text[start : text.index("</script>", start)]

    data = json.loads(zlib.decompress(base64.b64decode(script("data"))))
    raw = np.frombuffer(zlib.decompress(base64.b64decode(script("maps"))), np.uint8)
    per_step = raw.reshape(len(data["steps"]["t"]), data["bytes_per_step"])
    maps = {}
    for layer, m in data["maps"].items():
        c, n = m["channels"], m["n"]
        q = per_step[:, m["offset"] : m["offset"] + c * n * n].reshape(-1, c, n, n)
        maps[layer] = q * np.array(m["scale"], np.float32)[:, :, None, None] / 255
    images = {
        key: [np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")) for uri in uris]
        for key, uris in json.loads(script("images")).items()
    }
    return dict(data=data, maps=maps, images=images)


def main(argv=None) -> str:
    """Play, explain every step on the page and write it; returns the page's path."""
    args = tyro.cli(Args, args=argv)
    check_args(args)
    device = pick_device(args.cuda, args.threads)
    agent, meta = load_checkpoint(args.checkpoint, device, args.env_id)
    # every saliency method but the painted attention, which the attention overlays show; saliency_maps rejects
    # a method or target this agent cannot have (no attention) with one sentence, at the first batch
    methods = args.methods or tuple(m for m in METHODS if m != "attention")
    generator = torch.Generator(device=device).manual_seed(args.seed)
    progress, start, records = Progress(every=10), time.monotonic(), []
    with output_folder(args.out, meta["run_name"], "explore", args.force) as out:
        path = os.path.join(out, f"explore_seed{args.seed}.html")
        for batch in batches(kept_steps(agent, meta["env_id"], args, meta["env_options"]), BATCH):
            records += explain(agent, batch, args, methods, generator)
            images = sum(len(uri) for r in records for uri in r["images"].values()) / 1e6
            progress(f"explained {len(records)} steps (up to step {records[-1]['t']}): {images:.1f} MB of "
                     f"images, {time.monotonic() - start:.0f} s")  # fmt: skip
        if not records:
            raise UsageError(f"the game ended before step {args.steps[0]}; choose an earlier --steps range.")
        progress(f"explained {len(records)} steps in {time.monotonic() - start:.0f} s; writing the page", done=True)
        page = page_html(*packed(records, meta, args, methods, agent))
        try:
            with open(path + ".partial", "w", encoding="utf-8") as f:
                f.write(page)
            os.replace(path + ".partial", path)
        finally:
            if os.path.exists(path + ".partial"):
                os.remove(path + ".partial")
    size = os.path.getsize(path) / 1e6
    print(f"wrote {path} ({len(records)} steps, {size:.1f} MB, {time.monotonic() - start:.0f} s); open it in a browser")
    return path


# ----------------------------------------------------------------------------- the page's notes

TREE_NOTE = (
    "The relevance tree of this step: from each attention peak (top) down to the input pixels (the floor), each "
    "node at the centre of its unit's receptive field. Drag to turn, scroll to zoom, click a node to select it."
)

GRADCAM_TREE_NOTE = (
    "The relevance tree of this step: this agent has no attention module (the plain Nature CNN of --attn-heads 0, "
    "CleanRL and SB3), so its tree starts at the peaks of Grad-CAM on conv3 for {what} (top) and descends to the "
    "input pixels (the floor), each node at the centre of its unit's receptive field. A step whose Grad-CAM is zero "
    "everywhere (no conv3 feature raises it) has no tree. Drag to turn, scroll to zoom, click a node to select it."
)

Q_VALUES_NOTE = (
    "A DQN: its outputs are Q-values Q(s, a). It takes the greedy action, the highest, or with probability "
    "{epsilon:g} a random one; max Q(s, a) is the value of acting greedily."
)


if __name__ == "__main__":
    exit_on_bad_input(main)
