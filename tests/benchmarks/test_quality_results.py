"""The quality benchmark's results file keeps the provenance of every command that adds runs."""

import copy
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from quality_bench import report  # noqa: E402
from quality_bench import results  # noqa: E402
from keras_mdr.training.presets import ConfigError  # noqa: E402

SUBSETS = {"train_classes": [0, 1, 2], "test_classes": [5, 6]}


def _record(key, label):
    return {"key": key, "group": key.split("/")[0], "label": label, "wall_s": 60.0}


def _first_file():
    """A file written by one earlier command, as the first measurements were."""
    payload = {"config": {}, "runs": {}}
    session = results.start_session(payload, SUBSETS)
    assert session is None  # a new file: provenance at the top
    payload["versions"]["git_commit"] = "aaaaaaa"
    payload["runs"]["triplet/seed=0"] = _record("triplet/seed=0", "Triplet")
    results.finish_run(payload, session, "triplet/seed=0")
    return payload


def test_a_resumed_command_keeps_the_first_provenance_and_adds_its_own():
    payload = _first_file()
    first = copy.deepcopy({k: payload[k] for k in ("versions", "command", "finished")})
    session = results.start_session(payload, SUBSETS)
    assert "resumed" not in payload  # nothing recorded until a run finishes
    for key in ("triplet_release/seed=0", "triplet_release/seed=1"):
        payload["runs"][key] = _record(key, "Triplet (release sampler)")
        results.finish_run(payload, session, key)
    assert {k: payload[k] for k in first} == first
    [entry] = payload["resumed"]
    assert entry["runs"] == ["triplet_release/seed=0", "triplet_release/seed=1"]
    assert entry["versions"]["git_commit"] == results.versions()["git_commit"]
    assert entry["command"].startswith("python benchmarks/quality.py")
    assert entry["started"] <= entry["finished"]

    lines = report.provenance_lines(payload)
    assert lines[0].startswith("Measured: 3 runs, 3.0 min") and "by 2 commands" in lines[0]
    assert "- 1 runs, finished " in lines[2] and "commit aaaaaaa" in lines[2]
    assert lines[3].startswith("- 2 runs (Triplet (release sampler)), 2.0 min")


def test_other_data_splits_are_refused_on_resume():
    payload = _first_file()
    with pytest.raises(ConfigError, match="data splits differ"):
        results.start_session(payload, dict(SUBSETS, test_classes=[5, 6, 7]))
