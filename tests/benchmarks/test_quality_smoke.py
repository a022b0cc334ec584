"""benchmarks/quality.py end to end, in tiny configurations.

The script is run as a subprocess (it owns its absl flags), on the embedded
digits, and on a small CUB-200-2011 folder written in the real layout.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "quality.py")
TINY = ["--seeds=1", "--epochs=2", "--steps_per_epoch=2", "--verbose=0"]


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, timeout=600
    )


def _ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_compare_writes_results_resumes_and_fills_the_doc(tmp_path):
    out = tmp_path / "out"
    doc = tmp_path / "results.md"
    doc.write_text(
        "intro\n<!-- quality:digits:compare:begin -->\nold\n"
        "<!-- quality:digits:compare:end -->\noutro\n"
    )
    args = ["--dataset=digits", "--arms=triplet,triplet_mdr", f"--output_dir={out}",
            f"--doc={doc}", *TINY]
    stdout = _ok(_run(*args))
    assert "[2/2] triplet_mdr/seed=0" in stdout

    payload = json.loads((out / "compare.json").read_text())
    assert sorted(payload["runs"]) == ["triplet/seed=0", "triplet_mdr/seed=0"]
    assert payload["subsets"]["train_classes"] == [0, 1, 2]
    assert payload["subsets"]["test_classes"] == [5, 6, 7, 8, 9]
    run = payload["runs"]["triplet_mdr/seed=0"]
    assert run["mdr_weight"] == pytest.approx(payload["config"]["mdr_weight"])
    assert payload["runs"]["triplet/seed=0"]["mdr_weight"] == 0.0
    assert [h["epoch"] for h in run["history"]] == [1, 2]
    assert run["best_epoch"] in (1, 2)
    for which in ("test_best", "test_last"):
        assert set(run[which]) >= {"recall@1", "recall@2", "recall@4", "recall@8", "map@r"}
        assert 0.0 <= run[which]["recall@1"] <= 1.0
    assert len(run["mdr_state_last"]["levels"]) == 3
    for name in ("compare.md", "recall_at_1.png", "distances_triplet_mdr_test.png",
                 "distances_triplet_train.png"):
        assert (out / name).exists(), name

    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| Triplet + MDR | Triplet | 1 |" in text

    # A second identical command trains nothing; another configuration is refused.
    assert "2 of 2 runs already" in _ok(_run(*args))
    refused = _run("--dataset=digits", "--arms=triplet", f"--output_dir={out}",
                   "--seeds=1", "--epochs=3", "--steps_per_epoch=2")
    assert refused.returncode == 2 and "differs in ['epochs']" in refused.stderr


def test_sweep_mode(tmp_path):
    out = tmp_path / "out"
    _ok(_run("--dataset=digits", "--mode=sweep", "--lambdas=0,0.5", f"--output_dir={out}", *TINY))
    payload = json.loads((out / "sweep.json").read_text())
    assert sorted(payload["runs"]) == ["lambda=0.5/seed=0", "lambda=0/seed=0"]
    assert payload["runs"]["lambda=0.5/seed=0"]["mdr_weight"] == 0.5
    assert (out / "sweep_recall_at_1.png").exists()
    assert "λ = 0.5" in (out / "sweep.md").read_text()


def test_missing_photo_data_fails_fast_and_creates_nothing(tmp_path):
    out = tmp_path / "out"
    result = _run("--dataset=cub200", f"--data_dir={tmp_path}", f"--output_dir={out}")
    assert result.returncode == 2
    assert "error: Expected CUB-200-2011" in result.stderr
    assert not out.exists()


def _write_cub(parent, classes, per_class=4):
    """A small CUB_200_2011/ folder in the official layout, real JPEGs."""
    root = os.path.join(parent, "CUB_200_2011")
    rows = []
    for number in classes:
        folder = f"{number:03d}.Bird_{number}"
        for i in range(per_class):
            relative = f"{folder}/Bird_{number}_{i}.jpg"
            path = os.path.join(root, "images", relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            rng = np.random.default_rng(number * 100 + i)
            pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            pixels[:, :, number % 3] = 40 * (number % 6)  # some class signal
            Image.fromarray(pixels).save(path)
            rows.append((relative, number))
    ids = range(1, len(rows) + 1)
    with open(os.path.join(root, "images.txt"), "w") as f:
        f.writelines(f"{i} {path}\n" for i, (path, _) in zip(ids, rows))
    with open(os.path.join(root, "image_class_labels.txt"), "w") as f:
        f.writelines(f"{i} {label}\n" for i, (_, label) in zip(ids, rows))
    with open(os.path.join(root, "train_test_split.txt"), "w") as f:
        f.writelines(f"{i} {i % 2}\n" for i in ids)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.writelines(f"{n} {n:03d}.Bird_{n}\n" for n in range(1, 201))
    return root


@pytest.mark.slow
def test_photo_mode_runs_on_a_small_cub_folder(tmp_path):
    root = _write_cub(str(tmp_path), classes=(*range(1, 7), *range(101, 105)))
    out = tmp_path / "out"
    stdout = _ok(_run(
        "--dataset=cub200", f"--data_dir={root}", f"--output_dir={out}",
        "--arms=triplet_l2norm,triplet_mdr", "--backbone=small_cnn", "--weights=none",
        "--image_size=32", "--resize_size=36", "--embedding_dim=16",
        "--classes_per_batch=2", "--images_per_class=2", "--validation_classes=2",
        "--eval_every=1", "--histograms=false", *TINY,
    ))
    assert "validation [" in stdout
    payload = json.loads((out / "compare.json").read_text())
    assert payload["config"]["lr_decay_epochs"] == [40, 60, 80]  # the paper's preset
    assert payload["subsets"]["test_classes"] == [100, 101, 102, 103]
    assert len(payload["runs"]) == 2
