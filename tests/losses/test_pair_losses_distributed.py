"""The pair and softmax losses under `MirroredStrategy` (issue 10 item 1, issue 11 item 5).

On a plain `keras.Model`, two steps under a 2-replica `MirroredStrategy` (2
logical CPUs) must equal the 1-device steps on the same global batches: the
base class gathers the global batch (mining sees all of it) and divides by
the replica count. On one device, each loss's step compiled with
`jit_compile=True` must equal its plain step (XLA cannot compile a step over
MirroredStrategy's per-device variables in TF 2.21: "Trying to access
resource ... located in device CPU:1 from CPU:0", whatever the loss). The
stateful losses (learnt beta, proxies, centres) need a model that owns their
state; they are covered with the models' distributed tests.

Tolerance: 1e-5 relative norm of the update difference (the issue's
criterion); float32 all-reduce and gather reorder sums, about 1e-7 here.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "pair_losses_worker.py")


def _run(mode, out):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.dirname(WORKER)))]
        + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    proc = subprocess.run([sys.executable, WORKER, mode, str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def test_two_replicas_equal_one_device(tmp_path):
    single = _run("single", tmp_path / "single.npz")
    mirrored = _run("mirrored", tmp_path / "mirrored.npz")
    assert len(mirrored) == 5 and len(single) == 10
    pairs = [(k, single[k], mirrored[k]) for k in mirrored]
    pairs += [(k.replace("jit0", "jit1"), single[k], single[k.replace("jit0", "jit1")])
              for k in mirrored]
    for key, ref, got in pairs:
        assert np.linalg.norm(ref) > 1e-3, f"{key}: the step did not train"
        gap = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        print(f"[distributed] {key}: relative update gap {gap:.2e}")
        assert gap <= 1e-5, f"{key}: differs from the plain 1-device step by {gap:.2e}"
