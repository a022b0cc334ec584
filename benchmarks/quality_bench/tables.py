"""Statistics over seeds and the markdown tables of a results file.

A group is an arm (compare mode) or a lambda (sweep mode); its values are
keyed by seed, so a paired difference compares runs with the same initial
weights, batches and evaluation images.
"""

import numpy as np

import stats  # benchmarks/stats.py

from quality_bench import arms as arms_lib


def metric_names(ks):
    return [f"recall@{k}" for k in ks] + ["map@r"]


def _header(name):
    return f"R@{name[7:]}" if name.startswith("recall@") else "MAP@R"


def ordered_groups(payload, mode, finite=False):
    """The groups (arms, lambdas) in display order; `finite`: with a result."""
    groups = []
    for r in payload["runs"].values():
        if r["group"] not in groups and (not finite or r["test_best"] is not None):
            groups.append(r["group"])
    if mode == "compare":
        names = list(arms_lib.ARMS)
        return sorted(groups, key=lambda g: names.index(g) if g in names else 99)
    return sorted(groups, key=lambda g: float(g.split("=")[1]))


def group_values(payload, group, which, metric):
    """{seed: value} of one group's runs."""
    return {
        r["seed"]: r[which][metric]
        for r in payload["runs"].values()
        if r["group"] == group and r[which] is not None  # None: the run diverged
    }


def mean_std(values):
    """(mean, sample std); NaN where undefined."""
    values = np.asarray(list(values), np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return float(values.mean()), std


def _fmt(mean, std, scale=100.0):
    if np.isnan(mean):
        return "-"
    if np.isnan(std):
        return f"{scale * mean:.2f}"
    return f"{scale * mean:.2f} ± {scale * std:.2f}"


def paired(payload, group, baseline, which, metric):
    """(seeds, group - baseline per seed) over the seeds both have."""
    a = group_values(payload, group, which, metric)
    b = group_values(payload, baseline, which, metric)
    seeds = sorted(set(a) & set(b))
    diffs = np.asarray([a[s] - b[s] for s in seeds], np.float64)
    return seeds, diffs


def _signed(diffs):
    """Mean ± std of differences, in points, signed."""
    mean, std = mean_std(diffs)
    return f"{100 * mean:+.2f}" + ("" if np.isnan(std) else f" ± {100 * std:.2f}")


def _interval_text(diffs):
    """Student's t 95% interval of the mean difference, in points."""
    interval = stats.t_interval(diffs)
    if interval["low"] is None:
        return "-"
    return f"[{100 * interval['low']:+.2f}, {100 * interval['high']:+.2f}]"


def mean_cell(payload, group, which, metric):
    """A group's metric as "mean ± std" over its seeds, in points."""
    return _fmt(*mean_std(group_values(payload, group, which, metric).values()))


def label(payload, group):
    for r in payload["runs"].values():
        if r["group"] == group:
            return r["label"]
    return group


def summary_table(payload, mode, which, ks):
    names = metric_names(ks)
    lines = [
        "| Method | seeds | " + " | ".join(_header(n) for n in names) + " | epoch |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for group in ordered_groups(payload, mode):
        cells = []
        for name in names:
            cells.append(mean_cell(payload, group, which, name))
        runs = [r for r in payload["runs"].values() if r["group"] == group]
        epochs = [r["best_epoch" if which == "test_best" else "last_epoch"]
                  for r in runs if r[which] is not None]
        diverged = len(runs) - len(epochs)
        n = f"{len(epochs)}" + (f" ({diverged} diverged)" if diverged else "")
        epoch = f"{np.mean(epochs):.1f}" if epochs else "-"
        lines.append(f"| {label(payload, group)} | {n} | " + " | ".join(cells) + f" | {epoch} |")
    return "\n".join(lines)


def pairs(payload, mode):
    """The (group, baseline) pairs with runs: `arms.PAIRS`, or each lambda vs 0."""
    groups = ordered_groups(payload, mode)
    if mode == "compare":
        return [(a, b) for a, b in arms_lib.PAIRS if a in groups and b in groups]
    zero = next((g for g in groups if float(g.split("=")[1]) == 0.0), None)
    return [(g, zero) for g in groups if zero is not None and g != zero]


def paired_table(payload, mode, which):
    lines = [
        "| Method | vs | seeds | ΔR@1 (mean ± std) | 95% CI of ΔR@1 | better / worse | ΔMAP@R (mean ± std) |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, baseline in pairs(payload, mode):
        seeds, d1 = paired(payload, group, baseline, which, "recall@1")
        _, dm = paired(payload, group, baseline, which, "map@r")
        if not seeds:
            continue
        lines.append(
            f"| {label(payload, group)} | {label(payload, baseline)} | {len(seeds)} | "
            f"{_signed(d1)} | {_interval_text(d1)} | {int(np.sum(d1 > 0))} / {int(np.sum(d1 < 0))} | "
            f"{_signed(dm)} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def mdr_table(payload, mode):
    lines = ["| Method | levels (end of training) | moving mean | moving std |", "|---|---|---|---|"]
    any_row = False
    for group in ordered_groups(payload, mode):
        runs = [r for r in payload["runs"].values() if r["group"] == group and r["mdr_weight"] > 0]
        if not runs:
            continue
        any_row = True
        levels = np.asarray([r["mdr_state_last"]["levels"] for r in runs], np.float64)
        mean = [r["mdr_state_last"]["moving_mean"] for r in runs]
        std = [r["mdr_state_last"]["moving_std"] for r in runs]
        if len(runs) > 1:
            level_text = ", ".join(
                f"{m:.2f} ± {s:.2f}" for m, s in zip(levels.mean(0), levels.std(0, ddof=1))
            )
        else:
            level_text = ", ".join(f"{m:.2f}" for m in levels[0])
        lines.append(
            f"| {label(payload, group)} | {level_text} | {np.mean(mean):.3f} | {np.mean(std):.3f} |"
        )
    return "\n".join(lines) if any_row else ""
