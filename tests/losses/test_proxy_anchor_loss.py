"""ProxyAnchorLoss: hand value, float64 brute force (embeddings and proxies)."""

import math

import numpy as np
import pytest

import metric_loss_checks as checks
import metric_references as ref
from keras_mdr.losses import ProxyAnchorLoss
from keras_mdr.losses.proxy_anchor_loss import proxy_anchor_loss


def ours(labels, e, state, w):
    return proxy_anchor_loss(labels, e, state, margin=0.1, alpha=8.0, sample_weight=w)


def _proxies(seed, labels, e):
    return np.random.default_rng(seed).normal(size=(int(labels.max()) + 2, e.shape[1]))


def test_value_by_hand():
    """One sample (1, 0) of class 0, proxies (2, 0) and (0, 1); delta 0.1, alpha 32.

    Normalised proxies give S = [1, 0]. Proxy 0 (the only one with a
    positive) costs log(1 + e^{-32 (1 - 0.1)}); proxy 1's negative term is
    log(1 + e^{32 (0 + 0.1)}), proxy 0 has no negative. Loss:
    log1p(e^-28.8) / 1 + log1p(e^3.2) / 2.
    """
    loss = ProxyAnchorLoss(num_classes=2, embedding_size=2)
    state = loss.build_state()
    state.parameter.assign([[2.0, 0.0], [0.0, 1.0]])
    expected = math.log1p(math.exp(-28.8)) + math.log1p(math.exp(3.2)) / 2
    assert float(loss([0], [[1.0, 0.0]], state=state)) == pytest.approx(expected, rel=1e-6)


def test_matches_float64_brute_force():
    checks.check_against_reference(
        ours, lambda y, e, s, w: ref.proxy_anchor(y, e, s, 0.1, 8.0, w), state_fn=_proxies,
        batch=6, dim=3, seeds=2)


def test_weights_are_multiplicities():
    """Weight 2 equals the sample written twice; weight 0 equals it removed."""
    labels, e = checks.random_batch(1)
    p = _proxies(0, labels, e).astype(np.float32)
    w = np.ones(len(labels))
    w[0], w[1] = 2.0, 0.0
    twice = np.concatenate([e, e[:1]])[np.arange(len(e) + 1) != 1]
    y2 = np.concatenate([labels, labels[:1]])[np.arange(len(e) + 1) != 1]
    value = checks.value_and_grads(ours, labels, e, p, w)[0]
    assert value == pytest.approx(checks.value_and_grads(ours, y2, twice, p)[0], rel=1e-6)
    zero, grads = checks.value_and_grads(ours, labels, e, p, np.zeros(len(labels)))
    assert zero == 0.0 and all(np.all(g == 0) for g in grads)


def test_degenerate_labels_precision_memory():
    labels, e = checks.random_batch(1)
    p = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    checks.check_degenerate_finite(ours, p)
    checks.check_low_precision(ours, labels, e, p)
    checks.check_no_cubic_tensor(ours, np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="num_classes=8"):
        ours(np.array([0, 8]), e[:2], p, None)


def test_config_round_trip():
    labels, e = checks.random_batch(2)
    loss = ProxyAnchorLoss(num_classes=4, embedding_size=4, margin=0.2, alpha=16.0,
                           proxy_initializer="glorot_normal")
    checks.check_config_round_trip(loss, labels, e, loss.build_state())
    with pytest.raises(ValueError, match="num_classes"):
        ProxyAnchorLoss(num_classes=0, embedding_size=4)
