"""MDR against a float64 NumPy implementation of the paper, term by term.

Tolerance: 1e-4 relative plus 1e-6 absolute, on loss values and on gradients
w.r.t. the embeddings and the levels (the NumPy gradients are central finite
differences in float64 with the statistics held fixed, which is what the
stop-gradient on the statistics means).
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_mdr
import reference

RTOL, ATOL = 1e-4, 1e-6


def _tf_terms(loss, state, labels, x, training):
    var = tf.Variable(x)
    with tf.GradientTape() as tape:
        terms = loss.batch_objective(labels, var, state=state, step=0, training=training)
    grad_e, grad_v = tape.gradient(terms["loss"], [var, state.regularizer.levels])
    return {k: float(v) for k, v in terms.items()}, grad_e.numpy(), grad_v.numpy()


def _case(rng):
    while True:
        labels, x = _draw(rng)
        if reference.well_separated(x):
            return labels, x


def _draw(rng):
    batch = int(rng.integers(4, 33))
    dim = int(rng.integers(2, 17))
    classes = int(rng.integers(2, max(3, batch // 2)))
    labels = rng.integers(0, classes, size=batch)
    x = rng.normal(size=(batch, dim)) * rng.choice([0.1, 1.0, 10.0])
    return labels, x.astype("float32")


@pytest.mark.parametrize("base", ["semihard", "hard", "mdr_only"])
def test_value_and_gradients_over_seeded_batches(base):
    rng = np.random.default_rng({"semihard": 10, "hard": 11, "mdr_only": 12}[base])
    n_cases = 100 if base == "semihard" else 40
    for case in range(n_cases):
        labels, x = _case(rng)
        levels = tuple(np.sort(rng.normal(size=3) * 2))
        kwargs = dict(levels=levels, momentum=0.9, mdr_weight=float(rng.uniform(0.1, 1.0)),
                      level_weight=0.01)
        base_loss = (lambda y, e: tf.constant(0.0)) if base == "mdr_only" else base
        loss = keras_mdr.MDRTripletLoss(base_loss=base_loss, margin=0.2, **kwargs)
        state = loss.build_state()
        regularizer = state.regularizer
        # Start from initialised statistics in half the cases.
        ref = reference.MDRReference(base=base, margin=0.2, **kwargs)
        if case % 2:
            mean, std = rng.uniform(0.5, 1.0), rng.uniform(0.2, 0.5)
            regularizer.moving_mean.assign(mean)
            regularizer.moving_std.assign(std)
            regularizer.initialized.assign(1.0)
            ref.mean, ref.std, ref.initialized = mean, std, True
        training = case % 3 != 0
        got, grad_e, grad_v = _tf_terms(loss, state, labels, x, training)
        mean, std = ref.statistics(x, training)
        want = ref.terms(x, labels, ref.levels, mean, std)
        want_e, want_v = ref.gradients(x, labels, mean, std)
        for key in ("loss", "base_loss", "mdr_loss", "level_loss"):
            np.testing.assert_allclose(got[key], want[key], rtol=RTOL, atol=ATOL, err_msg=f"case {case} {key}")
        np.testing.assert_allclose(grad_e, want_e, rtol=RTOL, atol=ATOL * 10, err_msg=f"case {case} grad embeddings")
        np.testing.assert_allclose(grad_v, want_v, rtol=RTOL, atol=ATOL, err_msg=f"case {case} grad levels")
        np.testing.assert_allclose(float(regularizer.moving_mean), ref.mean if ref.initialized else 0.0, rtol=1e-5)


def test_ten_step_sequence_covers_the_momentum_path():
    rng = np.random.default_rng(20)
    loss = keras_mdr.MDRTripletLoss(base_loss="semihard", margin=0.2, mdr_weight=0.5)
    state = loss.build_state()
    regularizer = state.regularizer
    ref = reference.MDRReference(base="semihard", margin=0.2, mdr_weight=0.5)
    for step in range(10):
        labels = np.repeat(np.arange(6), 4)
        x = (rng.normal(size=(24, 8)) * (1 + step)).astype("float32")
        got, grad_e, grad_v = _tf_terms(loss, state, labels, x, training=True)
        mean, std = ref.statistics(x, training=True)
        want = ref.terms(x, labels, ref.levels, mean, std)
        want_e, want_v = ref.gradients(x, labels, mean, std)
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(grad_e, want_e, rtol=RTOL, atol=ATOL * 10)
        np.testing.assert_allclose(grad_v, want_v, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(float(regularizer.moving_mean), ref.mean, rtol=1e-5)
        np.testing.assert_allclose(float(regularizer.moving_std), ref.std, rtol=1e-5)
        # Both take one SGD step on the levels with the TF gradient.
        regularizer.levels.assign(regularizer.levels - 0.5 * grad_v)
        ref.levels = ref.levels - 0.5 * grad_v.astype(np.float64)
    assert float(regularizer.initialized) == 1.0


def test_mdr_hand_derived():
    """Two points 2 apart: D = [[0, 2], [2, 0]], mean off-diagonal 2, so
    D~ = [[0, 1], [1, 0]]. Statistics over all 4 entries: mean 0.5, unbiased
    std sqrt(4 * 0.25 / 3) = 0.57735. Z for the pair: (1 - 0.5) / 0.57735 =
    0.866; nearest level of (-3, 0, 3) is 0, so L_MDR = 0.866025."""
    loss = keras_mdr.MDRTripletLoss(base_loss="semihard", mdr_weight=1.0, level_weight=0.0)
    state = loss.build_state()
    regularizer = state.regularizer
    terms = loss.batch_objective([0, 1], [[0.0, 0.0], [2.0, 0.0]], state=state, training=True)
    assert float(terms["mdr_loss"]) == pytest.approx(np.sqrt(3) / 2, rel=1e-6)
    assert float(regularizer.moving_mean) == pytest.approx(0.5)
    assert float(regularizer.moving_std) == pytest.approx(np.sqrt(1 / 3), rel=1e-6)
    assert float(terms["level_loss"]) == pytest.approx(0.0 + 9 + 9)
