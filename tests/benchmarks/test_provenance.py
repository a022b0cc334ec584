"""A benchmark's result file does not make the tree it was measured on count as dirty."""

import importlib.util
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("provenance", os.path.join(REPO, "benchmarks", "provenance.py"))
provenance = importlib.util.module_from_spec(spec)
spec.loader.exec_module(provenance)


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


def test_modified_result_file_listed_first_is_not_dirt(tmp_path):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "x.json").write_text("1")
    (tmp_path / "code.py").write_text("1")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "x")
    # " M benchmarks/results/x.json" is the first status line, with a leading space.
    (tmp_path / "benchmarks" / "results" / "x.json").write_text("2")
    assert provenance.git_state(str(tmp_path))["dirty"] is False
    (tmp_path / "code.py").write_text("2")
    assert provenance.git_state(str(tmp_path))["dirty"] is True
