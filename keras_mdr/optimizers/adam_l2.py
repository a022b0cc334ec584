"""`AdamL2`: Adam with coupled L2 weight decay, step for step as `torch.optim.Adam`."""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mdr")
class AdamL2(keras.optimizers.Optimizer):
    """Adam with L2 regularisation added to the gradient (PyTorch's `Adam`).

    The update of `torch.optim.Adam(lr, betas=(beta_1, beta_2), eps,
    weight_decay)` at step `t`, for every trainable variable `w`:

        g = gradient + weight_decay * w            (coupled L2)
        m = m + (1 - beta_1) (g - m)
        v = beta_2 v + (1 - beta_2) g^2
        w = w - lr / (1 - beta_1^t) * m / (sqrt(v) / sqrt(1 - beta_2^t) + epsilon)

    This is not `keras.optimizers.Adam(weight_decay=...)`, whose decay is
    decoupled (`w <- w - lr * wd * w`, outside the moments, AdamW-style) and
    whose epsilon is added before the bias correction of `sqrt(v)`. The
    difference matters: with a zero data gradient, the coupled term is
    normalised by Adam like any gradient, so a weight moves by about `lr`
    per step towards 0 whatever `weight_decay` is, while the decoupled one
    shrinks it by the factor `1 - lr * wd`. The MDR authors trained with
    PyTorch's form (`weight_decay=1e-5` on every parameter).

    Like PyTorch, the moments and the step are float32 (the variable's
    dtype); the bias corrections `lr / (1 - beta_1^t)` and
    `sqrt(1 - beta_2^t)` are computed in float64 and rounded once, as
    PyTorch computes them in Python floats.

    `weight_decay` is stored as `coupled_weight_decay`: Keras' base class
    reads `self.weight_decay` as its own, decoupled, decay, which stays None.

    Args:
        learning_rate: float, or a `keras.optimizers.schedules.LearningRateSchedule`.
        weight_decay: float, the coupled L2 coefficient (PyTorch's `weight_decay`).
        beta_1: float, decay of the first moment.
        beta_2: float, decay of the second moment.
        epsilon: float, added to the bias-corrected `sqrt(v)`.
        **kwargs: the base optimizer's arguments (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `use_ema`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`, ...).

    Example:

    >>> optimizer = keras_mdr.optimizers.AdamL2(learning_rate=5e-5, weight_decay=1e-5)
    >>> optimizer.get_config()["weight_decay"]
    1e-05

    Reference:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015;
        PyTorch's `torch.optim.Adam` documentation (its `weight_decay`).
    """

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.0,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        name="adam_l2",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, weight_decay=None, name=name, **kwargs)
        self.coupled_weight_decay = float(weight_decay)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        for arg, value in (("weight_decay", self.coupled_weight_decay), ("epsilon", self.epsilon)):
            if value < 0.0:
                raise ValueError(f"Expected {arg} >= 0. Received: {arg}={value}")
        for arg, value in (("beta_1", self.beta_1), ("beta_2", self.beta_2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"Expected 0 <= {arg} < 1. Received: {arg}={value}")

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._moments = []
        # update_step receives the variable as the strategy hands it over: under
        # tf.distribute, one per-replica component at a time. Map every local
        # copy (public tf.distribute API) to its slot.
        self._slot_of = {}
        strategy = tf.distribute.get_strategy()
        for index, variable in enumerate(variables):
            self._moments.append((
                self.add_variable_from_reference(variable, name="momentum"),
                self.add_variable_from_reference(variable, name="velocity"),
            ))
            copies = strategy.experimental_local_results(getattr(variable, "value", variable))
            for copy in (variable, getattr(variable, "value", variable), *copies):
                self._slot_of[id(copy)] = index

    def _slots(self, variable):
        index = self._slot_of.get(id(variable))
        if index is None:
            raise ValueError(
                "Expected a variable this optimizer was built with (build it inside the "
                f"distribution strategy's scope). Received: variable={variable.name}"
            )
        return self._moments[index]

    def update_step(self, gradient, variable, learning_rate):
        m, v = self._slots(variable)
        dtype = variable.dtype
        gradient = ops.cast(gradient, dtype)
        if self.coupled_weight_decay:
            gradient = gradient + ops.cast(self.coupled_weight_decay, dtype) * variable
        step = ops.cast(self.iterations + 1, "float64")
        step_size = ops.cast(learning_rate, "float64") / (1.0 - ops.power(self.beta_1, step))
        correction2 = ops.sqrt(1.0 - ops.power(self.beta_2, step))
        new_m = m + ops.cast(1.0 - self.beta_1, dtype) * (gradient - m)
        new_v = ops.cast(self.beta_2, dtype) * v + ops.cast(1.0 - self.beta_2, dtype) * (
            gradient * gradient
        )
        self.assign(m, new_m)
        self.assign(v, new_v)
        denominator = ops.sqrt(new_v) / ops.cast(correction2, dtype) + ops.cast(self.epsilon, dtype)
        self.assign_sub(variable, ops.cast(step_size, dtype) * (new_m / denominator))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "weight_decay": self.coupled_weight_decay,
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
            }
        )
        return config
