"""Tests of faithfulness_grounding.py: object masks and boxes from the stacked frames, the localisation metrics by
hand and against Quantus's definitions (written out: Quantus is no dependency), tied places, and the 7x7 grid's
grounding by hand."""

import numpy as np
import pytest
import torch

from faithfulness_grounding import (
    grid_grounding,
    grounding,
    latest_boxes,
    mass_accuracy,
    object_masks,
    pointing_game,
    rank_accuracy,
)
from play import mean_and_se


def test_object_masks_join_the_stacked_frames_boxes_grown_by_the_margin():
    ball1, ball2 = (100, 30, 104, 32), (110, 40, 114, 42)  # 210x160 boxes -> (40, 15, 42, 17), (44, 21, 46, 23)
    objects = [[{}, {}, {"ball": ball1, "paddle": None}, {"ball": ball2, "paddle": None}], [{"ball": None}] * 4]
    masks = object_masks(objects, margin=1)
    expected = np.zeros((84, 84), bool)
    expected[39:43, 14:18] = expected[43:47, 20:24] = True
    assert np.array_equal(masks["ball"][0], expected) and not masks["ball"][1].any() and not masks["paddle"].any()
    assert object_masks([[{}] * 4], 4) == {}  # a game without objects


def test_grounding_counts_mass_pointing_rank_and_screen_share_by_hand():
    masks = {"ball": np.zeros((3, 84, 84), bool)}
    masks["ball"][:2, :42, :42] = True  # a quarter of the screen in states 0 and 1; absent in state 2
    m = torch.zeros(3, 84, 84)
    m[0, 0, 0], m[0, 80, 80] = 3.0, 1.0  # 3/4 of the mass and the peak on it
    m[1, 0, 0], m[1, 80, 80] = 1.0, 1.0  # a tie at the top: the maximum is reached on it too
    m[2] = 1.0  # the ball is not there: left out
    r = grounding(m, masks)["ball"]
    assert (r["mass"], r["area"], r["pointing"], r["states"]) == pytest.approx((0.625, 0.25, 1.0, 2))
    assert r["mass_se"] == pytest.approx(np.std([0.75, 0.5], ddof=1) / np.sqrt(2))
    # rank: K = 1764 places; state 0 has 1 place of the mask among its top 1764 places for sure (the one with 3),
    # and the 7054 zeros tied for the other 1762 slots, 1763 of them in the mask: 1 + 1762 * 1763 / 7054.
    # State 1: the two 1s (one inside) and 1762 slots among 7054 zeros.
    zeros_in_mask, slots = 1763, 1762
    expected = [(1 + slots * zeros_in_mask / 7054) / 1764, (1 + slots * zeros_in_mask / 7054) / 1764]
    assert r["rank"] == pytest.approx(np.mean(expected))
    m[1, 80, 80] = 2.0  # now its peak is off the ball
    assert grounding(m, masks)["ball"]["pointing"] == pytest.approx(0.5)
    assert grounding(torch.zeros(3, 84, 84), masks)["ball"]["states"] == 0  # all-zero maps have no mass to share
    assert grounding(m, masks, games=[0, 1, 1])["ball"]["mass_se"] == pytest.approx(
        mean_and_se([0.75, 1 / 3], [0, 1])[1]
    )


def quantus_pointing_game(a, s):
    """Quantus 0.6's PointingGame.evaluate_instance (unweighted), written out: is a maximum of a on the mask s?"""
    a, s = a.flatten(), s.flatten().astype(bool)
    return bool(np.any(s[np.argwhere(a == np.max(a))]))


def quantus_rank_accuracy(a, s):
    """Quantus 0.6's RelevanceRankAccuracy.evaluate_instance, written out: the mask's share of the top-K places."""
    a, s = a.flatten(), np.where(s.flatten().astype(bool))[0]
    return len(np.intersect1d(s, np.argsort(a)[-len(s) :])) / len(s)


def quantus_mass_accuracy(a, s):
    """Quantus 0.6's RelevanceMassAccuracy, written out: the share of a's sum inside the mask."""
    return (a * s).sum() / a.sum()


def test_localisation_metrics_agree_with_quantus_on_maps_without_ties():
    rng = np.random.default_rng(0)
    m = rng.random((6, 84, 84)) ** 3  # continuous: no ties
    masks = np.zeros((6, 84, 84), bool)
    for s, (y, x, h, w) in enumerate(
        [(0, 0, 5, 5), (40, 40, 10, 3), (70, 10, 4, 16), (20, 60, 2, 2), (0, 0, 84, 1), (3, 3, 30, 30)]
    ):
        masks[s, y : y + h, x : x + w] = True
    m[3, 21, 61] = 5.0  # a peak on the mask of state 3
    assert pointing_game(m, masks).tolist() == [quantus_pointing_game(a, s) for a, s in zip(m, masks)]
    assert pointing_game(m, masks)[3] == 1.0
    assert rank_accuracy(m, masks) == pytest.approx([quantus_rank_accuracy(a, s) for a, s in zip(m, masks)])
    assert mass_accuracy(m, masks) == pytest.approx([quantus_mass_accuracy(a, s) for a, s in zip(m, masks)])


def test_rank_accuracy_takes_tied_places_in_a_random_order_in_expectation():
    m = np.zeros((1, 84, 84))
    m[0, 0, :4] = 1.0  # 4 places tied at the top
    m[0, 1, 0] = 2.0  # above them
    mask = np.zeros((1, 84, 84), bool)
    mask[0, 0, 0] = mask[0, 1, 0] = mask[0, 5, 5] = True  # K = 3: the 2.0 (in), one of the four 1.0s (in), a 0
    # the top 3: the 2.0 and 2 of the 4 tied 1.0s, one of which is in the mask: 1 + 2 * 1/4 hits of 3
    assert rank_accuracy(m, mask)[0] == pytest.approx((1 + 2 / 4) / 3)
    hits = []  # the same by breaking the ties at random, many times, as Quantus would with a shuffled order
    rng = np.random.default_rng(1)
    for _ in range(4000):
        order = rng.permutation(84 * 84)
        shuffled = m.flatten()[order]
        top = order[np.argsort(shuffled, kind="stable")[-3:]]
        hits.append(np.isin(top, np.flatnonzero(mask)).sum() / 3)
    assert np.mean(hits) == pytest.approx(rank_accuracy(m, mask)[0], abs=0.01)
    plateau = m.copy()
    plateau[0, 0, 1] *= 1 + 1e-8  # float noise in a painted plateau is still a tie
    assert rank_accuracy(plateau, mask)[0] == pytest.approx(rank_accuracy(m, mask)[0])
    assert pointing_game(np.where(m == 2.0, 1.0, m), mask)[0] == 1.0  # the plateau touches the mask: a hit


def test_latest_boxes_take_the_newest_frame_that_shows_the_object():
    ball1, ball2 = (100, 30, 104, 32), (110, 40, 114, 42)  # 210x160 -> (40, 15, 42, 17), (44, 21, 46, 23)
    objects = [[{}, {"ball": ball1}, {"ball": ball2}, {"ball": None}], [{"ball": None}] * 4]
    boxes = latest_boxes(objects)["ball"]
    assert boxes[0].tolist() == [44, 21, 46, 23] and np.isnan(boxes[1]).all()


def test_grid_grounding_by_hand():
    """A ball at rows 44-45, columns 20-21 (centre 44.5, 20.5): unit rows 2-5 hold rows 44-45 (8y <= 44, 46 <= 8y + 36),
    unit columns 0-2 hold columns 20-21; the nearest field centres (8u + 17.5) are row 3 (41.5) and column 0 (17.5)
    or 1 (25.5): 20.5 is 3 from 17.5 and 5 from 25.5, so column 0."""
    boxes = {"ball": np.array([[44, 20, 46, 22]] * 3 + [[np.nan] * 4], dtype=float)}
    grid = torch.zeros(4, 7, 7)
    grid[0, 3, 0] = 1.0  # the nearest unit: contains and nearest
    grid[1, 5, 2] = 1.0  # contains, not nearest
    grid[2, 6, 6] = 1.0  # neither
    grid[3, 3, 0] = 1.0  # no ball: left out
    r = grid_grounding(grid, boxes)["ball"]
    assert (r["contains"], r["nearest"], r["states"]) == pytest.approx((2 / 3, 1 / 3, 3))
    assert (r["contains_chance"], r["nearest_chance"]) == pytest.approx((4 * 3 / 49, 1 / 49))
    grid[2] = 1.0  # a flat map: every unit is a peak, a random one of them: chance exactly
    r = grid_grounding(grid, boxes)["ball"]
    assert r["contains"] == pytest.approx((1 + 1 + 12 / 49) / 3) and r["nearest"] == pytest.approx((1 + 0 + 1 / 49) / 3)
