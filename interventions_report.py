"""The tables and figures of interventions.py: every table it prints and every PNG it draws, from its results.

- `show_ablation`, `show_steering`, `show_removal`, `show_examples`: one part's figures and tables, printed in
  Markdown (means ± standard errors over games; with one game there is no error: the mean alone, `play.plus_minus`);
- the tables (`ablation_table`, `steering_table`, `steering_objects_table`, `removal_table`, `follow_table`,
  `paths_table`) and the matplotlib figures (`draw_ablation`, `draw_steering`, `draw_removal`, `draw_examples`,
  `draw_channel_overview`), each drawn over the 84x84 input with the game's own 210x160 shape.
"""

import os

import numpy as np
import torch

from interventions_edits import FAR, NEAREST_PLACE, PLACES, RF_SIZE, RF_STRIDE
from overlays import head_colours
from play import box_in_observation, plus_minus, shifted, union_box
from saliency import collapse_frames

FRAME_ASPECT = 210 / 160  # the 84x84 input is a resize of the 210x160 frame: draw it with the game's shape


# ----------------------------------------------------------------------------- tables


def nats(mean: float, se: float) -> str:
    """A KL divergence ± its standard error (play.plus_minus: the value alone where the error is nan); values below
    0.001 in scientific notation, so that they do not read 0."""
    return plus_minus(mean, se, 3) if mean >= 1e-3 or mean == 0 else plus_minus(mean, se, 1, notation="e")


def ablation_table(results: dict) -> str:
    head = "| condition | score (mean ± SE) | game length (steps) | KL from intact (nats, mean ± SE) | "
    head += "most probable action changed |"
    lines = [head, "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        cut = f", {r['truncated']} cut" if r["truncated"] else ""
        lines.append(
            f"| {name} | {plus_minus(r['score_mean'], r['score_se'], 2)} | {np.mean(r['steps']):.0f}{cut} | "
            f"{nats(r['kl_mean'], r['kl_se'])} | {100 * r['action_changed_mean']:.1f}% |"
        )
    return "\n".join(lines)


def agreement_line(heads: dict) -> str:
    """How alike the heads are, in words."""
    entropies = ", ".join(plus_minus(e, se, 2) for e, se in zip(heads["entropy"], heads["entropy_se"]))
    text = f"Attention entropy per head (intact games, mean ± SE over games): {entropies} nats"
    text += f" (uniform: {np.log(PLACES):.2f})."
    for pair, r in heads.items():
        if "-" in pair:
            h, g = pair.split("-")
            text += (f" Heads {h} and {g} peak at the same place in {percent((r['same_peak'], r['same_peak_se']))} "
                     f"of states; their maps overlap by {plus_minus(r['overlap'], r['overlap_se'], 2)} (1: "
                     "identical).")  # fmt: skip
    return text


def percent(value: tuple, digits: int = 0) -> str:
    """A share (mean, SE) as "12% ± 3%" ("12%" where the error is nan)."""
    mean, se = value
    return plus_minus(100 * mean, 100 * se, digits, unit="%")


def signed_percent(value: tuple) -> str:
    """A difference of shares (mean, SE) as "+12 ± 3 points" ("+12 points" where the error is nan)."""
    mean, se = value
    error = "" if np.isnan(se) else f" ± {100 * se:.0f}"
    return f"{round(100 * mean):+d}{error} points"  # round() gives an int: +0, never -0


def steering_table(results: dict) -> str:
    lines = ["| steered | states (games) | action changed: all 49 places | own peak | a random place | "
             "KL: all places | own peak | a random place | largest swing of an action's probability |"]  # fmt: skip
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        cells = [f"{r['states']} ({r['games']})"]
        cells += [percent(r[k]["action_changed"], 1) for k in ("all_places", "own_peak", "random_place")]
        cells += [nats(*r[k]["kl"]) for k in ("all_places", "own_peak", "random_place")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['largest_swing_mean']:.2f} |")
    return "\n".join(lines)


def steering_objects_table(results: dict) -> str:
    lines = ["| steered | object | states (games) | onto its place | far from it | own peak | a random place | "
             "onto it minus far | minus own peak | minus random place |"]  # fmt: skip
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for config, r in results.items():
        for name, o in r["objects"].items():
            cells = [f"{o['states']} ({o['games']})"]
            cells += [percent(o[k]) for k in ("on_object", "far", "own_peak", "random_place")]
            cells += [signed_percent(o[f"on_object_minus_{k}"]) for k in ("far", "own_peak", "random_place")]
            lines.append(f"| {config} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def removal_table(results: dict, heads: int) -> str:
    columns = "".join(f" head {h}: mass shifted | head {h}: peak moved (places) |" for h in range(heads))
    lines = [
        f"| edit | states (games) | pixels changed (summed change) | KL from intact (nats) | action changed |{columns}"
    ]
    lines.append("|---|---:|---:|---:|---:|" + "---:|" * 2 * heads)
    for label, r in results.items():
        cells = [f"{r['states']} ({r['games']})", f"{r['pixels_changed']:.0f} ({r['summed_change']:.0f})"]
        cells.append(nats(r["kl_mean"], r["kl_se"]))
        cells.append(percent((r["action_changed_mean"], r["action_changed_se"])))
        for h in range(heads):
            cells += [plus_minus(v, e, 2) for v, e in (r[f"head{h}_mass_shifted"], r[f"head{h}_peak_moved"])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def follow_table(results: dict, heads: int) -> str:
    """Where each head's peak is, before and after the game drew the object elsewhere."""
    lines = ["| moved | states (games) | moved by (places) | head | its peak to the object, as it was | after: to "
             "the new place | after: to the old place |", "|---|---:|---:|---|---:|---:|---:|"]  # fmt: skip
    for label, r in results.items():
        if "offset_places" not in r:
            continue
        name = label.removesuffix(" moved")
        for h in range(heads):
            d = r[f"head{h}_peak_to_{name}"]
            cells = [plus_minus(v, e, 2) for v, e in (d["intact"], d["to_new"], d["to_old"])]
            lines.append(
                f"| {label} | {r['states']} ({r['games']}) | {r['offset_places']:.1f} | {h} | "
                + " | ".join(cells)
                + " |"
            )
    return "\n".join(lines)


def paths_table(paths: dict) -> str:
    lines = ["| edit | states (games) | KL: as it is | KL: intact attention patched in | KL: edited attention alone | "
             "share through the attention (95% interval) | attention alone / as it is | action changed: as it is / "
             "intact attention / attention alone |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for label, r in paths.items():
        cells = [f"{r['states']} ({r['games']})"] + [
            nats(*r[k]["kl"]) for k in ("full", "intact_attention", "attention_only")
        ]
        for k in ("through_attention", "attention_alone"):
            (low, high), value = r[f"share_{k}"]["interval"], r[f"share_{k}"]["value"]
            interval = "" if np.isnan(low) else f" ({100 * low:.0f}% to {100 * high:.0f}%)"  # none from one game
            cells.append(f"{100 * value:.0f}%{interval}")
        cells.append(
            " / ".join(
                f"{100 * r[k]['action_changed'][0]:.0f}%" for k in ("full", "intact_attention", "attention_only")
            )
        )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figures


def on_input(m7: np.ndarray) -> np.ndarray:
    """A 7x7 map as an 84x84 image: each input pixel shows the place whose receptive field is centred nearest."""
    return m7[..., NEAREST_PLACE, :][..., NEAREST_PLACE]


def place_centre(p: int) -> tuple:
    """(x, y) in input pixels of the centre of place p's receptive field."""
    return (p % 7) * RF_STRIDE + RF_SIZE / 2, (p // 7) * RF_STRIDE + RF_SIZE / 2


def crop(obs: np.ndarray, y: int, x: int) -> np.ndarray:
    """The 36x36 receptive field of unit (y, x) in the observation, its 4 frames collapsed by their maximum."""
    image = collapse_frames(torch.as_tensor(obs)).numpy()
    return image[y * RF_STRIDE : y * RF_STRIDE + RF_SIZE, x * RF_STRIDE : x * RF_STRIDE + RF_SIZE]


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str, dpi: int = 80) -> None:
    """Write the figure atomically (a Ctrl-C leaves no half-written PNG) and close it."""
    fig.savefig(f"{path}.tmp.png", dpi=dpi)
    os.replace(f"{path}.tmp.png", path)
    pyplot().close(fig)


def draw_ablation(path: str, results: dict, heads: int, title: str) -> None:
    """Each condition's score (mean ± SE, one dot per game) and its policy's KL from the intact policy."""
    plt = pyplot()
    names = list(results)
    colours = head_colours(max(heads, 1)) / 255

    def colour(name):
        return next((colours[h] for h in range(heads) if name.startswith(f"head {h} ")), (0.45, 0.45, 0.5))

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.5 * len(names) + 1.8), layout="constrained", sharey=True)
    y = np.arange(len(names))[::-1]
    for yi, name in zip(y, names):
        r = results[name]
        hatch = "//" if "removed" in name else None
        left.barh(yi, r["score_mean"], xerr=r["score_se"], color=colour(name), hatch=hatch, alpha=0.8, capsize=4)
        jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(r["scores"]))
        left.plot(r["scores"], yi + jitter, "k.", ms=3, alpha=0.6)
        right.barh(yi, r["kl_mean"], xerr=r["kl_se"], color=colour(name), hatch=hatch, alpha=0.8, capsize=4)
    left.axvline(results["intact"]["score_mean"], color="k", ls="--", lw=1)
    left.set(yticks=y, yticklabels=names, xlabel="game score: bar = mean ± standard error, dot = one game")
    left.set_title("Score when the heads are edited (same seeds)")
    right.set(xlabel="KL(intact policy || edited policy), nats, on the intact games' states")
    right.set_title("How far the policy moves")
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    save(fig, path)


def draw_frame(ax, frame: np.ndarray) -> None:
    """The colour frame in the 84x84 input's coordinates, with the game's own shape."""
    ax.imshow(frame, extent=(0, 84, 84, 0), aspect=FRAME_ASPECT)
    ax.set(xticks=[], yticks=[], xlim=(0, 84), ylim=(84, 0))


def draw_steering(path: str, state: dict, policies: dict, steered: dict, intact: np.ndarray, attention: np.ndarray,
                  names: list, title: str) -> None:  # fmt: skip
    """One panel per (steered heads, action): the action's probability when the attention is forced onto each
    place, glowing over the frame (the brighter, the likelier; the game shows through where it is unlikely);
    circles mark where each head looks by itself. steered: {config: the heads it steers}."""
    plt = pyplot()
    configs, heads = list(policies), attention.shape[0]
    colours = head_colours(heads) / 255
    fig, axes = plt.subplots(len(configs), len(names), figsize=(2.3 * len(names) + 1.2, 3.0 * len(configs) + 0.9),
                             squeeze=False, layout="constrained")  # fmt: skip
    edges = [0, *(RF_STRIDE * k + RF_SIZE / 2 + RF_STRIDE / 2 for k in range(6)), 84]  # between the places' centres
    for row, config in enumerate(configs):
        for a, name in enumerate(names):
            ax = axes[row, a]
            draw_frame(ax, state["frame"])
            m = policies[config][:, a].reshape(7, 7)
            heat = on_input(m)
            image = ax.imshow(heat, extent=(0, 84, 84, 0), aspect=FRAME_ASPECT, cmap="inferno", vmin=0, vmax=1,
                              alpha=0.65 * np.sqrt(heat), interpolation="nearest")  # fmt: skip
            for e in edges[1:-1]:
                ax.axhline(e, color="white", lw=0.3, alpha=0.35)
                ax.axvline(e, color="white", lw=0.3, alpha=0.35)
            for h in range(heads):  # concentric, so that heads looking at the same place all show
                x, y = place_centre(int(attention[h].argmax()))
                ax.plot(x, y, "o", ms=max(13 - 3.5 * h, 3), mfc="none", mec=colours[h], mew=2)
            for box in (state["objects"][-1] or {}).values():  # the game's objects, so that they stay in view
                if box is not None:
                    y0, x0, y1, x1 = box_in_observation(box, margin=1)
                    ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="cyan", lw=1))
            ax.set_title(f"P({name}): intact {intact[a]:.2f}\nsteered {m.min():.2f} to {m.max():.2f}", fontsize=9)
        others = [h for h in range(heads) if h not in steered[config]]
        kept = f"\n({', '.join(f'head {h}' for h in others)} as it was)" if others else ""
        axes[row, 0].set_ylabel(f"{config} forced\nonto the place{kept}", fontsize=10)
    fig.colorbar(image, ax=axes, fraction=0.03, pad=0.01, label="probability of the action when steered there")
    fig.suptitle(f"{title}\nEach place glows with the action's probability when the attention is forced onto it.\n"
                 "Circles: where each head looks by itself, in its colour (head 0 outermost). Cyan: the game's objects "
                 "(from the RAM).", fontsize=10)  # fmt: skip
    save(fig, path)


def bar_top(mean: float, se: float) -> float:
    """The top of a bar and its error bar, for the axis limits: the error is nan with one game, and an axis that
    ends at 0 (every KL 0) cannot be drawn."""
    return max(mean + (0.0 if np.isnan(se) else se), 1e-3)


def draw_removal(path: str, results: dict, paths: dict, examples: dict, heads: int, title: str) -> None:
    """Per object: a typical state as the agent saw it (4 frames maxed), with the object taken away, drawn by the game
    elsewhere, and the location-matched control, each with the attention (glow: all heads; circles: each head's peak)
    and the edited boxes outlined; then the means over games: the policy's KL for each edit, the KL through each path
    (activation patching), and each head's attention mass shifted."""
    plt = pyplot()
    colours = head_colours(max(heads, 1)) / 255
    panels = [("intact", "as it was"), ("removed", "taken away"), ("moved", "drawn elsewhere\nby the game"),
              ("control", "control: its pixels copied\ninto empty playfield")]  # fmt: skip
    panels = [p for p in panels if p[0] != "moved" or any("moved" in e["images"] for e in examples.values())]
    n_bars = 1 + 2 * bool(heads)
    fig, axes = plt.subplots(len(examples), len(panels) + n_bars, squeeze=False, layout="constrained",
                             figsize=(2.4 * len(panels) + 3.3 * n_bars, 3.7 * len(examples) + 1.0),
                             width_ratios=[1] * len(panels) + [1.35] * n_bars)  # fmt: skip
    for row, (name, ex) in enumerate(examples.items()):
        state = ex["state"]
        boxes = dict(removed=state["boxes"], control=state["control"])
        if ex["offset"] is not None:
            boxes["moved"] = [None if b is None else box_in_observation(shifted(o[name], *ex["offset"]))
                              for b, o in zip(state["boxes"], state["objects"])]  # fmt: skip
        boxes = {k: union_box(v) for k, v in boxes.items()}  # one outline around the edited boxes of the 4 frames
        for col, (key, what) in enumerate(panels):
            ax = axes[row, col]
            ax.set(xticks=[], yticks=[], xlim=(0, 84), ylim=(84, 0))
            if key not in ex["images"]:
                ax.text(42, 42, f"the {name} is\nnot moved here", ha="center", va="center", fontsize=9)
                ax.set_title(what, fontsize=9)
                continue
            ax.imshow(ex["images"][key].max(0), cmap="gray", vmin=0, vmax=255, extent=(0, 84, 84, 0),
                      aspect=FRAME_ASPECT)  # fmt: skip
            attention = ex["attention"][key]
            if heads:
                heat = on_input(attention.sum(0).clip(0, 1))
                ax.imshow(heat, extent=(0, 84, 84, 0), aspect=FRAME_ASPECT, cmap="inferno", vmin=0, vmax=1,
                          alpha=0.7 * np.sqrt(heat), interpolation="nearest")  # fmt: skip
            for h in range(heads):
                x, y = place_centre(int(attention[h].argmax()))
                ax.plot(x, y, "o", ms=max(13 - 3.5 * h, 3), mfc="none", mec=colours[h], mew=2)
            if boxes.get(key) is not None:  # grown by a pixel, so that the outline leaves the object in view
                y0, x0, y1, x1 = boxes[key]
                ax.add_patch(plt.Rectangle((x0 - 1.5, y0 - 1.5), x1 - x0 + 2, y1 - y0 + 2, fill=False, ec="cyan", lw=1))
            ax.set_title(f"{what}\npolicy's KL: {ex['kl'][key]:.3f}" if key != "intact" else what, fontsize=9)
        axes[row, 0].set_ylabel(f"{name}: seed {state['seed']}, step {state['t']}", fontsize=9)
        bars = axes[row, len(panels) :]
        edits = [(f"{name} removed", "taken\naway", "tab:red"), (f"{name} moved", "moved", "tab:purple"),
                 (f"control for {name}", "control:\nempty\nplayfield", "tab:gray"),
                 (f"painted control for {name}", "control:\npainted\nelsewhere", "silver")]  # fmt: skip
        edits = [e for e in edits if e[0] in results]
        ax = bars[0]
        for x, (label, short, colour) in enumerate(edits):
            r = results[label]
            ax.bar(x, r["kl_mean"], yerr=r["kl_se"], color=colour, capsize=3)
            ax.text(x, bar_top(r["kl_mean"], r["kl_se"]), f"{r['kl_mean']:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, 1.15 * max(bar_top(results[e[0]]["kl_mean"], results[e[0]]["kl_se"]) for e in edits))
        ax.set_xticks(range(len(edits)), [e[1] for e in edits], fontsize=8)
        ax.set_title(f"KL(as it was || edited), nats\nmean ± SE over {results[f'{name} removed']['games']} games",
                     fontsize=9)  # fmt: skip
        if heads:
            ax = bars[1]
            routes = [("full", "as it is", "tab:red"), ("intact_attention", "intact attention\npatched in", "tab:blue"),
                      ("attention_only", "edited attention\nalone", "tab:orange")]  # fmt: skip
            labels = [label for label in (f"{name} removed", f"{name} moved") if label in paths]
            for k, (route, short, colour) in enumerate(routes):
                x = np.arange(len(labels)) + (k - 1) * 0.27
                values = [paths[label][route]["kl"] for label in labels]
                ax.bar(x, [v for v, _ in values], yerr=[e for _, e in values], width=0.27, color=colour, capsize=3,
                       label=short)  # fmt: skip
            top = max(bar_top(*paths[label][route]["kl"]) for label in labels for route, *_ in routes)
            ax.set_ylim(0, 1.55 * top)  # room for the legend above the bars
            shares = [f"{100 * paths[label]['share_through_attention']['value']:.0f}%" for label in labels]
            ticks = [f"{label.split()[-1]}\n{s} via attention" for label, s in zip(labels, shares)]
            ax.set_xticks(range(len(labels)), ticks, fontsize=8)
            ax.legend(fontsize=7, loc="upper right")
            ax.set_title("Through which path? KL, nats\n(activation patching)", fontsize=9)
            ax = bars[2]
            shown = [e for e in edits if not e[0].startswith("painted")]  # the painted control moves nothing
            for k, (label, short, colour) in enumerate(shown):
                values = [results[label][f"head{h}_mass_shifted"] for h in range(heads)]
                x = np.arange(heads) + (k - (len(shown) - 1) / 2) * 0.8 / len(shown)
                ax.bar(x, [v for v, _ in values], yerr=[e for _, e in values], width=0.8 / len(shown), color=colour,
                       capsize=3, label=short.replace("\n", " "))  # fmt: skip
            ax.set_xticks(range(heads), [f"head {h}" for h in range(heads)])
            ax.set_ylim(0, 1.3)
            ax.set_yticks(np.linspace(0, 1, 6))
            ax.legend(fontsize=7, loc="upper right")
            ax.set_title("attention mass shifted (0 to 1)", fontsize=9)
        for ax in bars:
            ax.grid(axis="y", alpha=0.3)
    key = "Glow: the attention of all heads; circles: each head's peak (head 0 outermost); "
    key = (key if heads else "No attention to draw (the agent has none); ") + "cyan: the edited boxes, all 4 frames."
    fig.suptitle(f"{title}\n{key}", fontsize=10)
    save(fig, path, dpi=90)


def draw_examples(path: str, examples: list, states: list, title: str) -> None:
    """A dataset-examples figure: the strongest examples' receptive-field crops, each above its whole input
    (the 4 frames collapsed by their maximum) with the field outlined."""
    plt = pyplot()
    k = max(len(examples), 1)
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k + 0.4, 4.0), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.8, wspace=0.08, hspace=0.35)  # fixed: 66 figures
    for i, (s, y, x, value) in enumerate(examples):
        obs = states[s]["obs"]
        axes[0, i].imshow(crop(obs, y, x), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes[0, i].set_title(f"{value:.2f} at place\n({y}, {x}) of the 7x7", fontsize=8)
        axes[1, i].imshow(collapse_frames(torch.as_tensor(obs)).numpy(), cmap="gray", vmin=0, vmax=255)
        box = plt.Rectangle((x * RF_STRIDE - 0.5, y * RF_STRIDE - 0.5), RF_SIZE, RF_SIZE, fill=False, ec="red", lw=1.5)
        axes[1, i].add_patch(box)
        axes[1, i].set_title(f"seed {states[s]['seed']}, step {states[s]['t']}", fontsize=7)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    if not examples:
        axes[0, 0].text(0.5, 0.5, "never active\non these states", ha="center", va="center", fontsize=9)
    fig.suptitle(title, fontsize=9)
    save(fig, path)


def draw_channel_overview(path: str, conv3: dict, states: list, title: str) -> None:
    """Every conv3 channel at a glance: its 4 strongest examples (receptive-field crops) as a 2x2 mosaic."""
    plt = pyplot()
    cols = 8
    rows = -(-len(conv3) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows + 0.6), squeeze=False, layout="constrained")
    for c, ax in zip(conv3, axes.flat):
        mosaic = np.empty((2 * RF_SIZE + 2, 2 * RF_SIZE + 2, 3), np.uint8)
        mosaic[:] = (40, 70, 170)  # blue gaps: no game pixel has this colour
        for i, (s, y, x, _) in enumerate(conv3[c][:4]):
            r, q = divmod(i, 2)
            mosaic[r * (RF_SIZE + 2) : r * (RF_SIZE + 2) + RF_SIZE, q * (RF_SIZE + 2) : q * (RF_SIZE + 2) + RF_SIZE] = (
                crop(states[s]["obs"], y, x)[..., None]
            )
        ax.imshow(mosaic, interpolation="nearest")
        top = f"peak {conv3[c][0][3]:.2f}" if conv3[c] else "never active"
        ax.set_title(f"channel {c}: {top}", fontsize=8)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    fig.suptitle(title, fontsize=10)
    save(fig, path)


# ----------------------------------------------------------------------------- each part's figures and tables


def show_ablation(out: str, ablation: dict, agreement: dict, heads: int, games: int, seed: int, title: str) -> None:
    """Part 1: ablation.png, the table of the conditions and how alike the heads are."""
    draw_ablation(os.path.join(out, "ablation.png"), ablation, heads, f"{title}: head ablation")
    seeds = f"{seed}-{seed + games - 1}"
    print(f"\nHead ablation: {games} games per condition, seeds {seeds} (the same for every condition). KL and "
          "action changes: on every state of the intact games, mean ± SE over games.\n")  # fmt: skip
    print(ablation_table(ablation))
    print(f"\n{agreement_line(agreement)}")


def show_steering(out: str, results: dict, policies: dict, intact: torch.Tensor, steered: list, attention: torch.Tensor,
                  names: list, figures: int, title: str) -> None:  # fmt: skip
    """Part 2: `figures` steering figures, of states spread over the steered ones (those that show every object,
    where the game has them), and the tables. The arguments are what interventions.attention_steering returns."""
    own = attention.cpu().numpy()  # (S, H, 7, 7): where the heads look by themselves
    shown = [i for i, s in enumerate(steered) if s["objects"][-1] and None not in s["objects"][-1].values()]
    shown = shown or list(range(len(steered)))  # states that show every object, where the game has them
    heads = {config: r["heads"] for config, r in results.items()}
    for i in [shown[j] for j in np.unique(np.linspace(0, len(shown) - 1, figures).round().astype(int))]:
        s = steered[i]
        path = os.path.join(out, f"steering_seed{s['seed']}_step{s['t']:05d}.png")
        draw_steering(path, s, {c: p[i].cpu().numpy() for c, p in policies.items()}, heads, intact[i].cpu().numpy(),
                      own[i], names, f"{title}, seed {s['seed']}, step {s['t']}: attention steering")  # fmt: skip
    print(f"\nAttention steering: {len(steered)} states of the intact games, the steered heads forced onto each of the "
          "49 places in turn, onto their own peak (a one-hot map where they look anyway) and onto one random place "
          "per state; compared with the intact policy at the same state. Mean ± SE over games.\n")  # fmt: skip
    print(steering_table(results))
    if any(r["objects"] for r in results.values()):
        print(f"\nSteering onto an object's place (the place whose receptive field is centred nearest it) against "
              f"the places {FAR} or more rows or columns away from it (their mean), the heads' own peak and a random "
              "place, on the states that show the object: share of states whose most probable action changes, and "
              "the differences state by state. Mean ± SE over games.\n")  # fmt: skip
        print(steering_objects_table(results))


def show_removal(out: str, results: dict, paths: dict, examples: dict, heads: int, policy: str, title: str) -> None:
    """Part 3: removal.png and the tables. The arguments are what interventions_objects.object_removal returns, the
    agent's heads and the policy its KL follows (agents.played_policy)."""
    title += ": taking objects away" + (
        "" if policy == "policy" else f"\nthe KL is that of the policy it plays, {policy}"
    )
    if examples:
        draw_removal(os.path.join(out, "removal.png"), results, paths, examples, heads, title)
    print("\nTaking objects away, on the sampled states that show the object: removed (painted over with the "
          "background in all 4 stacked frames); moved (drawn by the game elsewhere: its position in the RAM shifted); "
          "the control (its changed pixels copied into empty playfield: as many pixels changed by as much); the "
          "painted control (equal boxes painted over elsewhere, on bricks, walls or score, changing the frames about "
          "as much). Mean ± SE over games.\n")  # fmt: skip
    print(removal_table(results, heads))
    if any("offset_places" in r for r in results.values()) and heads:
        print("\nDoes the attention follow the object the game drew elsewhere? Distance (places, Chebyshev) from each "
              "head's peak to the object's place.\n")  # fmt: skip
        print(follow_table(results, heads))
    if paths:
        print("\nThrough which path? Activation patching: the edited frames' features with the intact attention maps "
              "(what bypasses the attention), and the intact features with the edited frames' maps (what goes through "
              "it alone). Share through the attention: 1 - KL(intact attention patched in) / KL(as it is), of the "
              "means over games, with a 95% cluster-bootstrap interval over games.\n")  # fmt: skip
        print(paths_table(paths))


def show_examples(out: str, examples: dict, states: list, title: str, progress) -> None:
    """Part 4: examples_conv3.png (every channel) and examples/ (one figure per channel and head). examples: what
    interventions.dataset_examples returns."""
    folder = os.path.join(out, "examples")
    os.makedirs(folder, exist_ok=True)
    for c, ex in examples["conv3"].items():
        progress(f"dataset examples: conv3 channel {c + 1}/{len(examples['conv3'])}")
        draw_examples(os.path.join(folder, f"conv3_channel{c:02d}.png"), ex, states,
                      f"conv3 channel {c}: the {len(ex)} of {len(states)} sampled states that activate it most "
                      "(top: its 36x36 receptive field; bottom: the whole input)")  # fmt: skip
    for h, ex in examples["heads"].items():
        draw_examples(os.path.join(folder, f"head{h}.png"), ex, states,
                      f"attention head {h}: the {len(ex)} of {len(states)} sampled states where its peak is highest "
                      "(top: the peak's receptive field; bottom: the whole input)")  # fmt: skip
    draw_channel_overview(os.path.join(out, "examples_conv3.png"), examples["conv3"], states,
                          f"{title}: what each conv3 channel responds to, the 4 strongest of {len(states)} sampled "
                          "states (crops of the 36x36 receptive field, 4 frames maxed)")  # fmt: skip
    progress(f"dataset examples: {len(examples['conv3'])} channels, {len(examples['heads'])} heads", done=True)
    print("\nDataset examples: examples_conv3.png (every channel) and examples/ (one figure per channel and head).")
