"""`LossState`: the slot through which a model owns its compiled loss's state."""

import keras


def _variables_signature(layer):
    return [(v.name, tuple(v.shape)) for v in layer.weights]


class LossState(keras.layers.Layer):
    """Holds the Layer returned by the compiled loss's `build_state()`.

    A model cannot gain sub-layers once built (Keras locks its state), but
    losses are chosen at `compile()`, which may come after the build (and
    always does in `keras.models.load_model`). The model therefore creates
    this slot in its constructor, and `attach()` puts the loss's state in it
    at every `compile()`: its variables are then the model's (in
    `trainable_variables`, trained by the optimizer, saved in `.keras` files
    under the state layer's name), created before the optimizer is built,
    and, under a `tf.distribute` strategy, mirrored like the model's weights.

    Recompiling with a loss whose state has the same variables (names and
    shapes) carries their values over, as recompiling keeps a model's
    weights; another layout raises. A stateless loss leaves the state in
    place, frozen (`trainable=False`) until a stateful loss uses it again.
    The slot also holds one `Mean` tracker per name in the loss's
    `log_names`, so the terms appear in the training logs.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Lists, so that compile() can swap their content after the model is built.
        self.state_layers = []
        self.trackers = []
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    @property
    def layer(self):
        """The state Layer, or None."""
        return self.state_layers[0] if self.state_layers else None

    def attach(self, loss):
        """Puts `loss.build_state()` in the slot (see the class docstring).

        Args:
            loss: a `keras_mdr.losses.MetricLoss`, or None for a loss that
                is not one (no state, no trackers).
        """
        state = loss.build_state() if loss is not None else None
        old = self.layer
        if state is None:
            if old is not None:
                old.trainable = False
        else:
            if not state.built:
                raise ValueError(
                    "Expected build_state() to return a built Layer, its variables created "
                    "in its constructor (they must exist before the optimizer is built). "
                    f"Received: an unbuilt {type(state).__name__} from {type(loss).__name__}"
                )
            if old is not None:
                if _variables_signature(old) != _variables_signature(state):
                    raise ValueError(
                        "Expected a loss whose state has the variables the model already "
                        f"holds, {_variables_signature(old)}: build a new model to train "
                        "another loss's state. Received: "
                        f"{type(loss).__name__} with {_variables_signature(state)}"
                    )
                state.set_weights(old.get_weights())
            self.state_layers.clear()
            self.state_layers.append(state)
        self.trackers.clear()
        for name in getattr(loss, "log_names", ()):
            self.trackers.append(keras.metrics.Mean(name=name))

    def record(self, terms):
        """Updates the trackers with this batch's terms."""
        for tracker in self.trackers:
            tracker.update_state(terms[tracker.name])

    def call(self, inputs=None):
        return self.layer
