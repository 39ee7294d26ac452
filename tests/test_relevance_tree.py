"""Tests of relevance_tree.py: peaks, contributions against autograd, geometry, relevance, JSON, CLI."""

import itertools
import json
import os
import subprocess
import sys
from math import ceil, floor

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agents import load_checkpoint
from atari_env import make_env
from ppo_attention import Agent
from relevance_tree import (
    BOX_GEOMETRY,
    GRADCAM_LAYERS,
    LAYERS,
    build_tree,
    descend,
    find_peaks,
    iter_nodes,
    load_tree,
    main,
    root_label,
    save_tree,
    unit_contributions,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def cli(argv):
    from cli import exit_on_bad_input

    return exit_on_bad_input(main, argv)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "relevance_tree.py")


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def agent(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)[0]


@pytest.fixture(scope="module")
def observations():
    """Real Breakout observations (4, 84, 84) uint8 after 10, 20 and 30 random steps."""
    env = make_env("BreakoutNoFrameskip-v4", seed=3)
    obs, _ = env.reset(seed=3)
    kept = []
    for t in range(1, 31):
        obs, *_ = env.step(env.action_space.sample())
        if t % 10 == 0:
            kept.append(np.asarray(obs).copy())
    env.close()
    return kept


@pytest.fixture(scope="module")
def trees(agent, observations):
    """Bigger than the defaults, so that every rule is exercised on many nodes."""
    return [build_tree(agent, obs, roots=3, children=4) for obs in observations]


def peak_places(m, k=5, threshold=0.1):
    values, index, valid = find_peaks(torch.tensor(m, dtype=torch.float32)[None], k, threshold)
    W = len(m[0])
    return [(int(i) // W, int(i) % W, float(v)) for v, i, ok in zip(values[0], index[0], valid[0]) if ok]


# ----------------------------------------------------------------------------- peaks


def test_peaks_are_prominent_maxima_not_their_neighbours():
    m = np.zeros((7, 7))
    m[2, 2], m[2, 3], m[3, 2], m[1, 1] = 10, 9, 8, 7  # one peak with high neighbours
    m[5, 4], m[5, 5] = 5, 4  # a second, lower peak
    assert peak_places(m) == [(2, 2, 10.0), (5, 4, 5.0)]


def test_peaks_on_a_plateau_give_one_peak():
    m = np.zeros((7, 7))
    m[3, 3] = m[3, 4] = m[4, 3] = 6  # an L-shaped plateau
    m[0, 6] = 2
    assert peak_places(m) == [(3, 3, 6.0), (0, 6, 2.0)]


def test_peaks_at_borders_and_corners():
    m = np.full((7, 7), 0.5)
    m[0, 0], m[6, 6], m[0, 3], m[6, 0], m[3, 6] = 5, 4, 3, 2, 1.5
    assert peak_places(m, k=6) == [(0, 0, 5.0), (6, 6, 4.0), (0, 3, 3.0), (6, 0, 2.0), (3, 6, 1.5)]


def test_peaks_threshold_empty_maps_and_batches():
    m = np.zeros((7, 7))
    m[1, 1], m[5, 5] = 1.0, 0.0625
    assert peak_places(m, threshold=0.1) == [(1, 1, 1.0)]
    assert peak_places(m, threshold=0.0) == [(1, 1, 1.0), (5, 5, 0.0625)]
    assert peak_places(np.zeros((7, 7))) == []
    assert peak_places(-np.ones((3, 3))) == []  # only positive evidence makes a peak
    maps = torch.zeros(2, 3, 3)
    maps[0, 0, 0], maps[1, 2, 2] = 1, 2
    values, index, valid = find_peaks(maps, 20)  # k above the map size is clipped
    assert values.shape == (2, 9) and valid.sum() == 2
    assert index[0, 0] == 0 and index[1, 0] == 8


# ----------------------------------------------------------------------------- contributions


def resolve_channel(activations, layer, c, y, x) -> int:
    if layer == "attn_hidden" and c == -1:
        c = int(activations["attn_hidden"][0, :, y, x].argmin())
        assert activations["attn_hidden"][0, c, y, x] < 0
    return c


def window_contributions_by_autograd(agent, activations, layer, c, y, x):
    """z_j = a_j * d(pre-activation of unit (c, y, x) of `layer`) / d a_j over the layer below, via autograd.

    Returns (z over the unit's window (Cin, k, k), the window's (row, col) origin, the full a * grad).
    """
    below_name, op = {
        "attention": ("attn_hidden", agent.attn_logits),
        "attn_hidden": ("features", agent.attn_hidden),
        "conv3": ("conv2", agent.conv3),
        "conv2": ("conv1", agent.conv2),
        "conv1": ("input", agent.conv1),
    }[layer]
    below = activations[below_name].detach().clone().requires_grad_(True)
    op(below)[0, c, y, x].backward()
    k, s = op.kernel_size[0], op.stride[0]
    z = (below * below.grad)[0].detach()
    return z[:, y * s : y * s + k, x * s : x * s + k], (y * s, x * s), z


UNITS = [  # (layer, channel, y, x); attn_hidden channel -1: the most negative unit at that place (ELU < 0)
    ("attn_hidden", -1, 3, 3),
    ("attention", 1, 3, 4),
    ("attn_hidden", 7, 2, 5),
    ("conv3", 11, 6, 0),
    ("conv2", 40, 4, 8),
    ("conv1", 5, 4, 0),
]


@pytest.fixture(scope="module")
def activations(agent, observations):
    obs = torch.as_tensor(observations[-1])[None]
    with torch.no_grad():
        a = dict(agent.activations(obs))
    a["input"] = obs.float() / 255
    return a


@pytest.mark.parametrize("layer,c,y,x", UNITS)
def test_window_formula_equals_activation_times_gradient(agent, activations, layer, c, y, x):
    c = resolve_channel(activations, layer, c, y, x)
    z_grad, (y0, x0), z_full = window_contributions_by_autograd(agent, activations, layer, c, y, x)
    op = agent.attn_logits if layer == "attention" else getattr(agent, layer)
    below = {"attention": "attn_hidden", "attn_hidden": "features", "conv3": "conv2", "conv2": "conv1"}.get(
        layer, "input"
    )
    k = op.kernel_size[0]
    window = activations[below][0, :, y0 : y0 + k, x0 : x0 + k]
    z = unit_contributions(op.weight[c].detach(), window)
    torch.testing.assert_close(z, z_grad, rtol=1e-5, atol=1e-7)
    assert z_full.abs().sum() == pytest.approx(z_grad.abs().sum().item(), rel=1e-6)  # nothing outside the window
    with torch.no_grad():
        pre = op(activations[below])[0, c, y, x]
    assert (z.sum() + op.bias[c]).item() == pytest.approx(pre.item(), rel=1e-4, abs=1e-5)


def contrasted_by_loop(agent, activations, h, y, x) -> tuple:
    """The root step written out plainly: d_c = a_c(p) - sum over the 49 places q of A_h(q) a_c(q), by a loop,
    and z_c = W[h, c] d_c. Returns (z (512,), the peak's logit minus the attention-weighted mean logit)."""
    hid, attention = activations["attn_hidden"][0], activations["attention"][0, h]
    mean = sum(attention[q // 7, q % 7] * hid[:, q // 7, q % 7] for q in range(49))
    logits = activations["attn_logits"][0, h]
    z = agent.attn_logits.weight[h, :, 0, 0].detach() * (hid[:, y, x] - mean)
    return z, logits[y, x] - (attention * logits).sum()


@pytest.mark.parametrize("layer,c,y,x", UNITS)
def test_relevance_follows_the_z_plus_rule(agent, activations, layer, c, y, x):
    """The batched descent gives each lower unit R * max(z_j, 0) / sum max(z, 0), with z from autograd; at the
    root, z is the contrast with the attention-weighted mean, and the z sum to the contrasted logit."""
    c = resolve_channel(activations, layer, c, y, x)
    head = 1
    if layer == "attention":
        z, contrasted = contrasted_by_loop(agent, activations, c, y, x)
        assert float(z.sum()) == pytest.approx(float(contrasted), rel=1e-4, abs=1e-5)
        z = z.view(512, 1, 1).detach()
    else:
        z, _, _ = window_contributions_by_autograd(agent, activations, layer, c, y, x)
    if layer == "attn_hidden":  # a unit above its mean is explained by what pushed it up, one below by the rest
        d, _ = contrasted_by_loop(agent, activations, head, y, x)
        z = z * (d[c] / agent.attn_logits.weight[head, c, 0, 0]).sign()
    assert z.clamp(min=0).sum() > 0  # a unit with something to explain
    expected = 0.7 * z.clamp(min=0) / z.clamp(min=0).sum()
    if layer in ("conv2", "conv1"):  # place nodes carry relevance per channel: a one-hot vector = one unit
        r = torch.zeros(1, getattr(agent, layer).out_channels)
        r[0, c] = 0.7
    else:
        r = torch.tensor([[0.7]])
    level = dict(head=torch.tensor([head]), channel=torch.tensor([c]), y=torch.tensor([y]), x=torch.tensor([x]), r=r)
    with torch.no_grad():
        rel, k, stride = descend(agent, activations, layer, level)
    torch.testing.assert_close(rel[0], expected, rtol=1e-4, atol=1e-7)
    assert rel.sum().item() == pytest.approx(0.7, rel=1e-5)


def test_children_record_real_channel_numbers(agent, activations, observations, trees):
    tree = build_tree(agent, observations[-1], roots=2, children=3, depth=2)
    for root in tree:
        z, _ = contrasted_by_loop(agent, activations, root["channel"], root["y"], root["x"])
        best = z.clamp(min=0).topk(len(root["children"])).indices.tolist()
        assert [child["channel"] for child in root["children"]] == best
    channels = {n["channel"] for t in trees for n, _ in iter_nodes(t) if n["layer"] in ("attn_hidden", "conv3")}
    assert max(channels) >= 4  # not the index within a top-k list (a bug in rl-attention's code)


def test_a_channel_that_raises_every_place_alike_gets_no_relevance(agent, observations):
    """Softmax ignores a shift common to all places. Hidden channel 0 made constant over the places (zero
    weights, bias 2) with a large weight into head 0's logits shifts every logit alike: the attention does
    not move, and the tree gives that channel nothing (the raw logit's z+ would make it the strongest child)."""
    model = Agent(agent.n_actions, agent.attn_heads)
    model.load_state_dict(agent.state_dict())
    obs = torch.as_tensor(observations[-1])[None]
    with torch.no_grad():
        model.attn_hidden.weight[0] = 0
        model.attn_hidden.bias[0] = 2.0
        before = model.activations(obs)["attention"]
        model.attn_logits.weight[0, 0] = 50.0
        after = model.activations(obs)
    torch.testing.assert_close(after["attention"], before, rtol=1e-4, atol=1e-6)
    tree = build_tree(model, obs, roots=2, children=3, depth=1)
    head0 = [root for root in tree if root["channel"] == 0]
    assert head0 and all(child["channel"] != 0 for root in head0 for child in root["children"])
    raw = after["attn_hidden"][0, :, head0[0]["y"], head0[0]["x"]] * model.attn_logits.weight[0, :, 0, 0]
    assert int(raw.argmax()) == 0  # what the uncontrasted rule would have picked first


def test_children_are_the_peaks_of_the_relevance_map(agent, activations, observations):
    """conv3 unit -> conv2 places: the peaks of its channel-summed z+ map (autograd), each with its strongest channel."""
    tree = build_tree(agent, observations[-1], roots=2, children=3, depth=3)
    conv3_nodes = [n for n, _ in iter_nodes(tree) if n["layer"] == "conv3"][:12]
    assert conv3_nodes and any(n["children"] for n in conv3_nodes)
    for node in conv3_nodes:
        z, (y0, x0), _ = window_contributions_by_autograd(
            agent, activations, "conv3", node["channel"], node["y"], node["x"]
        )
        relevance = node["relevance"] * z.clamp(min=0) / z.clamp(min=0).sum()  # (64, 3, 3)
        values, index, valid = find_peaks(relevance.sum(0)[None], 3, 0.1)
        expected = [
            (y0 + int(i) // 3, x0 + int(i) % 3, int(relevance[:, int(i) // 3, int(i) % 3].argmax()), float(v))
            for v, i, ok in zip(values[0], index[0], valid[0])
            if ok
        ]
        got = [(c["y"], c["x"], c["channel"], c["relevance"]) for c in node["children"]]
        assert [g[:3] for g in got] == [e[:3] for e in expected]
        assert [g[3] for g in got] == pytest.approx([e[3] for e in expected], rel=1e-4)


# ----------------------------------------------------------------------------- geometry and relevance


def test_box_geometry_is_the_networks_receptive_field():
    """The gradient of a unit w.r.t. the input is non-zero exactly inside its box (all-ones convolutions)."""
    kernels = [(8, 4), (4, 2), (3, 1)]
    for depth, layer in enumerate(["conv1", "conv2", "conv3"], start=1):
        assert Agent.RECEPTIVE_FIELDS[layer] == BOX_GEOMETRY[layer]
        size, stride = BOX_GEOMETRY[layer]
        x = torch.ones(1, 1, 84, 84, requires_grad=True)
        h = x
        for k, s in kernels[:depth]:
            h = F.conv2d(h, torch.ones(1, 1, k, k), stride=s)
        h[0, 0, 2, 1].backward()
        rows, cols = x.grad[0, 0].nonzero(as_tuple=True)
        assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (
            2 * stride,
            2 * stride + size,
            stride,
            stride + size,
        )
    assert [BOX_GEOMETRY[n] for n in ("conv1", "conv2", "conv3", "attention")] == [(8, 4), (20, 8), (36, 8), (36, 8)]


def test_boxes_nest_and_match_the_layers(trees):
    sizes = {"attention": 36, "attn_hidden": 36, "conv3": 36, "conv2": 20, "conv1": 8, "input": 1}
    for tree in trees:
        for node, depth in iter_nodes(tree):
            assert node["layer"] == LAYERS[depth]
            y0, x0, y1, x1 = node["box84"]
            size, stride = BOX_GEOMETRY[node["layer"]]
            assert (y0, x0) == (node["y"] * stride, node["x"] * stride)
            assert (y1 - y0, x1 - x0) == (sizes[node["layer"]],) * 2 and y1 <= 84 and x1 <= 84
            f0, g0, f1, g1 = node["box210"]
            assert 0 <= f0 < f1 <= 210 and 0 <= g0 < g1 <= 160
            assert [f0, g0, f1, g1] == [floor(y0 * 2.5), floor(x0 * 160 / 84), ceil(y1 * 2.5), ceil(x1 * 160 / 84)]
            for child in node["children"]:
                for key in ("box84", "box210"):
                    p, q = node[key], child[key]
                    assert p[0] <= q[0] < q[2] <= p[2] and p[1] <= q[1] < q[3] <= p[3], (node, child)


def test_children_relevance_sums_to_at_most_the_parent(agent, observations, trees):
    for obs, tree in zip(observations, trees):
        attention = agent.activations(torch.as_tensor(obs)[None])["attention"][0].detach()
        for root in tree:
            assert root["relevance"] == pytest.approx(attention[root["channel"], root["y"], root["x"]].item())
        for node, _ in iter_nodes(tree):
            assert node["relevance"] > 0
            assert sum(c["relevance"] for c in node["children"]) <= node["relevance"] * (1 + 1e-5)
            assert len(node["children"]) <= 4


def test_sizes_depth_and_bad_arguments(agent, observations):
    obs = observations[0]
    tree = build_tree(agent, torch.as_tensor(obs)[None], roots=1, children=2, depth=3)
    nodes = list(iter_nodes(tree))
    assert len(tree) <= agent.attn_heads and max(d for _, d in nodes) <= 3
    assert all(len(n["children"]) <= 2 for n, _ in nodes) and {n["layer"] for n, _ in nodes} <= set(LAYERS[:4])
    assert all(not r["children"] for r in build_tree(agent, obs, depth=0))
    for kw in (dict(roots=0), dict(children=-1), dict(depth=6), dict(depth=-1), dict(threshold=1.5)):
        with pytest.raises(ValueError):
            build_tree(agent, obs, **kw)


# ----------------------------------------------------------------------------- JSON


def test_json_round_trip(trees, tmp_path):
    path = str(tmp_path / "tree.json")
    save_tree(path, trees[0], env_id="BreakoutNoFrameskip-v4", step=7, action=1)
    tree, info = load_tree(path)
    assert tree == trees[0]
    assert info == {"format_version": 1, "env_id": "BreakoutNoFrameskip-v4", "step": 7, "action": 1}
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError):
        load_tree(str(tmp_path / "other.json"))


# ----------------------------------------------------------------------------- command line


def run_cli(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120)


def cli_error(argv, capsys) -> str:
    """Run the command line in this process; return its error sentence (it must exit with one)."""
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    message = exit_info.value.code
    assert isinstance(message, str) and message.startswith("error: ") and "\n" not in message, message
    assert "Traceback" not in capsys.readouterr().err
    return message


def test_root_labels_on_the_game_frame_never_overlap(tmp_path, monkeypatch):
    """Both heads often peak at the same place: their labels stack, head 0 on top, each at its box's left edge.
    Checked on the figure draw_tree saves: every label's drawn extent, with its black box, against the others'."""
    import relevance_tree

    def root(head, weight, y0, x0, layer="attention"):
        box84 = (y0 * 84 // 210, x0 * 84 // 160, y0 * 84 // 210 + 36, x0 * 84 // 160 + 36)
        return dict(
            layer=layer, channel=head, relevance=weight, box84=box84, box210=(y0, x0, y0 + 90, x0 + 69), children=[]
        )

    trees = {
        "same place": [root(1, 0.94, 100, 15), root(0, 0.94, 100, 15)],
        "beside and below": [root(0, 0.93, 80, 0), root(1, 0.81, 120, 76), root(1, 0.11, 80, 15), root(0, 0.5, 85, 5)],
        "grad-cam": [root(2, 1.5, 100, 15, "gradcam"), root(2, 0.9, 104, 20, "gradcam"), root(2, 0.4, 100, 91, "gradcam")],
    }  # fmt: skip
    import matplotlib.pyplot as plt

    drawn, real, close = [], relevance_tree.label_roots, plt.close
    monkeypatch.setattr(relevance_tree, "label_roots", lambda ax, tree: drawn.append(real(ax, tree)) or drawn[-1])
    monkeypatch.setattr(plt, "close", lambda fig: None)  # keep the saved figure to measure it
    frame, obs = np.zeros((210, 160, 3), np.uint8), np.zeros((4, 84, 84), np.uint8)
    for name, tree in trees.items():
        relevance_tree.draw_tree(obs, frame, tree, name, str(tmp_path / "tree.png"))
        labels = drawn[-1]
        figure = labels[0].figure
        figure.canvas.draw()  # as saved (at another dpi: every length scales alike)
        renderer = figure.canvas.get_renderer()
        boxes = [label.get_bbox_patch().get_window_extent(renderer) for label in labels]  # the black boxes
        close(figure)
        assert len(boxes) == len(tree) and all(b.width > 0 for b in boxes), name
        for (a, box_a), (b, box_b) in itertools.combinations(zip(labels, boxes), 2):
            assert not box_a.overlaps(box_b), (name, a.get_text(), b.get_text())
        order = sorted(tree, key=lambda r: (r["channel"], -r["relevance"]))
        assert [label.get_text() for label in labels] == [root_label(r) for r in order], name
        for label, r in zip(labels, order):  # each label at its own box: its left edge, at or below its top
            assert label.xy == (r["box210"][1] + 2, r["box210"][0] + 2) and label.get_position()[1] <= 0
    assert [label.get_position()[1] < 0 for label in drawn[0]] == [False, True]  # head 1 moved below head 0


@pytest.mark.parametrize("device", DEVICES)
def test_tree_is_the_same_wherever_the_agent_is(agent, observations, device):
    model = Agent(agent.n_actions, agent.attn_heads).to(device)
    model.load_state_dict(agent.state_dict())
    on_device, on_cpu = build_tree(model, observations[0]), build_tree(agent, observations[0])
    shape = [(n["layer"], n["channel"], n["y"], n["x"]) for n, _ in iter_nodes(on_device)]
    assert shape == [(n["layer"], n["channel"], n["y"], n["x"]) for n, _ in iter_nodes(on_cpu)]
    with torch.no_grad():
        activations = model.activations(torch.as_tensor(observations[0], device=device)[None])
    assert build_tree(model, observations[0], activations=activations) == on_device  # given activations: the same tree


@pytest.mark.slow
def test_cli_end_to_end(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    result = run_cli("--checkpoint", tiny_checkpoint, "--steps", "3", "0", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "nodes in" in result.stdout and result.stderr == ""
    assert sorted(os.listdir(out)) == ["step_00000.json", "step_00000.png", "step_00003.json", "step_00003.png"]
    tree, info = load_tree(str(out / "step_00003.json"))
    assert info["step"] == 3 and info["env_id"] == "BreakoutNoFrameskip-v4" and tree
    assert tree[0]["layer"] == "attention" and max(d for _, d in iter_nodes(tree)) == 5
    import matplotlib.image

    assert matplotlib.image.imread(str(out / "step_00000.png")).shape[2] in (3, 4)


def test_cli_output_folders(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fast = ["--checkpoint", tiny_checkpoint, "--steps", "0", "--depth", "1"]
    for _ in range(2):  # the default folder is new every time
        cli(fast)
    base = tmp_path / "runs" / os.path.basename(os.path.dirname(tiny_checkpoint))
    folders = os.listdir(base)
    assert len(folders) == 2 and all(f.startswith("tree__") and os.listdir(base / f) for f in folders)
    # an explicit --out that already holds results: refused, unless --force
    out = str(base / folders[0])
    assert "--force" in cli_error([*fast, "--steps", "1", "--out", out], capsys)
    cli([*fast, "--steps", "1", "--out", out, "--force"])
    assert sorted(os.listdir(out)) == ["step_00000.json", "step_00000.png", "step_00001.json", "step_00001.png"]


@pytest.mark.slow
def test_cli_rejects_bad_input_with_one_sentence(tiny_checkpoint, tiny_baseline_checkpoint, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    ok = ["--checkpoint", tiny_checkpoint]
    in_process = {
        "corrupt checkpoint": (["--checkpoint", str(corrupt)], "not a readable checkpoint"),
        "zero roots": ([*ok, "--roots", "0"], "--roots and --children must be positive"),
        "negative children": ([*ok, "--children", "-2"], "--roots and --children must be positive"),
        "depth beyond the network": ([*ok, "--depth", "6"], "--depth must be between 0 and 5"),
        "threshold": ([*ok, "--threshold", "1"], "--threshold"),
        "negative step": ([*ok, "--steps", "-1"], "--steps must be"),
        "unwritable out": ([*ok, "--out", str(a_file / "sub")], "cannot write"),
        "out is a file": ([*ok, "--out", str(a_file)], "is a file"),
        "step beyond the game": ([*ok, "--steps", "100000", "--out", str(tmp_path / "beyond")], "beyond the game"),
    }
    for name, (argv, words) in in_process.items():
        assert words in cli_error(argv, capsys), name
    assert not os.path.exists(tmp_path / "beyond")  # nothing left behind
    result = run_cli("--checkpoint", str(tmp_path / "nope.pt"))  # and as a real process
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines == [f"error: checkpoint '{tmp_path / 'nope.pt'}' does not exist."]


# ----------------------------------------------------------------------------- agents without attention: Grad-CAM roots


def test_a_tree_without_attention_starts_at_grad_cams_peaks(tiny_baseline_checkpoint, observations):
    """The roots are the peaks of saliency.gradcam for the action's logit, with its values; each root's conv3
    children are the channels k with the largest alpha_k A_k(p), and they share the root's relevance by them.
    Every action of every observation: the tree explains the action asked for (a map of zeros: no tree)."""
    from saliency import Score, gradcam, gradcam_weights

    baseline, trees = load_checkpoint(tiny_baseline_checkpoint)[0], 0
    for obs, action in ((o, a) for o in observations for a in range(baseline.n_actions)):
        x = torch.as_tensor(obs)[None].float() / 255
        score = Score("action", torch.tensor([action]))
        cam = gradcam(baseline, x, score, chunk=1)[0]  # (7, 7)
        tree = build_tree(baseline, obs, roots=3, children=4, action=action)
        assert bool(tree) == bool(cam.max() > 0)
        trees += bool(tree)
        assert all(r["layer"] == "gradcam" and r["channel"] == action for r in tree)
        values, index, valid = find_peaks(cam[None], 3, 0.1)
        assert [r["y"] * 7 + r["x"] for r in tree] == index[valid].tolist()  # pytest 9 approx takes no tuples
        assert [r["relevance"] for r in tree] == pytest.approx(values[valid].tolist())
        alpha, features = gradcam_weights(baseline, x, score)
        for root in tree:
            share = (alpha[0] * features[0, :, root["y"], root["x"]]).clamp(min=0)  # (64,) channel k's part
            children = root["children"]
            assert [c["layer"] for c in children] == ["conv3"] * len(children)
            assert [c["channel"] for c in children] == share.topk(4).indices.tolist()[: len(children)]
            for c in children:
                expected = root["relevance"] * share[c["channel"]].item() / share.sum().item()
                assert c["relevance"] == pytest.approx(expected, rel=1e-4)
        if tree:
            assert {n["layer"] for n, _ in iter_nodes(tree)} == set(GRADCAM_LAYERS)
            assert max(d for _, d in iter_nodes(tree)) == 4
        for node, _ in iter_nodes(tree):  # relevance is shared, never created
            assert sum(c["relevance"] for c in node["children"]) <= node["relevance"] * (1 + 1e-5)
    assert trees >= len(observations)
    greedy_tree = build_tree(baseline, observations[0], depth=2)  # default: the greedy action
    assert {n["layer"] for n, _ in iter_nodes(greedy_tree)} <= {"gradcam", "conv3"}
    assert all(not r["children"] for r in build_tree(baseline, observations[0], depth=1))  # the roots alone


def test_a_grad_cam_of_zeros_gives_no_tree(tiny_baseline_checkpoint, observations):
    baseline = load_checkpoint(tiny_baseline_checkpoint)[0]
    silent = Agent(baseline.n_actions, 0)
    silent.load_state_dict(baseline.state_dict())
    with torch.no_grad():
        silent.actor.weight.zero_()  # no logit depends on conv3: Grad-CAM is 0 everywhere
    assert build_tree(silent, observations[0]) == []


def test_cli_explains_an_agent_without_attention_with_grad_cam(tiny_baseline_checkpoint, tmp_path, capsys):
    out = cli(["--checkpoint", tiny_baseline_checkpoint, "--steps", "2", "--out", str(tmp_path / "t")])
    assert "trees start at the peaks of Grad-CAM" in capsys.readouterr().out
    tree, info = load_tree(os.path.join(out, "step_00002.json"))
    assert tree[0]["layer"] == "gradcam" and info["explains"] == f"logit of {info['action_name']}"
