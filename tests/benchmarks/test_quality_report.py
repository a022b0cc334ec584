"""`benchmarks/quality.py --report_only` reproduces docs/results.md from docs/results/**.json."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "quality.py")


@pytest.mark.parametrize("mode", ["compare", "sweep"])
def test_report_only_reproduces_the_documented_tables(tmp_path, mode):
    # The same layout as the repository, so the doc's relative figure paths match.
    docs = tmp_path / "docs"
    results = docs / "results" / "fashion_mnist"
    results.mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "docs", "results", "fashion_mnist", f"{mode}.json"), results)
    shutil.copy(os.path.join(REPO, "docs", "results.md"), docs / "results.md")
    out = subprocess.run(
        [sys.executable, SCRIPT, "--report_only", f"--mode={mode}",
         f"--output_dir={results}", f"--doc={docs / 'results.md'}"],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    with open(os.path.join(REPO, "docs", "results.md")) as f:
        assert (docs / "results.md").read_text() == f.read()
    with open(os.path.join(REPO, "docs", "results", "fashion_mnist", f"{mode}.md")) as f:
        assert (results / f"{mode}.md").read_text() == f.read()
