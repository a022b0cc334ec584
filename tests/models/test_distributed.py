"""MDR under tf.distribute: 2 logical CPU replicas, and 2 worker processes.

We gather embeddings and labels across replicas before mining (see
BUILD_NOTES.md), so a 2-replica step must equal the 1-device step on the global
batch, and the MDR levels and statistics must be the same on every replica.
Each configuration runs in its own process (logical devices and TF_CONFIG must
be set before TensorFlow starts).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import local_cluster  # noqa: E402

WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")


# Tolerance on the update of the trained variables (final minus initial,
# weights and levels), relative to the 1-device update's norm; the moving
# statistics are compared by value.
UPDATE_RTOL = 1e-5


def _assert_same_step(run, single, who):
    """`run` trained as the 1-device run did: same update, statistics and losses."""
    np.testing.assert_allclose(run["loss"], single["loss"], rtol=1e-5, err_msg=who)
    scale = np.linalg.norm(single["update"])
    assert scale > 0, "the 1-device run did not train"
    rel = np.linalg.norm(run["update"] - single["update"]) / scale
    print(f"{who}: relative update difference {rel:.2e}")
    assert rel < UPDATE_RTOL, f"{who}: update differs from the 1-device update by {rel:.3g} (relative)"
    for key in single.files:
        if key.startswith("var") or key in ("levels", "moving_mean", "moving_std"):
            np.testing.assert_allclose(run[key], single[key], rtol=1e-5, atol=1e-6, err_msg=f"{who} {key}")


def _assert_mdr_moved_levels(run):
    """The levels went elsewhere than nu * sum(v^2) alone would take them."""
    shift = np.abs(run["levels"] - run["levels_without_mdr"]).max()
    print(f"levels: max shift {shift:.3g} off the nu-only path")
    assert shift > 1e-3, f"MDR did not move the levels (max shift {shift:.3g} off the nu-only path)"


def _run(mode, out, base_loss, env=None):
    proc = subprocess.run(
        [sys.executable, WORKER, mode, str(out), base_loss],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out)


@pytest.mark.parametrize("base_loss", ["semihard", "distance_weighted"])
def test_two_replicas_equal_one_device_on_the_global_batch(tmp_path, base_loss):
    single = _run("single", tmp_path / "single.npz", base_loss)
    mirrored = _run("mirrored", tmp_path / "mirrored.npz", base_loss)
    assert int(mirrored["replicas"]) == 2
    _assert_same_step(mirrored, single, "mirrored")
    # Every replica holds the same levels, statistics and weights.
    copies = [k for k in mirrored.files if k.startswith("replicas") and k != "replicas"]
    assert copies, "no per-replica copies were recorded"
    for key in copies:
        values = mirrored[key]
        assert values.shape[0] == 2
        np.testing.assert_array_equal(values[0], values[1], err_msg=key)
    _assert_mdr_moved_levels(mirrored)


@pytest.mark.slow
def test_multi_worker_mirrored_two_processes(tmp_path):
    procs = []
    for index, env in enumerate(local_cluster.worker_environments(2)):
        procs.append(subprocess.Popen(
            [sys.executable, WORKER, "multiworker", str(tmp_path / f"w{index}.npz"), "semihard"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    workers = [np.load(tmp_path / f"w{index}.npz") for index in range(2)]
    # Each worker against the 1-device run on the global batch, not only
    # against the other worker: both could agree on a wrong update.
    single = _run("single", tmp_path / "single.npz", "semihard")
    for index, run in enumerate(workers):
        assert int(run["replicas"]) == 2
        _assert_same_step(run, single, f"worker {index}")
        _assert_mdr_moved_levels(run)
        assert float(run["moving_std"]) > 0
    # And the workers hold the same variables, bit for bit.
    for key in single.files:
        if key.startswith("var") or key in ("levels", "moving_mean", "moving_std"):
            np.testing.assert_array_equal(workers[0][key], workers[1][key], err_msg=key)
