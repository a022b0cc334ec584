"""MarginLoss: hand value, float64 brute force over triplets, learnt beta."""

import math

import numpy as np
import pytest

import metric_loss_checks as checks
import metric_references as ref
from keras_mdr.losses import LossParameter, MarginLoss
from keras_mdr.losses.margin_loss import margin_loss


def ours(labels, e, state, w, nu=0.1):
    return margin_loss(labels, e, state, margin=0.2, nu=nu, sample_weight=w)


def _beta(per_class):
    def make(seed, labels, e):
        size = int(labels.max()) + 1 if per_class else 1
        return (0.9 + 0.1 * np.random.default_rng(seed).uniform(size=size)).astype(np.float32)
    return make


def test_value_by_hand():
    """Labels [0, 0, 1], points (0, 0), (0, 0.5), (0.3, 0); beta 1.2 fixed, margin 0.2.

    Triplets (0, 1, 2) and (1, 0, 2). Positive halves: 0.5 - 1.2 + 0.2 < 0,
    cost 0. Negative halves: 1.2 - 0.3 + 0.2 = 1.1 and 1.2 - sqrt(0.34) + 0.2.
    Two halves of positive cost: loss (2.5 - sqrt(0.34)) / 2.
    """
    loss = MarginLoss(beta=1.2, learn_beta=False)
    value = loss([0, 0, 1], [[0.0, 0.0], [0.0, 0.5], [0.3, 0.0]])
    assert float(value) == pytest.approx((2.5 - math.sqrt(0.34)) / 2, rel=1e-6)


@pytest.mark.parametrize("per_class", [False, True])
def test_matches_float64_brute_force(per_class):
    checks.check_against_reference(
        ours, lambda y, e, s, w: ref.margin(y, e, s, 0.2, 0.1, w),
        state_fn=_beta(per_class), batch=7, dim=3, unit=False, seeds=2)


def test_weights_degenerate_labels_precision_memory():
    labels, e = checks.random_batch(1)
    beta = np.array([0.9, 1.0, 1.1], np.float32)
    checks.check_weights(ours, labels, e, beta)
    values = checks.check_degenerate_finite(lambda y, x, s, w: ours(y, x, [1.2], w))
    assert values["no positive pair"] == values["one class"] == values["one sample"] == 0.0
    checks.check_large_labels(lambda y, x, s, w: ours(y, x, [1.2], w), labels, e)
    checks.check_low_precision(ours, labels, e, beta)
    checks.check_no_cubic_tensor(lambda y, x, s, w: ours(y, x, np.ones(4, np.float32), w))


def test_beta_is_state_per_class_or_global():
    assert MarginLoss(learn_beta=False).stateful is False
    state = MarginLoss(beta=1.5, num_classes=4).build_state()
    assert isinstance(state, LossParameter) and state.parameter.shape == (4,)
    np.testing.assert_allclose(state.parameter.numpy(), 1.5)
    assert MarginLoss().build_state().parameter.shape == (1,)
    labels, e = checks.random_batch(3)
    with pytest.raises(ValueError, match="MDRModel"):
        MarginLoss()(labels, e)
    with pytest.raises(ValueError, match="num_classes"):
        MarginLoss(num_classes=2)(labels, e, state=MarginLoss(num_classes=2).build_state())


def test_config_round_trip():
    labels, e = checks.random_batch(2)
    loss = MarginLoss(margin=0.3, nu=0.01, beta=1.0, num_classes=3)
    checks.check_config_round_trip(loss, labels, e, loss.build_state())
    checks.check_config_round_trip(MarginLoss(learn_beta=False), labels, e)
