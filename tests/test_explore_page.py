"""Tests of explore.py: the page's data against the play loop, saliency_maps and build_tree; an agent without
attention (its tree from Grad-CAM's peaks) and a DQN (its Q-values); bad input and Ctrl-C; and the page in a real
browser (Debian's headless Chromium driven by Selenium with the system driver, software WebGL): no console error,
the slider, a node's receptive field, the 3D view, and a DQN's page.

(tests/test_explore.py tests render.py's TensorBoard explorer.)"""

import base64
import io
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import explore
import overlays
from agents import load_checkpoint
from cli import exit_on_bad_input
from play import play
from relevance_tree import GRADCAM_LAYERS, LAYER_COLOURS, LAYERS, build_tree, gradcam_map, iter_nodes
from saliency import METHODS, as_float_input, collapse_frames, saliency_maps

BREAKOUT = "BreakoutNoFrameskip-v4"

SEED, STEPS, EVERY, SCALE = 3, (2, 12), 3, 2
KEPT = list(range(*STEPS, EVERY))  # 2, 5, 8, 11
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def explore_main(*argv):
    return exit_on_bad_input(explore.main, [str(a) for a in argv])


@pytest.fixture(scope="module")
def page(tiny_checkpoint, tmp_path_factory):
    """A page of 4 steps of the tiny attention agent, every saliency method (cheap settings); and it read back."""
    out = tmp_path_factory.mktemp("page")
    path = explore_main("--checkpoint", tiny_checkpoint, "--steps", *STEPS, "--every", EVERY, "--seed", SEED,
                        "--samples", 2, "--grid", 14, "--scale", SCALE, "--out", out, "--no-cuda")  # fmt: skip
    return path, explore.read_page(path)


@pytest.fixture(scope="module")
def game(tiny_checkpoint):
    """The ground truth: the play loop's steps for the same seed."""
    agent, meta = load_checkpoint(tiny_checkpoint)
    steps = list(play(agent, meta["env_id"], SEED, max_steps=STEPS[1]))
    return agent, [steps[t] for t in KEPT]


# ----------------------------------------------------------------------------- the page's data


def test_steps_and_decisions_are_the_play_loops(page, game):
    _, read = page
    agent, steps = game
    data = read["data"]["steps"]
    assert data["t"] == KEPT
    assert data["action"] == [s.action for s in steps] and data["score"] == [s.score for s in steps]
    assert data["forced"] == [s.forced for s in steps] and data["reward"] == [s.reward for s in steps]
    assert np.array(data["probs"]) == pytest.approx(np.stack([s.probs for s in steps]), abs=1e-6)
    assert data["value"] == pytest.approx([s.value for s in steps], abs=1e-6)


def test_frames_and_attention_overlays_are_the_videos_drawings(page, game):
    _, read = page
    _, steps = game
    images = read["images"]
    assert list(images) == ["frame", "attention", "head0", "head1", *[m for m in METHODS if m != "attention"], "tree"]
    for i, s in enumerate(steps):
        assert np.array_equal(images["frame"][i], overlays.upscale(s.frame, SCALE))
        assert np.array_equal(images["attention"][i], overlays.draw_attention(s.frame, s.attention, SCALE))
        for h in range(2):
            assert np.array_equal(images[f"head{h}"][i], overlays.draw_attention(s.frame, s.attention, SCALE, [h]))


def test_the_page_is_one_file_with_its_style_and_script_inlined(page):
    """static/explore.css and static/explore.js are inlined verbatim, and no element of the page loads a file."""
    path, _ = page
    text = open(path, encoding="utf-8").read()
    for name, tag in (("explore.css", "style"), ("explore.js", "script")):
        source = open(os.path.join(explore.STATIC, name), encoding="utf-8").read()
        assert f"<{tag}>{source}</{tag}>" in text and len(source) > 500
    assert text.count("<script") == 5  # the images, the data, the maps, plotly.js, the page's own script
    assert not re.search(r"<(script|img|link|iframe|source)\b[^>]*\b(src|href)\s*=", text)


def test_the_page_opens_on_the_attention_or_the_most_faithful_map(page):
    """Not on the bare game: on the agent's attention; without attention, on perturbation, IG from the blurred
    frames or the gradient (the most faithful maps of the README's faithfulness tables), else the first map."""
    path, read = page
    assert read["data"]["opens_on"] == "attention"
    assert '<option value="attention" selected>' in open(path).read() and open(path).read().count(" selected>") == 1
    methods = [m for m in METHODS if m != "attention"]
    for keys, first in (
        (["frame", *methods, "tree"], "perturbation"),
        (["frame", "gradcam", "smoothgrad", "ig_blur", "tree"], "ig_blur"),
        (["frame", "gradcam", "smoothgrad", "tree"], "gradcam"),
        (["frame", "tree"], "tree"),
    ):
        assert explore.opening_overlay(keys) == first, keys


def test_saliency_overlays_are_saliency_maps_drawn(page, game):
    """One saliency_maps call for the batch (explore.BATCH steps), its noise from a generator seeded with --seed."""
    _, read = page
    agent, steps = game
    methods = tuple(m for m in METHODS if m != "attention")
    maps = saliency_maps(agent, np.stack([s.obs for s in steps]), methods, "action", action=[s.action for s in steps],
                         samples=2, stride=14, generator=torch.Generator().manual_seed(SEED))  # fmt: skip
    assert read["data"]["methods"] == list(methods)
    for m in methods:
        for i, s in enumerate(steps):
            expected = overlays.draw_saliency(s.frame, collapse_frames(maps[m][i]).numpy(), SCALE)
            assert np.array_equal(read["images"][m][i], expected), (m, i)


def test_trees_are_build_trees(page, game):
    _, read = page
    agent, steps = game
    for i, s in enumerate(steps):
        tree = build_tree(agent, s.obs, 2, 3, activations=s.activations)
        rows = read["data"]["steps"]["tree"][i]
        nodes = [node for node, _ in iter_nodes(tree)]
        assert len(rows) == len(nodes) > 4
        for row, node in zip(rows, nodes):
            assert [LAYERS[row[0]], *row[1:4]] == [node["layer"], node["channel"], node["y"], node["x"]]
            assert row[4] == pytest.approx(node["relevance"], rel=1e-3) and row[9:13] == node["box210"]
            parent = nodes[row[5]] if row[5] >= 0 else None
            assert (parent is None and node in tree) or any(c is node for c in parent["children"])
            y0, x0, y1, x1 = node["box84"]
            assert row[7:9] == [(x0 + x1) / 2, (y0 + y1) / 2]  # where the node sits in the 3D view
        hidden = {n["channel"] for n in nodes if n["layer"] == "attn_hidden"}
        assert sorted(map(int, read["data"]["steps"]["hidden"][i])) == sorted(hidden)
        for c in hidden:
            got = np.array(read["data"]["steps"]["hidden"][i][str(c)])
            assert got == pytest.approx(s.activations["attn_hidden"][0, c].numpy(), abs=1e-4)
        assert np.array_equal(read["images"]["tree"][i], overlays.draw_tree(s.frame, tree, SCALE))


def test_activation_maps_are_the_agents_within_a_255th(page, game):
    _, read = page
    _, steps = game
    for i, s in enumerate(steps):
        expected = {layer: s.activations[layer][0].numpy() for layer in ("conv1", "conv2", "conv3", "attention")}
        expected |= {"input": s.obs.astype(np.float32), "floor": s.obs.max(0, keepdims=True).astype(np.float32)}
        for layer, want in expected.items():
            got, top = read["maps"][layer][i], want.reshape(len(want), -1).max(1)
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= top.max() / 510 * 1.001 + 1e-6, layer
            assert read["data"]["maps"][layer]["scale"][i] == pytest.approx(top.clip(min=1e-12).tolist(), rel=1e-5)


def check_gradcam_trees(read: dict, agent, steps: list, explained: list) -> int:
    """The page's trees of an agent without attention are build_tree's from Grad-CAM's peaks for the explained
    action, through GRADCAM_LAYERS, and the page keeps that Grad-CAM map (7x7) at each step; returns the nodes."""
    data, nodes_seen = read["data"], 0
    assert data["layers"] == list(GRADCAM_LAYERS) and data["keyed"] == "gradcam"
    obs = np.stack([s.obs for s in steps])
    cams = gradcam_map(agent, as_float_input(agent, obs), torch.as_tensor(explained))
    for i, (s, action) in enumerate(zip(steps, explained)):
        tree = build_tree(agent, s.obs, 2, 3, activations=s.activations, action=action)
        rows, nodes = data["steps"]["tree"][i], [node for node, _ in iter_nodes(tree)]
        assert [[GRADCAM_LAYERS[r[0]], *r[1:4]] for r in rows] == [
            [n["layer"], n["channel"], n["y"], n["x"]] for n in nodes
        ]
        assert all(r[1] == action for r in rows if r[0] == 0)  # a root's channel: the explained action
        kept = data["steps"]["hidden"][i]
        assert list(kept) == [str(action)] and np.array(kept[str(action)]) == pytest.approx(cams[i].numpy(), abs=1e-4)
        for r in rows:
            if r[0] == 0:  # a root's relevance is the map's value at its place
                assert r[4] == pytest.approx(float(cams[i, r[2], r[3]]), rel=1e-3)
        assert np.array_equal(read["images"]["tree"][i], overlays.draw_tree(s.frame, tree, SCALE))
        nodes_seen += len(nodes)
    return nodes_seen


def test_an_agent_without_attention_gets_the_tree_of_grad_cams_peaks_in_3d(tiny_baseline_checkpoint, tmp_path):
    path = explore_main("--checkpoint", tiny_baseline_checkpoint, "--steps", 0, 6, "--methods", "gradient",
                        "--scale", SCALE, "--out", tmp_path, "--no-cuda")  # fmt: skip
    read = explore.read_page(path)
    agent, meta = load_checkpoint(tiny_baseline_checkpoint)
    steps = list(play(agent, meta["env_id"], 1, max_steps=6))
    assert list(read["images"]) == ["frame", "gradient", "tree"] and read["data"]["heads"] == 0
    assert read["data"]["opens_on"] == "gradient" and '<option value="gradient" selected>' in open(path).read()
    assert "attention" not in read["maps"]
    assert check_gradcam_trees(read, agent, steps, [s.action for s in steps]) > 0  # the action taken's logit
    tree3d = read["data"]["figures"]["tree3d"]
    planes = [t["name"] for t in tree3d["data"] if t["type"] == "surface"]
    assert planes == ["input", "conv1", "conv2", "conv3", "gradcam"]  # no attention planes; Grad-CAM above conv3
    assert tree3d["layout"]["scene"]["zaxis"]["ticktext"] == planes
    legend = dict((k, text) for k, _, text in read["data"]["overlays"])["tree"]
    assert "Grad-CAM's peaks red" in legend and "the logit of the action taken" in legend
    assert "starts at the peaks of Grad-CAM on conv3 for the logit of the action taken" in open(path).read()


@pytest.fixture(scope="module")
def dqn_page(cleanrl_dqn, tmp_path_factory):
    """A page of 6 steps of a CleanRL DQN (its file does not name its game), and it read back."""
    path = explore_main("--checkpoint", cleanrl_dqn, "--env-id", BREAKOUT, "--steps", 0, 6, "--methods", "gradient",
                        "gradcam", "--scale", SCALE, "--out", tmp_path_factory.mktemp("dqn"), "--no-cuda")  # fmt: skip
    return path, explore.read_page(path)


def test_a_dqns_page_shows_its_q_values_and_explains_its_greedy_action(dqn_page, cleanrl_dqn):
    path, read = dqn_page
    data = read["data"]
    agent, meta = load_checkpoint(cleanrl_dqn, env_id=BREAKOUT)
    steps = list(play(agent, BREAKOUT, 1, max_steps=6, env_options=meta["env_options"]))
    q = np.stack([s.activations["logits"][0].numpy() for s in steps])
    assert data["q_values"] and data["value_name"] == "max Q(s, a)" and data["epsilon"] == 0.01
    assert np.array(data["steps"]["q"]) == pytest.approx(q, abs=1e-6)
    assert data["steps"]["value"] == pytest.approx(q.max(1).tolist(), abs=1e-6)  # max_a Q(s, a)
    decision = data["figures"]["decision"]
    titles = [a["text"] for a in decision["layout"]["annotations"]]
    assert titles == ["Q(s, a) at this step (bars: lowest to highest)", "Q(s, a) over the game",
                      "max Q(s, a) over the game"]  # fmt: skip
    for a in range(4):  # the curves are the Q-values over the game
        assert decision["data"][1 + a]["y"] == pytest.approx(q[:, a].tolist(), abs=1e-6)
    legends = {k: text for k, _, text in data["overlays"]}
    for key in ("gradient", "gradcam", "tree"):  # saliency.py's and render.py's words for a DQN's target
        assert "Q(s, a*), the greedy action's Q-value" in legends[key] and "logit" not in legends[key]
    assert check_gradcam_trees(read, agent, steps, q.argmax(1).tolist()) > 0  # the greedy action's Q-value
    assert "It takes the greedy action, the highest, or with probability 0.01 a random one" in open(path).read()


# ----------------------------------------------------------------------------- bad input, folders, Ctrl-C

BAD_INPUT = {  # case: (arguments, what the one line must say)
    "missing": (["--checkpoint", "/nonexistent/run.pt"], "does not exist"),
    "steps": (["--checkpoint", "TINY", "--steps", 5, 5], "--steps must be two numbers"),
    "every": (["--checkpoint", "TINY", "--every", 0], "--every must be at least 1"),
    "scale": (["--checkpoint", "TINY", "--scale", 9], "--scale must be between 2 and 4"),
    "samples": (["--checkpoint", "TINY", "--samples", 0], "--samples and --grid must be at least 1"),
    "threads": (["--checkpoint", "TINY", "--threads", -1], "--threads must be 0 or more"),
    "baseline attention target": (["--checkpoint", "BASELINE", "--target", "attention"], "no attention module"),
    "beyond the game": (["--checkpoint", "TINY", "--steps", 5000, 5002], "the game ended before step 5000"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_sentence(case, tiny_checkpoint, tiny_baseline_checkpoint, tmp_path):
    names = {"TINY": tiny_checkpoint, "BASELINE": tiny_baseline_checkpoint}
    argv = [names.get(a, a) for a in BAD_INPUT[case][0]]
    with pytest.raises(SystemExit) as exit_:
        explore_main(*argv, "--methods", "gradient", "--out", tmp_path / "out", "--no-cuda")
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message
    assert BAD_INPUT[case][1] in message, message
    assert not (tmp_path / "out").exists()  # nothing written, no empty folder left


def test_an_out_folder_with_files_is_refused_without_force(tiny_checkpoint, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as exit_:
        explore_main("--checkpoint", tiny_checkpoint, "--out", tmp_path, "--steps", 0, 1, "--no-cuda")
    assert "--force" in exit_.value.code and os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.slow
def test_ctrl_c_leaves_no_file(tiny_checkpoint, tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(explore, "page_html", interrupted)
    with pytest.raises(SystemExit) as exit_:
        explore_main("--checkpoint", tiny_checkpoint, "--out", tmp_path / "out", "--steps", 0, 1, "--no-cuda")
    assert exit_.value.code == 130 and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the page in a real browser


@pytest.fixture(scope="module")
def browser(page):
    """Headless Chromium (Debian's, software WebGL) with the page loaded. Fails, never skips, without it."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: install Debian's chromium and chromium-driver (.ci/run does)")
    os.environ["SE_AVOID_STATS"] = "true"  # Selenium Manager stays off the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--enable-unsafe-swiftshader", "--window-size=1600,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get("file://" + os.path.abspath(page[0]))
        WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready") == "yes")
        yield driver
    finally:
        driver.quit()


def severe(driver) -> list:
    """The console's errors since the last call."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def element_pixels(driver, element_id: str) -> np.ndarray:
    """What the browser shows of an element, as (h, w, 3) pixels."""
    png = driver.find_element("id", element_id).screenshot_as_png
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


@pytest.mark.slow
def test_the_page_opens_without_console_errors(browser, page):
    assert severe(browser) == []
    assert browser.find_element("id", "stats").text.startswith(f"step {KEPT[0]}")
    overlay, legend, src = browser.execute_script(
        "const e = id => document.getElementById(id); return [e('overlay').value, e('legend').textContent, e('frame').src]"
    )
    assert overlay == "attention" and legend == explore.LEGENDS["attention"]  # on the attention, not the game only
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))
    assert np.array_equal(shown, page[1]["images"]["attention"][0])


@pytest.mark.slow
def test_the_slider_the_arrow_keys_and_play_change_the_frame(browser):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    before, src = element_pixels(browser, "frame"), browser.find_element("id", "frame").get_attribute("src")
    browser.find_element("id", "slider").send_keys(Keys.END)  # the learner drags the slider to the last step
    assert browser.find_element("id", "stats").text.startswith(f"step {KEPT[-1]}")
    assert browser.find_element("id", "frame").get_attribute("src") != src
    assert np.abs(element_pixels(browser, "frame") - before).max(-1).mean() > 0.5  # the game moved on
    browser.find_element("tag name", "body").send_keys(Keys.ARROW_LEFT)  # and the arrow keys step back
    assert browser.find_element("id", "stats").text.startswith(f"step {KEPT[-2]}")
    browser.find_element("id", "slider").send_keys(Keys.HOME)
    browser.find_element("id", "play").click()  # plays to the last step, then stops by itself
    WebDriverWait(browser, 10).until(lambda d: d.find_element("id", "stats").text.startswith(f"step {KEPT[-1]}"))
    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return S.timer") is None)
    assert severe(browser) == []


@pytest.mark.slow
def test_selecting_a_node_draws_its_receptive_field(browser, page):
    from selenium.webdriver.support.ui import Select

    _, read = page
    step = browser.execute_script("return S.i")
    rows = read["data"]["steps"]["tree"][step]
    k = next(k for k, r in enumerate(rows) if LAYERS[r[0]] == "conv2")
    y0, x0, y1, x1 = rows[k][9:13]
    before = element_pixels(browser, "frame")
    Select(browser.find_element("id", "node")).select_by_value(str(k))
    rect = browser.find_elements("css selector", "#boxes rect")[-1]  # the chosen node's, drawn last
    assert [float(rect.get_attribute(a)) for a in ("x", "y", "width", "height")] == [x0, y0, x1 - x0, y1 - y0]
    shown = element_pixels(browser, "frame")
    changed = np.abs(shown - before).max(-1) > 30
    zoom = shown.shape[1] / 160  # CSS pixels per frame pixel
    top = changed[round(y0 * zoom) - 2 : round(y0 * zoom) + 3, round(x0 * zoom) + 3 : round(x1 * zoom) - 3]
    assert top.any(0).mean() > 0.9  # the whole top edge of the receptive field is drawn
    near = np.zeros_like(changed)  # every change lies on the outline of a node of the same channel
    for r in rows:
        if r[:2] == rows[k][:2]:
            y, x = (round(max(v - 1, 0) * zoom) for v in r[9:11])
            near[y : round((r[11] + 1) * zoom), x : round((r[12] + 1) * zoom)] = True
    assert changed.sum() > 100 and not changed[~near].any()
    colour = np.array([int(LAYER_COLOURS["conv2"][i : i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(shown[changed] - colour).max(-1) < 40).mean() > 0.5  # the outline is conv2's green
    title = browser.execute_script("return document.getElementById('activation').layout.title.text")
    assert title.startswith(f"conv2 ch {rows[k][1]}, step {KEPT[step]}")  # and its channel's map at this step:
    shown_map = browser.execute_script("return document.getElementById('activation').data[0].z")
    assert np.array(shown_map) == pytest.approx(read["maps"]["conv2"][step, rows[k][1]], abs=1e-5)
    assert severe(browser) == []


@pytest.mark.slow
def test_the_3d_tree_draws_and_turns_with_software_webgl(browser):
    from selenium.webdriver.common.action_chains import ActionChains

    assert browser.execute_script("return !!document.querySelector('#tree3d canvas').getContext('webgl')")
    view = element_pixels(browser, "tree3d")
    background = np.array([0x12, 0x12, 0x18])
    assert (np.abs(view - background).max(-1) > 30).mean() > 0.05  # planes, floor, tree: not a blank canvas
    red = np.array([int(LAYER_COLOURS["attention"][i : i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(view - red).max(-1) < 40).sum() > 20  # the attention roots' red nodes
    canvas = browser.find_element("id", "tree3d")
    ActionChains(browser).move_to_element_with_offset(canvas, -150, 100).click_and_hold().move_by_offset(
        250, -40
    ).release().perform()  # the learner turns the tree
    turned = element_pixels(browser, "tree3d")
    assert np.abs(turned - view).max(-1).mean() > 5
    assert severe(browser) == []


@pytest.mark.slow
def test_a_dqns_page_draws_its_q_values_and_its_grad_cam_tree(browser, dqn_page):
    """The last test of the browser: it loads another page, a DQN's (no attention, Q-values)."""
    from selenium.webdriver.support.ui import Select, WebDriverWait

    path, read = dqn_page
    browser.get("file://" + os.path.abspath(path))
    WebDriverWait(browser, 120).until(lambda d: d.execute_script("return document.body.dataset.ready") == "yes")
    data = read["data"]
    i = next(i for i, rows in enumerate(data["steps"]["tree"]) if rows)  # a step with a tree
    browser.execute_script(f"show({i})")
    q = np.array(data["steps"]["q"][i])
    x, base, labels, span = browser.execute_script(
        "const d = document.getElementById('decision'); return [d.data[0].x, d.data[0].base, d.data[0].y, "
        "d.layout.xaxis.range]"
    )
    assert np.array(x) + np.array(base) == pytest.approx(q, abs=1e-6)  # bars from the lowest Q-value to each one
    assert base == pytest.approx([q.min()] * 4, abs=1e-6) and span == pytest.approx([q.min(), q.max()], abs=1e-6)
    assert labels[int(q.argmax())] == f"{data['action_names'][int(q.argmax())]} {q.max():.3f}"
    assert "max Q(s, a) " in browser.find_element("id", "stats").text
    view = element_pixels(browser, "tree3d")
    red = np.array([int(LAYER_COLOURS["gradcam"][i : i + 2], 16) for i in (1, 3, 5)])
    assert (np.abs(view - red).max(-1) < 40).sum() > 20  # Grad-CAM's red roots, on their plane above conv3's
    rows = data["steps"]["tree"][i]
    k = next(k for k, r in enumerate(rows) if r[0] == 0)
    Select(browser.find_element("id", "node")).select_by_value(str(k))
    rect = browser.find_elements("css selector", "#boxes rect")[-1]
    y0, x0, y1, x1 = rows[k][9:13]
    assert [float(rect.get_attribute(a)) for a in ("x", "y", "width", "height")] == [x0, y0, x1 - x0, y1 - y0]
    action = data["action_names"][rows[k][1]]
    title = browser.execute_script("return document.getElementById('activation').layout.title.text")
    assert title == f"gradcam of {action}, step {data['steps']['t'][i]}"  # the root's channel: its action
    shown = browser.execute_script("return document.getElementById('activation').data[0].z")
    assert np.array(shown) == pytest.approx(np.array(data["steps"]["hidden"][i][str(rows[k][1])]), abs=1e-6)
    for j in range(len(data["steps"]["t"])):  # stepping on, the map follows the action each step explains
        browser.execute_script(f"show({j})")
        title = browser.execute_script("return document.getElementById('activation').layout.title.text")
        action = data["action_names"][int(next(iter(data["steps"]["hidden"][j])))]
        assert title == f"gradcam of {action}, step {data['steps']['t'][j]}"
    assert severe(browser) == []
