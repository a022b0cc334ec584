"""SupConLoss and NTXentLoss: hand values, float64 brute force, weights."""

import math

import pytest

import metric_loss_checks as checks
import metric_references as ref
from keras_mdr.losses import NTXentLoss, SupConLoss
from keras_mdr.losses.supcon_loss import ntxent_loss, supcon_loss


def sup(labels, e, state, w):
    return supcon_loss(labels, e, temperature=0.5, sample_weight=w)


def nt(labels, e, state, w):
    return ntxent_loss(labels, e, temperature=0.5, sample_weight=w)


def test_values_by_hand():
    """Labels [0, 0, 1], rows (1, 0), (1, 0), (0, 1), temperature 1.

    Logits s01 = 1, s02 = s12 = 0. SupCon anchor 0: -(1 - log(e + 1)) =
    log(1 + 1/e); anchor 1 the same; anchor 2 has no positive and does not
    count. NT-Xent pairs (0, 1) and (1, 0): log(e^1 + e^0) - 1, the same.
    With labels [0, 0, 0, 1] and rows (1,0), (1,0), (0,1), (0,1), NT-Xent
    leaves the other positives out of each denominator: anchors 0 and 1 have
    the negative 3 at logit 0, so pairs (0, 1), (1, 0) cost log(1 + 1/e) and
    (0, 2), (1, 2) cost log(e^0 + e^0) - 0 = log 2; anchor 2's negative is at
    logit 1, so (2, 0), (2, 1) cost log(1 + e). Mean of the 6 pairs.
    """
    e = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    expected = math.log1p(math.exp(-1.0))
    assert float(SupConLoss(1.0)([0, 0, 1], e)) == pytest.approx(expected, rel=1e-6)
    assert float(NTXentLoss(1.0)([0, 0, 1], e)) == pytest.approx(expected, rel=1e-6)
    e4 = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    expected4 = (2 * expected + 2 * math.log(2.0) + 2 * math.log1p(math.e)) / 6
    assert float(NTXentLoss(1.0)([0, 0, 0, 1], e4)) == pytest.approx(expected4, rel=1e-6)


@pytest.mark.parametrize("which", ["supcon", "ntxent"])
def test_matches_float64_brute_force(which):
    fn, reference = (sup, ref.supcon) if which == "supcon" else (nt, ref.ntxent)
    checks.check_against_reference(fn, lambda y, e, s, w: reference(y, e, 0.5, w), batch=8, dim=3)


@pytest.mark.parametrize("fn", [sup, nt])
def test_weights_degenerate_labels_precision_memory(fn):
    labels, e = checks.random_batch(1)
    checks.check_weights(fn, labels, e)
    values = checks.check_degenerate_finite(fn)
    assert values["no positive pair"] == values["one class"] == values["one sample"] == 0.0
    checks.check_large_labels(fn, labels, e)
    checks.check_low_precision(fn, labels, e)
    checks.check_no_cubic_tensor(fn)


def test_config_round_trip():
    labels, e = checks.random_batch(2)
    checks.check_config_round_trip(SupConLoss(temperature=0.2), labels, e)
    checks.check_config_round_trip(NTXentLoss(temperature=0.3), labels, e)
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(temperature=0.0)
