"""The loss-family section says, loss by loss, what MDR's paired differences show."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from quality_bench import report  # noqa: E402

BASE = [0.940, 0.935, 0.945, 0.938, 0.942]


def _payload(groups, map_r=None):
    """`groups`: {group: [R@1 per seed, None for a diverged run]}; MAP@R is R@1 / 2
    unless `map_r` gives a group's own values."""
    runs = {}
    map_r = map_r or {}
    for group, values in groups.items():
        for seed, r1 in enumerate(values):
            m = map_r[group][seed] if group in map_r else None if r1 is None else r1 / 2
            metrics = None if r1 is None else {"recall@1": r1, "map@r": m}
            runs[f"{group}/seed={seed}"] = {
                "group": group, "label": group.replace("_mdr", " + MDR").title(), "seed": seed,
                "test_best": metrics, "test_last": metrics,
            }
    return {"runs": runs}


def _rows(text):
    return {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| loss")}


def test_each_family_reads_its_own_paired_difference():
    noise = [0.002, -0.003, 0.001, -0.001, 0.0]
    rows = _rows(report.families_markdown(_payload({
        "contrastive": BASE, "contrastive_mdr": [b + 0.003 for b in BASE],
        "arcface": BASE, "arcface_mdr": [b - 0.004 for b in BASE],
        "supcon": BASE, "supcon_mdr": [b + d for b, d in zip(BASE, noise)],
    })))
    assert set(rows) == {"Contrastive", "Arcface", "Supcon"}
    assert "| 5 | 94.00 ± 0.38 | 94.30 ± 0.38 | +0.30 [+0.30, +0.30] |" in rows["Contrastive"]
    assert rows["Contrastive"].endswith("| higher (interval above 0) | higher (interval above 0) |")
    assert rows["Arcface"].endswith("| lower (interval below 0) | lower (interval below 0) |")
    assert "| not resolved (interval contains 0) |" in rows["Supcon"]


def test_a_diverged_run_drops_its_seed_and_a_lone_arm_is_not_listed():
    rows = _rows(report.families_markdown(_payload({
        "margin": BASE, "margin_mdr": [None] + [b + 0.003 for b in BASE[1:]],
        "ntxent": BASE,
    })))
    assert set(rows) == {"Margin"}
    assert rows["Margin"].startswith("| Margin | 4 |")


def test_map_at_r_has_its_own_reading():
    noise = [0.002, -0.003, 0.001, -0.001, 0.0]
    rows = _rows(report.families_markdown(_payload(
        {"margin": BASE, "margin_mdr": [b + 0.003 for b in BASE]},
        map_r={"margin": BASE, "margin_mdr": [b + d for b, d in zip(BASE, noise)]})))
    assert rows["Margin"].endswith(
        "| higher (interval above 0) | not resolved (interval contains 0) |")


def test_no_section_without_family_pairs():
    assert report.families_markdown(_payload({"triplet": BASE, "triplet_mdr": BASE})) is None
