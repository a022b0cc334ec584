"""ArcFaceLoss: hand value, float64 brute force (embeddings and centres)."""

import math

import numpy as np
import pytest
import tensorflow as tf

import metric_loss_checks as checks
import metric_references as ref
from keras_mdr.losses import ArcFaceLoss
from keras_mdr.losses.arcface_loss import arcface_loss


def ours(labels, e, state, w):
    return arcface_loss(labels, e, state, margin=0.5, scale=4.0, sample_weight=w)


def _centres(seed, labels, e):
    return np.random.default_rng(seed).normal(size=(int(labels.max()) + 2, e.shape[1]))


def test_value_by_hand():
    """Embedding (1, 0) of class 0, centres (3, 0) and (0, 1); margin 0.5, scale 1.

    cos = [1, 0], theta_0 = 0, so the target logit is cos(0.5) and the other
    0: loss log(e^{cos .5} + 1) - cos .5 = log1p(e^{-cos .5}). The embedding
    sits on its centre, where d cos(theta + m) / d cos is infinite through
    acos: our gradient is finite.
    """
    loss = ArcFaceLoss(num_classes=2, embedding_size=2, scale=1.0)
    state = loss.build_state()
    state.parameter.assign([[3.0, 0.0], [0.0, 1.0]])
    e = tf.constant([[1.0, 0.0]])
    with tf.GradientTape() as tape:
        tape.watch(e)
        value = loss([0], e, state=state)
    assert float(value) == pytest.approx(math.log1p(math.exp(-math.cos(0.5))), rel=1e-6)
    assert np.all(np.isfinite(tape.gradient(value, e)))


def test_matches_float64_brute_force():
    checks.check_against_reference(
        ours, lambda y, e, s, w: ref.arcface(y, e, s, 0.5, 4.0, w), state_fn=_centres,
        batch=6, dim=3, seeds=2)


def test_past_pi_minus_margin_the_logit_keeps_falling():
    """theta > pi - m: the target logit is cos(theta) - m sin(m), as in the paper's code."""
    from keras_mdr.losses.arcface_loss import arcface_logits

    out = arcface_logits([0], [[-1.0, 0.0]], [[1.0, 0.0]], margin=0.5, scale=1.0)
    assert float(out[0, 0]) == pytest.approx(-1.0 - 0.5 * math.sin(0.5), rel=1e-6)


def test_weights_degenerate_labels_precision_memory():
    labels, e = checks.random_batch(1)
    c = _centres(0, labels, e).astype(np.float32)
    checks.check_weights(ours, labels, e, c)
    checks.check_degenerate_finite(ours, np.random.default_rng(1).normal(size=(8, 4)))
    checks.check_low_precision(ours, labels, e, c)
    checks.check_no_cubic_tensor(ours, np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="num_classes"):
        ours(np.array([-1, 0]), e[:2], c, None)


def test_config_round_trip():
    labels, e = checks.random_batch(2)
    loss = ArcFaceLoss(num_classes=4, embedding_size=4, margin=0.3, scale=30.0,
                       centre_initializer="glorot_normal")
    checks.check_config_round_trip(loss, labels, e, loss.build_state())
    with pytest.raises(ValueError, match="radians"):
        ArcFaceLoss(num_classes=4, embedding_size=4, margin=28.6)
