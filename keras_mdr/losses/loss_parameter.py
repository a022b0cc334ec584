"""`LossParameter`: the Layer that holds a loss's learnable tensor.

A `keras.losses.Loss` cannot own variables in Keras 3 (the optimizer never
sees them), so a stateful `keras_mdr.losses.MetricLoss` returns one of these
from `build_state()` and the model owns it: it trains it, saves it in
`.keras` files and passes it back to the loss as `state`.
"""

import keras


@keras.saving.register_keras_serializable(package="keras_mdr")
class LossParameter(keras.layers.Layer):
    """One trainable tensor of a loss: margin's beta, the proxies, ArcFace's centres.

    Args:
        shape: tuple of ints, the tensor's shape.
        initializer: a Keras initializer (name, config or object).
        parameter_name: the variable's name ("beta", "proxies", "centres").
        **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: ignored; calling returns the variable. Losses read
            `layer.parameter` directly.

    Example:

    >>> layer = keras_mdr.losses.LossParameter((3,), "ones", "beta")
    >>> tuple(layer.parameter.shape)
    (3,)
    """

    def __init__(self, shape, initializer="zeros", parameter_name="parameter", **kwargs):
        super().__init__(**kwargs)
        self.shape_value = tuple(int(s) for s in shape)
        self.initializer = keras.initializers.get(initializer)
        self.parameter_name = parameter_name
        self.parameter = self.add_weight(
            name=parameter_name, shape=self.shape_value, initializer=self.initializer,
            trainable=True,
        )
        self.built = True

    def call(self, inputs=None):
        return self.parameter

    def get_config(self):
        config = super().get_config()
        config.update({
            "shape": self.shape_value,
            "initializer": keras.initializers.serialize(self.initializer),
            "parameter_name": self.parameter_name,
        })
        return config
