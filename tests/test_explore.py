"""Tests of render.py --tensorboard: the run is read back with TensorBoard's own event reader and compared
with the play loop (`play.play`, same seeds); the projector files; several games; bad input."""

import io
import math
import os

import cv2
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

import render
from agents import load_checkpoint
from cli import exit_on_bad_input
from play import play
from ppo_attention import attention_entropy

NAMES = ["NOOP", "FIRE", "RIGHT", "LEFT"]  # Breakout
STEPS, SEED = 5, 3


def render_main(*argv):
    return exit_on_bad_input(render.main, [str(a) for a in argv])


def read_run(folder):
    acc = event_accumulator.EventAccumulator(
        str(folder), size_guidance={k: 0 for k in event_accumulator.DEFAULT_SIZE_GUIDANCE}
    )
    return acc.Reload()


def scalars(acc, tag) -> dict:
    return {e.step: e.value for e in acc.Scalars(tag)}


def text(acc, tag) -> str:
    return acc.Tensors(f"{tag}/text_summary")[0].tensor_proto.string_val[0].decode()


def image(event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))


def small(view: np.ndarray) -> np.ndarray:
    """A view drawn for the video, as the TensorBoard run holds it: at scale 2."""
    return cv2.resize(view, (320, 420), interpolation=cv2.INTER_AREA)


def projector(folder, tag):
    """(metadata rows with the header first, tensor, sprite size) of one embedding."""
    sub = os.path.join(folder, "00000", tag)
    rows = [line.split("\t") for line in open(os.path.join(sub, "metadata.tsv")).read().splitlines()]
    mat = np.loadtxt(os.path.join(sub, "tensors.tsv"), delimiter="\t", ndmin=2)
    return rows, mat, Image.open(os.path.join(sub, "sprite.png")).size


@pytest.fixture(scope="module")
def games(tiny_checkpoint):
    """The play loop's two games, the ground truth: seeds SEED and SEED + 1, STEPS steps each."""
    agent, meta = load_checkpoint(tiny_checkpoint)
    return agent, [list(play(agent, meta["env_id"], SEED + e, max_steps=STEPS)) for e in range(2)]


@pytest.fixture(scope="module")
def explored(tiny_checkpoint, tmp_path_factory):
    """Two games of the attention agent, headless (no video), with the masked features in the projector."""
    folder = tmp_path_factory.mktemp("explore") / "run"
    result = render_main("--checkpoint", tiny_checkpoint, "--tensorboard", folder, "--no-video", "--embed-masked",
                         "--episodes", 2, "--max-steps", STEPS, "--seed", SEED, "--no-cuda")  # fmt: skip
    return folder, read_run(folder), result


def test_one_attention_image_per_step_drawn_as_in_the_video(explored, games):
    folder, acc, _ = explored
    agent, played = games
    assert sorted(acc.Tags()["images"]) == ["game1/attention", "game2/attention"]
    for e, steps in enumerate(played):
        events = acc.Images(f"game{e + 1}/attention")
        assert [ev.step for ev in events] == list(range(STEPS))
        for ev, st in zip(events, steps):
            assert (ev.height, ev.width) == (420, 320)
            assert np.array_equal(image(ev), small(render.AttentionOverlay(2, 3).draw(st)))


def test_scalars_are_the_play_loops(explored, games):
    _, acc, result = explored
    agent, played = games
    for e, steps in enumerate(played):
        g = f"game{e + 1}"
        probs = np.array([[scalars(acc, f"{g}/policy/{n}")[t] for n in NAMES] for t in range(STEPS)])
        assert probs.sum(1) == pytest.approx(np.ones(STEPS), abs=1e-5)
        assert probs == pytest.approx(np.array([st.probs for st in steps]), abs=1e-6)
        for name in ("value", "reward", "score"):
            assert scalars(acc, f"{g}/{name}") == pytest.approx({st.t: getattr(st, name) for st in steps}, rel=1e-5)
        for h in range(2):
            expected = {st.t: float(attention_entropy(st.activations["attn_logits"])[0, h]) for st in steps}
            assert scalars(acc, f"{g}/attention_entropy/head{h}") == pytest.approx(expected, rel=1e-5)
        assert f"game {e + 1}, seed {SEED + e}: {steps[-1].score:g} ({STEPS} steps)" in text(acc, "scores")
    assert "embed_masked: `True`" in text(acc, "settings")
    assert [g["score"] for g in result["agents"][0]["games"]] == [steps[-1].score for steps in played]


def test_projector_holds_every_step_of_both_games(explored, games):
    folder, _, _ = explored
    agent, played = games
    steps = played[0] + played[1]
    config = open(os.path.join(folder, "projector_config.pbtxt")).read()
    assert 'tensor_name: "fc:00000"' in config and 'tensor_name: "masked:00000"' in config
    for tag, dim in (("fc", 512), ("masked", 3136)):
        rows, mat, sprite = projector(folder, tag)
        assert rows[0] == ["game", "step", "action", "value", "score", "reward", "entropy_h0", "entropy_h1"]
        assert [(int(r[0]), int(r[1]), r[2]) for r in rows[1:]] == [
            (e + 1, st.t, NAMES[st.action]) for e in range(2) for st in played[e]
        ]
        assert [float(r[3]) for r in rows[1:]] == pytest.approx([st.value for st in steps], abs=1e-4)
        assert mat.shape == (2 * STEPS, dim)
        assert mat == pytest.approx(np.stack([st.activations[tag][0].flatten().numpy() for st in steps]), abs=1e-5)
        assert sprite == (math.ceil(math.sqrt(2 * STEPS)) * 64,) * 2  # 4 x 64 px thumbnails a side


def test_with_video_another_overlay_and_thinned_points(tiny_checkpoint, games, tmp_path, monkeypatch):
    """Video and run from one play: the saliency view is the video's, the attention is drawn too; more steps
    than MAX_POINTS are thinned evenly, and thumbnails shrink so that the sprite fits SPRITE_PX."""
    monkeypatch.setattr(render, "MAX_POINTS", 7)
    monkeypatch.setattr(render, "SPRITE_PX", 100)
    agent, played = games
    drawn, draw = [], render.SaliencyOverlay.draw
    monkeypatch.setattr(render.SaliencyOverlay, "draw", lambda self, st: drawn.append(st.t) or draw(self, st))
    result = render_main("--checkpoint", tiny_checkpoint, "--tensorboard", tmp_path / "tb", "--out", tmp_path / "v",
                         "--overlay", "saliency", "--method", "gradient", "--target", "action",
                         "--episodes", 2, "--max-steps", STEPS, "--seed", SEED, "--no-cuda")  # fmt: skip
    assert result["frames"] == 2 * STEPS and len(drawn) == 2 * STEPS  # each view drawn once, for both
    acc = read_run(tmp_path / "tb")
    assert sorted(acc.Tags()["images"]) == ["game1/attention", "game1/saliency", "game2/attention", "game2/saliency"]
    args = render.Args(checkpoint=(tiny_checkpoint,), method="gradient", target="action")
    saliency = render.SaliencyOverlay(agent, args, NAMES)
    for ev, st in zip(acc.Images("game1/saliency"), played[0]):
        assert np.array_equal(image(ev), small(saliency.draw(st)))
    rows, mat, sprite = projector(tmp_path / "tb", "fc")
    kept = [0, 2, 3, 4, 6, 8, 9]  # 7 of the 10 steps, evenly: 0, 1.5, 3, ..., 9, rounded half to even
    assert [(int(r[0]), int(r[1])) for r in rows[1:]] == [(i // STEPS + 1, i % STEPS) for i in kept]
    assert mat.shape == (7, 512) and sprite == (3 * 33, 3 * 33)  # 100 // ceil(sqrt(7)) = 33 px


def test_an_existing_run_is_refused_without_force_and_replaced_with_it(tiny_checkpoint, tmp_path, capsys):
    folder = tmp_path / "tb"
    argv = ["--checkpoint", tiny_checkpoint, "--tensorboard", folder, "--no-video", "--overlay", "none", "--no-cuda"]
    render_main(*argv, "--max-steps", 3)
    assert "writing the projector: 3 of 3 steps" in capsys.readouterr().err  # progress
    before = sorted(os.listdir(folder))
    for where in (folder, tmp_path):  # a run in the folder, or below it
        with pytest.raises(SystemExit) as exit_:
            render_main(*argv[:3], where, *argv[4:], "--max-steps", 2)
        message = exit_.value.code
        assert message.startswith("error: ") and "--force" in message and "\n" not in message
    assert sorted(os.listdir(folder)) == before
    render_main(*argv, "--max-steps", 2, "--force")
    acc = read_run(folder)
    assert len([f for f in os.listdir(folder) if "tfevents" in f]) == 1
    assert sorted(scalars(acc, "game1/value")) == [0, 1] and len(projector(folder, "fc")[0]) == 3


def test_an_agent_without_attention_gets_everything_but_attention(tiny_baseline_checkpoint, tmp_path):
    folder = tmp_path / "tb"
    render_main("--checkpoint", tiny_baseline_checkpoint, "--tensorboard", folder, "--no-video", "--overlay", "none",
                "--max-steps", 3, "--no-cuda")  # fmt: skip
    acc = read_run(folder)
    tags = acc.Tags()["images"] + acc.Tags()["scalars"]
    assert acc.Tags()["images"] == ["game1/frame"] and not [t for t in tags if "attention" in t]
    assert {f"game1/policy/{n}" for n in NAMES} | {"game1/value", "game1/score"} <= set(tags)
    rows, mat, _ = projector(folder, "fc")
    assert rows[0] == ["game", "step", "action", "value", "score", "reward"] and mat.shape == (3, 512)


def test_a_dqns_run_holds_its_q_values(cleanrl_dqn, tmp_path):
    folder = tmp_path / "tb"
    render_main("--checkpoint", cleanrl_dqn, "--env-id", "BreakoutNoFrameskip-v4", "--tensorboard", folder,
                "--no-video", "--overlay", "none", "--max-steps", 3, "--no-cuda")  # fmt: skip
    acc = read_run(folder)
    agent, meta = load_checkpoint(cleanrl_dqn, env_id="BreakoutNoFrameskip-v4")
    steps = list(play(agent, meta["env_id"], 1, max_steps=3, env_options=meta["env_options"]))
    q = np.array([[scalars(acc, f"game1/q_value/{n}")[t] for n in NAMES] for t in range(3)])
    assert q == pytest.approx(np.stack([st.activations["logits"][0].numpy() for st in steps]), abs=1e-6)
    assert scalars(acc, "game1/value") == pytest.approx({t: float(q[t].max()) for t in range(3)}, abs=1e-6)
    assert scalars(acc, "game1/policy/NOOP")[0] in (pytest.approx(0.9925), pytest.approx(0.0025))  # epsilon-greedy


def test_several_agents_are_refused(tiny_checkpoint, tiny_baseline_checkpoint, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        render_main("--checkpoint", tiny_checkpoint, tiny_baseline_checkpoint, "--tensorboard", tmp_path / "tb")
    assert exit_.value.code.startswith("error: --tensorboard explores one agent") and not os.listdir(tmp_path)
