"""A run killed with SIGKILL between checkpoints resumes to the uninterrupted run's state.

Each run is a subprocess (tests/training/resume_worker.py). One run is killed
twice, each time at a random step that is neither a checkpoint nor an epoch
end: once after an epoch-end checkpoint, once after a mid-epoch one. Each
restart has to replay the steps the kill lost, on the same batches, sampled
negatives and optimizer state. Training on CPU is deterministic here (checked:
two uninterrupted runs end bit-equal), so the final weights, MDR state and
optimizer state must equal the uninterrupted run's bit for bit.
"""

import json
import os
import random
import signal
import subprocess
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import resume_worker  # noqa: E402

WORKER = os.path.join(os.path.dirname(__file__), "resume_worker.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env():
    return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _train(run_dir):
    proc = subprocess.run([sys.executable, WORKER, str(run_dir)], capture_output=True, text=True,
                          timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]


def _kill_at(run_dir, step):
    """Runs until `step`, then SIGKILLs the process; returns the step on file."""
    log = f"{run_dir}-kill-{step}.err"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, WORKER, str(run_dir), str(step)],
                                stdout=subprocess.PIPE, stderr=err, text=True, env=_env())
    try:
        line = proc.stdout.readline()  # "" if the worker died first
        assert line.strip() == f"paused at step {step}", open(log).read()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with open(os.path.join(run_dir, "checkpoints", "state.json")) as f:
        return json.load(f)["step"]


def _state(run_dir):
    """(optimizer step, [(path, value)] of every model and optimizer variable) of `last.keras`."""
    model = keras.saving.load_model(os.path.join(run_dir, "checkpoints", "last.keras"))
    variables = list(model.variables) + list(model.optimizer.variables)
    return int(model.optimizer.iterations), [(v.path, np.array(v.numpy())) for v in variables]


def _checkpointed(step):
    every, per_epoch = resume_worker.CHECKPOINT_EVERY, resume_worker.STEPS_PER_EPOCH
    return step % every == 0 or step % per_epoch == 0


def _last_checkpoint(step):
    """The step of the last checkpoint written before `step`."""
    return max(s for s in range(step) if _checkpointed(s))


def _kill_steps():
    """Two kill steps, neither a checkpoint: the first restarts from an epoch
    end (a fresh epoch replays the lost steps), the second from a checkpoint
    mid-epoch (the rest of that epoch's batches replay first)."""
    per_epoch = resume_worker.STEPS_PER_EPOCH
    last = resume_worker.EPOCHS * per_epoch
    after = {}
    for step in range(resume_worker.CHECKPOINT_EVERY + 1, last):
        if not _checkpointed(step):
            after.setdefault(_last_checkpoint(step) % per_epoch == 0, []).append(step)
    pairs = [(a, b) for a in after[True] for b in after[False] if a < b]
    return random.SystemRandom().choice(pairs)


def test_sigkill_between_checkpoints_resumes_to_the_same_state(tmp_path):
    steps = _kill_steps()
    print(f"killing at steps {steps}")
    _train(tmp_path / "whole")
    killed = tmp_path / "killed"
    for step in steps:
        # The kill lost the steps after the last checkpoint, none of them saved.
        assert _kill_at(killed, step) == _last_checkpoint(step), f"killed at step {step}"
    rows_before = open(killed / "metrics.jsonl").read().splitlines()
    _train(killed)  # the same command again
    (whole_step, whole), (resumed_step, resumed) = _state(tmp_path / "whole"), _state(killed)
    assert whole_step == resumed_step == resume_worker.EPOCHS * resume_worker.STEPS_PER_EPOCH
    assert [path for path, _ in whole] == [path for path, _ in resumed]
    for (path, want), (_, got) in zip(whole, resumed):
        np.testing.assert_array_equal(got, want, err_msg=f"{path} after kills at steps {steps}")
    # Nothing already logged is lost or repeated.
    rows_after = open(killed / "metrics.jsonl").read().splitlines()
    assert rows_after[: len(rows_before)] == rows_before
    assert [json.loads(r)["epoch"] for r in rows_after] == list(range(1, resume_worker.EPOCHS + 1))
    lines = open(killed / "log.csv").read().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == [str(e) for e in range(1, resume_worker.EPOCHS + 1)]
