"""MDRLoss: MDR on any base loss (issue 11 item 3), its weights (issue 12 item 2).

Values are checked against the base loss alone and against NumPy; the
training side (every family in MDRModel, save, reload, resume) is in
tests/models/test_mdr_model_loss_state.py.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mdr
from keras_mdr.losses import mdr as mdr_lib


def _batch(seed=0, n=24, dim=6, classes=6):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    x = rng.normal(size=(n, dim)).astype("float32")
    return labels, x


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _terms(loss, labels, x, sample_weight=None):
    state = loss.build_state()
    return loss.batch_objective(labels, x, sample_weight, state=state), state


def test_mdr_weight_zero_is_the_base_loss_on_the_scaled_embeddings():
    """With mdr_weight = level_weight = 0 the loss is the base loss of E / s
    (a distance loss) or of E itself (an inner-product loss, scale_base=None)."""
    labels, x = _batch()
    distances = np.linalg.norm(x[:, None] - x[None], axis=-1)
    s = distances.sum() / (len(x) * (len(x) - 1))
    for base, scaled in [(keras_mdr.ContrastiveLoss(), True), (keras_mdr.SupConLoss(), False),
                         (keras_mdr.TripletHardLoss(margin=0.2), True)]:
        loss = keras_mdr.MDRLoss(base, mdr_weight=0.0, level_weight=0.0)
        terms, _ = _terms(loss, labels, x)
        want = float(base(labels, x / s if scaled else x))
        assert float(terms["loss"]) == pytest.approx(want, rel=1e-5), base.name
        assert float(terms["scale"]) == pytest.approx(s, rel=1e-5)
        forced = keras_mdr.MDRLoss(base, mdr_weight=0.0, level_weight=0.0, scale_base=not scaled)
        other = float(base(labels, x if scaled else x / s))
        assert float(_terms(forced, labels, x)[0]["loss"]) == pytest.approx(other, rel=1e-5)


@pytest.mark.parametrize("name", ["semihard", "hard"])
def test_mdr_triplet_loss_is_mdr_loss_on_the_same_triplet_loss(name):
    """The triplet form's shortcut (raw distances, margin m * s, divided by s)
    equals MDRLoss on the keras_mdr triplet loss of E / s."""
    labels, x = _batch(1)
    base = {"semihard": keras_mdr.TripletSemiHardLoss, "hard": keras_mdr.TripletHardLoss}[name]
    triplet, _ = _terms(keras_mdr.MDRTripletLoss(base_loss=name, margin=0.3), labels, x)
    general, _ = _terms(keras_mdr.MDRLoss(base(margin=0.3)), labels, x)
    for key in ("loss", "base_loss", "mdr_loss", "scale"):
        assert float(triplet[key]) == pytest.approx(float(general[key]), rel=1e-5, abs=1e-7), key


def _numpy_penalty(x, levels, weights):
    """float64: mean over i != j of w_i * min_l |(D_ij / s - mean) / std - v_l|,
    the statistics over all B*B entries of D / s (unbiased)."""
    d = np.linalg.norm(x[:, None].astype(np.float64) - x[None], axis=-1)
    b = len(x)
    d = d / (d.sum() / (b * (b - 1)))
    z = (d - d.mean()) / d.std(ddof=1)
    gaps = np.abs(z[..., None] - np.asarray(levels)[None, None]).min(-1)
    off = ~np.eye(b, dtype=bool)
    return float((weights[:, None] * gaps)[off].sum() / (b * (b - 1)))


def test_mdr_term_weighs_each_pair_by_its_anchor():
    labels, x = _batch(2)
    rng = np.random.default_rng(3)
    weights = rng.uniform(0.0, 2.0, size=len(x)).astype("float32")
    loss = keras_mdr.MDRLoss(keras_mdr.ContrastiveLoss(), mdr_weight=1.0)
    plain, _ = _terms(loss, labels, x)
    ones, _ = _terms(loss, labels, x, np.ones(len(x), "float32"))
    # Weights of 1 multiply exactly: the unweighted terms bit for bit.
    assert float(plain["mdr_loss"]) == float(ones["mdr_loss"])
    assert float(plain["loss"]) == float(ones["loss"])
    weighted, _ = _terms(loss, labels, x, weights)
    want = _numpy_penalty(x, mdr_lib.DEFAULT_LEVELS, weights.astype(np.float64))
    assert float(weighted["mdr_loss"]) == pytest.approx(want, rel=1e-5)
    assert float(weighted["base_loss"]) == pytest.approx(
        float(keras_mdr.ContrastiveLoss()(labels, x / float(plain["scale"]), weights)), rel=1e-5)


def test_weighted_penalty_gradient_matches_autodiff():
    """The hand-written gradient with weights against TensorFlow's autodiff of the same formula."""
    _, x = _batch(4, n=10, dim=3)
    w = tf.constant(np.random.default_rng(5).uniform(0, 2, size=10), tf.float32)
    levels = tf.Variable([-1.0, 0.0, 1.5])
    e = tf.Variable(x)

    def autodiff_penalty(e, levels):
        d = keras_mdr.distances.pairwise_distance(e)
        s = mdr_lib.mean_distance(d)
        mean, std = [tf.stop_gradient(t) for t in mdr_lib.distance_statistics(d, s)]
        z = (d / s - mean) / std
        gaps = tf.reduce_min(tf.abs(z[..., None] - levels), axis=-1)
        off = 1.0 - tf.eye(10)
        return tf.reduce_sum(w[:, None] * gaps * off) / 90.0

    with tf.GradientTape(persistent=True) as tape:
        d = keras_mdr.distances.pairwise_distance(e)
        s = mdr_lib.mean_distance(d)
        mean, std = mdr_lib.distance_statistics(d, s)
        ours = mdr_lib.mdr_penalty(d, levels, mean, std, s, sample_weight=w)
        ref = autodiff_penalty(e, levels)
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)
    for a, b in zip(tape.gradient(ours, [e, levels]), tape.gradient(ref, [e, levels])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_zero_weights_give_zero_and_no_gradient_and_wrong_length_is_refused():
    labels, x = _batch(6)
    loss = keras_mdr.MDRLoss(keras_mdr.MultiSimilarityLoss(), level_weight=0.0)
    state = loss.build_state()
    e = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = loss(labels, e, np.zeros(len(x), "float32"), state=state)
    assert float(value) == 0.0
    assert float(tf.reduce_max(tf.abs(tape.gradient(value, e)))) == 0.0
    with pytest.raises(ValueError, match="one sample_weight per embedding"):
        loss(labels, x, np.ones(len(x) - 1, "float32"), state=state)


def test_serialisation_round_trip_and_every_argument_in_the_config():
    for loss in [keras_mdr.MDRLoss(keras_mdr.ProxyAnchorLoss(4, 6), mdr_weight=0.3, levels=(-1, 1),
                                   momentum=0.5, level_weight=0.02, scale_base=True),
                 keras_mdr.MDRTripletLoss(base_loss="hard", margin=0.1, seed=4)]:
        config = keras.saving.serialize_keras_object(loss)
        again = keras.saving.deserialize_keras_object(config)
        assert type(again) is type(loss)
        assert again.get_config() == loss.get_config()
        arguments = set(inspect.signature(type(loss).__init__).parameters) - {"self", "kwargs"}
        assert arguments <= set(loss.get_config()), arguments - set(loss.get_config())
    assert isinstance(again.build_state().regularizer, keras_mdr.MDRRegularizer)


def test_bad_base_losses_are_refused():
    with pytest.raises(ValueError, match="MDR is added once"):
        keras_mdr.MDRLoss(keras_mdr.MDRLoss(keras_mdr.SupConLoss()))
    with pytest.raises(ValueError, match="Expected base_loss"):
        keras_mdr.MDRLoss(3)
    with pytest.raises(ValueError, match="non-negative"):
        keras_mdr.MDRLoss(keras_mdr.SupConLoss(), mdr_weight=-1)
    with pytest.raises(ValueError, match="keras_mdr.MDRModel"):
        keras_mdr.MDRLoss(keras_mdr.SupConLoss())([0, 1], np.eye(2, dtype="float32"))


def test_a_batch_of_one_gives_zero_and_a_finite_zero_gradient():
    """fit() ends an epoch with whatever is left: a batch of one sample has no
    pair and NaN statistics; MDR must add 0 and a zero gradient (planted:
    gradient guard removed -> the levels' gradient was NaN, and digits
    training turned every level into NaN after one epoch)."""
    loss = keras_mdr.MDRLoss(keras_mdr.SupConLoss())
    state = loss.build_state()
    e = tf.Variable([[0.6, 0.8]])
    with tf.GradientTape() as tape:
        terms = loss.batch_objective([3], e, state=state, training=True)
    grads = tape.gradient(terms["loss"], [e, state.regularizer.levels])
    assert float(terms["mdr_loss"]) == 0.0
    for g in grads:
        assert np.all(np.isfinite(g.numpy()))
    np.testing.assert_array_equal(grads[0].numpy(), 0.0)
    assert float(state.regularizer.initialized) == 0.0
