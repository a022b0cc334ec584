"""The pictures of a results file: metrics per arm, metrics against lambda."""

import numpy as np

from quality_bench import arms as arms_lib
from quality_bench import tables


def _figure(width, height):
    # Matplotlib's Figure draws PNG files through its own Agg canvas: the
    # process-wide pyplot backend is never touched.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110)


def _color(group):
    variant = "release" if "release" in group else ("rerun" if "rerun" in group else "")
    if "mdr" in group:
        return {"release": "tab:red", "rerun": "tab:brown"}.get(variant, "tab:orange")
    if "l2" in group:
        return "tab:green"
    return {"release": "tab:purple", "rerun": "tab:cyan"}.get(variant, "tab:blue")


def plot_compare(payload, path, which="test_best"):
    groups = tables.ordered_groups(payload, "compare", finite=True)
    # Wider with more arms, so that their labels stay apart.
    fig = _figure(max(10.0, 1.4 * len(groups) + 1.0), 4.2 if len(groups) <= 5 else 4.8)
    for i, (metric, title) in enumerate((("recall@1", "Recall@1"), ("map@r", "MAP@R"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for x, group in enumerate(groups):
            values = np.asarray(list(tables.group_values(payload, group, which, metric).values())) * 100
            mean, std = values.mean(), (values.std(ddof=1) if values.size > 1 else 0.0)
            color = _color(group)
            jitter = np.linspace(-0.15, 0.15, values.size) if values.size > 1 else np.zeros(1)
            ax.scatter(x + 0.25 + jitter, values, color=color, s=12, alpha=0.7, zorder=3)
            ax.errorbar(x, mean, yerr=std, fmt="o", color=color, markersize=8, capsize=6,
                        linewidth=1.6, zorder=4)
        ax.set_xlim(-0.6, len(groups) - 0.2)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([tables.label(payload, g) for g in groups], rotation=20, ha="right",
                           fontsize="small")
        ax.set_ylabel(f"{title} (%), test classes")
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_title(f"{title}: mean ± std over seeds (small dots: single seeds)", fontsize="small")
    fig.suptitle(f"{payload['config']['dataset']}: at the epoch of best validation Recall@1",
                 fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_sweep(payload, path, which="test_best"):
    groups = tables.ordered_groups(payload, "sweep", finite=True)
    lambdas = np.asarray([float(g.split("=")[1]) for g in groups])
    fig = _figure(10, 4.2)
    for i, (metric, title) in enumerate((("recall@1", "Recall@1"), ("map@r", "MAP@R"))):
        ax = fig.add_subplot(1, 2, i + 1)
        means, stds = [], []
        for group in groups:
            values = np.asarray(list(tables.group_values(payload, group, which, metric).values())) * 100
            means.append(values.mean())
            stds.append(values.std(ddof=1) if values.size > 1 else 0.0)
            ax.scatter(np.full(values.size, float(group.split("=")[1])), values, color="gray", s=9)
        base = arms_lib.BASE_LABELS[payload["config"]["sweep_base_loss"]]
        ax.errorbar(lambdas, means, yerr=stds, marker="o", capsize=4, color="tab:orange",
                    label=f"{base} + MDR (mean ± std; gray: seeds)")
        if 0.0 in lambdas:
            ax.axhline(means[list(lambdas).index(0.0)], color="tab:blue", linestyle="--",
                       linewidth=1, label=f"lambda = 0 ({base}, no MDR)")
        positive = lambdas[lambdas > 0]
        if positive.size:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
        ax.set_xticks(lambdas)
        ax.set_xticklabels([f"{v:g}" for v in lambdas], fontsize="small")
        ax.set_xlabel("lambda (mdr_weight)")
        ax.set_ylabel(f"{title} (%), test classes")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{payload['config']['dataset']}: test metrics against lambda, at the epoch of "
                 "best validation Recall@1", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path
