"""MultiSimilarityLoss: hand value with its miner, float64 brute force, weights."""

import math

import pytest

import metric_loss_checks as checks
import metric_references as ref
from keras_mdr.losses import MultiSimilarityLoss
from keras_mdr.losses.multi_similarity_loss import multi_similarity_loss


def ours(labels, e, state, w, **kw):
    return multi_similarity_loss(labels, e, sample_weight=w, **kw)


def test_value_by_hand():
    """Labels [0, 0, 1, 1], unit rows (1, 0), (.8, .6), (0, 1), (.6, .8).

    S01 = .8, S02 = 0, S03 = .6, S12 = .6, S13 = .96, S23 = .8. Anchor 0: its
    positive .8 - .1 is not below its hardest negative .6, and no negative
    + .1 exceeds .8: no pair. Anchor 1 keeps positive 0 (.7 < .96) and
    negative 3 (1.06 > .8): log(1 + e^{-2(.8 - 1)}) / 2 + log(1 + e^{50(.96 - 1)}) / 50.
    Anchors 2 and 3 mirror 0 and 1. Mean over 4 anchors: half of anchor 1's.
    """
    e = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]]
    anchor = math.log1p(math.exp(0.4)) / 2 + math.log1p(math.exp(-2.0)) / 50
    assert float(MultiSimilarityLoss()([0, 0, 1, 1], e)) == pytest.approx(anchor / 2, rel=1e-5)


@pytest.mark.parametrize("epsilon", [0.1, None])
def test_matches_float64_brute_force(epsilon):
    checks.check_against_reference(
        lambda y, e, s, w: ours(y, e, s, w, alpha=2.0, beta=10.0, base=0.5, epsilon=epsilon),
        lambda y, e, s, w: ref.multi_similarity(y, e, 2.0, 10.0, 0.5, epsilon, w),
        batch=8, dim=3, classes=2)


def test_weights_degenerate_labels_precision_memory():
    labels, e = checks.random_batch(1, classes=2)
    mine_all = lambda y, x, s, w: ours(y, x, s, w, epsilon=None)  # noqa: E731
    checks.check_weights(mine_all, labels, e)
    values = checks.check_degenerate_finite(ours)
    assert values["no positive pair"] == values["one class"] == 0.0
    checks.check_large_labels(ours, labels, e)
    checks.check_low_precision(mine_all, labels, e)
    checks.check_no_cubic_tensor(ours)


def test_config_round_trip():
    labels, e = checks.random_batch(2)
    checks.check_config_round_trip(MultiSimilarityLoss(1.0, 40.0, 0.6, None), labels, e)
