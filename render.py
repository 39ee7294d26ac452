"""Videos of trained agents playing, with what they look at drawn over the game, and a headless evaluation.

Per agent, each frame shows the 210x160 colour frame scaled `--scale` times with an overlay (its own
attention on a fixed 0-1 scale per head, a saliency map, or the relevance tree) and a side panel: step,
score, value V(s), the policy as bars and the overlay's legend. The overlays are drawn once, by overlays.py's
`draw_attention`, `draw_saliency` and `draw_tree`, for these videos and for explore.py's page alike: they
blend at most OPACITY (half) over the game, so the ball and the paddle stay visible under them. One frame per
agent step; 15 fps is real time. Several checkpoints of one game play side by side, each its own game from the same seed.
Every run prints each game's score, mean and sd, and the mean attention entropy per head; `--no-video`
only plays (a headless evaluation), `--json` writes the same numbers. `--tensorboard DIR` also writes a
TensorBoard run of one agent's games for exploring them step by step (see `Explorer`).

    python render.py --checkpoint runs/<run_name>/run.pt
    python render.py --checkpoint checkpoints/a.pt checkpoints/b.pt --episodes 20 --no-video --json runs/eval.json
    python render.py --checkpoint runs/<run_name>/run.pt --episodes 2 --tensorboard runs/explore
"""

import glob
import json
import math
import os
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import cv2
import imageio.v2 as imageio
import matplotlib
import numpy as np
import torch
import tyro
from PIL import Image, ImageDraw, ImageFont

from agents import load_checkpoint
from cli import (
    SAYS_ITS_DEFAULT,
    Progress,
    StopRequest,
    UsageError,
    exit_on_bad_input,
    make_writable_folder,
    output_folder,
    pick_device,
)
from overlays import (
    FRAME_H,
    FRAME_W,
    OPACITY,
    SALIENCY_COLOURS,
    SALIENCY_LEVELS,
    TEXT_RGB,
    draw_attention,
    draw_saliency,
    draw_tree,
    head_colours,
    label,
    upscale,
)
from play import play
from ppo_attention import attention_entropy
from relevance_tree import LAYER_COLOURS, build_tree, tree_layers
from saliency import collapse_frames, explained_action, saliency_map, target_label


@dataclass
class Args:
    """Play one or more checkpoints of the same game; film them side by side and print their scores."""

    checkpoint: tuple[str, ...]
    """one file per agent (run.pt or run folder, CleanRL .pt/.cleanrl_model, SB3 .zip); several play side by side"""
    env_id: Optional[str] = None
    """the game of CleanRL or SB3 agents whose files do not name it, e.g. BreakoutNoFrameskip-v4"""
    overlay: Annotated[Optional[Literal["attention", "saliency", "tree", "none"]], SAYS_ITS_DEFAULT] = None
    """what to draw over the game (default: attention, or saliency for agents trained without attention)"""
    method: Literal["smoothgrad", "gradient", "vargrad", "gradcam", "ig_black", "ig_blur", "perturbation"] = (
        "smoothgrad"
    )
    """saliency method of --overlay saliency (smoothgrad, vargrad and ig_* take tens of passes a frame)"""
    target: Literal["action", "value", "attention"] = "action"
    """what the saliency explains: the taken action's logit, the value V(s), or the attention peaks"""
    samples: int = 50
    """noisy copies per frame for smoothgrad and vargrad"""
    episodes: int = 1
    """games per agent, one after the other; game i starts from seed + i"""
    max_steps: Annotated[Optional[int], SAYS_ITS_DEFAULT] = None
    """stop each game after this many agent steps (default: play it to the end)"""
    greedy: bool = False
    """take the most probable action instead of sampling from the policy"""
    seed: int = 1
    """seed of the first game (no-op start, sticky actions), of the action sampling and of the saliency noise"""
    video: bool = True
    """write the MP4; --no-video only plays and prints the evaluation"""
    stills: tuple[int, ...] = ()
    """also save these frames of the video as PNG files beside it, e.g. --stills 150 250 (frame n: agent step n of
    game 1, counted from 0; a still for a slide or a page, without the video's compression)"""
    json: Optional[str] = None
    """also write the evaluation (every game's score and attention entropy) to this JSON file (its folder is made)"""
    out: Annotated[Optional[str], SAYS_ITS_DEFAULT] = None
    """output folder of the video (default: a new runs/<run_name>/video__<unix time>/)"""
    force: bool = False
    """write into an --out folder that already holds files, and replace an existing --json file"""
    fps: int = 30
    """frames per second of the video (one frame per agent step; 15 is real time)"""
    scale: int = 3
    """each game pixel becomes scale x scale video pixels (2 to 8)"""
    cuda: bool = True
    """run the network on CUDA when it is available"""
    tensorboard: Optional[str] = None
    """also write a TensorBoard run of the games to this folder (one agent): images, scalars, projector"""
    embed_masked: bool = False
    """with --tensorboard: also put the 3136-d attention-masked features in the projector (besides fc)"""


# ----------------------------------------------------------------------------- the side panel and the overlays
# (the overlays themselves are drawn by overlays.py, for these videos and explore.py's page alike)

BACKGROUND, TEXT, DIM, TRACK, BAR, TAKEN = "#121218", "#ebebeb", "#9a9aa6", "#32323c", "#5a82c8", "#ffa51e"
FONT = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")


class AttentionOverlay:
    """draw_attention: every head in its colour; the panel shows each head's 7x7 map and its entropy."""

    def __init__(self, heads: int, s: int):
        self.heads, self.s, self.colours = heads, s, head_colours(heads)

    def draw(self, step) -> np.ndarray:
        return draw_attention(step.frame, step.attention, self.s)

    def legend(self, panel, step) -> None:
        cell, per_row = 3 * self.s, 3  # the raw 7x7 map of each head, same fixed scale, 3 to a row
        for h in range(self.heads):
            x0 = panel.pad + h % per_row * (7 * cell + 3 * panel.pad)
            y0 = panel.y + h // per_row * (2 * panel.line + 7 * cell + 4)
            rgb = self.colours[h] * np.clip(step.attention[h], 0, 1)[..., None]  # (7, 7, 3)
            inset = Image.fromarray(rgb.astype(np.uint8)).resize((7 * cell, 7 * cell), Image.NEAREST)
            panel.img.paste(inset, (x0, y0 + panel.line))
            panel.draw.rectangle((x0 - 1, y0 + panel.line - 1, x0 + 7 * cell, y0 + panel.line + 7 * cell), outline=DIM)
            panel.draw.text((x0, y0), f"head {h}", font=panel.font, fill=tuple(int(v) for v in self.colours[h]))
            entropy = float(attention_entropy(step.activations["attn_logits"][:, h : h + 1].float())[0, 0])
            panel.draw.text((x0, y0 + panel.line + 7 * cell + 2), f"H = {entropy:.2f}", font=panel.small, fill=DIM)
        panel.y += -(-self.heads // per_row) * (2 * panel.line + 7 * cell + 4)
        panel.colour_bar(
            [(f"head {h}", [self.colours[h] * OPACITY * t for t in np.linspace(0, 1, 32)]) for h in range(self.heads)],
            "0",
            "1",
        )
        panel.lines(
            ["tint: a head's attention on the", "regions that contain a pixel", "(1 = all of it), strongest head's",
             "colour; outline: half its maximum"]
            + ["H: entropy of a head's map in nats", "(uniform map: ln 49 = 3.89)"]
        )  # fmt: skip


class SaliencyOverlay:
    """draw_saliency of saliency.saliency_map for each observation, max over the 4 frames."""

    def __init__(self, agent, args: Args, action_names: list, q_values: bool = False):
        self.agent, self.args, self.names, self.q_values = agent, args, action_names, q_values
        self.generator = torch.Generator(device=agent.conv1.weight.device).manual_seed(args.seed)

    def draw(self, step) -> np.ndarray:
        a = self.args
        kw = dict(action=explained_action(None, step, self.q_values), samples=a.samples, generator=self.generator)
        m = collapse_frames(saliency_map(self.agent, step.obs[None], a.method, a.target, **kw)[0]).cpu().numpy()
        return draw_saliency(step.frame, m, a.scale)

    def legend(self, panel, step) -> None:
        action = self.names[explained_action(None, step, self.q_values)]
        panel.lines([f"{self.args.method} saliency of", target_label(self.args.target, None, action, self.q_values)])
        steps = np.linspace(0, 1, SALIENCY_LEVELS)
        panel.colour_bar([("", SALIENCY_COLOURS * OPACITY * np.sqrt(steps)[:, None])], "0", "99th pct")
        panel.lines(["how much each pixel changes it,", "max over the 4 stacked frames,", "scaled per frame"])


class TreeOverlay:
    """draw_tree of relevance_tree.build_tree for each observation."""

    def __init__(self, agent, s: int, q_values: bool = False):
        self.agent, self.s, self.q_values = agent, s, q_values

    def draw(self, step) -> np.ndarray:
        action = None if self.agent.attn_heads else explained_action(None, step, self.q_values)  # Grad-CAM's roots
        return draw_tree(
            step.frame, build_tree(self.agent, step.obs, activations=step.activations, action=action), self.s
        )

    def legend(self, panel, step) -> None:
        gradcam, what = not self.agent.attn_heads, "Q-value" if self.q_values else "logit"
        if gradcam:  # an agent without attention: the tree starts at Grad-CAM's peaks
            panel.lines(["relevance tree: what in conv3", f"raises the action's {what}"])
        else:
            panel.lines(["relevance tree: why the agent", "looks where it looks"])
        for name, colour in ((n, LAYER_COLOURS[n]) for n in tree_layers(self.agent)):
            panel.draw.rectangle(
                (panel.pad, panel.y + 3, panel.pad + panel.line // 2, panel.y + panel.line - 4), fill=colour
            )
            panel.draw.text((panel.pad + panel.line, panel.y), name, font=panel.small, fill=TEXT)
            panel.y += panel.line
        panel.lines(
            ["bolder = more relevance", "label: Grad-CAM's value" if gradcam else "label: head, attention weight"]
        )


class NoOverlay:
    def __init__(self, s: int):
        self.s = s

    def draw(self, step) -> np.ndarray:
        return upscale(step.frame, self.s)

    def legend(self, panel, step) -> None:
        pass


class Panel:
    """One agent's side panel (PIL): who it is, the step, score and value, the policy as bars (a DQN's Q-values,
    the bars spanning the lowest to the highest), the legend."""

    def __init__(self, width: int, height: int, s: int, title: str, action_names: list, epsilon=None):
        self.font, self.small = ImageFont.truetype(FONT, 5 * s + 1), ImageFont.truetype(FONT, 4 * s + 1)
        self.line, self.pad = int(1.3 * self.font.size), 3 * s
        self.size, self.title, self.names = (width, height), title, action_names
        self.q_values, self.epsilon = epsilon is not None, epsilon  # a DQN's: it acts epsilon-greedily

    def lines(self, texts: list, colour=DIM) -> None:
        for text in texts:
            self.draw.text((self.pad, self.y), text, font=self.small, fill=colour)
            self.y += int(1.2 * self.small.size)
        self.y += self.pad

    def colour_bar(self, rows: list, low: str, high: str) -> None:
        """Horizontal colour bars, one per (name, colours from low to high) row, with `low` and `high` at the ends."""
        x0 = self.pad + max(self.draw.textlength(name, font=self.small) for name, _ in rows) + self.pad
        x1 = self.size[0] - 2 * self.pad - self.draw.textlength(high, font=self.small) / 2
        for name, ramp in rows:
            self.draw.text((self.pad, self.y), name, font=self.small, fill=TEXT)
            for i, c in enumerate(ramp):
                xa, xb = x0 + (x1 - x0) * i / len(ramp), x0 + (x1 - x0) * (i + 1) / len(ramp)
                self.draw.rectangle((xa, self.y + 2, xb, self.y + self.small.size), fill=tuple(int(v) for v in c))
            self.y += self.line
        self.draw.text((x0, self.y - 4), low, font=self.small, fill=TEXT, anchor="mt")  # ticks under the bars
        self.draw.text((x1, self.y - 4), high, font=self.small, fill=TEXT, anchor="mt")
        self.y += self.line + self.pad

    def render(self, step, game: str, overlay) -> np.ndarray:
        self.img = Image.new("RGB", self.size, BACKGROUND)
        self.draw, self.y = ImageDraw.Draw(self.img), self.pad
        for text, colour in ((self.title, TEXT), (game, DIM)):
            self.draw.text((self.pad, self.y), text, font=self.font, fill=colour)
            self.y += self.line
        self.draw.text((self.pad, self.y), f"step {step.t}   score {step.score:g}", font=self.font, fill=TEXT)
        value = f"{'max Q(s, a)' if self.q_values else 'value V(s)'} {step.value:+.3f}"
        self.draw.text((self.pad, self.y + self.line), value, font=self.font, fill=TEXT)
        self.y += 2 * self.line + self.pad
        if self.q_values:  # Q-values differ by little: the bars span the lowest to the highest (empty to full)
            shown = step.activations["logits"][0].float().cpu().numpy()
            lo, hi = float(shown.min()), float(shown.max())
            spans = [(0.0, (q - lo) / max(hi - lo, 1e-9)) for q in shown]
            title = f"Q(s, a), bars from {lo:+.3f} to {hi:+.3f}"
        else:
            shown, spans, title = step.probs, [(0.0, float(p)) for p in step.probs], "action probabilities"
        self.draw.text((self.pad, self.y), title, font=self.small, fill=DIM)
        self.y += self.line
        x0 = self.pad + int(max(self.draw.textlength(n, font=self.small) for n in self.names)) + self.pad
        x1, row = self.size[0] - 3 * self.line, min(self.line, (self.size[1] // 2 - self.y) // len(self.names))
        self.bars = []  # (y0, y1, x0, x1) of each action's bar track
        for i, (name, v, (a, b)) in enumerate(zip(self.names, shown, spans)):
            taken = i == step.action
            y = self.y + i * row
            self.bars.append((y + row // 5, y + row * 4 // 5, x0, x1))
            self.draw.text((self.pad, y), name, font=self.small, fill=TAKEN if taken else TEXT)
            self.draw.rectangle((x0, y + row // 5, x1, y + row * 4 // 5), fill=TRACK)
            bar = (x0 + (x1 - x0) * a, y + row // 5, x0 + (x1 - x0) * b, y + row * 4 // 5)
            self.draw.rectangle(bar, fill=TAKEN if taken else BAR)
            self.draw.text((x1 + self.pad, y), f"{v:+.3f}" if self.q_values else f"{v:.2f}", font=self.small, fill=DIM)
        self.y += len(self.names) * row + self.pad
        taken = "orange: the action taken" + (" (FIRE after a lost life)" if step.forced else "")
        greedy = [f"(greedy, or with probability {self.epsilon:g}", "a random one)"] if self.q_values else []
        self.lines([taken, *greedy])
        overlay.legend(self, step)
        return np.asarray(self.img)


# ----------------------------------------------------------------------------- the command line


def check_args(args: Args) -> None:
    """Reject bad numbers with one sentence (UsageError) before anything is loaded or written."""
    if not 2 <= args.scale <= 8:
        raise UsageError(f"--scale must be between 2 and 8, got {args.scale}.")
    for name in ("fps", "episodes", "samples"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name} must be positive, got {getattr(args, name)}.")
    if args.max_steps is not None and args.max_steps <= 0:
        raise UsageError(f"--max-steps must be positive, got {args.max_steps}.")
    if not args.checkpoint:
        raise UsageError("give at least one --checkpoint.")
    if args.json and os.path.isdir(args.json):
        raise UsageError(
            f"--json '{args.json}' is a folder; give a file name, e.g. {os.path.join(args.json, 'eval.json')}."
        )
    if args.json and os.path.exists(args.json) and not args.force:
        raise UsageError(f"'{args.json}' already exists; pass --force to replace it or choose another --json.")
    if args.json:  # its folder (runs/, say) is made now: a path that cannot be written fails before the games
        make_writable_folder(os.path.dirname(args.json) or ".", "folder of --json")
    if args.stills and not args.video:
        raise UsageError("--stills are frames of the video: leave out --no-video.")
    if any(n < 0 for n in args.stills):
        raise UsageError(f"--stills are frame numbers from 0, got {min(args.stills)}.")
    if args.tensorboard and len(args.checkpoint) > 1:
        raise UsageError("--tensorboard explores one agent: give one --checkpoint (and each agent its own folder).")
    if args.tensorboard and glob.glob(os.path.join(args.tensorboard, "**", "*tfevents*"), recursive=True):
        if not args.force:
            raise UsageError(f"'{args.tensorboard}' already holds a TensorBoard run; add --force to replace it.")


def make_overlay(args: Args, overlay: str, agent, meta: dict):
    """The overlay to draw for one agent; UsageError (one sentence) when it cannot be drawn for it."""
    needs_attention = overlay == "attention" or (overlay == "saliency" and args.target == "attention")
    if needs_attention and agent.attn_heads == 0:
        raise UsageError(
            f"'{meta['path']}' holds an agent without attention, so it has no {overlay} "
            f"{'target' if overlay == 'saliency' else 'overlay'}; use --overlay saliency --target action, or --overlay none."
        )
    if overlay == "attention":
        return AttentionOverlay(agent.attn_heads, args.scale)
    if overlay == "saliency":
        return SaliencyOverlay(agent, args, meta["action_names"], meta["outputs"] == "q_values")
    return TreeOverlay(agent, args.scale, meta["outputs"] == "q_values") if overlay == "tree" else NoOverlay(args.scale)


def step_count(steps: int) -> str:
    """Training steps, readably: "3,072 steps" below a million, "1.02M steps" from a million on."""
    return f"{steps / 1e6:.2f}M steps" if steps >= 1_000_000 else f"{steps:,} steps"


def agent_title(meta: dict) -> str:
    steps = step_count(meta.get("global_step") or 0)
    if meta["source"] != "ppo_attention.py":  # an agent trained elsewhere: CleanRL's files do not count steps
        return f"{meta['source']}, {steps}" if meta.get("global_step") else meta["source"]
    return f"attn-coef {meta['args']['attn_coef']:g}, {steps}" if meta["attn_heads"] else f"no attention, {steps}"


def in_step(plays: list):
    """Advance several games together: yield each game's Step per agent step (None once that game is over)."""
    steps = [True] * len(plays)
    while True:
        steps = [next(p, None) if st is not None else None for p, st in zip(plays, steps)]
        if all(st is None for st in steps):
            return
        yield steps


class Film:
    """The MP4: per agent a block (the game with its overlay, then its panel), side by side; H.264 written
    frame by frame into a temporary file that becomes the video when closed."""

    def __init__(self, path: str, args: Args, metas: list, overlays: list):
        s = args.scale
        self.path, self.s, self.overlays, self.frames = path, s, overlays, 0
        self.stills, self.still_paths = set(args.stills), []  # frame numbers to save as PNG; the files written
        panel_w = 100 * s + (-260 * s) % 16  # each block is a multiple of 16 px wide, as H.264 wants
        self.block_w, height = FRAME_W * s + panel_w, FRAME_H * s + (-FRAME_H * s) % 16
        self.panels = [Panel(panel_w, height, s, agent_title(m), m["action_names"], m.get("epsilon")) for m in metas]
        self.canvas = np.zeros((height, len(metas) * self.block_w, 3), np.uint8)
        self.writer = imageio.get_writer(path + ".partial.mp4", fps=args.fps, codec="libx264", macro_block_size=16,
                                         ffmpeg_log_level="error", ffmpeg_params=["-preset", "veryfast"])  # fmt: skip

    def draw(self, i: int, step, game: str) -> np.ndarray:
        """Draw agent i's step into its block; return the game view (the overlay), for the explorer to reuse."""
        block = self.canvas[:, i * self.block_w : (i + 1) * self.block_w]
        block[: FRAME_H * self.s, : FRAME_W * self.s] = view = self.overlays[i].draw(step)
        block[:, FRAME_W * self.s :] = self.panels[i].render(step, game, self.overlays[i])
        return view

    def game_over(self, i: int, score: float) -> None:
        """Dim agent i's last frame, which stays until the other games end."""
        self.canvas[:, i * self.block_w : (i + 1) * self.block_w] //= 3
        label(self.canvas, f"game over: {score:g}", (i * self.block_w + 4 * self.s, 100 * self.s), TEXT_RGB, 2 * self.s)

    def write(self) -> None:
        self.writer.append_data(self.canvas)
        if self.frames in self.stills:  # the exact canvas, lossless: <video name>_frame<n>.png
            self.still_paths.append(f"{self.path[: -len('.mp4')]}_frame{self.frames:05d}.png")
            Image.fromarray(self.canvas).save(self.still_paths[-1])
        self.frames += 1

    def close(self) -> None:
        self.writer.close()
        if self.frames:
            os.replace(self.path + ".partial.mp4", self.path)
        else:
            os.remove(self.path + ".partial.mp4")


# TensorBoard image scale; projector: thumbnail side, sprite side (TensorBoard allows 8192, torch builds it in
# float64: ceil(sqrt(points)) x thumbnail <= SPRITE_PX, so 40 to 64 px), points (its t-SNE samples 10000)
TB_SCALE, THUMB_PX, SPRITE_PX, MAX_POINTS = 2, 64, 4096, 10000


class Explorer:
    """The TensorBoard run of --tensorboard (one agent); tags `game<g>/...`, x = the agent step of game g.
    Images: the video's game view (at TB_SCALE) and the attention if that is another overlay. Scalars:
    V(s), each action's probability (a DQN's epsilon-greedy policy, and its Q-values), reward, score, entropy per head. Projector (at close): each step's fc
    (and masked) activations with a thumbnail of its frame and metadata; at most MAX_POINTS, evenly spread."""

    def __init__(self, args: Args, meta: dict, kind: str, overlay):
        from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

        folder = args.tensorboard
        if args.force:  # replace the run in this folder; runs in its sub-folders stay
            for path in glob.glob(os.path.join(folder, "*tfevents*")) + glob.glob(os.path.join(folder, "projector_*")):
                os.remove(path)
            shutil.rmtree(os.path.join(folder, "00000"), ignore_errors=True)  # add_embedding's files
        make_writable_folder(folder, "--tensorboard folder")
        self.writer, self.args, self.overlay, self.points = SummaryWriter(folder), args, overlay, []
        self.kind, self.names, self.heads = kind.replace("none", "frame"), meta["action_names"], meta["attn_heads"]
        self.q_values = meta["outputs"] == "q_values"  # a DQN: its Q-values too, what its panel shows
        self.attention = AttentionOverlay(self.heads, TB_SCALE) if self.heads and kind != "attention" else None
        settings = {"checkpoint": meta["path"], "agent": agent_title(meta), "game": meta["env_id"], **vars(args)}
        self.writer.add_text("settings", "\n".join(f"- {k}: `{v}`" for k, v in settings.items()))

    def add(self, e: int, step, view, entropy: np.ndarray) -> None:
        """One step of game e: `view` is the video's drawing of it (None without video), entropy per head."""
        images = {self.kind: self.overlay.draw(step) if view is None else view}
        if self.attention:
            images["attention"] = self.attention.draw(step)
        for name, img in images.items():
            img = cv2.resize(img, (FRAME_W * TB_SCALE, FRAME_H * TB_SCALE), interpolation=cv2.INTER_AREA)
            self.writer.add_image(f"game{e + 1}/{name}", img, step.t, dataformats="HWC")
        scalars = {"value": step.value, "reward": step.reward, "score": step.score}
        scalars |= {f"policy/{n}": p for n, p in zip(self.names, step.probs)}
        if self.q_values:
            scalars |= {f"q_value/{n}": q for n, q in zip(self.names, step.activations["logits"][0].tolist())}
        scalars |= {f"attention_entropy/head{h}": v for h, v in enumerate(entropy)}
        for tag, v in scalars.items():
            self.writer.add_scalar(f"game{e + 1}/{tag}", float(v), step.t)
        row = [e + 1, step.t, self.names[step.action], f"{step.value:.4f}", f"{step.score:g}", f"{step.reward:g}"]
        vectors = [
            step.activations[k][0].flatten().float().cpu() for k in ("fc", "masked")[: 1 + self.args.embed_masked]
        ]
        thumb = cv2.resize(step.frame, (THUMB_PX, THUMB_PX), interpolation=cv2.INTER_AREA)
        self.points.append((vectors, thumb, row + [f"{h:.4f}" for h in entropy]))

    def close(self, games: list, progress) -> None:
        scores = [f"- game {i + 1}, seed {g['seed']}: {g['score']:g} ({g['steps']} steps)" for i, g in enumerate(games)]
        self.writer.add_text("scores", "\n".join(scores) or "no finished game")
        keep = np.unique(np.linspace(0, len(self.points) - 1, min(len(self.points), MAX_POINTS)).round().astype(int))
        points, t = [self.points[i] for i in keep], min(THUMB_PX, SPRITE_PX // max(math.ceil(math.sqrt(len(keep))), 1))
        progress(f"writing the projector: {len(points)} of {len(self.points)} steps, {t} px thumbnails", done=True)
        header = ["game", "step", "action", "value", "score", "reward"] + [f"entropy_h{h}" for h in range(self.heads)]
        thumbs = torch.as_tensor(np.array([cv2.resize(p[1], (t, t), interpolation=cv2.INTER_AREA) for p in points]))
        for k, tag in enumerate(("fc", "masked")[: 1 + self.args.embed_masked] if points else ()):
            mat, rows = torch.stack([p[0][k] for p in points]), [p[2] for p in points]
            self.writer.add_embedding(mat, rows, thumbs.permute(0, 3, 1, 2) / 255.0, tag=tag, metadata_header=header)
        self.writer.close()


def play_round(args: Args, agents: list, env_id: str, e: int, film, stop, progress, explorer=None, env_options=None):
    """Game e of every agent, from seed + e, filmed side by side: each game's record (seed, score, steps,
    mean attention entropy per head), or an empty list when Ctrl-C stopped the round. env_options: each agent's
    `meta["env_options"]` (None: this project's)."""
    seed, n = args.seed + e, len(agents)
    last, entropies, over = [None] * n, [[] for _ in agents], [False] * n
    plays = [play(a, env_id, seed, args.greedy, args.max_steps, o) for a, o in zip(agents, env_options or [None] * n)]
    for steps in in_step(plays):
        for i, st in enumerate(steps):
            if st is not None:
                last[i] = st
                entropies[i].append(attention_entropy(st.activations["attn_logits"].float())[0].cpu().numpy())
                view = film.draw(i, st, f"game {e + 1}/{args.episodes}, seed {seed}") if film else None
                if explorer:
                    explorer.add(e, st, view, entropies[i][-1])
            elif not over[i] and film:
                film.game_over(i, last[i].score)
            over[i] = st is None
        if film:
            film.write()
        scores = ", ".join(f"{st.score:g}" for st in steps if st is not None)
        progress(f"game {e + 1}/{args.episodes}: step {max(st.t for st in steps if st)}, score {scores}")
        if stop.requested:
            return []
    return [
        dict(seed=seed, score=st.score, steps=st.t + 1, attention_entropy=np.mean(h, 0).tolist())
        for st, h in zip(last, entropies)
    ]


def summary(meta: dict, games: list) -> dict:
    """The evaluation of one agent: every game, the mean and sd of the scores, the mean entropy per head."""
    scores = np.array([g["score"] for g in games])
    entropy = np.mean([g["attention_entropy"] for g in games], 0).tolist() if meta["attn_heads"] and games else None
    return dict(
        checkpoint=meta["path"],
        env_id=meta["env_id"],
        attn_coef=meta["args"].get("attn_coef") if meta["attn_heads"] else None,
        global_step=meta.get("global_step"),
        games=games,
        score_mean=float(scores.mean()) if len(games) else None,
        score_sd=float(scores.std(ddof=1)) if len(games) > 1 else 0.0,
        attention_entropy_mean=entropy,
    )


def main(argv=None) -> dict:
    """Play, film and evaluate; returns the evaluation with the video's path, frame count and size."""
    args = tyro.cli(Args, args=argv)
    check_args(args)
    device = pick_device(args.cuda)
    if device.type == "cpu":
        torch.set_num_threads(1)  # batch-1 forward passes: threads cost more than they give, and ffmpeg needs a core
    loaded = [load_checkpoint(c, device, args.env_id) for c in args.checkpoint]
    agents, metas = [agent for agent, _ in loaded], [meta for _, meta in loaded]
    options = [meta["env_options"] for meta in metas]  # each agent sees its game as it was trained to
    if len({m["env_id"] for m in metas}) > 1:
        raise UsageError(f"the checkpoints play different games ({', '.join(m['env_id'] for m in metas)}).")
    kind = args.overlay or ("attention" if all(agent.attn_heads for agent in agents) else "saliency")
    overlays = [make_overlay(args, kind, agent, meta) for agent, meta in loaded]
    games, film, explorer, progress = [[] for _ in loaded], None, None, Progress()
    folder = output_folder(args.out, metas[0]["run_name"], "video", args.force) if args.video else nullcontext()
    asked = "finishing the video with the frames filmed so far" if args.video else "finishing this step"
    with StopRequest(asked) as stop, folder as out:
        if out:
            name = kind + (f"-{args.method}-{args.target}" if kind == "saliency" else "")
            name = f"{'side_by_side_' if len(agents) > 1 else ''}{name}_seed{args.seed}.mp4"
            film = Film(os.path.join(out, name), args, metas, overlays)
        if args.tensorboard:
            explorer = Explorer(args, metas[0], kind, overlays[0])
        try:
            for e in range(args.episodes):
                for agent_games, record in zip(
                    games,
                    play_round(args, agents, metas[0]["env_id"], e, film, stop, progress, explorer, options),
                ):
                    agent_games.append(record)
                if stop.requested:
                    break
        finally:
            if film:
                film.close()
            if explorer:
                explorer.close(games[0], progress)
    progress("played.", done=True)
    result = [summary(meta, g) for meta, g in zip(metas, games)]
    report(args, metas, result)
    if film and film.frames:
        print(
            f"wrote {film.path} ({film.frames} frames, {film.canvas.shape[1]}x{film.canvas.shape[0]}, {args.fps} fps)"
        )
    if film and args.stills:
        missed = sorted(n for n in args.stills if n >= film.frames)
        print(f"wrote {len(film.still_paths)} stills: " + ", ".join(film.still_paths or ["none"]) +
              (f" (the video has {film.frames} frames: no frame {', '.join(map(str, missed))})" if missed else ""))  # fmt: skip
    if explorer:
        print(f"wrote a TensorBoard run of {len(explorer.points)} steps; every image of it shows with:")
        print(f"tensorboard --samples_per_plugin images=100000 --logdir {args.tensorboard}")
    if stop.requested:
        raise KeyboardInterrupt("only finished games are counted")  # exit_on_bad_input says "stopped by Ctrl-C"
    path, frames = (film.path, film.frames) if film and film.frames else (None, 0)
    stills = film.still_paths if film else []
    return dict(agents=result, path=path, frames=frames, size=film.canvas.shape[:2] if film else None, stills=stills)


def report(args: Args, metas: list, result: list) -> None:
    """Print every game's score and each agent's mean +- sd and entropy per head; write --json."""
    for r, meta in zip(result, metas):
        print(f"{agent_title(meta)} ({r['checkpoint']}):")
        for g in r["games"]:
            print(f"  game seed {g['seed']}: score {g['score']:g} in {g['steps']} steps")
        if r["games"]:
            entropy = ", ".join(f"{h:.2f}" for h in r["attention_entropy_mean"] or []) or "n/a (no attention)"
            print(f"  mean score {r['score_mean']:.2f} +- {r['score_sd']:.2f} (sd) over {len(r['games'])} games "
                  f"({'greedy' if args.greedy else 'sampled'} actions); attention entropy per head: {entropy} nats")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(greedy=args.greedy, seed=args.seed, episodes=args.episodes, agents=result), f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    exit_on_bad_input(main)
