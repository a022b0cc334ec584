"""`MDRRegularizer`: the layer that owns MDR's state (levels, moving statistics)."""

import keras
import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import mdr as mdr_lib
from keras_mdr.losses.mdr import DEFAULT_LEVELS


def _check_levels(levels):
    levels = tuple(float(v) for v in levels)
    if not levels:
        raise ValueError(f"Expected at least one level. Received: levels={levels}")
    return levels


@keras.saving.register_keras_serializable(package="keras_mdr")
class MDRRegularizer(keras.layers.Layer):
    """Multi-level Distance Regularization state and penalty.

    Holds the learnable levels and the momentum statistics of the normalised
    pairwise distances, the way `BatchNormalization` holds its moving
    statistics: they are assigned only when `training` is true, and never for
    a batch whose statistics are not finite (a NaN batch leaves them as they
    were). All variables are float32 whatever the dtype policy.

    Used two ways:
    - by `keras_mdr.MDRTrainStepMixin` / `keras_mdr.MDRModel`, which configure
      it from an `MDRTripletLoss` at `compile()` and call `penalty()`;
    - standalone, as an identity layer on the embeddings that adds
      `weight * L_MDR + level_weight * sum(levels^2)` to the model's losses
      (with the statistics computed on the scale-normalised distances), so
      MDR regularises a model trained with any loss.

    Args:
        levels: initial level values. Defaults to (-3, 0, 3).
        momentum: float in [0, 1), momentum of the moving statistics.
        weight: float, `lambda`; only used when called as a layer.
        level_weight: float, `nu`; only used when called as a layer.

    Call arguments:
        inputs: embeddings `(batch, dim)`; returned unchanged.
        training: bool; statistics are updated only when true.

    Example:

    >>> inputs = keras.Input((16,))
    >>> embeddings = keras.layers.Dense(8)(inputs)
    >>> embeddings = keras_mdr.MDRRegularizer(weight=0.2)(embeddings)
    >>> model = keras.Model(inputs, embeddings)

    Reference:
        Kim & Park, "Multi-level Distance Regularization for Deep Metric
        Learning", AAAI 2021.
    """

    def __init__(
        self,
        levels=DEFAULT_LEVELS,
        momentum=0.9,
        weight=0.2,
        level_weight=0.01,
        autobuild=True,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.levels_init = _check_levels(levels)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"Expected momentum in [0, 1). Received: momentum={momentum}")
        self.momentum = float(momentum)
        self.weight = float(weight)
        self.level_weight = float(level_weight)
        self.autobuild = bool(autobuild)
        if self.autobuild:
            self.build()

    def configure(self, levels, momentum):
        """Sets levels and momentum before the state exists (used at compile)."""
        levels = _check_levels(levels)
        if self.built:
            if len(levels) != len(self.levels_init):
                raise ValueError(
                    "Expected the same number of MDR levels as the model was "
                    f"built with ({len(self.levels_init)}). Received: levels={levels}"
                )
            self.momentum = float(momentum)
            return
        self.levels_init = levels
        self.momentum = float(momentum)

    def build(self, input_shape=None):
        if self.built:
            return
        self.levels = self.add_weight(
            shape=(len(self.levels_init),),
            initializer=keras.initializers.Constant(self.levels_init),
            trainable=True,
            name="levels",
            autocast=False,
        )
        stat = dict(shape=(), trainable=False, autocast=False, aggregation="only_first_replica")
        self.moving_mean = self.add_weight(initializer="zeros", name="moving_mean", **stat)
        self.moving_std = self.add_weight(initializer="ones", name="moving_std", **stat)
        self.initialized = self.add_weight(initializer="zeros", name="initialized", **stat)
        self.built = True

    def statistics(self, distances, scale=1.0, training=False):
        """Statistics to normalise this batch with, updating the moving ones in training.

        In training, the moving statistics are updated (first step: set to the
        batch's) unless the batch's are not finite, and the updated values are
        returned. Otherwise the moving statistics are returned once
        initialised, else the batch's own.
        """
        batch_mean, batch_std = mdr_lib.distance_statistics(distances, scale)
        initialized = self.initialized > 0.5
        if not training:
            return (
                tf.where(initialized, self.moving_mean, batch_mean),
                tf.where(initialized, self.moving_std, batch_std),
            )
        finite = tf.logical_and(tf.math.is_finite(batch_mean), tf.math.is_finite(batch_std))
        m = self.momentum

        def blend(moving, batch):
            new = tf.where(initialized, m * moving + (1.0 - m) * batch, batch)
            return tf.where(finite, new, tf.convert_to_tensor(moving))

        new_mean = blend(self.moving_mean, batch_mean)
        new_std = blend(self.moving_std, batch_std)
        self.moving_mean.assign(new_mean)
        self.moving_std.assign(new_std)
        self.initialized.assign(tf.where(finite, 1.0, tf.convert_to_tensor(self.initialized)))
        # A skipped (non-finite) batch still shows its NaN through the penalty.
        return tf.where(finite, new_mean, batch_mean), tf.where(finite, new_std, batch_std)

    def penalty(self, distances, scale=1.0, training=False, sample_weight=None):
        """`L_MDR` of `distances / scale`, updating the statistics in training.

        Args:
            distances: float32 `(batch, batch)` pairwise distances (zero
                diagonal).
            scale: the batch's mean distance (gradient flows through it).
            training: bool; the moving statistics are updated only when true.
            sample_weight: optional `(batch,)` anchor weights of the pairs
                (`keras_mdr.losses.mdr_penalty`); the statistics ignore them.
        """
        mean, std = self.statistics(distances, scale, training=training)
        return mdr_lib.mdr_penalty(distances, self.levels, mean, std, scale, sample_weight)

    def call(self, inputs, training=False):
        embeddings = distances_lib.check_embeddings(inputs)
        distances = distances_lib.pairwise_distance(embeddings)
        scale = mdr_lib.safe_scale(mdr_lib.mean_distance(distances))
        penalty = self.penalty(distances, scale, training=bool(training))
        self.add_loss(self.weight * penalty + self.level_weight * mdr_lib.level_penalty(self.levels))
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "levels": list(self.levels_init),
                "momentum": self.momentum,
                "weight": self.weight,
                "level_weight": self.level_weight,
                "autobuild": self.autobuild,
            }
        )
        return config
