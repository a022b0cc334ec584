"""The release-sampler section says what its paired differences show, from the runs."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from quality_bench import report  # noqa: E402


def _payload(release_r1, rerun_r1):
    runs = {}
    for group, label, values in (("triplet_release", "Triplet (release sampler)", release_r1),
                                 ("triplet_rerun", "Triplet (textbook, rerun)", rerun_r1)):
        for seed, r1 in enumerate(values):
            metrics = {"recall@1": r1, "map@r": r1 / 2}
            runs[f"{group}/seed={seed}"] = {
                "group": group, "label": label, "seed": seed,
                "test_best": metrics, "test_last": metrics,
            }
    return {"runs": runs}


def _row(text):
    [row] = [line for line in text.splitlines() if line.startswith("| release vs textbook")]
    return row


def test_a_difference_on_every_seed_reads_as_one_and_noise_does_not():
    base = [0.940, 0.935, 0.945, 0.938, 0.942]
    lower = _row(report.sampler_markdown(_payload([b - 0.004 for b in base], base)))
    assert "| 5 | -0.40 [-0.40, -0.40] |" in lower and lower.endswith("| lower (interval below 0) |")
    higher = _row(report.sampler_markdown(_payload([b + 0.003 for b in base], base)))
    assert higher.endswith("| higher (interval above 0) |")
    noise = [0.002, -0.003, 0.001, -0.001, 0.0]
    mixed = _row(report.sampler_markdown(_payload([b + d for b, d in zip(base, noise)], base)))
    assert mixed.endswith("| not resolved (interval contains 0) |")
    # Paired by seed: only the seeds both arms have count.
    short = _row(report.sampler_markdown(_payload([b - 0.004 for b in base[:3]], base)))
    assert "| 3 |" in short


def test_no_section_without_release_sampler_runs():
    payload = _payload([], [0.94, 0.93])
    assert report.sampler_markdown(payload) is None
