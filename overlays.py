"""Drawing maps and trees over the game frame: the overlays of render.py's videos and of explore.py's page.

Each takes the 210x160 colour frame and gives the view `s` times larger, (210 s, 160 s, 3) uint8, with the game
visible under the overlay: every overlay blends at most OPACITY (half) over the game, so the ball and the paddle
stay visible under it.

- `draw_attention(frame, attention, s)`: the attention maps (H, 7, 7), each head in its colour (`head_colours`),
  on the fixed scale of saliency.paint_attention, with an outline where each head's mass reaches half its maximum;
- `draw_saliency(frame, saliency84, s)`: a saliency map of the 84x84 input in SALIENCY_LEVELS inferno steps;
- `draw_tree(frame, tree, s)`: a relevance tree (relevance_tree.build_tree) as squares over the receptive fields.
"""

import cv2
import matplotlib
import numpy as np
import torch
from PIL import Image, ImageColor, ImageDraw

from relevance_tree import LAYER_COLOURS, iter_nodes, node_strength, root_label
from saliency import paint_attention

FRAME_H, FRAME_W = 210, 160  # the game frame; the 84x84 observation is a resize of all of it
ROWS = ((np.arange(FRAME_H) + 0.5) * 84 / FRAME_H).astype(int)  # the input pixel under each frame pixel
COLS = ((np.arange(FRAME_W) + 0.5) * 84 / FRAME_W).astype(int)
FIRST_HEAD_COLOURS = [(255, 150, 30), (60, 200, 255), (255, 90, 230), (140, 255, 90)]


def head_colours(heads: int) -> np.ndarray:
    """(heads, 3) RGB, one colour per attention head: four chosen ones, then hues spaced by the golden angle."""
    more = [matplotlib.colors.hsv_to_rgb(((0.1 + 0.382 * k) % 1, 0.7, 1)) * 255 for k in range(max(heads - 4, 0))]
    return np.array(FIRST_HEAD_COLOURS[:heads] + [tuple(c) for c in more], np.float32).reshape(heads, 3)


TEXT_RGB = (235, 235, 235)
OPACITY = 0.5  # the most any overlay covers the game: every object keeps at least half its contrast
SALIENCY_LEVELS = 16  # saliency colours in steps: bands that read like contour lines (and compress well)
SALIENCY_COLOURS = (matplotlib.colormaps["inferno"](np.linspace(0, 1, SALIENCY_LEVELS))[:, :3] * 255).astype(np.float32)


def on_frame(m84: np.ndarray) -> np.ndarray:
    """A map of the 84x84 input (..., 84, 84) on the 210x160 frame: the value under each frame pixel's centre."""
    return m84[..., ROWS, :][..., COLS]


def blend(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The game seen through a colour: (1 - alpha) frame + alpha rgb. frame (h, w, 3) uint8, rgb (3,) or (h, w, 3),
    alpha (h, w) in [0, OPACITY]. A blend, never added light: nothing saturates to white, so a ball or a paddle
    under the colour keeps at least 1 - OPACITY of its contrast with what surrounds it."""
    a = alpha[..., None].astype(np.float32)
    return ((1 - a) * frame + a * rgb).round().astype(np.uint8)


def upscale(frame: np.ndarray, s: int) -> np.ndarray:
    return cv2.resize(frame, (FRAME_W * s, FRAME_H * s), interpolation=cv2.INTER_NEAREST)  # pixel copies


def label(img: np.ndarray, text: str, xy: tuple, colour, size: int) -> None:
    """Text with a dark outline, readable on any game background (OpenCV's Hershey font)."""
    for c, w in (((0, 0, 0), size + 2), (tuple(int(v) for v in colour), max(size - 1, 1))):
        cv2.putText(img, text, xy, cv2.FONT_HERSHEY_SIMPLEX, 0.15 * size, c, w, cv2.LINE_AA)


def outline(view: np.ndarray, mask: np.ndarray, colour, s: int, inset: int = 0) -> None:
    """Draw the border of a frame mask (210, 160) on the view at scale s: a thin line in `colour` on a dark one,
    `inset` line widths inside the mask (so that the outlines of two heads on one region nest, both visible)."""
    inside = upscale(mask.astype(np.uint8), s)
    if inset:
        inside = cv2.erode(inside, np.ones((2 * inset * s + 1,) * 2, np.uint8))
    contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    width = max(s - 1, 1)
    cv2.drawContours(view, contours, -1, (0, 0, 0), width + 2)
    cv2.drawContours(view, contours, -1, tuple(int(v) for v in colour), width)


# ----------------------------------------------------------------------------- the overlays, drawn once for
# render.py's videos and explore.py's page: (210, 160, 3) frame -> (210 s, 160 s, 3) view, the game visible under all


def draw_attention(frame: np.ndarray, attention: np.ndarray, s: int, heads=None) -> np.ndarray:
    """The attention maps (H, 7, 7) over the game (all heads, or those in `heads`), on the fixed scale of
    saliency.paint_attention: a pixel gets the attention mass m in [0, 1] of a head's units that see it.

    Each pixel is blended with the colour of the shown head that puts the most mass on it, at opacity
    OPACITY x m (a head's whole attention on it: OPACITY). Each shown head's outline encloses where its mass
    reaches half of its maximum; where heads share a region, their outlines nest.
    """
    painted = on_frame(paint_attention(torch.as_tensor(attention)[None].float())[0].numpy()).clip(0, 1)
    shown = np.arange(len(attention)) if heads is None else np.asarray(heads)
    colours = head_colours(len(attention))
    owner = shown[painted[shown].argmax(0)]  # (210, 160): the strongest shown head at each pixel
    mass = np.take_along_axis(painted, owner[None], 0)[0]
    view = upscale(blend(frame, colours[owner], OPACITY * mass), s)
    for k, h in enumerate(shown):
        outline(view, painted[h] >= 0.5 * painted[h].max(), colours[h], s, inset=k)
    return view


def draw_saliency(frame: np.ndarray, saliency84: np.ndarray, s: int) -> np.ndarray:
    """A saliency map of the input (84, 84), >= 0, over the game: scaled by its 99th percentile to [0, 1] and
    rounded to one of SALIENCY_LEVELS steps (m), in inferno colours, blended at opacity OPACITY x sqrt(m)."""
    m = on_frame(np.clip(saliency84 / max(float(np.percentile(saliency84, 99)), 1e-30), 0, 1))  # (210, 160)
    level = np.round(m * (SALIENCY_LEVELS - 1)).astype(int)
    return upscale(blend(frame, SALIENCY_COLOURS[level], OPACITY * np.sqrt(level / (SALIENCY_LEVELS - 1))), s)


def draw_tree(frame: np.ndarray, tree: list, s: int) -> np.ndarray:
    """A relevance tree (relevance_tree.build_tree) over the game: each node a square outline of its receptive
    field in its layer's colour, bolder and more opaque with more relevance (thin and translucent, so the game
    shows under the squares); an input-pixel node a hollow square around its pixel; the roots labelled."""
    strength = node_strength(tree)
    layer = Image.new("RGBA", (FRAME_W * s, FRAME_H * s))
    draw = ImageDraw.Draw(layer)
    for node, _ in sorted(iter_nodes(tree), key=lambda nd: -nd[1]):  # deepest first, roots on top
        rgb, strong = ImageColor.getrgb(LAYER_COLOURS[node["layer"]]), strength[id(node)]
        rgba = rgb + (int(255 * (0.35 + 0.4 * strong)),)
        y0, x0, y1, x1 = (v * s for v in node["box210"])
        if node["layer"] == "input":  # a pixel: a square around it, the pixel itself left visible
            cy, cx, r = (y0 + y1) // 2, (x0 + x1) // 2, s + round(strong * s)
            draw.rectangle((cx - r, cy - r, cx + r, cy + r), outline=rgb + (255,), width=max(s // 2, 1))
        else:
            d = {"attn_hidden": s, "conv3": 2 * s}.get(node["layer"], 0)  # these share the attention's square
            draw.rectangle(
                (x0 + d, y0 + d, x1 - 1 - d, y1 - 1 - d), outline=rgba, width=1 + round(strong * (s - 1) / 2)
            )
    view = np.asarray(Image.alpha_composite(Image.fromarray(upscale(frame, s)).convert("RGBA"), layer))
    view = np.ascontiguousarray(view[..., :3])
    roots = {}  # one label per square, just above it (below it at the top): heads often peak at the same unit
    for root in tree:
        roots.setdefault(tuple(root["box210"][:3]), []).append(root_label(root, short=True))
    for (y0, x0, y1), texts in roots.items():
        label(view, ", ".join(texts), (x0 * s + s, y0 * s - s if y0 > 8 else y1 * s + 6 * s), TEXT_RGB, s + 1)
    return view
