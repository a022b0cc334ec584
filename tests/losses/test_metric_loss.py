"""`MetricLoss`'s boundary: exact integer labels, per-anchor sample weights,
shape checks, and the stateful-loss error. (Distribution: tests/models.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mdr
import reference
from keras_mdr.losses import MetricLoss

STATELESS = {
    "semihard": lambda: keras_mdr.TripletSemiHardLoss(),
    "hard": lambda: keras_mdr.TripletHardLoss(),
    "hard_soft": lambda: keras_mdr.TripletHardLoss(soft=True),
    "distance_weighted": lambda: keras_mdr.DistanceWeightedTripletLoss(seed=3),
}

# Positives 1 apart, negatives 0.2 apart: every loss is > 0 with the right
# labels, and changes when the two classes merge into one.
EMBEDDINGS = np.array([[0.0, 0.0], [0.0, 1.0], [0.2, 0.0], [0.2, 1.0]], "float32")


def _run(factory, mode, labels):
    """A fresh loss (the sampler's seed restarts) run eagerly, as a tf.function or with XLA."""
    loss = factory()
    fn = {
        "eager": loss,
        "graph": tf.function(lambda y, x: loss(y, x)),
        "xla": tf.function(lambda y, x: loss(y, x), jit_compile=True),
    }[mode]
    return float(fn(tf.constant(labels), tf.constant(EMBEDDINGS)))


@pytest.mark.parametrize("name", sorted(STATELESS))
@pytest.mark.parametrize("base", [10**8, 2**62])
def test_large_integer_labels_are_compared_exactly(name, base):
    """ids 1e8 and 1e8+1 are one float32 (2**62 and 2**62+1 one float64): Keras'
    own Loss.__call__ merges them into one class and the loss changes."""
    small = np.array([0, 0, 1, 1], np.int64)
    for mode in ("eager", "graph", "xla"):
        want = _run(STATELESS[name], mode, small)
        got = _run(STATELESS[name], mode, small + np.int64(base))
        merged = _run(STATELESS[name], mode, np.zeros(4, np.int64))
        assert want != merged, "the batch does not tell one class from two"
        assert got == want, f"{name} {mode}: labels {base}+(0,0,1,1) gave {got}, not {want}"


@pytest.mark.parametrize("name", sorted(STATELESS))
def test_string_labels_get_a_clear_message(name):
    with pytest.raises(ValueError, match="Expected integer class labels.*StringLookup"):
        STATELESS[name]()(np.array(["a", "a", "b", "b"]), EMBEDDINGS)


def _weighted_batch():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 4, size=12)
    x = rng.normal(size=(12, 5)).astype("float32")
    weights = rng.uniform(0.0, 2.0, size=12).astype("float32")
    weights[[1, 4]] = 0.0
    return labels, x, weights


def test_sample_weight_is_a_weight_per_anchor():
    """Reference: sum over terms of w_anchor * term, divided by the term count."""
    labels, x, weights = _weighted_batch()
    d = reference.distances(x)
    cases = [
        (keras_mdr.TripletSemiHardLoss(), reference.semihard(labels, d, 1.0, weights)),
        (keras_mdr.TripletHardLoss(), reference.hard(labels, d, 1.0, weights=weights)),
        (keras_mdr.TripletHardLoss(soft=True), reference.hard(labels, d, 1.0, True, weights)),
    ]
    for loss, want in cases:
        got = float(loss(labels, x, sample_weight=weights))
        assert got == pytest.approx(want, rel=1e-5), type(loss).__name__
        assert float(loss(labels, x, sample_weight=2 * np.ones(12))) == pytest.approx(
            2 * float(loss(labels, x)), rel=1e-6
        )


@pytest.mark.parametrize("name", sorted(STATELESS))
def test_zero_weights_contribute_nothing(name):
    labels, x, _ = _weighted_batch()
    x = tf.Variable(x)
    loss = STATELESS[name]()
    with tf.GradientTape() as tape:
        value = loss(labels, x, sample_weight=np.zeros(12, "float32"))
    grad = tape.gradient(value, x)
    assert float(value) == 0.0
    assert grad is None or np.all(grad.numpy() == 0.0)


@pytest.mark.parametrize("name", sorted(STATELESS))
def test_wrong_weights_and_labels_are_refused(name):
    labels, x, _ = _weighted_batch()
    loss = STATELESS[name]()
    with pytest.raises(ValueError, match="one sample_weight per embedding"):
        loss(labels, x, sample_weight=np.ones(11))
    with pytest.raises(ValueError, match=r"sample_weight of shape \(batch,\)"):
        loss(labels, x, sample_weight=np.ones((12, 2)))
    with pytest.raises(ValueError, match="as many labels"):
        loss(labels[:-1], x)


def test_fit_with_zero_sample_and_class_weights_does_not_train():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = np.repeat(np.arange(8), 4)
    for kwargs in ({"sample_weight": np.zeros(32)}, {"class_weight": {c: 0.0 for c in range(8)}}):
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras_mdr.TripletSemiHardLoss())
        before = [w.numpy().copy() for w in model.weights]
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, **kwargs)
        for a, b in zip(before, model.weights):
            np.testing.assert_array_equal(a, b.numpy(), err_msg=str(kwargs))


class _Stateful(MetricLoss):
    def build_state(self):
        return keras.layers.Dense(1)

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        return tf.reduce_mean(state(embeddings))


def test_stateful_loss_without_an_owner_names_the_model_to_use():
    loss = _Stateful()
    assert loss.stateful and not keras_mdr.TripletHardLoss().stateful
    with pytest.raises(ValueError, match="_Stateful has learnable state.*keras_mdr.MDRModel"):
        loss([0, 1], np.zeros((2, 3), "float32"))
    assert np.isfinite(float(loss([0, 1], np.zeros((2, 3), "float32"), state=loss.build_state())))
