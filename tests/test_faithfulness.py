"""Tests of faithfulness.py, faithfulness_maps.py and faithfulness_report.py: deletion and insertion on a network that
sees one quadrant, the area under a curve, the floors, margins and their standard errors (play.py's statistics are
tested in tests/test_play.py), cascading randomisation, the sanity check's power to fail a map and its floors, the
drawings of the 7x7 maps, the command line end to end (tables, JSON, CSV, figures), bad input. The object grounding
(faithfulness_grounding.py) is tested in tests/test_faithfulness_grounding.py."""

import csv
import json
import os
import subprocess
import sys
from typing import get_args

import numpy as np
import pytest
import torch

from agents import load_checkpoint
from cli import exit_on_bad_input
from faithfulness import (
    Args,
    area_under_curve,
    cascade,
    explained_actions,
    folds_of,
    grid_sanity,
    main,
    margins,
    policy_curves,
    relevance_ranks,
    sanity_check,
    seeds_and_games,
    spearman,
)
from faithfulness_maps import (
    ALL_METHODS,
    FLOORS,
    GEOMETRY_FLOORS,
    INPUT_FLOORS,
    Method,
    explanation_maps,
    floor_maps,
    grid_maps,
)
from play import mean_and_se
from ppo_attention import Agent
from saliency import METHODS, bilinear_grid, gaussian_blur, paint_attention, saliency_maps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ["actor+critic", "fc", "attention", "conv3", "conv2", "conv1"]
TINY = [
    "--states",
    "4",
    "--games",
    "2",
    "--samples",
    "2",
    "--stride",
    "21",
    "--sanity-states",
    "2",
    "--max-steps",
    "60",
    "--ig-steps",
    "4",
]
AREAS = {
    f"{c}_auc{se}" for c in ("deletion_kl", "deletion_prob", "insertion_prob", "insertion_kl") for se in ("", "_se")
}
KEYS = AREAS | {"seconds_per_state", "sanity", "sanity_se", "margin", "objects"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """On 2 cores shared with other jobs, two torch threads make small passes ~10x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cli(argv):
    """The command line in this process, as `python faithfulness.py` runs it."""
    return exit_on_bad_input(main, argv)


def random_obs(batch, seed=0) -> torch.Tensor:
    """Random uint8 observations (B, 4, 84, 84)."""
    return torch.randint(0, 256, (batch, 4, 84, 84), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.fixture(scope="module")
def agent(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)[0]


# ----------------------------------------------------------------------------- deletion and insertion


def quadrant_agent() -> Agent:
    """A plain CNN that decides from conv3 unit (0, 0) alone, which sees input rows and columns 0 to 35."""
    torch.manual_seed(0)
    agent = Agent(4, attn_heads=0).eval()
    with torch.no_grad():
        seen = torch.zeros(64, 7, 7)
        seen[:, 0, 0] = 1
        agent.fc.weight *= seen.flatten()  # fc's 3136 inputs: channel, then row, then column
        agent.actor.weight *= 3000  # rows of norm 0.01 -> 30: logits of several units, a policy far from uniform
    return agent


@pytest.mark.parametrize("baseline", ["blur", "black"])
def test_a_map_of_what_the_network_sees_beats_random_and_random_beats_the_rest(baseline):
    agent = quadrant_agent()
    x = random_obs(24).float() / 255
    base = gaussian_blur(x) if baseline == "blur" else torch.zeros_like(x)
    with torch.no_grad():
        p, q = agent(x)[0].softmax(-1), agent(base)[0].softmax(-1)
    actions = p.argmax(-1)
    drops = (p - q).gather(1, actions[:, None])[:, 0] > 0.3  # states whose action the baseline makes less likely
    x, base, actions = x[drops][:4], base[drops][:4], actions[drops][:4]
    p, q = p[drops][:4].gather(1, actions[:, None])[:, 0], q[drops][:4].gather(1, actions[:, None])[:, 0]
    assert len(x) == 4
    quadrant = torch.zeros(84, 84)
    quadrant[:42, :42] = 1
    maps = {"quadrant": quadrant, "random": torch.rand(84, 84, generator=torch.Generator().manual_seed(1))}
    maps["other quadrants"] = 1 - quadrant
    fractions = np.linspace(0, 1, 21)
    area = {}
    for name, m in maps.items():
        ranks = relevance_ranks(m.expand(4, 84, 84), torch.Generator().manual_seed(0))
        curves = policy_curves(agent, x, base, actions, ranks, fractions, chunk=64)
        area[name] = {k: area_under_curve(c.mean(0), fractions) for k, c in curves.items()}
        assert np.allclose(curves["deletion_kl"][:, 0], 0, atol=1e-5)  # nothing replaced yet
        assert np.allclose(curves["insertion_kl"][:, -1], 0, atol=1e-5)  # everything restored
        assert np.allclose(curves["deletion_prob"][:, 0], p, atol=1e-5) and np.allclose(
            curves["insertion_prob"][:, 0], q, atol=1e-5
        )
        assert np.allclose(curves["deletion_prob"][:, -1], q, atol=1e-5)
    quadrant, random, others = area["quadrant"], area["random"], area["other quadrants"]
    assert quadrant["deletion_kl"] > random["deletion_kl"] > others["deletion_kl"]  # the policy moves away sooner
    assert quadrant["deletion_prob"] < random["deletion_prob"] < others["deletion_prob"]
    assert quadrant["insertion_prob"] > random["insertion_prob"] > others["insertion_prob"]  # comes back sooner
    assert quadrant["insertion_kl"] < random["insertion_kl"] < others["insertion_kl"]


def test_the_method_choices_are_saliencys_maps_then_the_drawings_and_floors():
    assert get_args(Method) == ALL_METHODS and ALL_METHODS[: len(METHODS)] == METHODS
    assert len(set(ALL_METHODS)) == len(ALL_METHODS) == len(METHODS) + 2 + len(FLOORS)


def test_area_is_the_trapezoid_rule():
    assert area_under_curve([1, 3, 0], [0, 0.25, 1]) == pytest.approx((1 + 3) / 2 * 0.25 + (3 + 0) / 2 * 0.75)
    assert area_under_curve([[0, 1], [2, 2]], [0, 1]) == pytest.approx([0.5, 2])


def test_places_are_ranked_most_relevant_first_and_ties_at_random():
    m = torch.zeros(2, 84, 84)
    m[0, 50:, 50:] = torch.arange(34 * 34).view(34, 34).float() + 1
    ranks = relevance_ranks(m, torch.Generator().manual_seed(0))
    assert torch.equal(ranks.sort(1).values, torch.arange(84 * 84).expand(2, -1))  # each row a permutation
    assert ranks[0].view(84, 84)[83, 83] == 0 and ranks[0].view(84, 84)[50, 50] == 34 * 34 - 1
    first = ranks[1] < 84 * 84 // 10  # a flat map: the first tenth is spread over the image, not the top rows
    assert 0.05 < first.view(84, 84)[42:].float().mean() < 0.15


# ----------------------------------------------------------------------------- sanity check


def test_cascade_reinitialises_exactly_the_intended_layers_and_leaves_the_agent_alone(agent):
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    rng = torch.get_rng_state()
    steps = cascade(agent, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # a fixed seed of its own; the global RNG is restored
    assert [label for label, _ in steps] == LAYERS
    expected = [{"actor", "critic"}, {"fc"}, {"attn_logits", "attn_hidden"}, {"conv3"}, {"conv2"}, {"conv1"}]
    previous = agent.state_dict()
    for (_, model), layers in zip(steps, expected):
        now = model.state_dict()
        assert {k.split(".")[0] for k in now if not torch.equal(now[k], previous[k])} == layers
        for name in layers:  # the training script's layer_init: zero bias, orthogonal weights times std
            layer = getattr(model, name)
            std = {"actor": 0.01, "critic": 1.0}.get(name, 2**0.5)
            assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
            singular_values = torch.linalg.svdvals(layer.weight.detach().flatten(1))
            assert torch.allclose(singular_values, torch.full_like(singular_values, std), rtol=1e-4)
        previous = now
    assert all(torch.equal(v, agent.state_dict()[k]) for k, v in before.items())
    again = cascade(agent, seed=3)[-1][1].state_dict()
    assert all(torch.equal(v, again[k]) for k, v in steps[-1][1].state_dict().items())
    assert [label for label, _ in cascade(Agent(4, attn_heads=0), seed=3)] == [x for x in LAYERS if x != "attention"]


def test_a_map_that_ignores_the_weights_fails_the_sanity_check_and_the_gradient_does_not(agent):
    obs = random_obs(3)

    def maps(model):
        gradient = saliency_maps(model, obs, ("gradient",), action=torch.zeros(3, dtype=torch.long))["gradient"]
        return {"the input image": obs.float().amax(1), "gradient": gradient.amax(1)}

    result, _ = sanity_check(agent, maps, seed=1)
    assert {k: v[0] for k, v in result["the input image"].items()} == pytest.approx(dict.fromkeys(LAYERS, 1.0))
    assert max(v[0] for v in result["gradient"].values()) < 0.9  # a map of the model moves with the weights


def test_attention_keeps_correlation_one_above_the_attention_layers_and_random_is_redrawn(agent):
    obs, actions = random_obs(2), torch.zeros(2, dtype=torch.long)
    args = Args(checkpoint="", samples=2, stride=21)
    redraws = torch.Generator().manual_seed(0)
    result, _ = sanity_check(
        agent, lambda m: explanation_maps(m, obs, actions, ["attention", "random"], args, redraws)[0], 1
    )
    assert result["attention"]["actor+critic"][0] == result["attention"]["fc"][0] == 1.0  # by construction
    assert all(abs(r) < 0.1 for r, _ in result["random"].values())


def test_sanity_floor_is_the_strongest_correlation_with_the_floors_and_the_input_is_its_own_column(agent):
    """A map that *is* the painted uniform attention has floor 1 (painted_uniform); the input image has input 1."""
    obs = random_obs(3)
    x = obs.float() / 255
    image = x.amax(1)
    uniform = floor_maps("painted_uniform", 3, 2, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    floors = {f: floor_maps(f, 3, 2, g) for f in GEOMETRY_FLOORS}
    inputs = {f: floor_maps(f, 3, 2, g, x) for f in INPUT_FLOORS}
    maps = lambda m: {"uniform": uniform, "image": image}  # noqa: E731
    _, by_geometry = sanity_check(agent, maps, 1, floors=floors, inputs=inputs)
    best_input = max((float(spearman(uniform, v).mean()), k) for k, v in inputs.items())
    assert by_geometry["uniform"] == {"value": pytest.approx(1.0), "floor": "painted_uniform",
                                      "input": pytest.approx(best_input[0]), "input_floor": best_input[1]}  # fmt: skip
    assert by_geometry["image"]["input"] == pytest.approx(1.0) and by_geometry["image"]["input_floor"] == "intensity"
    assert abs(by_geometry["image"]["value"]) < 0.2


# ----------------------------------------------------------------------------- floors, margins, standard errors


def test_floors_share_the_attention_geometry_and_know_nothing_of_the_model():
    g = torch.Generator().manual_seed(0)
    uniform = floor_maps("painted_uniform", 2, 2, g)
    torch.testing.assert_close(uniform[1], 2 * paint_attention(torch.full((1, 1, 7, 7), 1 / 49))[0, 0])
    dirichlet = floor_maps("painted_dirichlet", 4000, 1, g)  # one head: a Dirichlet(1) draw over 49 places, painted
    mass = dirichlet.sum((1, 2))
    torch.testing.assert_close(mass, torch.full_like(mass, 36.0 * 36.0))  # every unit paints 36x36 px with its weight
    corner = dirichlet[:, 0, 0]  # only unit (0, 0) paints pixel (0, 0): its weight, Beta(1, 48) under Dirichlet(1)
    assert float(corner.mean()) == pytest.approx(1 / 49, rel=0.05)
    assert float(corner.var()) == pytest.approx((1 / 49) * (48 / 49) / 50, rel=0.1)
    assert not torch.equal(dirichlet[0], dirichlet[1]) and floor_maps("random", 3, 2, g).shape == (3, 84, 84)
    again = floor_maps("painted_dirichlet", 2, 2, torch.Generator().manual_seed(5))
    assert torch.equal(again, floor_maps("painted_dirichlet", 2, 2, torch.Generator().manual_seed(5)))  # seeded


def test_margins_are_over_the_strongest_floor_of_each_score_signed_and_paired():
    a = lambda *v: np.array(v, dtype=float)  # noqa: E731
    areas = {  # per-state areas of two states of one game: the floor is chosen in-sample
        "map": dict(deletion_kl=a(2.0, 3.0), deletion_prob=a(0.2, 0.4), insertion_prob=a(0.8, 0.6), insertion_kl=a(0.1, 0.3)),
        "random": dict(deletion_kl=a(1.0, 1.0), deletion_prob=a(0.5, 0.5), insertion_prob=a(0.5, 0.5), insertion_kl=a(0.9, 0.9)),
        "painted_uniform": dict(deletion_kl=a(1.5, 2.5), deletion_prob=a(0.6, 0.6), insertion_prob=a(0.4, 0.4), insertion_kl=a(0.5, 0.5)),
    }  # fmt: skip
    m = margins(areas, games=[0, 0])["map"]
    assert m["deletion_kl"][::2] == pytest.approx((0.5, "painted_uniform"))  # higher is better; paired: 0.5 both
    assert m["deletion_prob"][::2] == pytest.approx((0.2, "random"))  # lower is better: 0.5 - (0.2, 0.4)
    assert m["insertion_prob"][::2] == pytest.approx((0.2, "random"))
    assert m["insertion_kl"][::2] == pytest.approx((0.3, "painted_uniform"))
    assert np.isnan(m["deletion_kl"][1])  # one game: no standard error over games
    assert margins({"map": areas["map"]}, [0, 0]) == {}  # no floor, no margin


def test_the_strongest_floor_is_chosen_on_the_other_half_of_the_games():
    """Games 0 and 2 choose the floor for games 1 and 3 and vice versa; the margin is paired, its error over games."""
    games = np.array([0, 0, 1, 2, 3, 3])
    assert folds_of(games).tolist() == [0, 0, 1, 0, 1, 1] and folds_of([5, 5]).tolist() == [0, 0]
    zero = np.zeros(6)
    edge = np.array([3.0, 3.0, 0.0, 3.0, 0.0, 0.0])  # strong on the even games only
    intensity = np.array([0.0, 0.0, 2.0, 0.0, 2.0, 2.0])  # strong on the odd games only
    kl = np.array([4.0, 5.0, 1.0, 3.0, 2.0, 4.0])
    areas = {m: dict(deletion_kl=v, deletion_prob=zero, insertion_prob=zero, insertion_kl=zero)
             for m, v in (("map", kl), ("edge", edge), ("intensity", intensity))}  # fmt: skip
    value, se, floor = margins(areas, games)["map"]["deletion_kl"]
    # even games are scored against the floor chosen on the odd ones (intensity) and vice versa (edge)
    expected = kl - np.where(folds_of(games) == 0, intensity, edge)  # [4, 5, -2, 3, 2, 4]
    assert floor == "intensity/edge" and value == pytest.approx(expected.mean())
    assert se == pytest.approx(mean_and_se(expected, games)[1])
    in_sample = kl - np.maximum(edge.mean(), intensity.mean())  # what picking on all states would have said
    assert value != pytest.approx(in_sample.mean())


def test_seeds_and_games_adds_the_spread_of_the_seeds_in_quadrature():
    values = np.array([[0.1, 0.3, 0.2, 0.6], [0.5, 0.7, 0.4, 0.8]])  # 2 seeds x 4 states of games 0, 0, 1, 1
    r = seeds_and_games(values, np.array([0, 0, 1, 1]))
    by_seed, by_state = [0.3, 0.6], values.mean(0)  # [0.3, 0.5, 0.3, 0.7]
    se_seeds, se_games = np.std(by_seed, ddof=1) / np.sqrt(2), np.std([0.4, 0.5], ddof=1) / np.sqrt(2)
    assert r["value"] == pytest.approx(0.45) and r["seeds"] == pytest.approx(by_seed)
    assert r["se"] == pytest.approx(np.sqrt(se_seeds**2 + se_games**2)) and by_state.mean() == pytest.approx(0.45)
    one = seeds_and_games(values[:1], np.array([0, 0, 1, 1]))  # one seed: its spread is unknown, and so is the error
    assert one["value"] == pytest.approx(0.3) and np.isnan(one["se"])


def test_explained_action_is_the_most_probable_one_by_default():
    logits, taken = torch.tensor([[0.1, 2.0, 0.3], [1.0, 0.0, -1.0]]), torch.tensor([2, 2])
    assert explained_actions(logits, taken, "greedy").tolist() == [1, 0]
    assert explained_actions(logits, taken, "taken").tolist() == [2, 2]
    assert Args(checkpoint="").explain == "greedy"


def test_integrated_gradients_completeness_error_is_reported_right():
    """A ReLU network without biases integrates exactly from black: the reported error is float rounding."""
    torch.manual_seed(0)
    model = Agent(4, attn_heads=0)
    with torch.no_grad():
        for layer in (model.conv1, model.conv2, model.conv3, model.fc, model.actor, model.critic):
            layer.bias.zero_()
        model.actor.weight *= 100
    obs = random_obs(3)
    actions = model(obs)[0].argmax(-1)
    args = Args(checkpoint="", ig_steps=3)
    _, _, incomplete, _ = explanation_maps(model, obs, actions, ["ig_black", "ig_blur"], args, torch.Generator())
    assert float(incomplete["ig_black"].max()) < 1e-3 and incomplete["ig_blur"].shape == (3,)


def test_bilinear_drawing_interpolates_between_field_centres_like_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    grid = torch.rand(2, 3, 7, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    drawn = bilinear_grid(grid)
    centres = 8 * np.arange(7) + 17.5  # unit u's field [8u, 8u + 36) has its centre at pixel 8u + 17.5
    pixels = np.clip(np.arange(84), centres[0], centres[-1])  # constant beyond the outermost centres
    rows, cols = np.meshgrid(pixels, pixels, indexing="ij")
    for b in range(2):
        for h in range(3):
            reference = interpolate.RegularGridInterpolator((centres, centres), grid[b, h].numpy())
            np.testing.assert_allclose(drawn[b, h].numpy(), reference(np.stack([rows, cols], -1)), atol=1e-12)
    assert drawn.shape == (2, 3, 84, 84) and bool((drawn[0, 0, :18, :18] == grid[0, 0, 0, 0]).all())


def test_input_floors_are_the_edges_the_frames_and_what_moved():
    x = torch.zeros(1, 4, 84, 84)
    x[0, 2, 10, 10] = x[0, 3, 10, 12] = 1.0  # a dot that moved two pixels between the last two frames
    x[0, :, 30:70, 30:70] = 0.5  # a still square
    g = torch.Generator()
    difference = floor_maps("frame_difference", 1, 1, g, x)[0]
    assert (
        set(map(tuple, torch.nonzero(difference).tolist())) == {(10, 10), (10, 12)} and float(difference.max()) == 1.0
    )
    torch.testing.assert_close(floor_maps("intensity", 1, 1, g, x)[0], x[0].amax(0))
    edge = floor_maps("edge", 1, 1, g, x)[0]
    torch.testing.assert_close(edge, (x - gaussian_blur(x)).abs().amax(1)[0])
    assert (
        float(edge[50, 50]) < 1e-6 and float(edge[30, 50]) > 0.1
    )  # flat inside the square (blur radius 9 px), an edge at its border


def test_seven_by_seven_maps_are_drawn_from_the_same_grids_as_saliency_py(agent):
    obs, actions = random_obs(3), torch.tensor([0, 1, 2])
    args = Args(checkpoint="", samples=2, stride=21)
    methods = ["attention", "gradcam", "attention_bilinear", "gradcam_bilinear"]
    maps, _, _, grids = explanation_maps(agent, obs, actions, methods, args, torch.Generator())
    ours = saliency_maps(agent, obs, ("attention", "gradcam"), "action", action=actions)
    for method in ("attention", "gradcam"):
        torch.testing.assert_close(maps[method], ours[method].amax(1))
        torch.testing.assert_close(maps[f"{method}_bilinear"], bilinear_grid(grids[method]).sum(1))
    assert grids["attention"].shape == (3, 2, 7, 7) and grids["gradcam"].shape == (3, 1, 7, 7)


def test_grid_sanity_check_is_spearman_on_the_49_values_per_seed(agent):
    stats = pytest.importorskip("scipy.stats")
    obs, actions, games = random_obs(4), torch.tensor([0, 1, 2, 3]), np.array([0, 0, 1, 1])
    x = obs.float() / 255
    result = grid_sanity(agent, x, actions, games, seeds=[5, 6], chunk=8)
    assert set(result) == {"attention", "gradcam"} and list(result["attention"]) == LAYERS
    assert result["attention"]["fc"] == {"value": 1.0, "se": 0.0, "seeds": [1.0, 1.0]}  # computed below fc
    trained = grid_maps(agent, x, actions, 8)["attention"].sum(1)
    conv3 = dict(cascade(agent, 6))["conv3"]
    again = grid_maps(conv3, x, actions, 8)["attention"].sum(1)
    expected = np.mean([stats.spearmanr(trained[s].flatten(), again[s].flatten()).statistic for s in range(4)])
    assert result["attention"]["conv3"]["seeds"][1] == pytest.approx(expected, abs=1e-9)


def test_spearman_of_absolute_values_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-4, 5, (3, 84, 84), generator=g).float()  # many ties
    b = a.abs() + 3 * torch.rand(3, 84, 84, generator=g)
    expected = [stats.spearmanr(a[i].abs().flatten(), b[i].flatten()).statistic for i in range(3)]
    assert spearman(a, b).tolist() == pytest.approx(expected, abs=1e-9)
    assert spearman(a, -a).tolist() == pytest.approx([1, 1, 1])
    assert spearman(a, torch.ones_like(a)).tolist() == [0, 0, 0]  # a constant map has no order: 0


# ----------------------------------------------------------------------------- the command line


@pytest.mark.slow
def test_end_to_end_writes_exactly_the_documented_json_a_csv_and_two_figures(tiny_checkpoint, tmp_path, capsys):
    out = cli(["--checkpoint", tiny_checkpoint, *TINY, "--out", str(tmp_path / "o")])
    with open(os.path.join(out, "faithfulness.json")) as f:
        data = json.load(f)
    assert set(data) == {"checkpoint", "env_id", "states", "games", "explained", "baseline", "ig_steps", "margin_px",
                         "sanity_states", "sanity_seeds", "ig_completeness_error", "policy", "methods",
                         "attention_heads", "grid_sanity", "grid_objects"}  # fmt: skip
    assert (data["checkpoint"], data["env_id"], data["states"], data["games"], data["baseline"], data["explained"]) == (
        tiny_checkpoint,
        "BreakoutNoFrameskip-v4",
        4,
        2,
        "blur",
        "greedy",
    )
    assert list(data["methods"]) == list(ALL_METHODS) and set(data["ig_completeness_error"]) == {"ig_black", "ig_blur"}
    for method, r in data["methods"].items():
        assert set(r) == KEYS | ({"sanity_floor"} if method not in FLOORS else set()), method
        assert list(r["sanity"]) == LAYERS and list(r["sanity_se"]) == LAYERS
        assert set(r["objects"]) == {"ball", "paddle"}
        assert all(isinstance(v, float) and np.isfinite(v) for v in [*(r[k] for k in AREAS), *r["sanity"].values()])
        assert set(r["margin"]) == {"deletion_kl", "deletion_prob", "insertion_prob", "insertion_kl"}
        assert all(set(m["floor"].split("/")) <= set(FLOORS) and np.isfinite(m["value"]) for m in r["margin"].values())
        paddle = r["objects"]["paddle"]  # always on the screen
        assert set(paddle) == {"mass", "mass_se", "rank", "rank_se", "pointing", "pointing_se", "area", "states"}
        assert paddle["states"] == 4 and 0 < paddle["area"] < 0.2
        assert all(0 <= paddle[k] <= 1 for k in ("mass", "rank", "pointing"))
    assert list(data["attention_heads"]) == ["attention (head 0)", "attention (head 1)"]
    assert list(data["grid_objects"]) == [
        "attention (head 0)",
        "attention (head 1)",
        "attention (heads summed)",
        "gradcam",
    ]
    paddle = data["grid_objects"]["gradcam"]["paddle"]
    assert set(paddle) == {f"{k}{s}" for k in ("contains", "nearest") for s in ("", "_se", "_chance")} | {"states"}
    assert set(data["grid_sanity"]) == {"attention", "gradcam"} and data["sanity_seeds"] == 3
    assert len(data["grid_sanity"]["gradcam"]["conv1"]["seeds"]) == 3
    with open(os.path.join(out, "faithfulness.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [row["method"] for row in rows] == list(ALL_METHODS) and "sanity_conv1" in rows[0]
    assert {"margin_deletion_kl", "ball_mass", "ball_rank", "paddle_pointing", "sanity_floor", "sanity_input"} <= set(
        rows[0]
    )
    for name in ("faithfulness.png", "objects.png"):
        assert os.path.getsize(os.path.join(out, name)) > 10000
    printed = capsys.readouterr().out
    assert "| random |" in printed and "| method (explains the most probable action) |" in printed
    assert "ball: pointing game" in printed and "| *chance: the mask's share of the screen* |" in printed
    assert "floor (geometry alone)" in printed and "(over " in printed and "peak unit's field" in printed
    assert "7x7 map (4 states x 3 seeds)" in printed


@pytest.mark.slow
def test_agent_without_attention_skips_attention_with_a_note(tiny_baseline_checkpoint, tmp_path, capsys):
    argv = ["--checkpoint", tiny_baseline_checkpoint, *TINY, "--baseline", "black", "--out", str(tmp_path / "o")]
    out = cli([*argv, "--method", "attention", "gradcam", "gradient", "random", "--explain", "taken"])
    with open(os.path.join(out, "faithfulness.json")) as f:
        data = json.load(f)
    assert list(data["methods"]) == ["gradcam", "gradient", "random"] and data["baseline"] == "black"
    assert list(data["methods"]["gradient"]["sanity"]) == [x for x in LAYERS if x != "attention"]
    assert data["explained"] == "taken" and data["attention_heads"] == {} and list(data["grid_objects"]) == ["gradcam"]
    printed = capsys.readouterr().out
    assert "no attention module" in printed and "| method (explains the action taken) |" in printed


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_no_empty_folder(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import faithfulness

    def interrupted(*a, **kw):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(faithfulness, "play", interrupted)
    with pytest.raises(SystemExit) as exit_:
        cli(["--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "o")])
    assert exit_.value.code == 130 and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, tiny_checkpoint):
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with open(tiny_checkpoint, "rb") as f:
        (tmp / "trunc.pt").write_bytes(f.read()[:20000])
    torch.save({"format_version": 1, "model": {}, "hook": print}, tmp / "code.pt")  # a pickled callable
    (tmp / "a_file").write_text("")
    (tmp / "used").mkdir()
    (tmp / "used" / "faithfulness.json").write_text("keep me")
    return tmp


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--checkpoint", "{tmp}/nope.pt"], "does not exist"),
        (["--checkpoint", "{tmp}/garbage.pt"], "not a readable checkpoint"),
        (["--checkpoint", "{tmp}/trunc.pt"], "not a readable checkpoint"),
        (["--checkpoint", "{tmp}/code.pt"], "could run code"),
        (["--states", "0"], "--states must be at least 1"),
        (["--games", "0"], "--games must be at least 1"),
        (["--steps", "10"], "--steps must be at least 20"),
        (["--sanity-states", "-1"], "--sanity-states must be"),
        (["--sanity-seeds", "0"], "--sanity-seeds must be at least 1"),
        (["--margin", "-1"], "--margin must be 0 or more"),
        (["--threads", "-1"], "--threads must be 0 or more"),
        (["--ig-steps", "0"], "--ig-steps must be at least 1"),
        (["--samples", "0"], "--samples must be at least 1"),
        (["--stride", "0"], "--stride must be at least 1"),
        (["--checkpoint", "{baseline}", "--method", "attention"], "no method is left"),
        (["--out", "{tmp}/a_file/sub"], "cannot write"),
        (["--out", "{tmp}/used"], "--force"),
    ],
)
def test_bad_input_is_one_sentence_and_writes_nothing(
    tiny_checkpoint, tiny_baseline_checkpoint, bad_files, capsys, argv, words
):
    fresh = bad_files / "fresh"
    argv = [a.format(tmp=bad_files, baseline=tiny_baseline_checkpoint) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        cli(["--checkpoint", tiny_checkpoint, "--out", str(fresh), *argv])
    message = exit_.value.code
    assert isinstance(message, str) and message.startswith("error: ") and words in message, message
    assert len(message.splitlines()) == 1 and "Traceback" not in capsys.readouterr().err
    assert not fresh.exists() and (bad_files / "used" / "faithfulness.json").read_text() == "keep me"


@pytest.mark.slow
def test_as_a_process_bad_input_exits_1_and_an_unknown_choice_2(tiny_checkpoint, tmp_path):
    def run(*args):
        script = os.path.join(ROOT, "faithfulness.py")
        return subprocess.run(
            [sys.executable, script, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    proc = run("--checkpoint", "nope.pt")
    assert proc.returncode == 1 and proc.stderr.strip() == "error: checkpoint 'nope.pt' does not exist."
    proc = run("--checkpoint", tiny_checkpoint, "--method", "occlusion", "--baseline", "grey", "--explain", "sampled")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "occlusion" in proc.stderr
    assert "smoothgrad" in proc.stderr and not os.listdir(tmp_path)
