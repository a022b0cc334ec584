import inspect

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

import keras_mdr
import reference
from keras_mdr.losses import triplet

LOSS_CLASSES = [
    keras_mdr.TripletSemiHardLoss,
    keras_mdr.TripletHardLoss,
    keras_mdr.DistanceWeightedTripletLoss,
    keras_mdr.MDRTripletLoss,
]


def _batch(rng, batch, dim, classes, scale=1.0):
    labels = rng.integers(0, classes, size=batch)
    return labels, (scale * rng.normal(size=(batch, dim))).astype("float32")


def test_semihard_hand_derived():
    """Classes A = {(0,0), (0,1)} and B = {(3,0), (3,1)}, margin 1.

    Positive pairs (ordered): 4, each at distance 1. For anchor (0,0) and
    positive (0,1): negatives at 3 and sqrt(10) = 3.1623, both farther than 1,
    so the semi-hard negative is the closer one, 3; the loss term is
    max(1 + 1 - 3, 0) = 0. By symmetry every term is 0, so the loss is 0.
    With margin 2.5 each term is 2.5 + 1 - 3 = 0.5, and the loss 0.5.
    """
    y = [0, 0, 1, 1]
    x = [[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]]
    assert float(keras_mdr.TripletSemiHardLoss(margin=1.0)(y, x)) == pytest.approx(0.0)
    assert float(keras_mdr.TripletSemiHardLoss(margin=2.5)(y, x)) == pytest.approx(0.5)


def test_hard_hand_derived():
    """Same points. Hardest positive 1, hardest negative 3 for every anchor:
    max(1 - 3 + margin, 0) = margin - 2, so 1.5 with margin 3.5; soft form
    log(1 + exp(1 - 3)) = 0.126928."""
    y = [0, 0, 1, 1]
    x = [[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]]
    assert float(keras_mdr.TripletHardLoss(margin=3.5)(y, x)) == pytest.approx(1.5)
    assert float(keras_mdr.TripletHardLoss(soft=True)(y, x)) == pytest.approx(
        np.log1p(np.exp(-2.0)), rel=1e-6
    )


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
def test_semihard_and_hard_match_brute_force(metric):
    rng = np.random.default_rng(1)
    name = {"L2": "euclidean", "squared-L2": "squared_euclidean", "angular": "cosine"}[metric]
    for trial in range(20):
        batch = int(rng.integers(2, 40))
        labels, x = _batch(rng, batch, int(rng.integers(2, 16)), int(rng.integers(1, 8)))
        d = reference.distances(x, name)
        margin = float(rng.choice([0.2, 1.0]))
        got = float(keras_mdr.TripletSemiHardLoss(margin, metric)(labels, x))
        assert got == pytest.approx(reference.semihard(labels, d, margin), rel=1e-5, abs=1e-5)
        for soft in (False, True):
            got = float(keras_mdr.TripletHardLoss(margin, soft, metric)(labels, x))
            assert got == pytest.approx(reference.hard(labels, d, margin, soft), rel=1e-5, abs=1e-5)


def test_gradients_match_float64_finite_differences():
    rng = np.random.default_rng(2)
    for trial in range(5):
        labels, x = _batch(rng, 12, 4, 3)
        for loss, ref in (
            (keras_mdr.TripletSemiHardLoss(0.5), lambda e: reference.semihard(labels, reference.distances(e), 0.5)),
            (keras_mdr.TripletHardLoss(0.5), lambda e: reference.hard(labels, reference.distances(e), 0.5)),
        ):
            var = tf.Variable(x)
            with tf.GradientTape() as tape:
                value = loss(labels, var)
            got = tape.gradient(value, var).numpy()
            want = np.zeros_like(x, dtype=np.float64)
            h = 1e-6
            for idx in np.ndindex(x.shape):
                plus, minus = x.astype(np.float64), x.astype(np.float64)
                plus[idx] += h
                minus[idx] -= h
                want[idx] = (ref(plus) - ref(minus)) / (2 * h)
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_degenerate_batches_documented_values():
    one_each = keras_mdr.TripletSemiHardLoss()([0, 1, 2], np.eye(3, dtype="float32"))
    assert float(one_each) == 0.0  # TFA: NaN (no positive pair)
    single = np.array([[1.0, 2.0]], "float32")
    assert float(keras_mdr.TripletSemiHardLoss()([0], single)) == 0.0
    assert float(keras_mdr.TripletHardLoss(margin=1.0)([0], single)) == pytest.approx(1.0)
    assert float(keras_mdr.DistanceWeightedTripletLoss(seed=0)([0, 1, 2], np.eye(3, dtype="float32"))) == 0.0
    one_class = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    for loss in (keras_mdr.TripletSemiHardLoss(), keras_mdr.TripletHardLoss()):
        assert np.isfinite(float(loss([7] * 5, one_class)))
    assert float(keras_mdr.DistanceWeightedTripletLoss(seed=0)([7] * 5, one_class)) == 0.0


def test_soft_hard_is_finite_where_tfa_overflows():
    x = np.array([[0.0], [200.0], [1.0]], "float32")  # positive gap 200 > log(max float)
    value = float(keras_mdr.TripletHardLoss(soft=True)([0, 0, 1], x))
    assert np.isfinite(value) and value > 60


@pytest.mark.parametrize("sampling", ["release", "textbook"])
def test_distance_weighted_loss_draws_from_its_probabilities(sampling):
    """Frequency test of the negatives the loss itself draws. Batch: one class
    of two (0, 1), six one-image classes; anchor 1 weighted 0, so each call's
    loss is (T[0,1] - T[0,n] + margin) / 2 for the one drawn negative n, and
    n is read back from the value (the T[0,n] are distinct). Over 2000 calls
    (the seed advances per call) the counts must fit
    distance_weighted_probabilities' row 0 (chi-square p > 1e-3)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, 4)).astype("float32")
    labels = np.array([0, 0, 1, 2, 3, 4, 5, 6])
    weights = np.array([1, 0, 1, 1, 1, 1, 1, 1], "float32")
    loss = keras_mdr.DistanceWeightedTripletLoss(margin=100.0, seed=5, sampling=sampling)
    fn = tf.function(lambda: loss(labels, x, sample_weight=weights))
    t = np.linalg.norm(x[0].astype(np.float64) - x.astype(np.float64) + 1e-6, axis=1)
    hinge = t[1] - t + 100.0
    values = np.array([2.0 * float(fn()) for _ in range(2000)])
    drawn = np.argmin(np.abs(values[:, None] - hinge[None, 2:]), axis=1) + 2
    assert np.max(np.min(np.abs(values[:, None] - hinge[None, 2:]), axis=1)) < 1e-3
    probs = keras_mdr.losses.distance_weighted_probabilities(x, labels, sampling).numpy()[0, 2:]
    probs = probs / probs.sum()
    counts = np.bincount(drawn - 2, minlength=6)
    keep = probs * 2000 >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(probs[keep], probs[~keep].sum()) * 2000
    observed, expected = observed[expected > 0], expected[expected > 0]
    p = scipy.stats.chisquare(observed, expected).pvalue
    print(f"sampler chi-square ({sampling}): p={p:.3g}, probs={np.round(probs, 3)}, counts={counts}")
    assert p > 1e-3


def test_distance_weighted_is_seeded():
    rng = np.random.default_rng(5)
    labels, x = _batch(rng, 32, 8, 8)
    a = [float(keras_mdr.DistanceWeightedTripletLoss(seed=7)(labels, x)) for _ in range(1)]
    b = [float(keras_mdr.DistanceWeightedTripletLoss(seed=7)(labels, x)) for _ in range(1)]
    assert a == b


@pytest.mark.parametrize("cls", LOSS_CLASSES)
def test_serialization_round_trip_and_config(cls):
    loss = cls(name="custom")
    config = loss.get_config()
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    for p in params:
        assert p in config, f"{cls.__name__}.get_config() misses {p}"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is cls and restored.get_config() == config


def test_mdr_loss_with_keras_loss_base_round_trips():
    loss = keras_mdr.MDRTripletLoss(base_loss=keras_mdr.TripletHardLoss(margin=0.3))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored.base_loss, keras_mdr.TripletHardLoss)
    assert restored.base_loss.margin == pytest.approx(0.3)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_embeddings(dtype):
    rng = np.random.default_rng(6)
    labels, x = _batch(rng, 32, 16, 8, scale=300.0)  # squared norms overflow float16
    want = reference.semihard(labels, reference.distances(x.astype(np.float64)), 1.0)
    for loss in (keras_mdr.TripletSemiHardLoss(), keras_mdr.TripletHardLoss(), keras_mdr.DistanceWeightedTripletLoss(seed=1)):
        value = loss(labels, tf.cast(x, dtype))
        assert value.dtype == tf.float32 and np.isfinite(float(value))
    got = float(keras_mdr.TripletSemiHardLoss()(labels, tf.cast(x, dtype)))
    rounded = reference.semihard(labels, reference.distances(tf.cast(x, dtype).numpy().astype(np.float64)), 1.0)
    assert got == pytest.approx(rounded, rel=1e-3, abs=1e-2)
    assert abs(got - want) / max(want, 1.0) < 0.05


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="Expected distance"):
        keras_mdr.TripletSemiHardLoss(distance="manhattan")
    with pytest.raises(ValueError, match="base_loss"):
        keras_mdr.MDRTripletLoss(base_loss="contrastive")
    with pytest.raises(ValueError, match="as many labels"):
        keras_mdr.TripletSemiHardLoss()([0, 1], np.zeros((3, 2), "float32"))
    with pytest.raises(ValueError, match="rank 2"):
        keras_mdr.TripletHardLoss()([0, 1], np.zeros((2, 2, 2), "float32"))
