"""Tests of render.py: the overlays against the receptive-field geometry, the panel, every overlay end to end,
side-by-side agents, the headless evaluation, Ctrl-C, output folders and bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from conftest import tiny_args
from PIL import Image

import overlays
import ppo_attention
import render
from agents import load_checkpoint
from cli import exit_on_bad_input
from play import Step, play
from ppo_attention import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["NOOP", "FIRE", "RIGHT", "LEFT"]  # Breakout


def run_render(*argv, timeout=300):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "render.py"), *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def render_main(argv: list, capsys=None) -> dict:
    return exit_on_bad_input(render.main, [str(a) for a in argv])


def read_video(path) -> list:
    with imageio.get_reader(path) as reader:
        return [np.asarray(f) for f in reader]


def block_width(scale: int) -> int:
    """Width of one agent's part of the video: the game scaled, and its panel; a multiple of 16."""
    return 160 * scale + 100 * scale + (-260 * scale) % 16


def field_mask(y: int, x: int, scale: int) -> np.ndarray:
    """Video pixels whose centre lies where attention unit (y, x) sees: input rows / columns [8k, 8k + 36),
    mapped onto the 210x160 frame (rows x 210/84, columns x 160/84), then scaled. Computed here from the
    design, independently of render.py's geometry."""
    r = (np.arange(210 * scale) + 0.5) / scale * 84 / 210  # video row centre -> input row
    c = (np.arange(160 * scale) + 0.5) / scale * 84 / 160
    rows = (r >= y * 8) & (r < y * 8 + 36)
    cols = (c >= x * 8) & (c < x * 8 + 36)
    return rows[:, None] & cols[None, :]


def grown(mask: np.ndarray, px: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-px, px + 1):
        for dx in range(-px, px + 1):
            out |= np.roll(mask, (dy, dx), (0, 1))
    return out


@pytest.fixture(scope="module")
def second_checkpoint(tmp_path_factory):
    """Another tiny attention agent, trained without the penalty: the other side of a side-by-side video."""
    return train(tiny_args(tmp_path_factory.mktemp("runs_coef0"), attn_coef=0.0, seed=2))[0]


# ----------------------------------------------------------------------------- what is drawn


def fake_step(probs, action, attention) -> Step:
    acts = {"attn_logits": torch.log(torch.as_tensor(attention)[None] + 1e-9)}
    frame = np.zeros((210, 160, 3), np.uint8)
    return Step(0, np.zeros((4, 84, 84), np.uint8), frame, acts, np.array(probs), 0.5, attention, action, False, 0, 0)


@pytest.mark.parametrize("probs", [[0, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
def test_panel_bars_follow_the_probabilities(probs):
    panel = render.Panel(block_width(3) - 480, 640, 3, "agent", NAMES)
    img = panel.render(fake_step(probs, 2, np.full((2, 7, 7), 1 / 49, np.float32)), "game", render.NoOverlay(3))
    for i, (p, (y0, y1, x0, x1)) in enumerate(zip(probs, panel.bars)):
        colour = np.array([255, 165, 30] if i == 2 else [90, 130, 200])  # TAKEN for the taken action, else BAR
        filled = (np.abs(img[(y0 + y1) // 2, x0 : x1 + 1].astype(int) - colour).max(-1) == 0).sum()
        assert abs(filled - p * (x1 - x0)) <= 1.5, (i, filled, p * (x1 - x0))


@pytest.mark.parametrize("cell", [(0, 0), (3, 5), (6, 2)])
def test_one_cell_of_attention_lights_exactly_its_receptive_field(cell):
    """Both heads on one unit: the frame brightens inside its field and nowhere else (outlines aside)."""
    attention = np.zeros((2, 7, 7), np.float32)
    attention[:, cell[0], cell[1]] = 1
    view = render.AttentionOverlay(2, 3).draw(fake_step([0.25] * 4, 0, attention))
    lit, field = view.max(-1) > 0, field_mask(*cell, 3)
    inner = ~grown(~field, 12)  # away from the outlines and labels drawn at the field's edge
    assert lit[inner].all() and not lit[~grown(field, 4)].any()
    # head 0's colour (it wins the tie) blended over black at full strength (1 = all of the head's mass)
    assert (view[inner] == np.round(overlays.OPACITY * overlays.head_colours(2)[0])).all()


def test_brightness_has_one_meaning_a_diffuse_map_is_dim():
    sharp, diffuse = np.zeros((2, 7, 7), np.float32), np.full((2, 7, 7), 1 / 49, np.float32)
    sharp[:, 3, 3] = 1
    views = [render.AttentionOverlay(2, 3).draw(fake_step([0.25] * 4, 0, a)) for a in (sharp, diffuse)]
    centre = field_mask(3, 3, 3) & ~grown(~field_mask(3, 3, 3), 12)
    assert views[0][centre].mean() > 2 * views[1][centre].mean()  # the same scale for every frame and agent


def test_agent_titles_count_training_steps_readably():
    """A 3,072-step run is not "0.00M steps"; the longest title of the shipped kind fits the smallest panel."""
    ours = dict(source="ppo_attention.py", attn_heads=2, args=dict(attn_coef=0.002))
    titles = {
        "attn-coef 0.002, 3,072 steps": ours | dict(global_step=3072),
        "attn-coef 0.002, 999,999 steps": ours | dict(global_step=999_999),
        "attn-coef 0.002, 1.02M steps": ours | dict(global_step=1_015_808),
        "no attention, 10.00M steps": ours | dict(global_step=10_000_000, attn_heads=0),
        "SB3 PPO, 256 steps": dict(source="SB3 PPO", global_step=256),
        "CleanRL ppo_atari.py": dict(source="CleanRL ppo_atari.py"),  # its files do not count steps
    }
    for title, meta in titles.items():
        assert render.agent_title(meta) == title
    panel = render.Panel(200, 420, 2, "attn-coef 0.0005, 999,999 steps", NAMES)  # --scale 2: the narrowest panel
    assert panel.pad + panel.font.getlength(panel.title) < panel.size[0] - panel.pad  # the title's font


def test_the_game_stays_visible_under_every_overlay():
    """A ball under the strongest attention, saliency or tree square keeps at least half its contrast with the
    background next to it: the overlays blend (at most OPACITY), they never paint over or saturate."""
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[100:104, 60:62] = (200, 72, 72)  # Breakout's ball, 2x4 px
    ball, beside = (slice(300, 312), slice(180, 186)), (slice(300, 312), slice(195, 201))  # at scale 3
    attention = np.zeros((2, 7, 7), np.float32)
    attention[:, 4, 3] = 1  # input rows 32..68, columns 24..60: frame rows 80..170, columns 46..114
    saliency84 = np.zeros((84, 84), np.float32)
    saliency84[30:50, 20:40] = 1  # the ball's neighbourhood is the most salient place
    tree = [dict(layer="attention", channel=0, relevance=1.0, box210=[80, 46, 170, 114], children=[])]
    views = {
        "attention": overlays.draw_attention(frame, attention, 3),
        "one head": overlays.draw_attention(frame, attention, 3, heads=[1]),
        "saliency": overlays.draw_saliency(frame, saliency84, 3),
        "tree": overlays.draw_tree(frame, tree, 3),
    }
    for name, view in views.items():
        contrast = np.abs(view[ball].astype(int).mean((0, 1)) - view[beside].astype(int).mean((0, 1))).max()
        assert contrast >= (1 - overlays.OPACITY) * 200 - 1, name
        assert name == "tree" or view[beside].max() > 0, name  # the overlay is there


def test_forced_attention_and_policy_show_in_the_video(tiny_checkpoint, tmp_path, monkeypatch):
    """One-hot attention on cell (2, 5) and a policy sure of RIGHT, through the whole pipeline: compared with the
    same game without overlay, the video changes inside that cell's field and only near it; RIGHT has a full bar."""
    real = ppo_attention.Agent.activations

    def forced(self, x):
        a = dict(real(self, x))
        a["logits"] = torch.tensor([[-30.0, -30.0, 30.0, -30.0]]).expand_as(a["logits"])
        a["attention"] = torch.zeros_like(a["attention"])
        a["attention"][:, :, 2, 5] = 1
        return a

    monkeypatch.setattr(ppo_attention.Agent, "activations", forced)
    videos = {}
    for overlay in ("attention", "none"):
        result = render_main(["--checkpoint", tiny_checkpoint, "--out", tmp_path / overlay, "--overlay", overlay,
                              "--max-steps", 12, "--greedy", "--no-cuda"])  # fmt: skip
        videos[overlay] = read_video(result["path"])
        assert tuple(result["size"]) == (640, block_width(3)) and result["frames"] == 12
    field = field_mask(2, 5, scale=3)
    for with_overlay, without in zip(videos["attention"], videos["none"]):
        diff = np.abs(with_overlay[:630, :480].astype(int) - without[:630, :480].astype(int)).max(-1)
        assert np.median(diff[~grown(~field, 12)]) > 60
        assert np.percentile(diff[~grown(field, 8)], 99.9) < 25
    panel = videos["attention"][5][:, 480:]
    bars = [row for row in panel if (np.abs(row.astype(int) - [255, 165, 30]).max(-1) < 40).sum() > 150]
    assert bars  # a long orange bar: RIGHT, taken with probability 1


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    "overlay, extra",
    [
        ("attention", []),
        ("saliency", ["--method", "gradient", "--target", "action"]),
        ("saliency", ["--method", "gradcam"]),
        ("tree", []),
        ("none", ["--scale", "2", "--episodes", "2", "--greedy"]),
    ],
)
@pytest.mark.slow
def test_each_overlay_end_to_end(tiny_checkpoint, tmp_path, overlay, extra):
    out = tmp_path / "video"
    res = run_render("--checkpoint", tiny_checkpoint, "--out", out, "--overlay", overlay, "--max-steps", 8, *extra)
    assert res.returncode == 0, res.stderr
    (name,) = os.listdir(out)
    assert f"wrote {out / name}" in res.stdout and "mean score" in res.stdout
    episodes, scale = (2, 2) if overlay == "none" else (1, 3)
    frames = read_video(out / name)
    assert len(frames) == 8 * episodes and frames[0].shape == (-(-210 * scale // 16) * 16, block_width(scale), 3)


@pytest.mark.slow
def test_side_by_side_video_and_headless_evaluation(tiny_checkpoint, second_checkpoint, tmp_path):
    """Two agents, each its own game from the same seed: one video twice as wide, as long as the longer game;
    the evaluation's scores are those of the play loop for the same seeds."""
    argv = ["--checkpoint", tiny_checkpoint, second_checkpoint, "--no-cuda", "--episodes", "2", "--seed", "4"]
    handler = signal.getsignal(signal.SIGINT)
    result = render_main([*argv, "--out", tmp_path / "v", "--json", tmp_path / "eval.json"])
    frames = read_video(result["path"])
    lengths = [[g["steps"] for g in agent["games"]] for agent in result["agents"]]
    assert frames[0].shape == (640, 2 * block_width(3), 3)
    assert len(frames) == sum(max(a, b) for a, b in zip(*lengths))
    assert os.path.basename(result["path"]) == "side_by_side_attention_seed4.mp4"
    saved = json.load(open(tmp_path / "eval.json"))
    assert saved["agents"] == json.loads(json.dumps(result["agents"]))
    for path, agent in zip((tiny_checkpoint, second_checkpoint), saved["agents"]):
        model, meta = load_checkpoint(path)
        for game in agent["games"]:
            steps = list(play(model, meta["env_id"], seed=game["seed"]))
            assert (game["score"], game["steps"]) == (steps[-1].score, len(steps))
        scores = [g["score"] for g in agent["games"]]
        assert agent["score_mean"] == pytest.approx(np.mean(scores)) and len(agent["attention_entropy_mean"]) == 2
        assert agent["score_sd"] == pytest.approx(np.std(scores, ddof=1))
    headless = render_main([*argv, "--no-video"])
    assert headless["path"] is None and headless["agents"] == result["agents"]  # the video changes nothing
    assert signal.getsignal(signal.SIGINT) is handler  # render's Ctrl-C handler is gone again


def test_json_goes_into_a_new_folder_and_not_into_a_folder_name(tiny_checkpoint, tmp_path, capsys):
    """--json runs/eval.json on a fresh clone: runs/ is made; a folder given as --json is one sentence."""
    path = tmp_path / "runs" / "eval.json"  # runs/ does not exist yet
    argv = ["--checkpoint", tiny_checkpoint, "--no-video", "--max-steps", 3, "--no-cuda"]
    result = render_main([*argv, "--json", path])
    assert json.load(open(path))["agents"] == json.loads(json.dumps(result["agents"]))
    with pytest.raises(SystemExit) as stopped:
        render_main([*argv, "--json", tmp_path])
    assert (
        stopped.value.code
        == f"error: --json '{tmp_path}' is a folder; give a file name, e.g. {path.parent.parent / 'eval.json'}."
    )


def test_stills_are_the_videos_frames_without_its_compression(tiny_checkpoint, tmp_path, capsys):
    """--stills 0 4 9 of a 6-frame video: frames 0 and 4 as PNG, each the decoded video frame up to H.264's loss;
    frame 9 does not exist and the summary says so."""
    result = render_main(["--checkpoint", tiny_checkpoint, "--out", tmp_path, "--max-steps", 6, "--stills", 0, 4, 9,
                          "--greedy", "--no-cuda"])  # fmt: skip
    assert [os.path.basename(p) for p in result["stills"]] == ["attention_seed1_frame00000.png",
                                                               "attention_seed1_frame00004.png"]  # fmt: skip
    video = read_video(result["path"])
    stills = [np.asarray(Image.open(p).convert("RGB")).astype(int) for p in result["stills"]]
    for still, frame in zip(stills, (video[0], video[4])):
        assert still.shape == frame.shape and np.abs(still - frame).mean() < 3
    assert np.abs(stills[0] - stills[1]).max() > 100  # two different steps, not one picture twice
    assert "no frame 9" in capsys.readouterr().out


def test_default_folder_and_force(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = render_main(["--checkpoint", tiny_checkpoint, "--overlay", "none", "--max-steps", 3, "--seed", 7])
    folder = os.path.dirname(first["path"])
    run_name = os.path.basename(os.path.dirname(tiny_checkpoint))
    assert os.path.dirname(folder) == os.path.join("runs", run_name) and os.path.basename(folder).startswith("video__")
    again = render_main(["--checkpoint", tiny_checkpoint, "--overlay", "none", "--max-steps", 2, "--seed", 7,
                         "--out", folder, "--force"])  # fmt: skip
    assert again["path"] == first["path"] and len(read_video(again["path"])) == 2


@pytest.mark.slow
def test_ctrl_c_keeps_a_decodable_video_of_what_was_filmed(tiny_checkpoint, tmp_path):
    out = tmp_path / "v"
    proc = subprocess.Popen(
        [sys.executable, "render.py", "--checkpoint", tiny_checkpoint, "--out", str(out), "--episodes", "50"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = out / "attention_seed1.mp4.partial.mp4"
    deadline = time.time() + 120
    while time.time() < deadline and not (partial.exists() and partial.stat().st_size > 20000):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert os.listdir(out) == ["attention_seed1.mp4"]
    said = stdout + stderr  # each said once: the press is heard, then the stop
    assert said.count("frames filmed so far") == 1 and said.count("stopped by Ctrl-C") == 1, said
    assert "stopped by Ctrl-C: only finished games are counted." in stderr
    frames = read_video(out / "attention_seed1.mp4")
    assert len(frames) > 10 and f"({len(frames)} frames" in stdout


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_files(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "run.pt").write_bytes(b"this is not a checkpoint")
    (folder / "old.json").write_text("keep me")
    pong = torch.load(tiny_checkpoint, weights_only=True)
    pong["env_id"] = "PongNoFrameskip-v4"
    torch.save(pong, folder / "pong.pt")
    return folder


BAD_INPUT = {  # case: (arguments, what the one line must say)
    "missing": (["--checkpoint", "/nonexistent/run.pt"], "does not exist"),
    "corrupt": (["--checkpoint", "BAD/run.pt"], "not a readable checkpoint"),
    "scale": (["--checkpoint", "TINY", "--scale", "1"], "--scale must be between 2 and 8"),
    "episodes": (["--checkpoint", "TINY", "--episodes", "0"], "--episodes must be positive"),
    "out is a file": (["--checkpoint", "TINY", "--out", "BAD/old.json"], "is a file"),
    "json exists": (["--checkpoint", "TINY", "--json", "BAD/old.json"], "--force"),
    "baseline attention": (
        ["--checkpoint", "BASELINE", "--overlay", "attention"],
        "use --overlay saliency --target action",
    ),
    "stills without video": (["--checkpoint", "TINY", "--no-video", "--stills", "3"], "leave out --no-video"),
    "negative still": (["--checkpoint", "TINY", "--stills", "-1"], "frame numbers from 0"),
    "two games": (["--checkpoint", "TINY", "BAD/pong.pt"], "different games"),
    "mixed attention": (["--checkpoint", "TINY", "BASELINE", "--overlay", "attention"], "without attention"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_sentence(case, tiny_checkpoint, tiny_baseline_checkpoint, bad_files, capsys):
    names = {"TINY": tiny_checkpoint, "BASELINE": tiny_baseline_checkpoint}
    argv = [names.get(a, a.replace("BAD", str(bad_files))) for a in BAD_INPUT[case][0]]
    before = sorted(os.listdir(bad_files))
    with pytest.raises(SystemExit) as exit_:
        render_main([*argv, "--max-steps", 2, "--out", bad_files / "fresh"] if "--out" not in argv else argv)
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message
    assert BAD_INPUT[case][1] in message, message
    assert sorted(os.listdir(bad_files)) == before and (bad_files / "old.json").read_text() == "keep me"


def test_an_agent_without_attention_gets_a_working_default(tiny_baseline_checkpoint, tmp_path):
    result = render_main(
        ["--checkpoint", tiny_baseline_checkpoint, "--max-steps", 3, "--samples", 2, "--out", tmp_path]
    )
    assert os.path.basename(result["path"]) == "saliency-smoothgrad-action_seed1.mp4" and result["frames"] == 3
    assert result["agents"][0]["attention_entropy_mean"] is None


@pytest.mark.slow
def test_unknown_overlay_is_a_usage_error(tiny_checkpoint):
    res = run_render("--checkpoint", tiny_checkpoint, "--overlay", "heatmap")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "heatmap" in res.stderr and "attention" in res.stderr  # names the choices


@pytest.mark.slow
def test_missing_checkpoint_as_a_process(tmp_path):
    res = run_render("--checkpoint", tmp_path / "nope.pt")
    assert res.returncode == 1 and res.stderr.strip() == f"error: checkpoint '{tmp_path / 'nope.pt'}' does not exist."
    assert not os.path.exists(os.path.join(ROOT, "runs", "nope"))
    shutil.rmtree(tmp_path)
