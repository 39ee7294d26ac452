"""Tests of render.py: the video, the overlay's alignment, the panel's bars, every overlay mode, bad input."""

import os
import re
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

import ppo_attention
import render
from ppo_attention import make_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["NOOP", "FIRE", "RIGHT", "LEFT"]  # Breakout


def run_render(*argv, timeout=120):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "render.py"), *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def read_video(path) -> list:
    with imageio.get_reader(path) as reader:
        return [np.asarray(f) for f in reader]


def video_size(scale: int) -> tuple:
    """(height, width) the video must have: game scaled, panel on the right, both a multiple of 16."""
    height = -(-210 * scale // 16) * 16
    width = 160 * scale + render.Panel.width_for(scale, NAMES)
    assert width % 16 == 0
    return height, width


def field_mask(y: int, x: int, scale: int) -> np.ndarray:
    """Video pixels whose centre lies where attention unit (y, x) sees: input rows / columns [8k, 8k + 36),
    mapped onto the 210x160 frame (rows x 210/84, columns x 160/84), then scaled. Computed here from the
    design, independently of render.py's geometry."""
    size, stride = ppo_attention.Agent.RECEPTIVE_FIELDS["conv3"]
    r = (np.arange(210 * scale) + 0.5) / scale * 84 / 210  # video row centre -> input row
    c = (np.arange(160 * scale) + 0.5) / scale * 84 / 160
    rows = (r >= y * stride) & (r < y * stride + size)
    cols = (c >= x * stride) & (c < x * stride + size)
    return rows[:, None] & cols[None, :]


def one_hot_attention(heads: int, y: int, x: int) -> np.ndarray:
    a = np.zeros((heads, 7, 7), np.float32)
    a[:, y, x] = 1
    return a


# ----------------------------------------------------------------------------- pure pieces


@pytest.mark.parametrize("cell", [(0, 0), (3, 5), (6, 2)])
def test_attention_on_one_cell_paints_exactly_its_receptive_field(cell):
    overlay = render.AttentionOverlay(heads=2)
    rec = {"attention": one_hot_attention(2, *cell)[None]}
    overlay.start_episode(rec)
    frame = np.zeros((210, 160, 3), np.uint8)  # black: any colour is the overlay
    overlay.draw(frame, None, 0, rec)
    coloured = frame.max(-1) > 0
    np.testing.assert_array_equal(coloured, field_mask(*cell, scale=1))
    assert frame[coloured].min(0).max() > 100  # bright where it paints


def test_attention_brightness_uses_one_scale_for_the_episode():
    """The same map is drawn alike at every step, and dimmer in an episode that also has stronger maps."""
    weak = np.full((2, 7, 7), 1 / 49, np.float32)
    strong = one_hot_attention(2, 3, 3)

    def drawn(record, t):
        overlay = render.AttentionOverlay(heads=2)
        overlay.start_episode(record)
        frame = np.zeros((210, 160, 3), np.uint8)
        overlay.draw(frame, None, t, record)
        return frame.astype(int)

    alone = {"attention": np.stack([weak, weak])}
    mixed = {"attention": np.stack([weak, strong, weak])}
    np.testing.assert_array_equal(drawn(mixed, 0), drawn(mixed, 2))
    assert drawn(mixed, 0).sum() < 0.6 * drawn(alone, 0).sum()  # half: the strong map sets the scale


def bar_fill(panel: render.Panel, img: np.ndarray, i: int, colour) -> int:
    """Pixels of action i's bar (middle row) painted in `colour`."""
    y0, y1, x0, x1 = panel.bar_box(i)
    row = img[(y0 + y1) // 2, x0:x1].astype(int)
    return int((np.abs(row - np.array(colour)).max(-1) <= 40).sum())


@pytest.mark.parametrize("probs", [[0, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
def test_panel_bars_follow_the_probabilities(probs):
    panel = render.Panel(640, render.Panel.width_for(3, NAMES), 3, NAMES)
    img = panel.draw(["a", "b", "c", "d"], np.array(probs), action=2, legend=[])
    width = panel.bar_box(0)[3] - panel.bar_box(0)[2]
    for i, p in enumerate(probs):
        fill = bar_fill(panel, img, i, render.TAKEN if i == 2 else render.BAR)
        assert abs(fill - p * width) <= 1, (i, fill, p * width)


def test_replay_that_diverges_is_an_error(tiny_checkpoint):
    agent, meta = ppo_attention.load_checkpoint(tiny_checkpoint)
    env = make_env(meta["env_id"])
    rec = render.play_episode(agent, env, seed=3, greedy=False, max_steps=6, device="cpu", progress=print)
    assert len(rec["action"]) == 6 and rec["attention"].shape == (6, 2, 7, 7)
    rec["checksum"][4] += 1
    panel = render.Panel(640, render.Panel.width_for(3, NAMES), 3, NAMES)
    canvas = np.zeros((640, 160 * 3 + panel.img.shape[1], 3), np.uint8)
    frames = []
    writer = type("W", (), {"append_data": lambda self, f: frames.append(f.copy())})()
    with pytest.raises(render.ReplayError):
        render.film_episode(env, 3, rec, render.NoOverlay(), panel, canvas, 3, writer, "x", print)
    assert len(frames) == 4


# ----------------------------------------------------------------------------- through the video


def test_forced_attention_and_policy_show_in_the_video(tiny_checkpoint, tmp_path, monkeypatch):
    """One-hot attention on cell (2, 5) and a policy sure of RIGHT: compared with the same game without
    overlay, the video changes inside that cell's field and nowhere else, and RIGHT has the one full bar."""
    real_forward = ppo_attention.Agent.forward

    def forced(self, x):
        logits, value, attention = real_forward(self, x)
        logits = torch.tensor([[-30.0, -30.0, 30.0, -30.0]]).expand_as(logits)
        return logits, value, torch.as_tensor(one_hot_attention(2, 2, 5))[None].expand_as(attention)

    monkeypatch.setattr(ppo_attention.Agent, "forward", forced)
    videos = {}
    for overlay in ("attention", "none"):
        args = render.Args(checkpoint=tiny_checkpoint, out=str(tmp_path / f"{overlay}.mp4"), overlay=overlay)
        args.max_steps, args.scale = 12, 3
        path, games, size = render.main(args)
        videos[overlay] = read_video(path)
        assert size == video_size(3) and games[0][1] == 12
    field = field_mask(2, 5, scale=3)
    inside = np.zeros_like(field)  # the field shrunk, and grown, by 4 px: H.264 blurs the edges
    inside[4:-4, 4:-4] = field[:-8, :-8] & field[8:, 8:] & field[:-8, 8:] & field[8:, :-8]
    near = np.zeros_like(field)
    for dy in range(-4, 5, 2):
        for dx in range(-4, 5, 2):
            near |= np.roll(field, (dy, dx), (0, 1))
    for with_overlay, without in zip(videos["attention"], videos["none"]):
        diff = np.abs(with_overlay[:630, :480].astype(int) - without[:630, :480].astype(int)).max(-1)
        assert np.median(diff[inside]) > 60
        assert np.percentile(diff[~near], 99.9) < 25
    panel = render.Panel(video_size(3)[0], render.Panel.width_for(3, NAMES), 3, NAMES)
    panel_img = videos["attention"][5][:, 480:]
    width = panel.bar_box(0)[3] - panel.bar_box(0)[2]
    assert bar_fill(panel, panel_img, 2, render.TAKEN) >= width - 4
    assert all(bar_fill(panel, panel_img, i, render.TRACK) >= width - 4 for i in (0, 1, 3))


@pytest.mark.parametrize(
    "overlay, extra",
    [
        ("attention", []),
        ("saliency", ["--method", "gradient", "--target", "action"]),
        ("tree", []),
        ("none", ["--scale", "2", "--episodes", "2", "--greedy"]),
    ],
)
def test_each_overlay_end_to_end(tiny_checkpoint, tmp_path, overlay, extra):
    out = tmp_path / "video.mp4"
    res = run_render("--checkpoint", tiny_checkpoint, "--out", out, "--overlay", overlay, "--max-steps", 8, *extra)
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}" in res.stdout and "score" in res.stdout
    assert "filming" in res.stderr  # progress
    frames = read_video(out)
    episodes, scale = (2, 2) if overlay == "none" else (1, 3)
    assert len(frames) == 8 * episodes
    assert frames[0].shape == (*video_size(scale), 3)
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]


def test_default_output_goes_next_to_the_checkpoint_and_force_replaces_it(tiny_checkpoint):
    out = os.path.join(os.path.dirname(tiny_checkpoint), "none_seed7.mp4")
    with open(out, "wb") as f:
        f.write(b"old video")
    res = run_render("--checkpoint", tiny_checkpoint, "--overlay", "none", "--seed", 7, "--max-steps", 3, "--force")
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}" in res.stdout
    assert len(read_video(out)) == 3


# ----------------------------------------------------------------------------- bad input


BAD_INPUT = {  # case: (arguments, what the one line must say)
    "missing": (["--checkpoint", "/nonexistent/run.pt"], "does not exist"),
    "corrupt": (["--checkpoint", "CORRUPT"], "not a readable checkpoint"),
    "scale 0": (["--checkpoint", "TINY", "--scale", "0"], "--scale"),
    "folder missing": (["--checkpoint", "TINY", "--out", "/nonexistent/dir/v.mp4"], "does not exist"),
    "exists": (["--checkpoint", "TINY", "--out", "OUTDIR/old.mp4"], "--force"),
    "baseline attention": (["--checkpoint", "BASELINE"], "no attention module"),
}


@pytest.fixture(scope="module")
def bad_input_results(tiny_checkpoint, tiny_baseline_checkpoint, tmp_path_factory):
    """Every bad-input command, run at the same time (each spends seconds importing torch)."""
    folder = tmp_path_factory.mktemp("bad")
    (folder / "run.pt").write_bytes(b"this is not a checkpoint")
    (folder / "old.mp4").write_bytes(b"keep me")
    names = {"TINY": tiny_checkpoint, "BASELINE": tiny_baseline_checkpoint, "CORRUPT": folder / "run.pt"}
    procs = {
        case: subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "render.py")]
            + [str(names.get(a, a)).replace("OUTDIR", str(folder)) for a in argv]
            + ["--max-steps", "2"] * ("--max-steps" not in argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for case, (argv, _) in BAD_INPUT.items()
    }
    results = {case: (p.wait(timeout=120), p.stderr.read()) for case, p in procs.items()}
    for p in procs.values():
        p.stdout.close(), p.stderr.close()
    return results, folder


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_sentence(case, bad_input_results):
    results, folder = bad_input_results
    code, stderr = results[case]
    assert code not in (0, None)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and BAD_INPUT[case][1] in lines[0], stderr
    assert "Traceback" not in stderr
    assert sorted(os.listdir(folder)) == ["old.mp4", "run.pt"]  # nothing written, nothing overwritten
    assert (folder / "old.mp4").read_bytes() == b"keep me"


@pytest.mark.parametrize(
    "changes, expect",
    [
        (dict(scale=9), "--scale"),
        (dict(fps=-1), "--fps"),
        (dict(max_steps=0), "--max-steps"),
        (dict(episodes=0), "--episodes"),
        (dict(samples=0), "--samples"),
        (dict(out="video.gif"), ".mp4"),
        (dict(overlay="tree", checkpoint="BASELINE"), "no attention module"),
        (dict(overlay="saliency", checkpoint="BASELINE"), "--target action or value"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(
    changes, expect, tiny_checkpoint, tiny_baseline_checkpoint, tmp_path
):
    """The same ValueError that the command line turns into one line (shown above for a few cases)."""
    changes = dict(changes, out=str(tmp_path / changes.get("out", "v.mp4")))
    if changes.get("checkpoint") == "BASELINE":
        changes["checkpoint"] = tiny_baseline_checkpoint
    args = render.Args(**{"checkpoint": tiny_checkpoint, **changes})
    with pytest.raises(ValueError, match=re.escape(expect)):
        render.main(args)
    assert not list(tmp_path.iterdir())


def test_unknown_overlay_is_a_usage_error(tiny_checkpoint):
    res = run_render("--checkpoint", tiny_checkpoint, "--overlay", "heatmap")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "heatmap" in res.stderr and "attention" in res.stderr  # names the choices
