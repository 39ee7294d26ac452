"""Does a map find the game's objects? Object grounding of faithfulness.py's maps, against chance.

The ball's and the paddle's boxes in the 4 stacked frames (read from the emulator's RAM by play.py) give masks
(`object_masks`) and, for the 7x7 maps, the box in the newest frame that shows the object (`latest_boxes`).

- `grounding`: the localisation metrics as Quantus defines them, relevance mass accuracy and relevance rank accuracy
  (Arras et al. 2022, CLEVR-XAI, arXiv 2003.07258) and the pointing game (Zhang et al. 2018, arXiv 1608.00507),
  beside the object's share of the screen (what a map blind to it gets);
- `grid_grounding`: the 7x7 maps on their grid: how often the peak unit's receptive field contains the object, and
  how often the peak is the object's nearest unit, each beside its chance rate (a unit drawn at random).

Means over states, standard errors over games (play.mean_and_se).
"""

import numpy as np
import torch

from play import box_in_observation, mean_and_se
from ppo_attention import Agent

FIELD, STRIDE = Agent.RECEPTIVE_FIELDS["attention"]  # unit (y, x) of the 7x7 grid sees pixels [8y, 8y + 36)
EQUAL = 1e-6  # values of a map within this fraction of its maximum are equal (float sums of painted maps)


def object_masks(objects: list, margin: int) -> dict:
    """{object name: (S, 84, 84) bool}: where each object is in the 4 stacked frames of each state, its box in
    each frame put into the observation (play.box_in_observation) and grown by `margin` px, joined over the
    frames. An object in none of a state's frames has an empty mask there. {} for a game without objects."""
    names = sorted({name for state in objects for frame in state for name in frame})
    masks = {name: np.zeros((len(objects), 84, 84), bool) for name in names}
    for s, state in enumerate(objects):
        for frame in state:
            for name, box in frame.items():
                if box is not None:
                    y0, x0, y1, x1 = box_in_observation(box, margin)
                    masks[name][s, y0:y1, x0:x1] = True
    return masks


def latest_boxes(objects: list) -> dict:
    """{object name: (S, 4) float (y0, x0, y1, x1)}: each object's box in the observation (end-exclusive, no margin)
    in the newest of a state's 4 stacked frames that shows it, where it is now; nan where no frame shows it."""
    names = sorted({name for state in objects for frame in state for name in frame})
    boxes = {name: np.full((len(objects), 4), np.nan) for name in names}
    for s, state in enumerate(objects):
        for frame in state:  # oldest to newest: the newest box showing the object stays
            for name, box in frame.items():
                if box is not None:
                    boxes[name][s] = box_in_observation(box)
    return boxes


def top_places(m: np.ndarray) -> np.ndarray:
    """Where each map of m (S, ...) >= 0 reaches its maximum, up to float rounding (within EQUAL of it): a painted
    map's plateau is one tie, whatever order its sums were added in. (S, ...) bool."""
    return m >= m.max(axis=tuple(range(1, m.ndim)), keepdims=True) * (1 - EQUAL)


def pointing_game(m: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The pointing game (Zhang et al. 2018, as Quantus's PointingGame computes it, unweighted): 1 where a
    maximum of the map lies in the object's mask, for maps m (S, 84, 84) >= 0 and masks (S, 84, 84) bool. Tied
    maxima count if any of them is in the mask (a painted map's plateau touching the mask hits). (S,) float."""
    return (top_places(m) & mask).any((1, 2)).astype(float)


def mass_accuracy(m: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Relevance mass accuracy (Arras et al. 2022; Quantus's RelevanceMassAccuracy): the share of the map's mass
    inside the mask, sum(m * mask) / sum(m). (S,)"""
    return np.where(mask, m, 0.0).sum((1, 2)) / m.sum((1, 2))


def rank_accuracy(m: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Relevance rank accuracy (Arras et al. 2022; Quantus's RelevanceRankAccuracy): with K the mask's size, the
    share of the mask among the map's K most relevant places. (S,)

    Places tied at the K-th value (a painted map's plateau) are taken in a random order, in expectation: the
    places above it count whole, and the remaining slots go to the tied places in proportion, so a tied place in
    the mask counts slots / tied. (Quantus takes numpy's argsort order among ties.) Equal means equal up to
    float rounding (EQUAL)."""
    S = len(m)
    flat, inside = m.reshape(S, -1), mask.reshape(S, -1)
    k = inside.sum(1)  # (S,)
    kth = -np.sort(-flat, axis=1)[np.arange(S), np.maximum(k, 1) - 1]  # (S,) the K-th largest value
    tied = np.abs(flat - kth[:, None]) <= EQUAL * flat.max(1, keepdims=True)
    above = (flat > kth[:, None]) & ~tied
    slots = k - above.sum(1)  # (S,) places left for the tied ones
    hits = (above & inside).sum(1) + slots * (tied & inside).sum(1) / tied.sum(1)
    return hits / np.maximum(k, 1)


def grounding(m: torch.Tensor, masks: dict, games=None) -> dict:
    """{object: {mass, pointing, rank (each with _se), area, states}} of maps m (S, 84, 84) >= 0, over the states
    where the object is on the screen and the map is not all zero: the means of relevance mass accuracy, the
    pointing game and relevance rank accuracy, with standard errors over games (`mean_and_se`), and the mask's
    mean share of the screen, what each of the three gives a map that knows nothing of the object (a uniform map,
    a random place, random ranks)."""
    m = m.detach().double().cpu().numpy()
    result = {}
    for name, mask in masks.items():
        keep = mask.any((1, 2)) & (m.sum((1, 2)) > 0)
        r = dict(area=float(mask[keep].mean()) if keep.any() else float("nan"), states=int(keep.sum()))
        clusters = None if games is None else np.asarray(games)[keep]
        for metric, score in (("mass", mass_accuracy), ("pointing", pointing_game), ("rank", rank_accuracy)):
            per_state = score(m[keep], mask[keep]) if keep.any() else None
            r[metric], r[f"{metric}_se"] = mean_and_se(per_state, clusters) if keep.any() else (np.nan,) * 2
        result[name] = r
    return result


def grid_grounding(grid: torch.Tensor, boxes: dict, games=None) -> dict:
    """{object: {contains, nearest (each with _se and _chance), states}} of maps on the 7x7 grid (S, 7, 7) >= 0,
    over the states where the object is on the screen (`latest_boxes`) and the map is not all zero.

    contains: the peak unit's receptive field (unit (y, x) sees pixels [8y, 8y + 36) x [8x, 8x + 36)) holds the
    whole object's box. nearest: the peak unit is the object's nearest unit, the one whose field centre
    (pixel 8y + 17.5) is nearest the centre of the object's box (ties: any of them). Tied peaks count in
    proportion (a random one of them). The chance of each: the fraction of the 49 units that satisfy it, what a
    unit drawn at random gets. Means over states, standard errors over games."""
    values = grid.detach().double().cpu().numpy()
    starts = STRIDE * np.arange(7)  # (7,) first pixel each unit's field sees, along a row or a column
    centres = starts + (FIELD - 1) / 2  # pixel index of the field's centre: 17.5, 25.5, ...
    peak = top_places(values)  # (S, 7, 7)
    result = {}
    for name, box in boxes.items():
        y0, x0, y1, x1 = (box[:, i, None] for i in range(4))  # (S, 1) each, end-exclusive
        rows = (starts <= y0) & (y1 <= starts + FIELD)  # (S, 7): the fields along y that hold the box's rows
        cols = (starts <= x0) & (x1 <= starts + FIELD)
        contains = rows[:, :, None] & cols[:, None, :]  # (S, 7, 7)
        distance = ((centres - (y0 + y1 - 1) / 2) ** 2)[:, :, None] + ((centres - (x0 + x1 - 1) / 2) ** 2)[:, None, :]
        nearest = distance <= distance.min((1, 2), keepdims=True) + 1e-9  # (S, 7, 7)
        keep = ~np.isnan(box[:, 0]) & (values.sum((1, 2)) > 0)
        r, clusters = dict(states=int(keep.sum())), None if games is None else np.asarray(games)[keep]
        for metric, target in (("contains", contains), ("nearest", nearest)):
            hit = (peak & target).sum((1, 2)) / peak.sum((1, 2))  # (S,) a random one of tied peaks
            r[metric], r[f"{metric}_se"] = mean_and_se(hit[keep], clusters) if keep.any() else (np.nan,) * 2
            r[f"{metric}_chance"] = float(target[keep].mean()) if keep.any() else float("nan")
        result[name] = r
    return result
