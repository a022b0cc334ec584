"""MDRRegularizer on its own: moving statistics as BatchNormalization's, the
standalone layer's added loss, its levels trained by a plain model's `fit`,
and its config."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mdr
from keras_mdr.losses import mdr as mdr_lib

RNG = np.random.default_rng(0)
X = RNG.normal(size=(8, 4)).astype("float32")
# level_weight=0 in the fit test: nu * sum(v^2) alone would move the levels,
# so only MDR's gradient reaches them, and they must move by more than this.
MOVED = 1e-3


def _distances(x):
    return keras_mdr.distances.pairwise_distance(tf.constant(x))


def test_statistics_move_only_in_training_with_the_momentum():
    layer = keras_mdr.MDRRegularizer(momentum=0.9)
    d = _distances(X)
    batch_mean, batch_std = (float(v) for v in mdr_lib.distance_statistics(d, 1.0))
    layer.statistics(d, training=False)
    assert float(layer.moving_mean) == 0.0 and float(layer.moving_std) == 1.0
    layer.statistics(d, training=True)  # the first step takes the batch's
    assert float(layer.moving_mean) == pytest.approx(batch_mean)
    d2 = _distances(2.0 * X)
    mean2, std2 = (float(v) for v in mdr_lib.distance_statistics(d2, 1.0))
    layer.statistics(d2, training=True)
    assert float(layer.moving_mean) == pytest.approx(0.9 * batch_mean + 0.1 * mean2, rel=1e-6)
    assert float(layer.moving_std) == pytest.approx(0.9 * batch_std + 0.1 * std2, rel=1e-6)
    mean, std = layer.statistics(d2, training=False)  # inference reads the moving ones
    assert float(mean) == pytest.approx(float(layer.moving_mean))


def test_a_nan_batch_leaves_the_statistics_and_shows_in_the_penalty():
    layer = keras_mdr.MDRRegularizer()
    layer.statistics(_distances(X), training=True)
    before = (float(layer.moving_mean), float(layer.moving_std))
    bad = X.copy()
    bad[0, 0] = np.nan
    penalty = layer.penalty(_distances(bad), training=True)
    assert (float(layer.moving_mean), float(layer.moving_std)) == before
    assert not np.isfinite(float(penalty))


def test_standalone_layer_is_identity_and_adds_the_weighted_penalty():
    layer = keras_mdr.MDRRegularizer(weight=0.5, level_weight=0.1)
    out = layer(tf.constant(X), training=False)
    np.testing.assert_array_equal(out.numpy(), X)
    d = _distances(X)
    scale = mdr_lib.safe_scale(mdr_lib.mean_distance(d))
    mean, std = mdr_lib.distance_statistics(d, scale)
    expected = (0.5 * float(mdr_lib.mdr_penalty(d, layer.levels, mean, std, scale))
                + 0.1 * float(mdr_lib.level_penalty(layer.levels)))
    [added] = layer.losses
    assert float(added) == pytest.approx(expected, rel=1e-6)


def test_standalone_layer_trains_its_levels_in_a_plain_model():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(16), 4)
    x = (rng.normal(size=(16, 16))[labels] + 0.5 * rng.normal(size=(64, 16))).astype("float32")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,))
    embeddings = keras.layers.Dense(8)(inputs)
    regularizer = keras_mdr.MDRRegularizer(weight=0.5, level_weight=0.0)
    model = keras.Model(inputs, regularizer(embeddings))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras_mdr.TripletSemiHardLoss(0.2))
    model.fit(x, labels.astype("int32"), batch_size=32, epochs=2, verbose=0)
    shift = np.abs(regularizer.levels.numpy() - np.array([-3.0, 0.0, 3.0])).max()
    assert shift > MOVED, f"MDR did not move the levels: max shift {shift:.3g}"
    assert float(regularizer.initialized) == 1.0


def test_variables_config_and_bad_arguments():
    layer = keras_mdr.MDRRegularizer(levels=(-2.0, 0.0, 1.0, 2.0), momentum=0.5)
    assert [v.name for v in layer.trainable_weights] == ["levels"]
    assert {v.name for v in layer.non_trainable_weights} == {
        "moving_mean", "moving_std", "initialized"}
    assert all(v.dtype == "float32" for v in layer.weights)
    again = keras_mdr.MDRRegularizer.from_config(layer.get_config())
    np.testing.assert_array_equal(again.levels.numpy(), [-2.0, 0.0, 1.0, 2.0])
    assert again.momentum == 0.5
    with pytest.raises(ValueError, match="momentum"):
        keras_mdr.MDRRegularizer(momentum=1.0)
    with pytest.raises(ValueError, match="same number of MDR levels"):
        layer.configure((-1.0, 1.0), 0.9)
