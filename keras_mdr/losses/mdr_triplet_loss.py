"""`MDRTripletLoss`: a triplet loss plus Multi-level Distance Regularization."""

import keras
import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import mdr as mdr_lib
from keras_mdr.losses import distance_weighted, triplet

BASE_LOSSES = ("distance_weighted", "semihard", "hard")


@keras.saving.register_keras_serializable(package="keras_mdr")
class MDRTripletLoss(keras.losses.Loss):
    """Triplet loss + Multi-level Distance Regularization (MDR), one object.

    `L = L_base(E / s, y) + mdr_weight * L_MDR + level_weight * sum(levels^2)`
    where `s` is the batch's mean pairwise distance (gradient flows through
    it), `L_MDR` the mean distance of the normalised pairwise distances to the
    nearest learnable level. One float32 distance matrix is shared by the base
    loss and MDR.

    MDR has state (learnable levels, moving statistics) that a
    `keras.losses.Loss` cannot own in Keras 3 (an optimizer never sees a
    loss's variables). This object holds the configuration; the state lives in
    the model, so compile it on a `keras_mdr.MDRModel` or a model using
    `keras_mdr.MDRTrainStepMixin`. Compiled on a plain `keras.Model`, the first
    training step raises a `ValueError` saying so (the levels are never
    silently frozen).

    With `mdr_weight=0` this is the authors' baseline: the base triplet loss on
    embeddings scaled by the batch's mean distance, without L2 normalisation.

    Args:
        base_loss: "distance_weighted" (default: the authors' triplet margin
            loss with distance-weighted sampling), "semihard", "hard", or any
            Keras loss / callable `(labels, embeddings) -> scalar`, called on
            the scale-normalised embeddings.
        margin: float, margin of the named base losses. Defaults to 0.2 (the
            scaled embeddings have mean pairwise distance 1). Ignored for a
            callable base loss.
        mdr_weight: float, `lambda`. 0.2 for Cars-196, 0.6 CUB-200-2011, 0.1
            SOP and In-Shop in the paper.
        level_weight: float, `nu`. Defaults to 0.01.
        levels: initial level values. Defaults to (-3, 0, 3).
        momentum: float, momentum of the moving statistics. Defaults to 0.9.
        seed: optional int seed of the distance-weighted sampler (combined with
            the optimizer's step, so resumed runs sample the same negatives).
        sampling: sampler of `base_loss="distance_weighted"`: "release"
            (default, the authors' rule) or "textbook" (Wu et al.).
        name: optional name of the loss.

    Example:

    >>> encoder = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    >>> model = keras_mdr.MDRModel(encoder)
    >>> model.compile(optimizer="adam", loss=keras_mdr.MDRTripletLoss(mdr_weight=0.2))

    Reference:
        Kim & Park, "Multi-level Distance Regularization for Deep Metric
        Learning", AAAI 2021.
    """

    def __init__(
        self,
        base_loss="distance_weighted",
        margin=0.2,
        mdr_weight=0.2,
        level_weight=0.01,
        levels=mdr_lib.DEFAULT_LEVELS,
        momentum=0.9,
        seed=None,
        sampling="release",
        name="mdr_triplet_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if isinstance(base_loss, str):
            if base_loss not in BASE_LOSSES:
                raise ValueError(
                    f"Expected base_loss to be one of {BASE_LOSSES} or a Keras loss. "
                    f"Received: base_loss={base_loss!r}"
                )
        elif isinstance(base_loss, dict):
            base_loss = keras.saving.deserialize_keras_object(base_loss)
        elif not callable(base_loss):
            raise ValueError(
                "Expected base_loss to be a name or a callable (labels, embeddings). "
                f"Received: base_loss={base_loss!r}"
            )
        if float(mdr_weight) < 0 or float(level_weight) < 0:
            raise ValueError(
                "Expected non-negative weights. Received: "
                f"mdr_weight={mdr_weight}, level_weight={level_weight}"
            )
        self.base_loss = base_loss
        self.margin = float(margin)
        self.mdr_weight = float(mdr_weight)
        self.level_weight = float(level_weight)
        self.levels = tuple(float(v) for v in levels)
        self.momentum = float(momentum)
        self.seed = seed
        if sampling not in distance_weighted.SAMPLINGS:
            raise ValueError(
                f"Expected sampling to be one of {distance_weighted.SAMPLINGS}. "
                f"Received: sampling={sampling!r}"
            )
        self.sampling = sampling

    def objective(self, labels, embeddings, regularizer, step=0, training=True):
        """Computes every term of the loss with the model's MDR state.

        Args:
            labels: labels `(batch,)` or `(batch, 1)`.
            embeddings: `(batch, dim)` embeddings, any float dtype.
            regularizer: the model's `keras_mdr.MDRRegularizer`.
            step: int scalar tensor (the optimizer's step), mixed into the
                sampler's seed.
            training: bool; statistics are updated only when true.

        Returns:
            dict of float32 scalars: "loss" (the total), "base_loss",
            "mdr_loss" (`L_MDR`, unweighted) and "level_loss" (`sum v^2`).
        """
        embeddings = distances_lib.check_embeddings(embeddings)
        labels = distances_lib.check_labels(labels, embeddings.shape[0])
        distances = distances_lib.pairwise_distance(embeddings)
        raw_scale = mdr_lib.mean_distance(distances)
        scale = mdr_lib.safe_scale(raw_scale)
        base = self._base(labels, embeddings, distances, scale, step)
        mdr = regularizer.penalty(distances, scale, training=training)
        level = mdr_lib.level_penalty(regularizer.levels)
        total = base + self.mdr_weight * mdr + self.level_weight * level
        # Mining and clipping can hide a NaN embedding; keep it visible so
        # TerminateOnNaN and users see it. A NaN or inf embedding makes the
        # mean distance NaN or inf: one scalar to check.
        total = tf.where(tf.math.is_finite(raw_scale), total, tf.constant(float("nan")))
        return {"loss": total, "base_loss": base, "mdr_loss": mdr, "level_loss": level}

    def _base(self, labels, embeddings, distances, scale, step):
        """The base loss of the scale-normalised embeddings `E / scale`.

        The hinge losses are positively homogeneous: mining is invariant to
        the scale and `max(m + d_ap / s - d_an / s, 0) = max(m s + d_ap - d_an,
        0) / s`, so they run on the raw distances with margin `m * s`: the
        scaled matrix is never built. A Keras loss gets `E / scale`.
        """
        margin = self.margin * scale
        if self.base_loss == "semihard":
            return triplet.semihard_triplet_loss(labels, distances, margin) / scale
        if self.base_loss == "hard":
            return triplet.hard_triplet_loss(labels, distances, margin) / scale
        if self.base_loss == "distance_weighted":
            seed = tf.stack([tf.cast(self.seed or 0, tf.int64), tf.cast(step, tf.int64)])
            # Sampling weights depend on directions only.
            return triplet.distance_weighted_triplet_loss(
                labels, distances, embeddings, seed=seed, margin=margin,
                sampling=self.sampling, scale=scale,
            ) / scale
        return tf.cast(self.base_loss(labels, embeddings / scale), tf.float32)

    def call(self, y_true, y_pred):
        raise ValueError(
            "MDRTripletLoss needs a model that owns the MDR state (learnable "
            "levels, moving statistics), or its levels would never be trained. "
            "Use `keras_mdr.MDRModel(encoder)` or a model class "
            "`class M(keras_mdr.MDRTrainStepMixin, keras.Model)`. To add MDR to "
            "any model and loss, put a `keras_mdr.MDRRegularizer` layer on the "
            "embeddings instead."
        )

    def get_config(self):
        config = super().get_config()
        base = self.base_loss
        if not isinstance(base, str):
            base = keras.saving.serialize_keras_object(base)
        config.update(
            {
                "base_loss": base,
                "margin": self.margin,
                "mdr_weight": self.mdr_weight,
                "level_weight": self.level_weight,
                "levels": list(self.levels),
                "momentum": self.momentum,
                "seed": self.seed,
                "sampling": self.sampling,
            }
        )
        return config
