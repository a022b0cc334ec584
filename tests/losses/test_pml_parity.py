"""Parity of the pair, proxy and softmax losses with pytorch-metric-learning 2.9.

Torch lane: `tools/pml_reference.py` runs once per test session under the
torch environment (`bash tools/make_torch_venv.sh`; its python is
`$KERAS_MDR_TORCH_PYTHON`, default `<repo>/.venv-torch/bin/python`) and writes
88 seeded cases (8 losses x 11 shapes: batch 2 to 512, dimension 2 to 512,
classes of one sample, one class, duplicated rows, unit rows scaled by 1e-3
and 1e3) with PML's value and its gradients with respect to the embeddings
and to the loss's state (beta, proxies, centres; the same values on both
sides). A missing torch environment is a failure, not a skip.

Tolerance, for float32 on both sides. Every entry of a loss or of a
gradient goes through a matrix product of `d` terms and then sums of up to
`B` terms, each rounded to float32 (unit roundoff u = 2^-24); with rounding
errors of random sign that is an error of about `u sqrt(B (B + d))`
relative to the largest entry, and the two libraries order their sums
differently, so each side carries its own: the allowance is
`RTOL = 4 u sqrt(B (B + d))` (2.4e-7 at B = 2, 1.3e-4 at B = d = 512),
applied to the value (relative) and to each gradient (relative to its
largest entry). The softmax-like losses multiply similarities by a scale
`a` before an exp (multi-similarity's beta 50, 1 / temperature 10,
proxy-anchor's alpha 32, ArcFace's s 64): an error `u |S|` in a similarity
becomes `a u |S|` in the exponent, so there the allowance is multiplied by
`1 + a max|S|` (max|S| from the case: |e|^2 for in-batch pairs, |e| against
unit proxies). PML's margin loss sums its `T` triplets one by one (T = 1.8
million at B = 512), so there `B (B + d)` becomes `B (B + d) + T`.

The Euclidean losses (contrastive, margin) have one more, case-specific
source: both sides compute a distance from `|a|^2 + |b|^2 - 2 a.b` (PML
through `torch.cdist`'s matrix-product path), whose error is about
`s = 4 u (|a|^2 + |b|^2)` in the squared distance, so `D` is off by
`dD = s / (D + sqrt(s))` and the unit vector `(a - b) / D` of its gradient
by `min(2, dD / D)`. A pair whose cost is within `dD` of its hinge may be
active on one side only. The test computes, in float64, each pair's
coefficient in the loss and adds these terms to the allowance (they
dominate for near-duplicate rows and for the 256 points on a circle of
`b256_d2`).

Documented deviations (checked, not skipped):
- NT-Xent: PML computes `-log(p + tiny)` with `p` a float32 ratio, so a
  pair whose loss exceeds `-log(tiny)` = 87.3 is capped there (and its
  gradient explodes); we compute the loss in the log domain. Where a case
  has such a pair (`b64_d32_scale1e3`), our value must equal the float64
  brute-force reference and be at least PML's, and our gradient be finite.
- ArcFace: where an embedding sits on its centre (`b8_d4`'s first two rows),
  PML's `acos` has an infinite slope and its gradient is NaN (the case puts
  them exactly on basis-vector centres, so the cosine is exactly 1 on any
  CPU); ours is finite. There the value must
  agree, our gradients be finite, and the other rows and centres agree.
- multi-similarity: PML returns 0 when its miner keeps at most one positive
  and at most one negative pair; we compute the loss of those pairs (no
  case here hits it).
"""

import json
import time

import numpy as np
import pytest
import tensorflow as tf
import torch_lane

import metric_references as ref
from keras_mdr.losses import arcface_loss, contrastive_loss, margin_loss
from keras_mdr.losses import multi_similarity_loss, proxy_anchor_loss, supcon_loss

SEED = 0
U = 2.0**-24
# The factor by which each loss multiplies similarities inside an exp.
LOGIT_SCALE = {"multi_similarity": 50.0, "supcon": 10.0, "ntxent": 10.0, "proxy_anchor": 32.0,
               "arcface": 64.0}
NTXENT_CAP = -np.log(np.finfo(np.float32).tiny)

OURS = {
    "contrastive": lambda y, e, s: contrastive_loss.contrastive_loss(y, e),
    "margin": lambda y, e, s: margin_loss.margin_loss(y, e, s, margin=0.2, nu=0.1),
    "margin_per_class": lambda y, e, s: margin_loss.margin_loss(y, e, s, margin=0.2, nu=0.1),
    "multi_similarity": lambda y, e, s: multi_similarity_loss.multi_similarity_loss(y, e),
    "supcon": lambda y, e, s: supcon_loss.supcon_loss(y, e, temperature=0.1),
    "ntxent": lambda y, e, s: supcon_loss.ntxent_loss(y, e, temperature=0.1),
    "proxy_anchor": lambda y, e, s: proxy_anchor_loss.proxy_anchor_loss(y, e, s),
    "arcface": lambda y, e, s: arcface_loss.arcface_loss(y, e, s),
}


@pytest.fixture(scope="session")
def pml_cases(tmp_path_factory):
    out = tmp_path_factory.mktemp("pml") / "reference.npz"
    start = time.time()
    log = torch_lane.run_torch_script("pml_reference.py", out, "--seed", SEED, timeout=900)
    print(f"\n{log.strip()} ({time.time() - start:.1f} s)")
    with np.load(out) as data:
        meta = json.loads(str(data["meta"]))
        return [dict(m, **{k.split("_", 1)[1]: data[k] for k in data.files
                           if k.startswith(f"case{i}_")}) for i, m in enumerate(meta)]


def _ours(case):
    e = tf.constant(case["embeddings"])
    state = tf.Variable(case["state"]) if "state" in case else None
    with tf.GradientTape() as tape:
        tape.watch(e)
        value = OURS[case["loss"]](case["labels"], e, state)
    grads = tape.gradient(value, [e] + ([state] if state is not None else []))
    grads = [np.zeros(v.shape, np.float32) if g is None else np.asarray(g) for g, v in
             zip(grads, [e] + ([state] if state is not None else []))]
    return float(value), grads[0], (grads[1] if state is not None else None)


def _euclidean_terms(case):
    """Float64 pair coefficients of a Euclidean loss: (coef, dD, ambiguous, count, state coef)."""
    y, e = case["labels"], case["embeddings"].astype(np.float64)
    sq = np.sum(e**2, axis=1)
    d = np.sqrt(np.maximum(np.sum((e[:, None] - e[None]) ** 2, axis=-1), 0.0))
    s = 4 * U * (sq[:, None] + sq[None, :])
    dd = s / (d + np.sqrt(s))
    same = y[:, None] == y[None, :]
    pos, neg = same & ~np.eye(len(y), dtype=bool), ~same
    if case["loss"] == "contrastive":
        pc, nc = d, 1.0 - d
        amb = (pos & (np.abs(pc) <= dd)) | (neg & (np.abs(nc) <= dd))
        pk, nk = pos & (pc > 0), neg & (nc > 0)
        coef = pk / max(pk.sum(), 1) + nk / max(nk.sum(), 1)
        return coef, dd, amb, max(min(pk.sum(), nk.sum() or pk.sum()), 1), None
    beta = case["state"].astype(np.float64)
    b = beta[0] if beta.size == 1 else beta[y]
    b = np.broadcast_to(b, y.shape)[:, None]
    pc, nc = d - b + 0.2, b - d + 0.2
    amb = (pos & (np.abs(pc) <= dd)) | (neg & (np.abs(nc) <= dd))
    num_pos, num_neg = pos.sum(1, keepdims=True), neg.sum(1, keepdims=True)
    mult = (pos & (pc > 0)) * num_neg + (neg & (nc > 0)) * num_pos
    divisor = max(mult.sum(), 1)
    return mult / divisor, dd, amb, divisor, (pos * num_neg + neg * num_pos) / divisor


def _allowances(case, value, grad, state_grad):
    batch, dim = case["embeddings"].shape
    terms = batch * (batch + dim)
    if case["loss"].startswith("margin"):
        # PML sums the margin loss triplet by triplet (T terms per sum).
        y = case["labels"]
        same = y[:, None] == y[None, :]
        terms += int(np.sum((same.sum(1) - 1) * (~same).sum(1)))
    norms = np.linalg.norm(case["embeddings"].astype(np.float64), axis=1).max()
    largest_similarity = norms if case["loss"] in ("proxy_anchor", "arcface") else norms**2
    amplification = 1.0 + LOGIT_SCALE.get(case["loss"], 0.0) * largest_similarity
    rtol = 4 * U * np.sqrt(terms) * amplification
    allow = [rtol * max(abs(value), 1e-30), rtol * np.abs(grad).max() + 1e-30, None]
    if state_grad is not None:
        allow[2] = rtol * np.abs(state_grad).max() + 1e-30
    if case["loss"] in ("contrastive", "margin", "margin_per_class"):
        coef, dd, amb, count, state_coef = _euclidean_terms(case)
        d = np.sqrt(np.sum((case["embeddings"][:, None].astype(np.float64)
                            - case["embeddings"][None]) ** 2, axis=-1))
        direction = np.minimum(2.0, dd / np.maximum(d, 1e-300))
        flips = amb.sum()
        allow[0] += np.sum(coef * dd) + abs(value) * flips / count
        sym = coef + coef.T
        row = (sym * direction).sum(1) + (amb * sym).sum(1) + (amb * (1.0 / count)).sum(1) * 2
        allow[1] = allow[1] + row[:, None] + np.abs(grad).max() * flips / count
        if state_coef is not None:
            allow[2] += (amb * state_coef).sum() + np.abs(state_grad).max() * flips / count
    return allow


def _ntxent_capped(case):
    y, e = case["labels"], case["embeddings"].astype(np.float64)
    s = e @ e.T / 0.1
    for a in range(len(y)):
        negs = s[a, y != y[a]]
        for p in np.nonzero((y == y[a]) & (np.arange(len(y)) != a))[0]:
            if negs.size and np.logaddexp.reduce(np.append(negs, s[a, p])) - s[a, p] > NTXENT_CAP:
                return True
    return False


ON_CENTRE_ROWS = 2  # tools/pml_reference.py puts ArcFace b8_d4's first two rows on their centres


def _check_on_centre_deviation(case, grad, state_grad):
    """PML's gradient is NaN on a centre (acos' infinite slope); ours is finite."""
    assert not np.all(np.isfinite(case["grad"][:ON_CENTRE_ROWS])), "the case lost its point"
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(state_grad))


def _without_on_centre_rows(case):
    """The case with the on-centre rows and their classes' centres zeroed on PML's side."""
    case = dict(case)
    rows = np.ones((len(case["labels"]), 1), np.float32)
    rows[:ON_CENTRE_ROWS] = 0.0
    classes = np.ones((len(case["state"]), 1), np.float32)
    classes[case["labels"][:ON_CENTRE_ROWS]] = 0.0
    case["row_mask"], case["class_mask"] = rows, classes
    case["grad"] = np.nan_to_num(case["grad"]) * rows
    case["state_grad"] = np.nan_to_num(case["state_grad"]) * classes
    return case


def test_every_loss_matches_pml(pml_cases):
    report = {}
    for case in pml_cases:
        value, grad, state_grad = _ours(case)
        label = f"{case['loss']}/{case['name']}"
        if case["loss"] == "ntxent" and _ntxent_capped(case):
            expected = ref.ntxent(case["labels"], case["embeddings"], 0.1)
            assert value == pytest.approx(expected, rel=1e-5), label
            assert value >= float(case["value"]) and np.all(np.isfinite(grad)), label
            continue
        if case["loss"] == "arcface" and case["name"] == "b8_d4":
            _check_on_centre_deviation(case, grad, state_grad)
            case = _without_on_centre_rows(case)
            grad, state_grad = grad * case["row_mask"], state_grad * case["class_mask"]
        assert np.isfinite(case["value"]) and np.all(np.isfinite(case["grad"])), label
        allow = _allowances(case, float(case["value"]), case["grad"], case.get("state_grad"))
        gaps = [abs(value - float(case["value"])), np.abs(grad - case["grad"])]
        assert gaps[0] <= allow[0], f"{label}: value {value} vs PML {case['value']}"
        assert np.all(gaps[1] <= allow[1]), f"{label}: grad gap {gaps[1].max():.3g}"
        shares = [gaps[0] / allow[0], np.max(gaps[1] / allow[1])]
        rel = [gaps[0] / max(abs(float(case["value"])), 1e-30),
               gaps[1].max() / max(np.abs(case["grad"]).max(), 1e-30)]
        if state_grad is not None:
            gap = np.abs(state_grad - case["state_grad"])
            assert np.all(gap <= allow[2]), f"{label}: state grad gap {gap.max():.3g}"
            shares.append(np.max(gap / allow[2]))
            rel.append(gap.max() / max(np.abs(case["state_grad"]).max(), 1e-30))
        worst = report.setdefault(case["loss"], {})
        for k, (r, share) in enumerate(zip(rel, shares)):
            if share >= worst.get(k, (0.0, 0.0, ""))[1]:
                worst[k] = (r, share, case["name"])
    for loss, worst in report.items():
        parts = [f"{what} {worst[k][0]:.1e} (share {worst[k][1]:.2f}, {worst[k][2]})"
                 for k, what in enumerate(("value", "grad", "state")) if k in worst]
        print(f"[pml] {loss:17s} relative gap at the worst share: " + "; ".join(parts))
    assert len(report) == len(OURS)
