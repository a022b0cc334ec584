"""ContrastiveLoss: hand value, float64 brute force, weights, degenerate batches."""

import math

import numpy as np
import pytest

import metric_loss_checks as checks
import metric_references as ref
from keras_mdr.losses import ContrastiveLoss
from keras_mdr.losses.contrastive_loss import contrastive_loss


def ours(labels, e, state, w, **kw):
    return contrastive_loss(labels, e, sample_weight=w, **kw)


def test_value_by_hand():
    """Labels [0, 0, 1], points (0, 0), (0, 0.5), (0.3, 0); margins 0 and 1.

    D01 = 0.5, D02 = 0.3, D12 = sqrt(0.34). Positive pairs (0,1), (1,0) cost
    0.5 each: mean 0.5. Negative pairs cost 1 - 0.3 = 0.7 (twice) and
    1 - sqrt(0.34) (twice): mean (1.7 - sqrt(0.34)) / 2. Loss: 0.5 + that.
    """
    value = ContrastiveLoss()([0, 0, 1], [[0.0, 0.0], [0.0, 0.5], [0.3, 0.0]])
    assert float(value) == pytest.approx(0.5 + (1.7 - math.sqrt(0.34)) / 2, rel=1e-6)


def test_matches_float64_brute_force():
    checks.check_against_reference(
        lambda y, e, s, w: ours(y, e, s, w, pos_margin=0.1, neg_margin=1.2),
        lambda y, e, s, w: ref.contrastive(y, e, 0.1, 1.2, w), batch=8, dim=3)


def test_weights_degenerate_labels_precision_memory():
    labels, e = checks.random_batch(1)
    checks.check_weights(ours, labels, e)
    values = checks.check_degenerate_finite(ours)
    assert values["one sample"] == 0.0
    checks.check_large_labels(ours, labels, e)
    checks.check_low_precision(ours, labels, e)
    checks.check_no_cubic_tensor(ours)


def test_config_round_trip():
    labels, e = checks.random_batch(2)
    checks.check_config_round_trip(ContrastiveLoss(pos_margin=0.1, neg_margin=0.9), labels, e)


def test_class_refuses_wrong_length_weights_and_keeps_int64_labels():
    labels, e = checks.random_batch(3)
    loss = ContrastiveLoss()
    with pytest.raises(ValueError, match="sample_weight"):
        loss(labels, e, sample_weight=np.ones(len(labels) + 1))
    big = np.int64(2**62) + labels
    assert float(loss(big, e)) == float(loss(labels, e))
    np.testing.assert_allclose(float(loss(labels, e, sample_weight=np.zeros(len(labels)))), 0.0)
