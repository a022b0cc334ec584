"""docs/paper_protocol.md: one row per release setting, and no row without a test.

Each row's "Proved by" cell names tests as `tests/<path>.py::<function>`:
every one must exist and be collected by pytest. Each row's "Card" cell names
protocol-card rows: together they must cover every card row that has a
release value, and name no row the card does not have.
"""

import ast
import os
import re
import subprocess
import sys

from keras_mdr import training
from keras_mdr.training import protocol

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(REPO, "docs", "paper_protocol.md")
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _rows(text):
    """The (setting, card names, test ids) of each row of the settings table."""
    table = text.split("## One row per setting", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in table.splitlines():
        if not line.startswith("| ") or line.startswith("| Setting") or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 5, f"a row needs 5 cells: {line[:80]}"
        rows.append((cells[0], re.findall(r"`([^`]+)`", cells[3]), TEST_ID.findall(cells[4]),
                     cells[4]))
    return rows


def _top_level_tests(path):
    with open(os.path.join(REPO, path)) as f:
        tree = ast.parse(f.read())
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_row_names_tests_that_exist_and_are_collected():
    with open(DOC) as f:
        rows = _rows(f.read())
    assert len(rows) >= 20
    ids = []
    for setting, _, tests, cell in rows:
        assert tests, f"row {setting!r} names no test"
        # Every backticked name in the cell is a test id (no free-form name slips by).
        assert len(tests) == len(re.findall(r"`[^`]+`", cell)), f"row {setting!r}: {cell}"
        for path, name in tests:
            assert os.path.exists(os.path.join(REPO, path)), f"row {setting!r}: no file {path}"
            assert name in _top_level_tests(path), f"row {setting!r}: no test {path}::{name}"
            ids.append(f"{path}::{name}")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *sorted(set(ids))], capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    collected = {line.split("[")[0] for line in proc.stdout.splitlines() if "::" in line}
    assert set(ids) <= collected, sorted(set(ids) - collected)


def test_every_release_setting_of_the_card_has_a_row():
    with open(DOC) as f:
        rows = _rows(f.read())
    named = {name for _, names, _, _ in rows for name in names}
    config = training.TrainConfig.from_preset("cars196_paper")
    card = protocol.card_rows(config)
    with_release = {r["setting"] for r in card if r["release"] is not None}
    assert with_release - named == set(), "release settings without a row"
    assert named - {r["setting"] for r in card} == set(), "rows naming no card setting"
