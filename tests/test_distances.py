import numpy as np
import pytest
import tensorflow as tf

import reference
from keras_mdr import distances


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean", "cosine"])
def test_matches_float64_reference(metric):
    rng = np.random.default_rng(0)
    e = rng.normal(size=(33, 7)).astype("float32")
    got = distances.pairwise_distance(e, metric).numpy()
    want = reference.distances(e, metric)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.all(np.diag(got) == 0.0)


def test_hand_derived_value():
    """(0,0) and (3,4) are 5 apart (3-4-5 triangle); squared 25; cosine of
    (1,0) and (0,1) is 0, so their cosine distance is 1."""
    d = distances.pairwise_distance([[0.0, 0.0], [3.0, 4.0]])
    assert float(d[0, 1]) == pytest.approx(5.0)
    d2 = distances.pairwise_distance([[0.0, 0.0], [3.0, 4.0]], "squared_euclidean")
    assert float(d2[0, 1]) == pytest.approx(25.0)
    dc = distances.pairwise_distance([[1.0, 0.0], [0.0, 1.0]], "cosine")
    assert float(dc[0, 1]) == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_float32_whatever_the_input_dtype(dtype):
    # Norms of 300 overflow float16 squares (300^2 = 9e4 > 65504).
    e = tf.cast(tf.constant([[300.0, 0.0], [0.0, 300.0], [1.0, 1.0]]), dtype)
    for metric in distances.DISTANCES:
        d = distances.pairwise_distance(e, metric)
        assert d.dtype == tf.float32
        assert np.all(np.isfinite(d.numpy()))
    want = reference.distances(np.array(e.numpy(), np.float64))
    np.testing.assert_allclose(distances.pairwise_distance(e).numpy(), want, rtol=1e-3)


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean", "cosine"])
def test_finite_gradient_when_embeddings_coincide(metric):
    e = tf.Variable([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(distances.pairwise_distance(e, metric))
    grad = tape.gradient(total, e).numpy()
    assert np.all(np.isfinite(grad))


def test_one_vocabulary_and_tfa_names_only_through_their_door():
    assert distances.DISTANCES == ("euclidean", "squared_euclidean", "cosine")
    for name in distances.DISTANCES:
        assert distances.canonical_distance(name) == name
        assert distances.distance_from_tfa_name(name) == name
    assert distances.distance_from_tfa_name("L2") == "euclidean"
    assert distances.distance_from_tfa_name("squared-L2") == "squared_euclidean"
    assert distances.distance_from_tfa_name("angular") == "cosine"
    for bad in ("L2", "manhattan", None):
        with pytest.raises(ValueError, match=f"Received: distance={bad!r}"):
            distances.canonical_distance(bad)
    with pytest.raises(ValueError, match="Received: distance='manhattan'"):
        distances.distance_from_tfa_name("manhattan")
    with pytest.raises(ValueError, match="Received: distance='L2'"):
        distances.pairwise_distance([[0.0, 1.0]], "L2")


def test_shape_checks():
    with pytest.raises(ValueError, match="rank 2"):
        distances.check_embeddings(np.zeros((2, 3, 4), "float32"))
    assert distances.check_embeddings(np.zeros((4, 3), "float16")).dtype == tf.float32
    with pytest.raises(ValueError, match="as many labels"):
        distances.check_labels([0, 1, 2], batch_size=4)
    with pytest.raises(ValueError, match=r"\(batch,\) or \(batch, 1\)"):
        distances.check_labels(np.zeros((4, 2)), batch_size=4)
    for labels in ([0, 0, 1, 1], [[0], [0], [1], [1]], [0.0, 0.0, 1.0, 1.0]):
        got = distances.check_labels(labels, batch_size=4)
        assert got.dtype == tf.int64 and got.shape == (4,)


def test_labels_stay_exact_and_strings_are_refused():
    big = [2**62, 2**62, 2**62 + 1, 2**62 + 1]
    np.testing.assert_array_equal(distances.check_labels(np.array(big, np.int64)).numpy(), big)
    with pytest.raises(ValueError, match="Expected integer class labels.*StringLookup"):
        distances.check_labels(np.array(["cat", "dog"]))
