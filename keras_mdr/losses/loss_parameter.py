"""`LossParameter`: the Layer that holds a loss's learnable tensor.

A `keras.losses.Loss` cannot own variables in Keras 3 (the optimizer never
sees them), so a stateful `keras_mdr.losses.MetricLoss` returns one of these
from `build_state()` and the model owns it: it trains it, saves it in
`.keras` files and passes it back to the loss as `state`.
"""

import keras


class _Divided(keras.initializers.Initializer):
    """`initializer(shape) / divisor`: the stored variable of a multiplied parameter."""

    def __init__(self, initializer, divisor):
        self.initializer = initializer
        self.divisor = divisor

    def __call__(self, shape, dtype=None):
        return self.initializer(shape, dtype=dtype) / self.divisor


@keras.saving.register_keras_serializable(package="keras_mdr")
class LossParameter(keras.layers.Layer):
    """One trainable tensor of a loss: margin's beta, the proxies, ArcFace's centres.

    With `learning_rate_multiplier=c` the layer stores a variable `v` and the
    loss reads the parameter `p = c * v` (initialised so that `p` starts at
    the initializer's value). The gradient reaching `v` is `c` times that of
    `p`, so with Adam-family optimizers, which normalise the gradient's
    scale, `p` moves `c` times as far per step: a `c`-times learning rate
    (exactly, with Adam's epsilon divided by `c`), as the proxy papers train
    their proxies with a separate, larger rate. With plain SGD the step of
    `p` is `c**2` times. Decoupled weight decay (AdamW's `weight_decay`)
    shrinks `v`, hence `p`, by the same factor as every other weight: unlike
    a PyTorch parameter group with a larger learning rate, the decay is not
    multiplied.

    Args:
        shape: tuple of ints, the tensor's shape.
        initializer: a Keras initializer (name, config or object) of the
            parameter `p`.
        parameter_name: the variable's name ("beta", "proxies", "centres").
        learning_rate_multiplier: positive float `c`. Default 1 (then `p` is
            the variable itself).
        **kwargs: `keras.layers.Layer` arguments (name, dtype, ...).

    Call arguments:
        inputs: ignored; calling returns the parameter. Losses read
            `layer.parameter` directly.

    Example:

    >>> layer = keras_mdr.losses.LossParameter((3,), "ones", "beta")
    >>> tuple(layer.parameter.shape)
    (3,)
    """

    def __init__(self, shape, initializer="zeros", parameter_name="parameter",
                 learning_rate_multiplier=1.0, **kwargs):
        super().__init__(**kwargs)
        if not float(learning_rate_multiplier) > 0.0:
            raise ValueError(
                "Expected a positive learning_rate_multiplier. Received: "
                f"learning_rate_multiplier={learning_rate_multiplier}"
            )
        self.shape_value = tuple(int(s) for s in shape)
        self.initializer = keras.initializers.get(initializer)
        self.parameter_name = parameter_name
        self.learning_rate_multiplier = float(learning_rate_multiplier)
        stored = self.initializer
        if self.learning_rate_multiplier != 1.0:
            stored = _Divided(self.initializer, self.learning_rate_multiplier)
        self.variable = self.add_weight(
            name=parameter_name, shape=self.shape_value, initializer=stored, trainable=True,
        )
        self.built = True

    @property
    def parameter(self):
        """The loss's tensor `p = learning_rate_multiplier * variable`."""
        if self.learning_rate_multiplier == 1.0:
            return self.variable
        return self.learning_rate_multiplier * self.variable

    def call(self, inputs=None):
        return self.parameter

    def get_config(self):
        config = super().get_config()
        config.update({
            "shape": self.shape_value,
            "initializer": keras.initializers.serialize(self.initializer),
            "parameter_name": self.parameter_name,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        })
        return config
