"""`MDRTrainStepMixin` and `MDRModel`: models that own and train their loss's state."""

import keras
import tensorflow as tf

from keras_mdr import _keras_compat
from keras_mdr.layers.loss_state import LossState
from keras_mdr.losses import metric_loss
from keras_mdr.losses.metric_loss import MetricLoss


class MDRTrainStepMixin:
    """Mixin for `keras.Model` subclasses that own their loss's learnable state.

    Any `keras_mdr.losses.MetricLoss` with state (`keras_mdr.MDRLoss` and
    `MDRTripletLoss`: MDR's levels and moving statistics; `MarginLoss`'s
    beta, `ProxyAnchorLoss`'s proxies, `ArcFaceLoss`'s centres) gets it from
    the model: `compile()` calls the loss's `build_state()` and puts the
    Layer in `model.loss_state` (a `keras_mdr.layers.LossState`), before the
    optimizer is built; the optimizer trains it with the weights;
    `model.save()` / `load_model()` and checkpoints keep it; under a
    `tf.distribute` strategy it is mirrored like the weights. The mixin
    overrides `compute_loss` only, so Keras' own train step keeps loss
    scaling, mixed precision, XLA and distribution right.

    Under a multi-replica strategy the embeddings, labels and weights are
    gathered across replicas before the loss, so every replica computes the
    loss of the global batch (mining sees all of it) and applies the same
    state update. `model.losses` (e.g. kernel regularisers) are added.

    Sample weights (and `class_weight`, which Keras turns into them) are the
    loss's: a weight per anchor (`keras_mdr.losses.MetricLoss`; for MDR,
    its term weighs pair `(i, j)` by `w_i`, while the levels' regulariser
    and `model.losses` are penalties on the weights and state, unweighted);
    all-zero weights leave the encoder untouched; a vector of the wrong
    length is refused; compile's `loss_weights` is refused (one loss, one
    weight: use the loss's own weights).

    Logs: `loss`, the loss's `log_names` (for MDR: `base_loss`, `mdr_loss`
    the unweighted `L_MDR`, `scale` the batch's raw mean pairwise distance)
    and its `state_logs` (MDR's levels `mdr_level_0`, ...). MDR's moving
    statistics are read on `model.mdr_regularizer.moving_mean` / `moving_std`.

    Example:

    >>> class Embedder(keras_mdr.MDRTrainStepMixin, keras.Model):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.dense = keras.layers.Dense(8)
    ...     def call(self, x):
    ...         return self.dense(x)
    >>> model = Embedder()
    >>> model.compile(optimizer="adam", loss=keras_mdr.MDRTripletLoss())
    """

    # Read by keras_mdr's compile() check: this model can own a loss's state.
    owns_loss_state = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The slot must exist before the model is built and locked; the
        # state goes in at compile(), from the loss.
        self.loss_state = LossState(name="loss_state")
        self._metric_loss = None

    @property
    def mdr_regularizer(self):
        """The `keras_mdr.MDRRegularizer` of a compiled MDR loss, else None."""
        return getattr(self.loss_state.layer, "regularizer", None)

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        metric = loss if isinstance(loss, MetricLoss) else None
        if metric is not None and kwargs.get("loss_weights") is not None:
            raise ValueError(
                "Expected no loss_weights with a keras_mdr loss (one loss, one weight: "
                "scale the loss's own weights). Received: "
                f"loss_weights={kwargs['loss_weights']!r}"
            )
        self.loss_state.attach(metric)
        self._metric_loss = metric
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compile_from_config for models overriding compile().
        _keras_compat.compile_from_config(self, config)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = self._metric_loss
        if loss is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if y is None:
            raise ValueError(
                f"Expected labels with the inputs: {type(loss).__name__} needs "
                "(inputs, labels) batches. Received: y=None"
            )
        # The compiled loss is bypassed; mark it built so Keras does not
        # rebuild it symbolically on every fit() call.
        _keras_compat.mark_compiled_loss_built(self, y, y_pred)
        step = self.optimizer.iterations if getattr(self, "optimizer", None) else None
        terms = loss.batch_objective(y, y_pred, sample_weight, state=self.loss_state.layer,
                                     training=training, step=step)
        total = terms["loss"]
        extras = [tf.cast(tf.reduce_sum(extra), tf.float32) for extra in self.losses]
        if extras:
            context = metric_loss.multi_replica_context()
            replicas = 1 if context is None else context.num_replicas_in_sync
            # Keras sums gradients over replicas: each returns its share.
            total = total + tf.add_n(extras) / float(replicas)
        self.loss_state.record(terms)
        return total

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' build fails under MultiWorkerMirroredStrategy (see _keras_compat).
        return _keras_compat.maybe_symbolic_build(
            self, super()._maybe_symbolic_build, iterator=iterator, data_batch=data_batch
        )

    def get_metrics_result(self):
        logs = super().get_metrics_result()
        if self._metric_loss is not None and self.loss_state.layer is not None:
            for name, value in self._metric_loss.state_logs(self.loss_state.layer).items():
                logs[name] = tf.convert_to_tensor(value)
        # Keras' cross-worker reduce of the logs rejects scalars (see _keras_compat).
        return _keras_compat.logs_as_vectors(logs)


@keras.saving.register_keras_serializable(package="keras_mdr")
class MDRModel(MDRTrainStepMixin, keras.Model):
    """An embedding model that owns its loss's state: wraps an encoder.

    Compile it with any keras_mdr loss (`keras_mdr.MDRLoss`,
    `MDRTripletLoss`, the stateful `MarginLoss`, `ProxyAnchorLoss`,
    `ArcFaceLoss`, or any stateless one) or a Keras loss; the learnable
    state of the loss is the model's (`keras_mdr.MDRTrainStepMixin`).

    `model(images)` returns the encoder's embeddings as float32 (also under a
    mixed-precision policy). Save the whole model with `model.save("m.keras")`
    (loss state, statistics and optimizer included, no `custom_objects` needed), or
    ship `model.encoder` alone for inference.

    Args:
        encoder: a `keras.Model` or layer mapping inputs to `(batch, dim)`
            embeddings.

    Example:

    >>> encoder = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    >>> model = keras_mdr.MDRModel(encoder)
    >>> model.compile(optimizer=keras.optimizers.Adam(5e-5),
    ...               loss=keras_mdr.MDRTripletLoss(mdr_weight=0.2))

    Reference:
        Kim & Park, "Multi-level Distance Regularization for Deep Metric
        Learning", AAAI 2021.
    """

    def __init__(self, encoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder

    def build(self, input_shape):
        if not self.encoder.built:
            # Calling on a symbolic input builds a subclassed encoder's
            # sublayers; its default build() would only warn.
            self.encoder(keras.KerasTensor(tuple(input_shape)))
        self.built = True

    def call(self, inputs, training=None):
        # Embeddings leave the model in float32 whatever the compute dtype.
        return keras.ops.cast(self.encoder(inputs, training=training), "float32")

    def compute_output_spec(self, inputs, training=None):
        spec = self.encoder.compute_output_spec(inputs)
        return keras.KerasTensor(spec.shape, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config["encoder"] = keras.saving.serialize_keras_object(self.encoder)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
