"""MP4 videos of a trained agent playing, with an attention, saliency or relevance-tree overlay.

    python render.py --checkpoint runs/<run_name>/run.pt                  # attention overlay
    python render.py --checkpoint runs/<run_name>/run.pt --overlay saliency --method gradient --target value

Each video frame is the full-colour 210x160 game frame scaled up `--scale` times, with the overlay,
and a side panel: the step, the running game score, the value estimate V(s), the policy's action
probabilities as labelled bars (the action taken in orange) and a legend of the overlay. One frame
per agent step (4 emulator frames); 15 fps is real time.

Overlays
- attention: each head in its own colour. Every 7x7 unit paints its receptive field in the 84x84
  input (rows and columns [8k, 8k + 36), like a transposed convolution with an all-ones 36x36
  kernel at stride 8), and the 84x84 input is a plain resize of the whole frame, so a game pixel
  takes the painted value under its centre mapped to the input (rows x 84/210, columns x 84/160).
  Overlays are drawn on the 210x160 frame, which is then scaled up (pixel copies).
- saliency: `saliency.saliency_map` of the observation (`--method`, `--target`), collapsed over the
  4 stacked frames by their maximum ("did any of the frames the agent saw matter here?"), in
  `inferno`, normalised per frame by its 99th percentile: saliency magnitudes differ by orders of
  magnitude between methods, targets and moments, and the question a frame answers is *where*.
- tree: `relevance_tree.build_tree` of the observation, each node's receptive field (box210)
  drawn as a square outline coloured by depth (attention peaks brightest, down to input pixels;
  pixel nodes of all 4 stacked frames are drawn, so they also trace where the ball was).

How attention brightness is normalised over the episode. Brightness must mean the same thing in
every frame, and a true over-the-episode scale (the seed's 99th percentile of the painted maps)
is only known at the end. A running maximum would make early frames look brighter than later
ones, and frames cannot wait in memory (a game is thousands of them). So each episode is played
twice: first the agent plays and we keep, per step, the action, the probabilities, the value and
the 7x7xH attention (a few hundred bytes a step) plus a checksum of the observation; then the same
seed and the same actions replay the game exactly (ALE is deterministic given both; the checksums
prove it, else we stop) while the frames are drawn and written. The scale is the 99th percentile
over every painted pixel of every head and step, shared by the heads so they compare too; above
it the colour saturates.

The agent sees exactly what it saw in training (`ppo_attention.make_env`: same preprocessing,
fire reset, no-op starts drawn from --seed).
"""

import os
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Literal, Optional

import cv2
import imageio.v2 as imageio
import matplotlib
import numpy as np
import torch
import tyro
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ppo_attention import Agent, CheckpointError, load_checkpoint, make_env


@dataclass
class Args:
    checkpoint: str
    """path of the `run.pt` written by ppo_attention.py"""
    out: Optional[str] = None
    """the MP4 to write (default: `<overlay>_seed<seed>.mp4` next to the checkpoint)"""
    force: bool = False
    """overwrite --out if it exists (otherwise an existing file is never touched)"""
    overlay: Literal["attention", "saliency", "tree", "none"] = "attention"
    """what to draw over the game: the attention heads, a saliency map, the relevance tree, or nothing"""
    method: Literal["smoothgrad", "gradient", "vargrad", "perturbation"] = "smoothgrad"
    """saliency method (--overlay saliency)"""
    target: Literal["attention", "action", "value"] = "attention"
    """what the saliency explains (--overlay saliency): the attention peaks, the taken action's logit, or V(s)"""
    samples: int = 50
    """noisy copies per frame for smoothgrad / vargrad (--overlay saliency; fewer is faster)"""
    episodes: int = 1
    """number of games to play, one after the other in the same video"""
    max_steps: Optional[int] = None
    """stop each game after this many agent steps (default: play it to the end)"""
    fps: int = 30
    """frames per second of the video (one frame per agent step; 15 is real time)"""
    scale: int = 3
    """each game pixel becomes scale x scale video pixels (1 to 8)"""
    greedy: bool = False
    """take the most probable action instead of sampling from the policy"""
    seed: int = 1
    """seed of the first game (no-op start, sticky actions) and of the action sampling; game i uses seed + i"""
    cuda: bool = True
    """run the network on CUDA when it is available"""


# ----------------------------------------------------------------------------- geometry

FRAME_H, FRAME_W = 210, 160  # the game frame; the 84x84 observation is a resize of all of it
BLOCK = 4  # receptive-field edges fall on multiples of 4 input pixels: painted maps are constant on 4x4 blocks


def coverage(n: int) -> np.ndarray:
    """(7, n) 0/1: whether the centre of pixel i, of n pixels spanning the 84-pixel input, lies in unit k's field."""
    size, stride = Agent.RECEPTIVE_FIELDS["conv3"]
    centre = (np.arange(n) + 0.5) * 84 / n  # in input pixels
    k = np.arange(7)[:, None]
    return ((centre >= k * stride) & (centre < k * stride + size)).astype(np.float32)


COVER = coverage(84 // BLOCK)  # (7, 21): the painted 84x84 map sampled at each 4x4 block's centre


def paint_attention(attention: np.ndarray) -> np.ndarray:
    """Each unit paints its receptive field: (..., H, 7, 7) -> (..., H, 21, 21), one value per 4x4 input block."""
    return np.einsum("yi,...yx,xj->...ij", COVER, attention, COVER)


def source_index(n_out: int, n_src: int) -> np.ndarray:
    """For each of n_out frame pixels, the pixel of an n_src-pixel map (spanning the frame) under its centre."""
    return ((np.arange(n_out) + 0.5) * n_src / n_out).astype(np.int64)


def blend(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """frame (210, 160, 3) uint8 <- frame * (1 - alpha) + rgb * alpha, with rgb (h, w, 3) and alpha (h, w)
    given on a coarse grid spanning the frame, looked up at each game pixel through rows / cols."""
    keep = (1.0 - alpha)[rows][:, cols][..., None]  # (210, 160, 1)
    paint = (rgb * alpha[..., None])[rows][:, cols]  # (210, 160, 3)
    frame[:] = frame * keep + paint


def mix_heads(intensity: np.ndarray, colours: np.ndarray, opacity: float = 0.7) -> tuple:
    """Per-head intensities (H, h, w) in [0, 1] -> (rgb (h, w, 3), alpha (h, w)): colours mixed by intensity."""
    weight = intensity / np.maximum(intensity.sum(0), 1e-6)  # (H, h, w)
    rgb = np.einsum("hyx,hc->yxc", weight, colours)
    return rgb, opacity * intensity.max(0)


# ----------------------------------------------------------------------------- text and panel


def font_atlas(px: int) -> np.ndarray:
    """Alpha masks (95, h, w) of the printable ASCII characters in a monospace font, drawn once with matplotlib."""
    chars = [chr(c) for c in range(32, 127)]
    w, h = int(np.ceil(0.61 * px)), int(np.ceil(1.25 * px))
    fig = Figure(figsize=(len(chars) * w / 100, h / 100), dpi=100, facecolor="black")
    for i, ch in enumerate(chars):
        fig.text(i / len(chars), 0.27, ch, fontsize=px * 0.72, family="DejaVu Sans Mono", color="white")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    grey = np.asarray(canvas.buffer_rgba())[:h, : len(chars) * w, 0].astype(np.float32) / 255
    return grey.reshape(h, len(chars), w).transpose(1, 0, 2)


def draw_text(img: np.ndarray, y: int, x: int, text: str, colour, atlas: np.ndarray) -> None:
    """Paste `text` with its top-left corner at (y, x), clipped to the image."""
    codes = [min(max(ord(c) - 32, 0), 94) for c in text]
    n, h, w = len(codes), atlas.shape[1], atlas.shape[2]
    mask = atlas[codes].transpose(1, 0, 2).reshape(h, n * w)[: img.shape[0] - y, : img.shape[1] - x, None]
    region = img[y : y + mask.shape[0], x : x + mask.shape[1]]
    region[:] = region * (1 - mask) + np.asarray(colour, np.float32) * mask


BACKGROUND, TEXT, DIM = (18, 18, 24), (235, 235, 235), (140, 140, 150)
TRACK, BAR, TAKEN = (50, 50, 60), (90, 130, 200), (255, 165, 30)


class Panel:
    """The side panel: step, score, value, action-probability bars and the overlay's legend."""

    def __init__(self, height: int, width: int, scale: int, action_names: list):
        self.atlas = font_atlas(max(10, 4 * scale + 2))
        self.ch, self.cw = self.atlas.shape[1], self.atlas.shape[2]
        self.names, self.pad = action_names, 2 * scale
        self.img = np.zeros((height, width, 3), np.uint8)
        self.backgrounds = {}  # legend -> background image
        label_w = max(len(n) for n in action_names) * self.cw
        self.bar_x0 = self.pad + label_w + self.pad  # bars span [bar_x0, bar_x1)
        self.bar_x1 = width - self.pad - 5 * self.cw
        self.bar_y0 = self.pad + 6 * self.ch  # after 4 lines of numbers, a gap and a heading
        self.row_h = self.ch + scale
        self.legend_y = self.bar_y0 + len(action_names) * self.row_h + self.ch

    @staticmethod
    def width_for(scale: int, action_names: list) -> int:
        """Panel width: room for the longest action name, a bar and its number; video width a multiple of 16."""
        cw = int(np.ceil(0.61 * max(10, 4 * scale + 2)))
        need = max(80 * scale, (max(len(n) for n in action_names) + 5) * cw + 60 * scale)
        return need + (-(FRAME_W * scale + need)) % 16

    def bar_box(self, i: int) -> tuple:
        """(y0, y1, x0, x1) of action i's bar track."""
        y0 = self.bar_y0 + i * self.row_h + self.ch // 5
        return y0, y0 + self.ch * 3 // 5, self.bar_x0, self.bar_x1

    def background(self, legend: tuple) -> np.ndarray:
        """What stays the same from frame to frame: heading, empty bar tracks and the legend (cached)."""
        if legend not in self.backgrounds:
            img, pad, ch = np.full_like(self.img, BACKGROUND), self.pad, self.ch
            draw_text(img, self.bar_y0 - ch - ch // 4, pad, "action probabilities", DIM, self.atlas)
            for i in range(len(self.names)):
                y0, y1, x0, x1 = self.bar_box(i)
                img[y0:y1, x0:x1] = TRACK
            for i, (colour, text) in enumerate(legend):
                y = self.legend_y + i * ch
                if colour is not None:
                    img[y + ch // 5 : y + ch * 4 // 5, pad : pad + self.cw] = colour
                draw_text(img, y, pad + (2 * self.cw if colour is not None else 0), text, DIM, self.atlas)
            self.backgrounds[legend] = img
        return self.backgrounds[legend]

    def draw(self, lines: list, probs: np.ndarray, action: int, legend: list) -> np.ndarray:
        """lines: 4 strings; probs (A,); legend: [(rgb or None, text)]. Returns the panel (h, w, 3) uint8."""
        img, pad, ch = self.img, self.pad, self.ch
        img[:] = self.background(tuple(legend))
        for i, line in enumerate(lines):
            draw_text(img, pad + i * ch, pad, line, TEXT, self.atlas)
        for i, (name, p) in enumerate(zip(self.names, probs)):
            y0, y1, x0, x1 = self.bar_box(i)
            img[y0:y1, x0 : x0 + int(round(float(p) * (x1 - x0)))] = TAKEN if i == action else BAR
            draw_text(img, self.bar_y0 + i * self.row_h, pad, name, TAKEN if i == action else TEXT, self.atlas)
            draw_text(img, self.bar_y0 + i * self.row_h, x1 + self.cw // 2, f"{p:.2f}", DIM, self.atlas)
        return img


# ----------------------------------------------------------------------------- overlays


def colours_from(cmap: str, n: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """n RGB colours (n, 3) in 0..255 sampled from a matplotlib colour map."""
    return matplotlib.colormaps[cmap](np.linspace(lo, hi, n))[:, :3].astype(np.float32) * 255


class AttentionOverlay:
    """Each head in its own colour, brightness = painted attention / the episode's 99th percentile."""

    def __init__(self, heads: int):
        self.colours = colours_from("cool", heads) if heads > 1 else np.array([[0.0, 255, 255]], np.float32)
        self.rows = source_index(FRAME_H, 84 // BLOCK)  # game row -> row of 4x4 input blocks
        self.cols = source_index(FRAME_W, 84 // BLOCK)
        self.scale = 1.0

    def start_episode(self, record: dict) -> None:
        painted = paint_attention(record["attention"])  # (T, H, 21, 21)
        self.scale = max(float(np.percentile(painted, 99)), 1e-6)

    def draw(self, frame: np.ndarray, obs: np.ndarray, t: int, record: dict) -> list:
        intensity = np.clip(paint_attention(record["attention"][t]) / self.scale, 0, 1)  # (H, 21, 21)
        blend(frame, *mix_heads(intensity, self.colours), self.rows, self.cols)
        return (
            [(None, "attention: 1 = the episode's")]
            + [(None, f"  99th percentile {self.scale:.3f}")]
            + [(tuple(int(v) for v in c), f"head {h}") for h, c in enumerate(self.colours)]
        )


class SaliencyOverlay:
    """saliency.saliency_map of each observation, max over the 4 frames, normalised per frame."""

    def __init__(self, agent: Agent, args: Args):
        from saliency import saliency_map  # imported here: only this overlay needs it

        self.map = lambda obs, action: saliency_map(
            agent, obs, method=args.method, target=args.target, action=action, samples=args.samples
        )
        what = {"action": "the taken action", "value": "the value V(s)", "attention": "the attention peaks"}[
            args.target
        ]
        self.legend = [f"{args.method} saliency", f"of {what},", "max over the 4 frames,", "1 = this frame's 99th pct"]
        self.device = next(agent.parameters()).device
        self.lut = matplotlib.colormaps["inferno"](np.linspace(0, 1, 256))[:, :3].astype(np.float32) * 255
        self.rows, self.cols = source_index(FRAME_H, 84), source_index(FRAME_W, 84)  # game pixel -> input pixel

    def start_episode(self, record: dict) -> None:
        pass

    def draw(self, frame: np.ndarray, obs: np.ndarray, t: int, record: dict) -> list:
        obs_t = torch.as_tensor(obs[None], device=self.device)
        action = int(record["action"][t])
        m = self.map(obs_t, action)[0].amax(0).float().cpu().numpy()  # (4, 84, 84) -> (84, 84)
        m = np.clip(m / max(float(np.percentile(m, 99)), 1e-12), 0, 1)
        blend(frame, self.lut[(m * 255).astype(np.uint8)], 0.8 * m, self.rows, self.cols)
        return [(None, line) for line in self.legend]


class TreeOverlay:
    """relevance_tree.build_tree of each observation: receptive-field squares coloured by depth."""

    def __init__(self, agent: Agent):
        from relevance_tree import LAYERS, build_tree, iter_nodes  # imported here: only this overlay needs it

        self.agent, self.build, self.iter, self.layers = agent, build_tree, iter_nodes, LAYERS
        self.colours = colours_from("plasma", len(LAYERS), 0.95, 0.3)  # depth 0 (attention) brightest

    def start_episode(self, record: dict) -> None:
        pass

    def draw(self, frame: np.ndarray, obs: np.ndarray, t: int, record: dict) -> list:
        nodes = sorted(self.iter(self.build(self.agent, obs)), key=lambda nd: -nd[1])  # deepest first
        for node, depth in nodes:
            y0, x0, y1, x1 = node["box210"]
            c = self.colours[min(depth, len(self.colours) - 1)]
            frame[y0, x0:x1] = frame[y1 - 1, x0:x1] = frame[y0:y1, x0] = frame[y0:y1, x1 - 1] = c
        return [(None, "relevance tree, by depth:")] + [
            (tuple(int(v) for v in c), name) for c, name in zip(self.colours, self.layers)
        ]


class NoOverlay:
    def start_episode(self, record: dict) -> None:
        pass

    def draw(self, frame, obs, t, record) -> list:
        return []


# ----------------------------------------------------------------------------- playing and filming


class ReplayError(Exception):
    """The second pass did not see the observations of the first."""


def checksum(obs: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(obs).tobytes())


@torch.no_grad()
def play_episode(agent: Agent, env, seed: int, greedy: bool, max_steps: int, device, progress) -> dict:
    """Pass 1: the agent plays one game; per step the small things the video needs (no frames)."""
    obs, _ = env.reset(seed=seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    rec = {k: [] for k in ("action", "probs", "value", "attention", "reward", "checksum")}
    done = False
    while not done and len(rec["action"]) < max_steps:
        logits, value, attention = agent(torch.as_tensor(obs[None], device=device))
        probs = logits.softmax(-1)[0]  # (A,)
        action = int(probs.argmax() if greedy else torch.multinomial(probs, 1, generator=generator)[0])
        rec["checksum"].append(checksum(obs))
        obs, reward, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        for k, v in (("action", action), ("probs", probs), ("value", value[0, 0]), ("reward", reward)):
            rec[k].append(v.cpu().numpy() if torch.is_tensor(v) else v)
        rec["attention"].append(attention[0].cpu().numpy())  # (H, 7, 7)
        if len(rec["action"]) % 250 == 0:
            progress(f"playing: step {len(rec['action'])}, score {sum(rec['reward']):g}")
    return {k: np.array(v) for k, v in rec.items()}


def film_episode(env, seed: int, rec: dict, overlay, panel: Panel, canvas: np.ndarray, s: int, writer, label, progress):
    """Pass 2: replay the recorded actions from the same seed; draw and write one frame per step."""
    obs, _ = env.reset(seed=seed)
    overlay.start_episode(rec)
    view = canvas[: FRAME_H * s, : FRAME_W * s]  # the game's part of the canvas; the panel is on its right
    score, steps, start = 0.0, len(rec["action"]), time.time()
    for t in range(steps):
        if checksum(obs) != rec["checksum"][t]:
            raise ReplayError(f"the game did not replay identically at step {t}; the video would not match.")
        frame = env.render().copy()  # (210, 160, 3): overlays are drawn at the game's resolution
        legend = overlay.draw(frame, obs, t, rec)
        view[:] = cv2.resize(frame, (FRAME_W * s, FRAME_H * s), interpolation=cv2.INTER_NEAREST)  # pixel copies
        lines = [label, f"step  {t:6d}", f"score {score:6g}", f"value {float(rec['value'][t]):+7.3f}"]
        canvas[:, FRAME_W * s :] = panel.draw(lines, rec["probs"][t], int(rec["action"][t]), legend)
        writer.append_data(canvas)
        obs, reward, _, _, _ = env.step(int(rec["action"][t]))
        score += reward
        if (t + 1) % 100 == 0 or t + 1 == steps:
            progress(f"filming: {t + 1}/{steps} frames ({(t + 1) / (time.time() - start):.0f} frames/s)")
    return score


# ----------------------------------------------------------------------------- command line


def check_args(args: Args) -> None:
    """Reject bad numbers with one sentence (ValueError) before anything is loaded or written."""
    if not 1 <= args.scale <= 8:
        raise ValueError(f"--scale must be between 1 and 8, got {args.scale}.")
    for name in ("fps", "episodes", "samples"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name} must be positive, got {getattr(args, name)}.")
    if args.max_steps is not None and args.max_steps <= 0:
        raise ValueError(f"--max-steps must be positive, got {args.max_steps}.")
    if args.out is not None and not args.out.lower().endswith(".mp4"):
        raise ValueError(f"--out must name an .mp4 file, got '{args.out}'.")


def output_path(args: Args) -> str:
    """The MP4 to write; ValueError if it exists (without --force) or its folder is not writable."""
    out = args.out or os.path.join(
        os.path.dirname(os.path.abspath(args.checkpoint)), f"{args.overlay}_seed{args.seed}.mp4"
    )
    if os.path.exists(out) and not args.force:
        raise ValueError(f"'{out}' already exists; pass --force to overwrite it or choose another --out.")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write '{out}': the folder '{folder}' does not exist.")
    if not os.access(folder, os.W_OK) or (os.path.exists(out) and not os.access(out, os.W_OK)):
        raise ValueError(f"cannot write '{out}': permission denied.")
    return out


def make_overlay(args: Args, agent: Agent):
    if args.overlay == "attention":
        if agent.attn_heads == 0:
            raise ValueError(
                "this agent has no attention module (trained with --attn-heads 0); use --overlay saliency, tree or none."
            )
        return AttentionOverlay(agent.attn_heads)
    if args.overlay == "saliency":
        if args.target == "attention" and agent.attn_heads == 0:
            raise ValueError(
                "this agent has no attention module (trained with --attn-heads 0); use --target action or value."
            )
        return SaliencyOverlay(agent, args)
    if args.overlay == "tree":
        if agent.attn_heads == 0:
            raise ValueError(
                "this agent has no attention module (trained with --attn-heads 0), so it has no relevance tree."
            )
        return TreeOverlay(agent)
    return NoOverlay()


def progress_printer():
    """Progress on stderr: one line rewritten in place on a terminal, plain lines otherwise."""
    tty = sys.stderr.isatty()
    return lambda msg: print(
        ("\r" + msg.ljust(60)) if tty else msg, end="" if tty else "\n", file=sys.stderr, flush=True
    )


def main(args: Args) -> tuple:
    """Render the video; returns (path, [(score, steps) of each game], (height, width) of the frames)."""
    check_args(args)
    torch.set_num_threads(1)  # batch-1 forward passes: threads cost more than they give, and ffmpeg needs a core
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    agent, meta = load_checkpoint(args.checkpoint, device)
    out = output_path(args)
    overlay = make_overlay(args, agent)
    env = make_env(meta["env_id"])
    s = args.scale
    panel_w = Panel.width_for(s, meta["action_names"])
    canvas = np.zeros((FRAME_H * s + (-FRAME_H * s) % 16, FRAME_W * s + panel_w, 3), np.uint8)  # dims % 16 == 0
    panel = Panel(canvas.shape[0], panel_w, s, meta["action_names"])
    max_steps = args.max_steps or sys.maxsize
    progress = progress_printer()

    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.partial.mp4")
    writer = imageio.get_writer(  # H.264; "veryfast" encodes ~3x faster than the default for the same file size here
        tmp,
        fps=args.fps,
        codec="libx264",
        macro_block_size=16,
        ffmpeg_log_level="error",
        ffmpeg_params=["-preset", "veryfast"],
    )
    games = []
    try:  # into a temporary file, renamed at the end: a stopped or failed run leaves no half video behind
        for e in range(args.episodes):
            seed = args.seed + e
            rec = play_episode(agent, env, seed, args.greedy, max_steps, device, progress)
            label = f"game {e + 1}/{args.episodes}, seed {seed}"
            score = film_episode(env, seed, rec, overlay, panel, canvas, s, writer, label, progress)
            games.append((score, len(rec["action"])))
            progress(f"game {e + 1}: score {score:g} in {len(rec['action'])} steps")
            if sys.stderr.isatty():
                print(file=sys.stderr)
    finally:
        writer.close()
        env.close()
        if len(games) < args.episodes:
            os.remove(tmp)
    os.replace(tmp, out)
    return out, games, canvas.shape[:2]


if __name__ == "__main__":
    args = tyro.cli(Args)
    try:
        path, games, (height, width) = main(args)
    except (ValueError, CheckpointError, ReplayError, OSError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit(130)
    for i, (score, steps) in enumerate(games):
        print(f"game {i + 1} (seed {args.seed + i}): score {score:g} in {steps} steps")
    print(f"wrote {path} ({sum(n for _, n in games)} frames, {width}x{height}, {args.fps} fps)")
