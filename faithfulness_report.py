"""The tables, CSV and figures of faithfulness.py, from its results: every table it prints (in Markdown, means ±
standard errors over games; the value alone with one game), faithfulness.csv, faithfulness.png (the deletion and
insertion curves and the sanity checks) and objects.png (the object grounding).
"""

import csv

import numpy as np

from faithfulness_maps import ALL_METHODS, CURVES, FLOORS
from play import mean_and_se, plus_minus

KL, PROB = "KL(original policy || perturbed policy) (nats)", "probability of the explained action"
PANELS = (  # (curve, title, y label, which area is better), left to right, top to bottom
    ("deletion_kl", "Deletion: the policy moves away\nas the most relevant places are {done}", KL, "higher"),
    ("deletion_prob", "Deletion: the explained action's probability falls\nas the most relevant places are {done}", PROB, "lower"),
    ("insertion_kl", "Insertion: the policy comes back\nas the most relevant places are restored", KL, "lower"),
    ("insertion_prob", "Insertion: the explained action's probability returns\nas the most relevant places are restored", PROB, "higher"),
)  # fmt: skip
COLOURS = dict(zip(ALL_METHODS, ("tab:red", "tab:pink", "tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:olive",
                                 "tab:orange", "salmon", "violet", "grey", "black", "dimgrey", "darkgrey", "teal",
                                 "darkkhaki", "tab:cyan")))  # fmt: skip
DASHES = {"attention_bilinear": "--", "gradcam_bilinear": "--", "random": "--", "painted_uniform": ":",
          "painted_dirichlet": "-.", "bilinear_dirichlet": (0, (5, 1, 1, 1, 1, 1)), "edge": ":", "intensity": "-.",
          "frame_difference": "--"}  # fmt: skip
EXPLAINED = {"greedy": "the most probable action (the agent's decision)", "taken": "the action the agent took"}


# ----------------------------------------------------------------------------- tables


def area_table(results: dict, explain: str) -> str:
    """Areas (mean over states ± standard error over games) and seconds per state, one row per method; the header
    says which action was explained."""
    action = {"greedy": "the most probable action", "taken": "the action taken"}[explain]
    lines = [f"| method (explains {action}) | deletion KL ↑ | deletion prob ↓ | insertion prob ↑ | insertion KL ↓ "
             "| s/state |", "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for method, r in results.items():
        cells = [plus_minus(r[c + "_auc"], r[c + "_auc_se"]) for c in CURVES] + [f"{r['seconds_per_state']:.3f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def margin_table(results: dict) -> str:
    """Each method's margin over the strongest floor of each score (positive: better), ± standard error."""
    floors = {c: r["margin"][c]["floor"] for r in results.values() if r["margin"] for c in CURVES}
    if not floors:
        return "(no floor among --method: no margins)"
    head = "| method | " + " | ".join(f"{c.replace('_', ' ')} (over {floors[c]})" for c in CURVES) + " |"
    lines = [head, "|---" + "|---:" * len(CURVES) + "|"]
    for method, r in results.items():
        if method not in FLOORS:
            cells = [("+" if r["margin"][c]["value"] >= 0 else "") + plus_minus(r["margin"][c]["value"],
                                                                                r["margin"][c]["se"]) for c in CURVES]  # fmt: skip
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sanity_table(results: dict, layers: list) -> str:
    """Rank correlation with the trained map after each cascade step, beside the method's floor (geometry alone)
    and its correlation with the input floors."""
    lines = ["| method | floor (geometry alone) | input floors |" + "".join(f" {layer} |" for layer in layers),
             "|---|---|---|" + "---:|" * len(layers)]  # fmt: skip
    for method, r in results.items():
        floor = r.get("sanity_floor", {})
        cells = [f"{floor['value']:.2f} ({floor['floor']})" if "floor" in floor else "n/a (a floor)",
                 f"{floor['input']:.2f} ({floor['input_floor']})" if "input" in floor else ""]  # fmt: skip
        lines.append(f"| {method} | " + " | ".join(cells) + " |" + "".join(f" {r['sanity'][x]:.2f} |" for x in layers))
    return "\n".join(lines)


def grid_sanity_table(grid: dict, seeds: int, states: int) -> str:
    """The 7x7 maps' rank correlation with the trained ones on their grid, mean ± standard error over games."""
    layers = list(next(iter(grid.values())))
    lines = [f"| 7x7 map ({states} states x {seeds} seeds) |" + "".join(f" {layer} |" for layer in layers),
             "|---|" + "---:|" * len(layers)]  # fmt: skip
    for method, by_layer in grid.items():
        lines.append(f"| {method} |" + "".join(f" {plus_minus(v['value'], v['se'], 2)} |" for v in by_layer.values()))
    return "\n".join(lines)


def object_table(rows: dict, name: str) -> str:
    """Localisation on one object, one row per map (and attention head), and the chance row (the mask's share of
    the screen)."""
    lines = [f"| map | {name}: relevance mass accuracy | {name}: relevance rank accuracy | {name}: pointing game |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for label, r in rows.items():
        o = r[name]
        cells = [plus_minus(o[k], o[f"{k}_se"]) for k in ("mass", "rank")] + [plus_minus(100 * o["pointing"],
                                                                                         100 * o["pointing_se"], 0) + "%"]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    area = np.nanmean([r[name]["area"] for r in rows.values()])
    lines.append(f"| *chance: the mask's share of the screen* | {area:.3f} | {area:.3f} | {100 * area:.0f}% |")
    return "\n".join(lines)


def grid_object_table(rows: dict, name: str) -> str:
    """Localisation of the 7x7 maps on their grid, one object: the peak unit's field contains it, the peak is
    its nearest unit, each beside its chance rate."""
    lines = [f"| 7x7 map | {name} in the peak unit's field | chance | peak at the {name}'s nearest unit | chance |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for label, r in rows.items():
        o = r[name]
        cells = [plus_minus(100 * o["contains"], 100 * o["contains_se"], 0) + "%", f"{100 * o['contains_chance']:.0f}%",
                 plus_minus(100 * o["nearest"], 100 * o["nearest_se"], 0) + "%", f"{100 * o['nearest_chance']:.0f}%"]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_report(title, results, args, report, layers, grid_checked, rows, grid_rows, incomplete) -> None:
    """The tables, in Markdown, with a sentence before each saying what it holds."""
    games = report["games"]
    print(f"\n{title}\nExplained: {EXPLAINED[args.explain]}. Areas under the curves (x: fraction of the places, 0 "
          f"to 1), mean over the {report['states']} states ± standard error over the {games} games; arrows: which "
          "way is better.\n")  # fmt: skip
    print(area_table(results, args.explain))
    chosen = "on the other half of the games" if games > 1 else "in-sample (one game)"
    print(f"\nMargin over the strongest floor of each score (floors: maps that know nothing of the model; the "
          f"strongest chosen {chosen}), paired over states; positive: better than that floor.\n")  # fmt: skip
    print(margin_table(results))
    if layers:
        print(f"\nSanity check on {report['sanity_states']} states: rank correlation with the trained model's map "
              "once re-initialised down to each layer (lower: the map depends on those weights), beside the floor, "
              "the correlation the trained map has with the geometry floors, and its correlation with the input "
              "floors (maps of the input alone).\n")  # fmt: skip
        print(sanity_table(results, layers))
    if grid_checked:
        print(f"\nSanity check of the 7x7 maps on their grid (49 values, no painting; a random map: 0), on "
              f"{report['states']} states with {report['sanity_seeds']} re-initialisations: mean ± standard error "
              "over games.\n")  # fmt: skip
        print(grid_sanity_table(grid_checked, report["sanity_seeds"], report["states"]))
    names = sorted({name for r in rows.values() for name in r})
    if names:
        print(f"\nThe game's objects (from the emulator's RAM; boxes in the 4 stacked frames + {args.margin} px): "
              "relevance mass accuracy (share of the map's mass on the object), relevance rank accuracy (share of "
              "the object's mask among the map's top places, as many as the mask has) and the pointing game (the "
              "map's maximum on the object), mean ± standard error over games, against chance.\n")  # fmt: skip
        print("\n\n".join(object_table(rows, name) for name in names))
    if grid_rows:
        print("\nThe 7x7 maps on their grid (the object's box in the newest frame that shows it): how often the "
              "peak unit's 36x36 field contains it, and how often the peak is the object's nearest unit (field "
              "centre nearest its centre), against a unit drawn at random.\n")  # fmt: skip
        print("\n\n".join(grid_object_table(grid_rows, name) for name in names))
    for m, e in incomplete.items():
        print(f"\n{m}: the attributions sum to f(x) - f(x') within {np.median(e):.1%} (median over states; "
              f"90th percentile {np.quantile(e, 0.9):.1%}) with {args.ig_steps} steps.", end="")  # fmt: skip


# ----------------------------------------------------------------------------- CSV and figures


def save_csv(path: str, results: dict, layers: list) -> None:
    columns = [f"{name}_auc{se}" for name in CURVES for se in ("", "_se")] + ["seconds_per_state"]
    names = sorted({n for r in results.values() for n in r["objects"]})
    metrics = ("mass", "mass_se", "rank", "rank_se", "pointing", "pointing_se", "area")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", *columns, *(f"margin_{c}" for c in CURVES), *(f"margin_{c}_se" for c in CURVES),
                         *(f"margin_{c}_floor" for c in CURVES), "sanity_floor", "sanity_input",
                         *(f"sanity_{layer}" for layer in layers), *(f"{n}_{k}" for n in names for k in metrics)])  # fmt: skip
        for method, r in results.items():
            margin = [r["margin"].get(c, {}).get(k, "") for k in ("value", "se", "floor") for c in CURVES]
            objects = [r["objects"][n][k] for n in names for k in metrics]
            floor = r.get("sanity_floor", {})
            sanity = [floor.get("value", ""), floor.get("input", ""), *(r["sanity"][layer] for layer in layers)]
            writer.writerow([method, *(r[c] for c in columns), *margin, *sanity, *objects])


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(path: str, curves: dict, fractions, results: dict, layers: list, grid: dict, title: str,
                baseline: str, games) -> None:  # fmt: skip
    """Deletion and insertion curves (mean over states, ± standard error over games shaded) per method; the sanity
    check's correlations with each method's floor, and the 7x7 maps' on their grid."""
    plt = pyplot()
    fig = plt.figure(figsize=(21, 11), layout="constrained")
    spec = fig.add_gridspec(2, 3, width_ratios=[1, 1, 0.9])
    style = {m: dict(color=c, ls=DASHES.get(m, "-"), lw=2.0 if m in FLOORS else 1.6) for m, c in COLOURS.items()}
    for i, (name, panel_title, ylabel, better) in enumerate(PANELS):
        ax = fig.add_subplot(spec[i // 2, i % 2])
        strongest = {f for r in results.values() for f in r["margin"].get(name, {}).get("floor", "").split("/")}
        for method, c in curves.items():
            if method in FLOORS and method not in {"random", *strongest}:
                continue  # the floors: random pixels and the strongest of this score, the others in the table
            r = results[method]
            label = f"{method} ({plus_minus(r[name + '_auc'], r[name + '_auc_se'])})"
            stats = np.array([mean_and_se(column, games) for column in c[name].T])  # (K, 2)
            x, (mean, se) = 100 * np.asarray(fractions), np.nan_to_num(stats.T)
            ax.plot(x, mean, label=label, **style[method])
            if method not in FLOORS:
                ax.fill_between(x, mean - se, mean + se, color=style[method]["color"], alpha=0.07)
        done = "replaced" if name.startswith("deletion") else "restored"
        ax.set(xlabel=f"places {done}, most relevant first (% of the 84x84)", ylabel=ylabel, xlim=(0, 100))
        ax.set_title(panel_title.format(done="blurred" if baseline == "blur" else "blacked out"))
        ax.legend(title=f"area ± s.e. over games: {better} is better\nfloors (thick): random and the strongest",
                  fontsize=7, title_fontsize=8, ncol=2)  # fmt: skip
        ax.grid(alpha=0.3)
    ax = fig.add_subplot(spec[0, 2])
    ticks = ["trained"] + [f"+ {layer}" if i else layer for i, layer in enumerate(layers)]
    for method, r in results.items() if layers else ():
        if method in FLOORS:
            continue
        ax.plot(ticks, [1.0] + [r["sanity"][layer] for layer in layers], marker="o", label=method, **style[method])
        if "sanity_floor" in r and "value" in r["sanity_floor"]:  # the floor of this method: its geometry alone
            ax.plot(ticks, [r["sanity_floor"]["value"]] * len(ticks), color=style[method]["color"], ls=":", lw=1.2)
    ax.axhline(0, color="black", lw=0.8)
    ax.tick_params("x", rotation=30)
    lowest = min([r["sanity"][layer] for r in results.values() for layer in layers] or [0])
    ax.set(ylim=(min(-0.25, lowest - 0.05), 1.05), ylabel="Spearman rank correlation with the trained model's map")
    ax.set_title("Sanity check of the drawn 84x84 maps: a faithful map changes\nas the network is re-initialised "
                 "from the top, down to its floor (dotted)")  # fmt: skip
    if layers:
        ax.legend(fontsize=7, loc="lower left", ncol=2)
    else:
        ax.text(0.5, 0.5, "not run (--sanity-states 0)", ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(spec[1, 2])
    for method, by_layer in grid.items():
        values = np.array([[v["value"], v["se"]] for v in by_layer.values()])
        ax.errorbar(ticks, [1.0, *values[:, 0]], yerr=[0.0, *np.nan_to_num(values[:, 1])], marker="s", capsize=3,
                    label=f"{method} (7x7 grid)", color=COLOURS[method])  # fmt: skip
        for seed_means in zip(*(v["seeds"] for v in by_layer.values())):
            ax.plot(ticks, [1.0, *seed_means], color=COLOURS[method], lw=0.6, alpha=0.5)
    ax.axhline(0, color="black", lw=0.8)
    ax.tick_params("x", rotation=30)
    lowest = min(
        [min(v["value"] - np.nan_to_num(v["se"]), *v["seeds"]) for steps in grid.values() for v in steps.values()]
        or [0]
    )
    ax.set(ylim=(min(-0.25, lowest - 0.05), 1.05), xlabel="layers re-initialised, from the output down (cumulative)")
    ax.set(ylabel="Spearman rank correlation of the 49 values")
    ax.set_title("Sanity check on the 7x7 grid, no painting: a random map has 0\n(mean ± s.e. over games; thin: "
                 "each re-initialisation seed)")  # fmt: skip
    if grid:
        ax.legend(fontsize=8, loc="upper right")
    else:
        ax.text(0.5, 0.5, "not run (no 7x7 map, or --sanity-states 0)", ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, dpi=72)
    plt.close(fig)


def save_object_figure(path: str, rows: dict, grid_rows: dict, title: str) -> None:
    """Per object: each map's localisation metrics (relevance mass accuracy, rank accuracy, pointing game) as bars
    ± s.e., with the chance level (the object's share of the screen) as a line; below, the 7x7 maps on their
    grid (peak unit's field contains the object, peak at its nearest unit) with their chance rates (diamonds)."""
    plt = pyplot()
    names = sorted({name for r in rows.values() for name in r})
    labels = list(rows)[::-1]  # top to bottom in the order of the table
    fig = plt.figure(figsize=(6 * len(names) * 1.5, 0.3 * len(labels) + 0.45 * len(grid_rows) + 4.5),
                     layout="constrained")  # fmt: skip
    top, bottom = fig.subfigures(2, 1, height_ratios=[0.3 * len(labels) + 1.5, 0.45 * len(grid_rows) + 2])
    axes = top.subplots(1, 3 * len(names), sharey=True)
    y = np.arange(len(labels))
    colours = [COLOURS.get(label.split(" ")[0], "tab:red") for label in labels]
    metrics = (("mass", "relevance mass accuracy"), ("rank", "relevance rank accuracy"), ("pointing", "pointing game"))
    for i, name in enumerate(names):
        values = [rows[label][name] for label in labels]
        area = np.nanmean([v["area"] for v in values])
        for j, (key, what) in enumerate(metrics):
            ax = axes[3 * i + j]
            ax.barh(y, [v[key] for v in values], xerr=np.nan_to_num([v[f"{key}_se"] for v in values]), color=colours,
                    alpha=0.8)  # fmt: skip
            ax.axvline(area, color="black", ls="--", lw=1.2, label="chance: its share of the screen")
            ax.set(yticks=y, yticklabels=labels, xlim=(0, 1))
            ax.set_title(f"{name}: {what}", fontsize=10)
            ax.grid(axis="x", alpha=0.3)
        axes[3 * i].legend(fontsize=7, loc="lower right")
    top.suptitle("Every map, 84x84: mean over states ± s.e. over games")
    if grid_rows:
        axes = bottom.subplots(1, 2 * len(names), sharey=True)
        grid_labels = list(grid_rows)[::-1]
        y = np.arange(len(grid_labels))
        chance = dict(marker="D", color="black", markerfacecolor="white", ls="none", ms=7, mew=1.5)
        for i, name in enumerate(names):
            values = [grid_rows[label][name] for label in grid_labels]
            for j, (key, what) in enumerate((("contains", f"the {name} in the peak unit's field"),
                                             ("nearest", f"peak at the {name}'s nearest unit"))):  # fmt: skip
                ax = axes[2 * i + j]
                ax.barh(y, [100 * v[key] for v in values], xerr=np.nan_to_num([100 * v[f"{key}_se"] for v in values]),
                        color=[COLOURS.get(label.split(" ")[0], "tab:red") for label in grid_labels], alpha=0.8)  # fmt: skip
                ax.plot([100 * v[f"{key}_chance"] for v in values], y, **chance, label="chance: a random unit")
                ax.set(yticks=y, yticklabels=grid_labels, xlim=(0, 100), xlabel="% of the states")
                ax.set_title(what, fontsize=10)
                ax.grid(axis="x", alpha=0.3)
            axes[2 * i].legend(fontsize=7, loc="lower right")
        bottom.suptitle("The 7x7 maps on their own grid: where is the peak unit?")
    fig.suptitle(title)
    fig.savefig(path, dpi=72)
    plt.close(fig)
