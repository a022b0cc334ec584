"""compare.md / sweep.md and the doc's marker sections, rendered from the results file."""

import os

import stats  # benchmarks/stats.py

from quality_bench import arms as arms_lib
from quality_bench import figures
from quality_bench import tables


def _machine(info):
    return (
        f"TensorFlow {info.get('tensorflow', '?')}, Keras {info.get('keras', '?')}, "
        f"keras_mdr {info.get('keras_mdr', '?')} (commit {info.get('git_commit', '?')}"
        f"{' with uncommitted changes' if info.get('git_dirty') else ''}), "
        f"Python {info.get('python', '?')}, {info.get('cpus', '?')} CPUs, "
        f"GPUs: {info.get('gpus') or 'none'}"
    )


def _session_line(runs, session):
    labels = []
    for key in session["runs"]:
        if runs[key]["label"] not in labels:
            labels.append(runs[key]["label"])
    minutes = sum(runs[key]["wall_s"] for key in session["runs"]) / 60
    return (
        f"- {len(session['runs'])} runs ({', '.join(labels)}), {minutes:.1f} min, "
        f"{session['started']} to {session['finished']}; {_machine(session['versions'])}: "
        f"`{session['command']}`"
    )


def provenance_lines(payload):
    """Where the runs come from: one line per command that added runs."""
    runs = payload["runs"]
    total = sum(r["wall_s"] for r in runs.values())
    info = payload.get("versions", {})
    resumed = payload.get("resumed", [])
    if not resumed:
        return [
            f"Measured: {len(runs)} runs, {total / 60:.1f} min of training and evaluation, "
            f"finished {payload.get('finished', '?')}; {_machine(info)}.",
            f"Command: `{payload.get('command', '?')}`",
        ]
    later = {key for session in resumed for key in session["runs"]}
    return [
        f"Measured: {len(runs)} runs, {total / 60:.1f} min of training and evaluation, by "
        f"{len(resumed) + 1} commands with the same configuration and data splits:",
        "",
        f"- {len(runs) - len(later)} runs, finished {payload.get('finished', '?')}; "
        f"{_machine(info)}: `{payload.get('command', '?')}`",
        *(_session_line(runs, session) for session in resumed),
    ]


def _sampler_note(payload):
    groups = {r["group"] for r in payload["runs"].values()}
    if not groups & {"triplet_release", "triplet_mdr_release", "triplet_rerun", "triplet_mdr_rerun"}:
        return []
    return [
        "",
        "Negative sampling of the distance-weighted arms: Triplet, Triplet + L2Norm and "
        "Triplet + MDR use the textbook rule of Wu et al. (the losses' `sampling=\"textbook\"`); "
        "the arms marked *(release sampler)* use the rule of the MDR authors' code "
        "(`sampling=\"release\"`, the losses' default); the arms marked *(textbook, rerun)* "
        "are Triplet and Triplet + MDR measured again with the code of the release arms, so "
        "that release and textbook compare within one version of the code (the runs' commits "
        "are listed above).",
    ]


def _test_note(subsets):
    if not subsets:
        return "the test images"
    return (
        f"{subsets.get('test_evaluated', '?'):,} of the {subsets.get('test_images', '?'):,} "
        f"test images (classes {subsets.get('test_classes', '?')}; a fixed seeded subset, the same "
        "for every run)"
    )


def _metric_sections(payload, mode):
    config = payload["config"]
    ks = config["recall_ks"]
    subsets = payload.get("subsets", {})
    return [
        "",
        f"Test metrics (%) on {_test_note(subsets)}, at the epoch with the best validation "
        f"Recall@1 (validation: classes {subsets.get('validation_classes', '?')}, "
        f"{subsets.get('validation_evaluated', 0):,} images); mean ± std over seeds "
        "(sample std); `epoch`: the mean chosen epoch.",
        *_sampler_note(payload),
        "",
        tables.summary_table(payload, mode, "test_best", ks),
        "",
        "Paired differences at the chosen epoch (same seed: same initial weights, batches and "
        "evaluation images); the 95% CI is Student's t over seeds:",
        "",
        tables.paired_table(payload, mode, "test_best"),
        "",
        f"At the last epoch ({config['epochs']}):",
        "",
        tables.summary_table(payload, mode, "test_last", ks),
        "",
        "Paired differences at the last epoch:",
        "",
        tables.paired_table(payload, mode, "test_last"),
    ]


def _histogram_section(payload, rel):
    hist = [r for r in payload["runs"].values() if r.get("histograms")]
    pictures = []
    for group in tables.ordered_groups(payload, "compare"):
        for r in hist:
            if r["group"] == group:
                pictures.append(
                    f"| {r['label']} (seed {r['seed']}) | ![]({rel(r['histograms']['test'])}) "
                    f"| ![]({rel(r['histograms']['train'])}) |"
                )
                break
    if not pictures:
        return []
    return [
        "",
        "Distance histograms of the chosen-epoch models (MDR-normalised distances "
        "`Z = (D/mean(D) - mu) / sigma` with each model's moving statistics; "
        "green: same-class pairs, red: different-class pairs; dashed: levels):",
        "",
        "| Model | test classes | training classes |",
        "|---|---|---|",
        *pictures,
    ]


def report_markdown(payload, mode, out_dir, doc_dir):
    """The report's markdown; figure paths relative to `doc_dir`."""
    rel = lambda name: os.path.relpath(os.path.join(out_dir, name), doc_dir)  # noqa: E731
    lines = provenance_lines(payload) + _metric_sections(payload, mode)
    table = tables.mdr_table(payload, mode)
    if table:
        lines += [
            "", "MDR state at the end of training (mean over seeds; the moving mean is "
            "1 - 1/B by construction, the diagonal zeros being counted):", "", table,
        ]
    figure = "recall_at_1.png" if mode == "compare" else "sweep_recall_at_1.png"
    lines += ["", f"![Recall@1 and MAP@R]({rel(figure)})"]
    if mode == "compare":
        lines += _histogram_section(payload, rel)
    return "\n".join(lines) + "\n"


# The sampler section's comparisons: (arm, baseline, what it measures).
SAMPLER_COMPARISONS = (
    ("triplet_release", "triplet_rerun", "release vs textbook sampler, Triplet"),
    ("triplet_mdr_release", "triplet_mdr_rerun", "release vs textbook sampler, Triplet + MDR"),
    ("triplet_release", "triplet", "release vs textbook sampler, Triplet, across code versions"),
    ("triplet_mdr_release", "triplet_mdr",
     "release vs textbook sampler, Triplet + MDR, across code versions"),
    ("triplet_mdr_release", "triplet_release", "MDR, release sampler"),
    ("triplet_mdr_rerun", "triplet_rerun", "MDR, textbook sampler (rerun)"),
    ("triplet_mdr", "triplet", "MDR, textbook sampler (first measurement)"),
    ("triplet_rerun", "triplet", "the same arm rerun: Triplet"),
    ("triplet_mdr_rerun", "triplet_mdr", "the same arm rerun: Triplet + MDR"),
)


def _reading(interval):
    if interval["low"] is None:
        return "too few seeds for an interval"
    if interval["low"] > 0:
        return "higher (interval above 0)"
    if interval["high"] < 0:
        return "lower (interval below 0)"
    return "not resolved (interval contains 0)"


def _difference(payload, arm, baseline, which, metric):
    seeds, diffs = tables.paired(payload, arm, baseline, which, metric)
    interval = stats.t_interval(diffs)
    if interval["low"] is None:
        return seeds, interval, f"{100 * interval['mean']:+.2f}" if seeds else "-"
    return seeds, interval, (
        f"{100 * interval['mean']:+.2f} [{100 * interval['low']:+.2f}, {100 * interval['high']:+.2f}]"
    )


def _differences(payload, arm, baseline):
    """(seeds, chosen-epoch R@1 and MAP@R intervals, cells: their texts, then last-epoch R@1)."""
    seeds, r1_interval, r1 = _difference(payload, arm, baseline, "test_best", "recall@1")
    _, map_interval, map_r = _difference(payload, arm, baseline, "test_best", "map@r")
    _, _, last = _difference(payload, arm, baseline, "test_last", "recall@1")
    return seeds, r1_interval, map_interval, f"{r1} | {map_r} | {last}"


def sampler_markdown(payload):
    """The release-sampler comparisons, or None without release-sampler runs."""
    groups = set(tables.ordered_groups(payload, "compare"))
    if not groups & {"triplet_release", "triplet_mdr_release"}:
        return None
    lines = [
        "Paired differences (arm minus baseline, same seeds), in points, mean [95% Student-t "
        "interval over seeds]; *reading* is that of the chosen-epoch Recall@1:",
        "",
        "| comparison | arm | baseline | seeds | ΔR@1, chosen epoch | ΔMAP@R, chosen epoch "
        "| ΔR@1, last epoch | reading |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, baseline, what in SAMPLER_COMPARISONS:
        if arm not in groups or baseline not in groups:
            continue
        seeds, interval, _, cells = _differences(payload, arm, baseline)
        if not seeds:
            continue
        lines.append(
            f"| {what} | {tables.label(payload, arm)} | {tables.label(payload, baseline)} | "
            f"{len(seeds)} | {cells} | {_reading(interval)} |"
        )
    return "\n".join(lines) + "\n"


def families_markdown(payload):
    """MDR on each loss family: `<family>_mdr` minus `<family>`; None without such runs."""
    groups = set(tables.ordered_groups(payload, "compare"))
    families = [f for f in arms_lib.FAMILIES if f in groups and f"{f}_mdr" in groups]
    if not families:
        return None
    lines = [
        "Each loss without and with MDR (`MDRLoss(base, mdr_weight=0)` against "
        "`MDRLoss(base, mdr_weight=0.2)`, same seeds, batches and schedule). Test Recall@1 "
        "at the chosen epoch as mean ± std over seeds; differences (with MDR minus without) "
        "in points, mean [95% Student-t interval over seeds]; the readings are those of the "
        "chosen-epoch differences:",
        "",
        "| loss | seeds | R@1 without | R@1 with MDR | ΔR@1, chosen epoch | ΔMAP@R, chosen epoch "
        "| ΔR@1, last epoch | reading, R@1 | reading, MAP@R |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for family in families:
        arm, baseline = f"{family}_mdr", family
        seeds, r1_interval, map_interval, cells = _differences(payload, arm, baseline)
        means = [tables.mean_cell(payload, g, "test_best", "recall@1") for g in (baseline, arm)]
        lines.append(
            f"| {tables.label(payload, baseline)} | {len(seeds)} | {' | '.join(means)} "
            f"| {cells} | {_reading(r1_interval)} | {_reading(map_interval)} |"
        )
    return "\n".join(lines) + "\n"


def update_doc(doc, marker, text):
    """Replaces the text between `<!-- marker:begin -->` and `<!-- marker:end -->`."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    with open(doc) as f:
        content = f.read()
    if begin not in content or end not in content:
        print(f"warning: {doc} has no {begin} ... {end} markers; left unchanged.")
        return False
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(doc, "w") as f:
        f.write(f"{head}{begin}\n{text}{end}{tail}")
    return True


# The compare mode's own doc sections: (marker suffix, renderer).
SECTIONS = (("sampler", sampler_markdown), ("families", families_markdown))


def _update_sections(payload, doc):
    for name, render in SECTIONS:
        text = render(payload)
        if text and update_doc(doc, f"quality:{payload['config']['dataset']}:{name}", text):
            print(f"Updated {doc} (the {name} section).")


def write_reports(payload, mode, out_dir, doc):
    """The figure, <mode>.md in `out_dir`, and the doc's section if `doc`."""
    if not payload["runs"]:
        return
    stem = "compare" if mode == "compare" else "sweep"
    if mode == "compare":
        figures.plot_compare(payload, os.path.join(out_dir, "recall_at_1.png"))
    else:
        figures.plot_sweep(payload, os.path.join(out_dir, "sweep_recall_at_1.png"))
    with open(os.path.join(out_dir, f"{stem}.md"), "w") as f:
        f.write(report_markdown(payload, mode, out_dir, out_dir))
    if doc:
        marker = f"quality:{payload['config']['dataset']}:{mode}"
        text = report_markdown(payload, mode, out_dir, os.path.dirname(os.path.abspath(doc)))
        if update_doc(doc, marker, text):
            print(f"Updated {doc} ({marker}).")
        if mode == "compare":
            _update_sections(payload, doc)
    print()
    print(tables.summary_table(payload, mode, "test_best", payload["config"]["recall_ks"]))
    print()
    print(tables.paired_table(payload, mode, "test_best"))
    print(f"\nTables and figures in {out_dir}/{stem}.md")
