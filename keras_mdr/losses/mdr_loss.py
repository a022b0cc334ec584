"""`MDRLoss`: any metric-learning loss plus Multi-level Distance Regularization."""

import keras
import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.layers.mdr_loss_state import MDRLossState
from keras_mdr.layers.mdr_regularizer import MDRRegularizer
from keras_mdr.losses import mdr as mdr_lib
from keras_mdr.losses.metric_loss import MetricLoss


def _check_base_loss(base_loss):
    if isinstance(base_loss, dict):
        base_loss = keras.saving.deserialize_keras_object(base_loss)
    if isinstance(base_loss, MDRLoss):
        raise ValueError(
            "Expected a base loss without MDR (MDR is added once). "
            f"Received: base_loss={base_loss!r}"
        )
    if not callable(base_loss):
        raise ValueError(
            "Expected base_loss to be a keras_mdr loss, a Keras loss or a callable "
            f"(labels, embeddings). Received: base_loss={base_loss!r}"
        )
    return base_loss


# The reductions for which Keras divides a loss by the replica count.
_REPLICA_SCALED = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


def keras_loss_on_global_batch(loss, labels, embeddings, sample_weight=None):
    """A Keras loss or callable of the global batch, as one device would compute it.

    Keras' losses with a mean reduction divide their value by the replica
    count under `tf.distribute` (each replica is meant to see its slice of
    the batch and Keras sums the gradients); here the loss sees the global
    batch, which the caller scales once, so that division is undone.
    """
    if sample_weight is None:
        value = loss(labels, embeddings)
    else:
        value = loss(labels, embeddings, sample_weight=sample_weight)
    if isinstance(loss, keras.losses.Loss) and loss.reduction in _REPLICA_SCALED:
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value * float(replicas)
    return value


@keras.saving.register_keras_serializable(package="keras_mdr")
class MDRLoss(MetricLoss):
    """Any metric-learning loss + Multi-level Distance Regularization (MDR).

    `L = L_base(E / s, y) + mdr_weight * L_MDR(D / s) + level_weight * sum(levels^2)`
    with `D` the batch's Euclidean distance matrix, `s` its mean pairwise
    distance (the gradient flows through it) and `L_MDR` the mean gap of the
    normalised distances to the nearest learnable level. Swap the base loss
    with one argument; the rest of the training code stays.

    **Scale normalisation meets inner-product losses.** MDR divides the
    embeddings by `s` before the base loss, as the paper does for its
    triplet loss: distance losses (triplet, contrastive, margin) then work
    at a fixed scale. keras_mdr's inner-product losses (`SupConLoss`,
    `NTXentLoss`, `MultiSimilarityLoss`, `ProxyAnchorLoss`, `ArcFaceLoss`,
    the ones with `compares_inner_products = True`) read the embeddings as
    given (the paper's cosine for unit rows, e.g. after
    `keras.layers.UnitNormalization()`); dividing unit rows by `s` would
    multiply their logits by `1 / s` or `1 / s**2`, a temperature that
    moves with `s` during training. So by default (`scale_base=None`) they
    get the embeddings undivided, which is what "the division does not
    change a cosine loss" means for losses that normalise inside; MDR
    regularises the distances of the same embeddings, divided by `s`,
    either way. `scale_base=True` or `False` forces the choice (on digits,
    SupCon and Multi-Similarity reached the same Recall@1 both ways within
    seed noise).

    The state (levels, moving statistics, and the base loss's own
    variables: proxies, centres, beta) is owned by the model: compile on
    `keras_mdr.MDRModel` or a `keras_mdr.MDRTrainStepMixin` model.
    Compiling on a plain `keras.Model` raises at `compile()`.

    Sample weights are a weight per anchor (`keras_mdr.losses.MetricLoss`):
    the base loss gets them; MDR's term weighs pair `(i, j)` by `w_i`
    (`keras_mdr.losses.mdr_penalty`); the levels' regulariser
    `level_weight * sum(levels^2)` is a penalty on the state, unweighted.
    The moving statistics describe the batch's distances and ignore
    weights, as `BatchNormalization`'s do.

    Args:
        base_loss: a keras_mdr loss (its state, if any, is owned too), any
            Keras loss, or a callable `(labels, embeddings) -> scalar`; it
            receives the scale-normalised embeddings `E / s`.
        mdr_weight: float, `lambda`. 0 gives the base loss on `E / s`.
        level_weight: float, `nu`, the levels' regulariser.
        levels: initial level values. Defaults to (-3, 0, 3).
        momentum: float in [0, 1), momentum of the moving statistics.
        scale_base: bool, give the base loss `E / s` (True) or `E` (False);
            None (default): False for a base loss with
            `compares_inner_products`, else True.
        name: name of the loss.
        **kwargs: `keras_mdr.losses.MetricLoss` arguments.

    Call arguments:
        y_true: int class labels `(batch,)` or `(batch, 1)`.
        y_pred: embeddings `(batch, dim)`.
        sample_weight: optional `(batch,)`, a weight per anchor.
        state: the `MDRLossState` from `build_state()` (passed by the model).

    Logs (in `fit`): `base_loss`, `mdr_loss` (unweighted `L_MDR`), `scale`
    (the batch's raw mean pairwise distance `s`) and the levels
    `mdr_level_0`, ...

    Example:

    >>> encoder = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8),
    ...                             keras.layers.UnitNormalization()])
    >>> model = keras_mdr.MDRModel(encoder)
    >>> model.compile(optimizer="adam", loss=keras_mdr.MDRLoss(
    ...     keras_mdr.MultiSimilarityLoss(), mdr_weight=0.2))

    Reference:
        Kim & Park, "Multi-level Distance Regularization for Deep Metric
        Learning", AAAI 2021.
    """

    log_names = ("base_loss", "mdr_loss", "scale")

    def __init__(self, base_loss, mdr_weight=0.2, level_weight=0.01,
                 levels=mdr_lib.DEFAULT_LEVELS, momentum=0.9, scale_base=None, name="mdr_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        if float(mdr_weight) < 0 or float(level_weight) < 0:
            raise ValueError(
                "Expected non-negative weights. Received: "
                f"mdr_weight={mdr_weight}, level_weight={level_weight}"
            )
        self.base_loss = self._checked_base(base_loss)
        self.mdr_weight = float(mdr_weight)
        self.level_weight = float(level_weight)
        # Validated by the regulariser, which raises on a bad value here.
        self.levels = tuple(float(v) for v in levels)
        self.momentum = float(momentum)
        MDRRegularizer(self.levels, self.momentum, autobuild=False)
        self.scale_base = None if scale_base is None else bool(scale_base)

    def _checked_base(self, base_loss):
        return _check_base_loss(base_loss)

    def build_state(self):
        base = self.base_loss
        base_state = base.build_state() if isinstance(base, MetricLoss) else None
        regularizer = MDRRegularizer(self.levels, self.momentum, name=f"{self.name}_regularizer")
        return MDRLossState(regularizer, base_state, name=f"{self.name}_state")

    def objective(self, labels, embeddings, sample_weight=None, state=None, training=False,
                  step=None):
        distances = distances_lib.pairwise_distance(embeddings)
        raw_scale = mdr_lib.mean_distance(distances)
        scale = mdr_lib.safe_scale(raw_scale)
        base = tf.cast(self.base_value(labels, embeddings, distances, scale, sample_weight,
                                       state.base, step), tf.float32)
        regularizer = state.regularizer
        mdr = regularizer.penalty(distances, scale, training=training,
                                  sample_weight=sample_weight)
        level = mdr_lib.level_penalty(regularizer.levels)
        total = base + self.mdr_weight * mdr + self.level_weight * level
        # Mining and clipping can hide a NaN embedding; keep it visible so
        # TerminateOnNaN and users see it. A NaN or inf embedding makes the
        # mean distance NaN or inf: one scalar to check.
        total = tf.where(tf.math.is_finite(raw_scale), total, tf.constant(float("nan")))
        return {"loss": total, "base_loss": base, "mdr_loss": mdr, "level_loss": level,
                "scale": raw_scale}

    def base_value(self, labels, embeddings, distances, scale, sample_weight, base_state, step):
        """The base loss of the scale-normalised embeddings `E / scale`.

        (or `E` itself, see `scale_base`). A keras_mdr loss gets the global
        batch directly (int labels, its
        state); a Keras loss or callable gets `(labels, E / scale)` and the
        weights when there are any.
        """
        base = self.base_loss
        scale_base = self.scale_base
        if scale_base is None:
            scale_base = not getattr(base, "compares_inner_products", False)
        scaled = embeddings / scale if scale_base else embeddings
        if isinstance(base, MetricLoss):
            return base.compute(labels, scaled, sample_weight, base_state)
        return keras_loss_on_global_batch(base, labels, scaled, sample_weight)

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        return self.objective(labels, embeddings, sample_weight, state)["loss"]

    def state_logs(self, state):
        levels = state.regularizer.levels
        return {f"mdr_level_{i}": levels[i] for i in range(levels.shape[0])}

    def get_config(self):
        config = super().get_config()
        config.update({
            "base_loss": keras.saving.serialize_keras_object(self.base_loss),
            "mdr_weight": self.mdr_weight,
            "level_weight": self.level_weight,
            "levels": list(self.levels),
            "momentum": self.momentum,
            "scale_base": self.scale_base,
        })
        return config
