"""`MDRTripletLoss`: a triplet loss plus Multi-level Distance Regularization."""

import keras
import tensorflow as tf

from keras_mdr.losses import mdr as mdr_lib
from keras_mdr.losses import distance_weighted, triplet
from keras_mdr.losses.mdr_loss import MDRLoss

BASE_LOSSES = ("distance_weighted", "semihard", "hard")


@keras.saving.register_keras_serializable(package="keras_mdr")
class MDRTripletLoss(MDRLoss):
    """Triplet loss + Multi-level Distance Regularization (MDR), one object.

    The triplet-based form of `keras_mdr.MDRLoss` (the same code path and
    state), with the paper's base losses by name.

    `L = L_base(E / s, y) + mdr_weight * L_MDR + level_weight * sum(levels^2)`
    where `s` is the batch's mean pairwise distance (gradient flows through
    it), `L_MDR` the mean distance of the normalised pairwise distances to the
    nearest learnable level. One float32 distance matrix is shared by the base
    loss and MDR.

    MDR has state (learnable levels, moving statistics) that a
    `keras.losses.Loss` cannot own in Keras 3 (an optimizer never sees a
    loss's variables): the model owns it, so compile this loss on a
    `keras_mdr.MDRModel` or a model using `keras_mdr.MDRTrainStepMixin`.
    Compiling it on a plain `keras.Model` raises at `compile()` (the levels
    are never silently frozen).

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
        kwargs.pop("scale_base", None)  # always True: the triplet form scales.
        super().__init__(base_loss, mdr_weight=mdr_weight, level_weight=level_weight,
                         levels=levels, momentum=momentum, scale_base=True, name=name, **kwargs)
        self.margin = float(margin)
        self.seed = seed
        if sampling not in distance_weighted.SAMPLINGS:
            raise ValueError(
                f"Expected sampling to be one of {distance_weighted.SAMPLINGS}. "
                f"Received: sampling={sampling!r}"
            )
        self.sampling = sampling

    def _checked_base(self, base_loss):
        if isinstance(base_loss, str):
            if base_loss not in BASE_LOSSES:
                raise ValueError(
                    f"Expected base_loss to be one of {BASE_LOSSES} or a Keras loss. "
                    f"Received: base_loss={base_loss!r}"
                )
            return base_loss
        return super()._checked_base(base_loss)

    def base_value(self, labels, embeddings, distances, scale, sample_weight, base_state, step):
        """The base loss of the scale-normalised embeddings `E / scale`.

        The hinge losses are positively homogeneous: mining is invariant to
        the scale and `max(m + d_ap / s - d_an / s, 0) = max(m s + d_ap - d_an,
        0) / s`, so they run on the raw distances with margin `m * s`: the
        scaled matrix is never built. Another loss goes through `MDRLoss`.
        """
        if not isinstance(self.base_loss, str):
            return super().base_value(labels, embeddings, distances, scale, sample_weight,
                                      base_state, step)
        margin = self.margin * scale
        if self.base_loss == "semihard":
            return triplet.semihard_triplet_loss(labels, distances, margin, sample_weight) / scale
        if self.base_loss == "hard":
            return triplet.hard_triplet_loss(labels, distances, margin,
                                             sample_weight=sample_weight) / scale
        step = 0 if step is None else step
        seed = tf.stack([tf.cast(self.seed or 0, tf.int64), tf.cast(step, tf.int64)])
        # Sampling weights depend on directions only.
        return triplet.distance_weighted_triplet_loss(
            labels, distances, embeddings, seed=seed, margin=margin,
            sampling=self.sampling, scale=scale, sample_weight=sample_weight,
        ) / scale

    def get_config(self):
        config = super().get_config()
        config.pop("scale_base")
        config.update({"margin": self.margin, "seed": self.seed, "sampling": self.sampling})
        if isinstance(self.base_loss, str):
            config["base_loss"] = self.base_loss
        return config
