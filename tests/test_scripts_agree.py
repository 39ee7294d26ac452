"""The three explanation scripts play through `play.play`: for the same seed they see the same game."""

import json

import numpy as np
import pytest

import overlays
import relevance_tree
import render
import saliency
from agents import load_checkpoint
from play import play


@pytest.mark.slow
def test_saliency_tree_and_render_follow_the_play_loop_step_for_step(tiny_checkpoint, tmp_path):
    agent, meta = load_checkpoint(tiny_checkpoint)
    game = list(play(agent, meta["env_id"], seed=3))  # the reference: a whole game, sampled actions
    steps = [5, 12, len(game) - 1]
    common = ["--checkpoint", tiny_checkpoint, "--seed", "3", "--no-cuda", "--steps", *map(str, steps)]

    out = saliency.main([*common, "--method", "gradient", "--out", str(tmp_path / "s")])
    data = np.load(f"{out}/saliency.npz")
    assert list(data["episode_actions"]) == [s.action for s in game]
    assert np.array_equal(data["observations"], np.stack([game[t].obs for t in steps]))

    out = relevance_tree.main([*common, "--depth", "1", "--out", str(tmp_path / "t")])
    for t in steps:
        doc = json.load(open(f"{out}/step_{t:05d}.json"))
        assert doc["action"] == game[t].action

    result = render.main(["--checkpoint", tiny_checkpoint, "--seed", "3", "--no-cuda", "--overlay", "none",
                          "--scale", "2", "--out", str(tmp_path / "r")])  # fmt: skip
    (played,) = result["agents"][0]["games"]
    assert (played["score"], played["steps"]) == (game[-1].score, len(game))
    frames = render.imageio.get_reader(result["path"])
    for t, frame in enumerate(frames):
        if t in steps:  # the game part of the video is the colour frame, scaled (H.264 changes it a little)
            shown = np.asarray(frame)[:420, :320].astype(int)
            assert np.abs(shown - overlays.upscale(game[t].frame, 2)).mean() < 4
