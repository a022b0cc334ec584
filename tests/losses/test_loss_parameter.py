"""LossParameter: the state of ProxyAnchorLoss, ArcFaceLoss and MarginLoss is
trained, saved and restored when a model owns it.

The models' shared mechanism (MDRModel / MDRTrainStepMixin) is tested with
the models; here a minimal model that owns the Layer and overrides
`compute_loss` shows the Layer itself is fit for it: its variable is in
`trainable_variables`, moves in `fit`, and a `.keras` file restores it.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mdr
from keras_mdr.losses import LossParameter


@keras.saving.register_keras_serializable(package="keras_mdr_tests")
class OwnsLossState(keras.Model):
    def __init__(self, loss_config, **kwargs):
        super().__init__(**kwargs)
        self.loss_config = loss_config
        self.metric_loss = keras.saving.deserialize_keras_object(loss_config)
        self.encoder = keras.layers.Dense(4)
        self.loss_state = self.metric_loss.build_state()

    def call(self, x):
        return self.encoder(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return self.metric_loss(y, y_pred, sample_weight=sample_weight, state=self.loss_state)

    def get_config(self):
        return {"loss_config": self.loss_config}


LOSSES = [
    keras_mdr.ProxyAnchorLoss(num_classes=3, embedding_size=4),
    keras_mdr.ArcFaceLoss(num_classes=3, embedding_size=4, scale=8.0),
    keras_mdr.MarginLoss(num_classes=3, nu=0.1),
]


@pytest.mark.parametrize("loss", LOSSES, ids=lambda l: type(l).__name__)
def test_state_trains_saves_and_restores(loss, tmp_path):
    model = OwnsLossState(keras.saving.serialize_keras_object(loss))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 5)).astype("float32")
    y = np.arange(24) % 3
    model(x[:1])
    state = model.loss_state.parameter
    assert any(v is state for v in model.trainable_variables)
    before = state.numpy().copy()
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.fit(x, y, batch_size=12, epochs=2, verbose=0)
    assert np.abs(state.numpy() - before).max() > 1e-3, "the loss state did not train"
    path = str(tmp_path / "model.keras")
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_array_equal(again.loss_state.parameter.numpy(), state.numpy())


def test_layer_round_trip_and_shape():
    layer = LossParameter((2, 3), "ones", "proxies", name="p")
    again = LossParameter.from_config(layer.get_config())
    assert tuple(again.parameter.shape) == (2, 3) and again.parameter_name == "proxies"
    np.testing.assert_array_equal(again.parameter.numpy(), np.ones((2, 3)))


def _one_step(optimizer, multiplier):
    layer = LossParameter((3,), keras.initializers.Constant([0.5, -1.0, 2.0]), "proxies",
                          learning_rate_multiplier=multiplier)
    start = layer.parameter.numpy().copy()
    gradient_of_p = np.array([0.3, -2.0, 0.5], "float32")
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(layer.parameter * gradient_of_p)
    optimizer.apply_gradients(zip(tape.gradient(value, layer.trainable_variables),
                                  layer.trainable_variables))
    return start, layer.parameter.numpy() - start


def test_learning_rate_multiplier_scales_the_adam_step_and_starts_at_the_initializer():
    """Reparametrised p = c * v: the same start, an Adam step c times larger
    (Adam's step is ~ lr * sign(g), whatever g's scale), an SGD step c**2
    times (planted: parameter returned v itself -> both failed)."""
    start_1, step_1 = _one_step(keras.optimizers.Adam(1e-3), 1.0)
    start_c, step_c = _one_step(keras.optimizers.Adam(1e-3), 100.0)
    np.testing.assert_allclose(start_c, start_1, rtol=1e-6)
    np.testing.assert_allclose(step_c, 100.0 * step_1, rtol=1e-3)
    _, sgd_1 = _one_step(keras.optimizers.SGD(1e-2), 1.0)
    _, sgd_c = _one_step(keras.optimizers.SGD(1e-2), 10.0)
    np.testing.assert_allclose(sgd_c, 100.0 * sgd_1, rtol=1e-3)
    config = LossParameter((2,), "ones", learning_rate_multiplier=7.0).get_config()
    assert LossParameter.from_config(config).learning_rate_multiplier == 7.0
    with pytest.raises(ValueError, match="positive learning_rate_multiplier"):
        LossParameter((2,), learning_rate_multiplier=0.0)


@pytest.mark.parametrize("loss, attribute", [
    (keras_mdr.ProxyAnchorLoss(3, 2, proxy_lr_multiplier=100.0), "proxy_lr_multiplier"),
    (keras_mdr.ArcFaceLoss(3, 2, centre_lr_multiplier=100.0), "centre_lr_multiplier"),
    (keras_mdr.MarginLoss(beta_lr_multiplier=100.0), "beta_lr_multiplier"),
], ids=lambda x: type(x).__name__ if not isinstance(x, str) else "")
def test_each_stateful_loss_passes_its_learning_rate_multiplier(loss, attribute):
    assert loss.build_state().learning_rate_multiplier == 100.0
    again = type(loss).from_config(loss.get_config())
    assert getattr(again, attribute) == 100.0
    assert again.build_state().learning_rate_multiplier == 100.0
