"""`MDRTrainStepMixin` and `MDRModel`: models that own and train MDR's state."""

import keras
import tensorflow as tf

from keras_mdr import _keras_compat
from keras_mdr.layers.mdr_regularizer import MDRRegularizer
from keras_mdr.losses.mdr_triplet_loss import MDRTripletLoss


def _replica_context():
    """The replica context when running under a multi-replica strategy, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


class MDRTrainStepMixin:
    """Mixin for `keras.Model` subclasses trained with `keras_mdr.MDRTripletLoss`.

    The model owns the MDR state (a `keras_mdr.MDRRegularizer` at
    `model.mdr_regularizer`): `compile()` configures it from the loss, the
    optimizer trains the levels with the weights, the moving statistics are
    updated in training steps only, and `model.save()` / `load_model()` keep
    them. The mixin overrides `compute_loss` only, so Keras' own train step
    keeps loss scaling, mixed precision, XLA and distribution right.

    Under a multi-replica `tf.distribute` strategy the embeddings and labels
    are gathered across replicas before mining, so every replica computes the
    loss of the global batch (mining sees all of it) and applies the same
    statistics update.

    Logs: `loss`, `base_loss`, `mdr_loss` (unweighted `L_MDR`), the levels
    `mdr_level_0`, ..., and the moving statistics `mdr_mean`, `mdr_std`.

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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # State must exist before the model is built and locked; its variables
        # are created at compile(), from the loss's configuration.
        self.mdr_regularizer = MDRRegularizer(autobuild=False, name="mdr_regularizer")
        self.base_loss_tracker = keras.metrics.Mean(name="base_loss")
        self.mdr_loss_tracker = keras.metrics.Mean(name="mdr_loss")
        self._mdr_loss = None

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        if isinstance(loss, MDRTripletLoss):
            self.mdr_regularizer.configure(loss.levels, loss.momentum)
            self._mdr_loss = loss
        else:
            self._mdr_loss = None
        # Build even when unused so the model counts as built.
        self.mdr_regularizer.build()
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compile_from_config for models overriding compile().
        _keras_compat.compile_from_config(self, config)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self._mdr_loss is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if y is None:
            raise ValueError(
                "Expected labels with the images: MDRTripletLoss needs (images, labels) "
                "batches. Received: y=None"
            )
        # The compiled loss is bypassed; mark it built so Keras does not
        # rebuild it symbolically on every fit() call.
        _keras_compat.mark_compiled_loss_built(self, y, y_pred)
        labels, embeddings = y, y_pred
        context = _replica_context()
        if context is not None:
            # Mine on the global batch; every replica computes the same loss.
            embeddings = context.all_gather(tf.cast(embeddings, tf.float32), axis=0)
            labels = context.all_gather(tf.reshape(labels, [-1]), axis=0)
        step = self.optimizer.iterations if getattr(self, "optimizer", None) else 0
        terms = self._mdr_loss.objective(
            labels, embeddings, self.mdr_regularizer, step=step, training=training
        )
        total = terms["loss"]
        for extra in self.losses:
            total = total + tf.cast(tf.reduce_sum(extra), tf.float32)
        self.base_loss_tracker.update_state(terms["base_loss"])
        self.mdr_loss_tracker.update_state(terms["mdr_loss"])
        if context is not None:
            # Keras sums gradients over replicas: each returns its share.
            total = total / float(context.num_replicas_in_sync)
        return total

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' build fails under MultiWorkerMirroredStrategy (see _keras_compat).
        return _keras_compat.maybe_symbolic_build(
            self, super()._maybe_symbolic_build, iterator=iterator, data_batch=data_batch
        )

    def get_metrics_result(self):
        logs = super().get_metrics_result()
        if self._mdr_loss is None:
            logs.pop("base_loss", None)
            logs.pop("mdr_loss", None)
        else:
            regularizer = self.mdr_regularizer
            for i in range(len(regularizer.levels_init)):
                logs[f"mdr_level_{i}"] = regularizer.levels[i]
            logs["mdr_mean"] = tf.convert_to_tensor(regularizer.moving_mean)
            logs["mdr_std"] = tf.convert_to_tensor(regularizer.moving_std)
        # Keras' cross-worker reduce of the logs rejects scalars (see _keras_compat).
        return _keras_compat.logs_as_vectors(logs)


@keras.saving.register_keras_serializable(package="keras_mdr")
class MDRModel(MDRTrainStepMixin, keras.Model):
    """An embedding model trained with MDR: wraps an encoder, owns MDR's state.

    `model(images)` returns the encoder's embeddings as float32 (also under a
    mixed-precision policy). Save the whole model with `model.save("m.keras")`
    (levels, statistics and optimizer included, no `custom_objects` needed), or
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
            self.encoder.build(input_shape)
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
