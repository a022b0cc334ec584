"""`MDRLossState`: the state of an `MDRLoss`, MDR's and its base loss's together."""

import keras


class MDRLossState(keras.layers.Layer):
    """MDR's regulariser beside the state of the base loss (None if it has none).

    Built by `keras_mdr.MDRLoss.build_state()`; the model owns it like any
    loss state (`keras_mdr.layers.LossState`).

    Args:
        regularizer: a built `keras_mdr.MDRRegularizer` (levels, moving
            statistics).
        base: the base loss's state Layer, or None.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, regularizer, base=None, **kwargs):
        super().__init__(**kwargs)
        self.regularizer = regularizer
        self.base = base
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    def call(self, inputs=None):
        return self.regularizer.levels
