"""Live parity of keras_mdr's triplet losses with TensorFlow Addons 0.23.

TFA cannot be imported on TensorFlow >= 2.16, so `tools/tfa_reference.py` runs
it in a separate legacy environment (TF 2.15.1 + TFA 0.23.0, made by
`bash tools/make_tfa_venv.sh`; its python is `$KERAS_MDR_TFA_PYTHON`, default
`<repo>/.venv-tfa/bin/python`). That script writes its seeded cases (inputs and
TFA's values, plus TFA's gradients for a subset) to an .npz; this module
computes keras_mdr's losses on the same inputs and compares. A missing legacy
environment is a failure, not a skip: CI must run this lane.

Run alone (creating the legacy environment first if needed):
    bash tools/make_tfa_venv.sh
    .venv/bin/python -m pytest tests/losses/test_tfa_parity.py

Tolerances (TensorFlow Addons 0.23 triplet semantics):
- values: |ours - tfa| <= 1e-5 |tfa| + atol, atol = 1e-5 x the batch's
  largest distance (float64), because TFA's float32 distances come from
  |a|^2 + |b|^2 - 2ab, whose rounding grows with the largest distance.
  Batches with duplicated rows under "L2" use DUPLICATE_L2_ATOL_FACTOR = 100
  times that atol: where the true distance is 0, TFA's squared distance is
  float32 rounding noise, k eps32 |a|^2 with eps32 = 1.2e-7 and k a few ulps,
  and TFA returns its square root, sqrt(k eps32) |a| ~ 3.5e-4 sqrt(k) |a|,
  i.e. 2.5e-4 sqrt(k) of the largest distance (~sqrt(2) |a|): 25 sqrt(k)
  times the plain atol per affected distance. TFA's own values in the
  duplicated-row cases are up to 6.5x the plain atol away from the exact
  (float64) loss; 100 covers k up to ~16 even when every term of a loss is
  affected, so an implementation that gets exact zeros is not failed for
  TFA's noise. (keras_mdr uses TFA's formula and stays within 0.6x of the
  plain atol there.) "squared-L2" and "angular" take no square root of the
  noise and keep the plain atol. Note that in those batches TFA's semi-hard
  choice between a positive and a negative both at true distance 0 is decided
  by that noise (in one angular case TFA is 300x the plain atol away from the
  exact loss); keras_mdr matches TFA there because it evaluates the same
  float32 expression, so a change of distance formula can fail these cases.
- TFA NaN (semi-hard, no positive pair): ours must be exactly 0.0.
- TFA inf (soft hard loss, some gap > ~88.7 overflows exp): ours must be
  finite and match the float64 mean softplus of the same gaps within the
  value tolerance.
- gradients (TFA recorded them for cases whose every mining decision is at
  least 1e-5 of the largest distance away from a tie, so float32 rounding
  cannot switch a selected negative or a hinge): elementwise
  |ours - tfa| <= GRAD_RTOL |tfa| + GRAD_ATOL max|tfa|. Each gradient entry is
  a sum of unit vectors (e_a - e_b) / D_ab (or 2 (e_a - e_b), or the cosine
  equivalent) over the selected triplets; both sides compute D_ab in float32
  from the same cancelling expression, whose relative error is a few eps32
  times |e|^2 / D^2 (~1e-6 here), and summation order differs. Measured
  differences are at most ~3.5e-7 of the largest entry, so 1e-4 relative plus
  1e-5 of the largest entry leaves ~30x headroom yet stays far below the
  O(1 / #pairs) jump a switched selection would cause.
"""

import os
import resource
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import keras_mdr
import reference

# ~95 s of CPU in all (TFA's tracing ~65 s, ours ~25 s, spread over 2 cores):
# about a minute on an idle 2-core machine, 110-200 s measured on a busy one.
# CI runs slow tests too (pytest.ini).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TFA_PYTHON_ENV = "KERAS_MDR_TFA_PYTHON"
REFERENCE_SCRIPT = REPO / "tools" / "tfa_reference.py"
MAKE_VENV = "bash tools/make_tfa_venv.sh"
EXPECTED_VERSIONS = {"tf_version": "2.15.1", "tfa_version": "0.23.0"}
SEED = 0
MIN_CASES = 200
MIN_GRAD_CASES = 40
REFERENCE_TIMEOUT_S = 900
# TFA's run is ~55 s of CPU, nearly all single-threaded tf.function tracing (every
# case has new shapes): two workers, overlapped with our side, fit on 2 cores.
REFERENCE_JOBS = 2

RTOL = 1e-5
ATOL_FACTOR = 1e-5
DUPLICATE_L2_ATOL_FACTOR = 100.0
GRAD_RTOL = 1e-4
GRAD_ATOL = 1e-5

LOSSES = ("semihard", "hard", "hard_soft")
# TFA's metric names -> tests/reference.py's.
_REFERENCE_METRIC = {"L2": "euclidean", "squared-L2": "squared_euclidean", "angular": "cosine"}


def _tfa_python():
    """The legacy interpreter; fails (never skips) when it is not there."""
    path = Path(os.environ.get(TFA_PYTHON_ENV) or REPO / ".venv-tfa" / "bin" / "python")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"TFA parity lane: no legacy Python at {path}. Create the TF 2.15.1 + "
            f"TFA 0.23.0 environment with `{MAKE_VENV}` (run from {REPO}), or point "
            f"{TFA_PYTHON_ENV} at an existing one.",
            pytrace=False,
        )
    return path


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _legacy_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return env


def _reference_failed(python, returncode, stderr):
    pytest.fail(
        f"{REFERENCE_SCRIPT.name} failed under {python} (exit {returncode}). If the "
        f"legacy environment is broken, recreate it with `{MAKE_VENV}`.\n"
        f"--- stderr (tail) ---\n{stderr[-4000:]}",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Cases with TFA's results and ours, computed side by side.

    The legacy python first writes the inputs alone (~1 s); TFA's full run
    (~55 s of CPU, mostly tf.function tracing, in REFERENCE_JOBS workers) then
    goes on in a subprocess while this process computes keras_mdr's values and
    gradients (~20 s of CPU). The full run's inputs must equal the ones ours
    were computed on.
    """
    python = _tfa_python()
    workdir = tmp_path_factory.mktemp("tfa_parity")
    inputs_path, full_path = workdir / "inputs.npz", workdir / "tfa_reference.npz"
    command = [str(python), str(REFERENCE_SCRIPT), "--seed", str(SEED)]
    start, children_cpu = time.time(), _children_cpu()
    proc = subprocess.run(command + [str(inputs_path), "--inputs-only"], cwd=REPO,
                          env=_legacy_env(), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        _reference_failed(python, proc.returncode, proc.stderr)
    with np.load(inputs_path) as data:
        inputs = {key: data[key] for key in data.files}
    cases = _split_cases(inputs)

    # Output to files, not pipes: a full pipe would stall the child meanwhile.
    with open(workdir / "stdout.txt", "w+") as stdout, open(workdir / "stderr.txt", "w+") as stderr:
        full = subprocess.Popen(command + [str(full_path), "--jobs", str(REFERENCE_JOBS)],
                                cwd=REPO, env=_legacy_env(),
                                stdout=stdout, stderr=stderr, text=True)
        try:
            ours_start, ours_cpu = time.time(), time.process_time()
            # Stop early if the legacy run dies (e.g. no TFA in that python).
            ours = _compute_ours(cases, keep_going=lambda: full.poll() in (None, 0))
            ours_s, ours_cpu = time.time() - ours_start, time.process_time() - ours_cpu
            returncode = full.wait(timeout=REFERENCE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{REFERENCE_SCRIPT.name} ran over {REFERENCE_TIMEOUT_S} s", pytrace=False)
        finally:
            if full.poll() is None:
                full.kill()
                full.wait()
        stdout.seek(0)
        stderr.seek(0)
        log, errors = stdout.read().strip(), stderr.read()
    if returncode != 0 or not full_path.exists():
        _reference_failed(python, returncode, errors)
    with np.load(full_path) as data:
        arrays = {key: data[key] for key in data.files}
    for key, value in inputs.items():
        assert np.array_equal(arrays[key], value), f"{key} differs between the two runs"
    for key, expected in EXPECTED_VERSIONS.items():
        assert str(arrays[key]) == expected, (
            f"the legacy environment has {key}={arrays[key]}, expected {expected}; "
            f"recreate it with `{MAKE_VENV}`"
        )
    _attach_tfa(cases, arrays)
    children_cpu = _children_cpu() - children_cpu
    timing = (
        f"{log}\n[TFA parity] legacy subprocesses {children_cpu:.1f} s CPU; keras_mdr side "
        f"{ours_s:.1f} s wall, {ours_cpu:.1f} s CPU (overlapped); "
        f"lane total {time.time() - start:.1f} s wall"
    )
    return cases, ours, timing


def _split_cases(arrays):
    """One dict per case from the concatenated input arrays of the .npz."""
    cases = []
    for i in range(arrays["case_id"].size):
        batch, dim = int(arrays["batch"][i]), int(arrays["dim"][i])
        emb = arrays["emb_flat"][arrays["emb_offsets"][i] : arrays["emb_offsets"][i + 1]]
        labels = arrays["labels_flat"][arrays["label_offsets"][i] : arrays["label_offsets"][i + 1]]
        cases.append(dict(
            case_id=int(arrays["case_id"][i]),
            kind=str(arrays["kind"][i]),
            metric=str(arrays["metric"][i]),
            margin=float(arrays["margin"][i]),
            scale=float(arrays["scale"][i]),
            batch=batch,
            dim=dim,
            label_2d=bool(arrays["label_2d"][i]),
            has_duplicates=bool(arrays["has_duplicates"][i]),
            grad=bool(arrays["grad"][i]),
            emb=emb.reshape(batch, dim),
            labels=labels.reshape(-1, 1) if arrays["label_2d"][i] else labels,
        ))
    return cases


def _attach_tfa(cases, arrays):
    """Adds TFA's values (and gradients, for the grad cases) to each case."""
    offset = 0
    for i, case in enumerate(cases):
        case["tfa"] = {name: float(arrays[f"tfa_{name}"][i]) for name in LOSSES}
        if case["grad"]:
            size = case["batch"] * case["dim"]
            case["tfa_grad"] = {
                name: arrays[f"grad_{name}_flat"][offset : offset + size].reshape(case["emb"].shape)
                for name in LOSSES
            }
            offset += size
    assert offset == arrays["grad_semihard_flat"].size


@tf.function
def _value_and_gradient(loss, labels, embeddings):
    """One training-style step: the loss and its gradient, traced as `fit` does."""
    with tf.GradientTape() as tape:
        tape.watch(embeddings)
        value = loss(labels, embeddings)
    return value, tape.gradient(value, embeddings)


def _compute_ours(cases, keep_going):
    """keras_mdr's values (eager, every case) and, for the grad cases, value and
    gradient under tf.function. Keyed by (case_id, loss name)."""
    ours = {}
    for case in cases:
        if not keep_going():
            break
        labels, emb = tf.constant(case["labels"]), tf.constant(case["emb"])
        for name, loss in _our_losses(case).items():
            result = {"value": float(loss(labels, emb))}
            if case["grad"]:
                value, grad = _value_and_gradient(loss, labels, emb)
                result.update(graph_value=float(value), grad=grad.numpy())
            ours[case["case_id"], name] = result
    return ours


def _our_losses(case):
    margin, metric = case["margin"], case["metric"]
    return {
        "semihard": keras_mdr.TripletSemiHardLoss(margin=margin, distance=metric),
        "hard": keras_mdr.TripletHardLoss(margin=margin, soft=False, distance=metric),
        "hard_soft": keras_mdr.TripletHardLoss(margin=margin, soft=True, distance=metric),
    }


def _max_distance(emb, metric):
    """Largest float64 distance of the batch under `metric` (Gram form: cheap at B=512)."""
    x = emb.astype(np.float64)
    if metric == "angular":
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        return float(np.max(1.0 - u @ u.T))
    sq = np.sum(x * x, axis=1)
    d2 = float(np.max(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)))
    return d2 if metric == "squared-L2" else float(np.sqrt(max(d2, 0.0)))


def _atol(case):
    factor = ATOL_FACTOR
    if case["has_duplicates"] and case["metric"] == "L2":
        factor *= DUPLICATE_L2_ATOL_FACTOR
    return factor * _max_distance(case["emb"], case["metric"])


def _softplus_reference(case):
    """float64 mean softplus of the hard gaps (TFA's value without its overflow)."""
    metric = _REFERENCE_METRIC[case["metric"]]
    distances = reference.distances(case["emb"], metric)
    return reference.hard(case["labels"].reshape(-1), distances, case["margin"], soft=True)


def _describe(case):
    return (
        f"case {case['case_id']} ({case['kind']}, B={case['batch']}, d={case['dim']}, "
        f"metric={case['metric']}, margin={case['margin']}, scale={case['scale']:g}, "
        f"labels {'(B,1)' if case['label_2d'] else '(B,)'}"
        f"{', duplicated rows' if case['has_duplicates'] else ''})"
    )


def _check_value(case, name, ours):
    """Returns (failure message or None, abs error, error / allowed) for one loss value."""
    tfa = case["tfa"][name]
    if not np.isfinite(ours):
        return f"{name}: ours={ours!r} is not finite (TFA={tfa!r})", np.inf, np.inf
    if np.isnan(tfa):
        no_positive = np.unique(case["labels"]).size == case["batch"]
        if name != "semihard" or not no_positive:
            return f"{name}: unexpected NaN from TFA (ours={ours!r})", 0.0, 0.0
        if ours != 0.0:
            message = f"{name}: TFA is NaN (no positive pair), ours={ours!r}, expected 0.0"
            return message, abs(ours), np.inf
        return None, 0.0, 0.0
    if np.isinf(tfa):
        if name != "hard_soft":
            return f"{name}: unexpected inf from TFA (ours={ours!r})", 0.0, 0.0
        target, what = _softplus_reference(case), "float64 softplus (TFA overflowed to inf)"
    else:
        target, what = tfa, "TFA"
    err = abs(ours - target)
    allowed = RTOL * abs(target) + _atol(case)
    if err > allowed:
        return (
            f"{name}: ours={ours!r} {what}={target!r} |diff|={err:.3g} > allowed {allowed:.3g}",
            err,
            err / allowed,
        )
    return None, err, err / allowed if allowed else 0.0


def _summary(rows):
    """Max abs error and max error / allowed, per loss and metric."""
    lines = [f"{'loss':<10} {'metric':<11} {'n':>4} {'nan':>4} {'inf':>4} {'max|err|':>10} "
             f"{'max err/tol':>11} {'max rel':>9}"]
    for name in LOSSES:
        for metric in ("L2", "squared-L2", "angular"):
            sel = [r for r in rows if r["loss"] == name and r["metric"] == metric]
            if not sel:
                continue
            finite = [r for r in sel if np.isfinite(r["tfa"])]
            lines.append(
                f"{name:<10} {metric:<11} {len(sel):>4} "
                f"{sum(np.isnan(r['tfa']) for r in sel):>4} "
                f"{sum(np.isinf(r['tfa']) for r in sel):>4} "
                f"{max(r['err'] for r in sel):>10.3g} {max(r['ratio'] for r in sel):>11.3g} "
                f"{max((r['err'] / abs(r['tfa']) for r in finite if r['tfa']), default=0.0):>9.3g}"
            )
    return "\n".join(lines)


def test_values_match_tfa(parity, capsys):
    cases, ours, timing = parity
    failures, rows = [], []
    for case in cases:
        for name in LOSSES:
            message, err, ratio = _check_value(case, name, ours[case["case_id"], name]["value"])
            rows.append(dict(loss=name, metric=case["metric"], tfa=case["tfa"][name],
                             err=err, ratio=ratio))
            if message:
                failures.append(f"{_describe(case)}: {message}")
    with capsys.disabled():
        print(f"\n[TFA parity] {timing}")
        print(f"[TFA parity] values: {len(cases)} cases x {len(LOSSES)} losses "
              f"(eager; err/tol is the error over its allowed tolerance)\n{_summary(rows)}")
    assert len(cases) >= MIN_CASES, f"only {len(cases)} cases compared, expected >= {MIN_CASES}"
    assert not failures, f"{len(failures)} mismatches with TFA:\n" + "\n".join(failures)


def test_gradients_match_tfa(parity, capsys):
    cases, ours, _ = parity
    grad_cases = [c for c in cases if c["grad"]]
    failures, worst = [], {}
    for case in grad_cases:
        for name in LOSSES:
            result = ours[case["case_id"], name]
            message, _, _ = _check_value(case, name, result["graph_value"])
            if message:
                failures.append(f"{_describe(case)} (under tf.function): {message}")
            tfa_grad, grad = case["tfa_grad"][name].astype(np.float64), result["grad"]
            scale = float(np.max(np.abs(tfa_grad)))
            diff = np.abs(grad - tfa_grad)
            allowed = GRAD_RTOL * np.abs(tfa_grad) + GRAD_ATOL * scale
            rel = float(diff.max() / scale) if scale else float(diff.max())
            key = (name, case["metric"])
            worst[key] = max(worst.get(key, 0.0), rel)
            if not np.all(np.isfinite(grad)) or np.any(diff > allowed):
                i, j = np.unravel_index(np.argmax(diff - allowed), diff.shape)
                failures.append(
                    f"{_describe(case)}: grad of {name} at [{i},{j}] ours={grad[i, j]!r} "
                    f"TFA={tfa_grad[i, j]!r} (max|TFA grad|={scale:.3g}, "
                    f"max|diff|/max|TFA grad|={rel:.3g})"
                )
    with capsys.disabled():
        print(f"\n[TFA parity] gradients (under tf.function): {len(grad_cases)} cases, "
              "max|diff| / max|TFA grad|:")
        for (name, metric), rel in sorted(worst.items()):
            print(f"  {name:<10} {metric:<11} {rel:.3g}")
    assert len(grad_cases) >= MIN_GRAD_CASES, (
        f"only {len(grad_cases)} gradient cases, expected >= {MIN_GRAD_CASES}")
    assert not failures, f"{len(failures)} gradient mismatches with TFA:\n" + "\n".join(failures)
