"""`TripletHardLoss`: TensorFlow Addons' batch-hard triplet loss."""

import keras

from keras_mdr import distances as distances_lib
from keras_mdr.losses import triplet
from keras_mdr.losses.metric_loss import MetricLoss


@keras.saving.register_keras_serializable(package="keras_mdr")
class TripletHardLoss(MetricLoss):
    """Batch-hard online triplet loss, a drop-in for TFA's.

    Same arguments, defaults and values as `tfa.losses.TripletHardLoss`
    (TensorFlow Addons 0.23). With `soft=True`, TFA's `log1p(exp(gap))`
    overflows to inf for gaps above ~88; this loss uses the stable softplus,
    which is finite there. Labels stay integers, a sample weight weighs its
    anchor's term, and under `tf.distribute` mining runs on the global batch
    (`keras_mdr.losses.MetricLoss`).

    Args:
        margin: float, the margin term of the loss. Defaults to 1.0.
        soft: bool, use the soft-margin form `softplus(hp - hn)`.
        distance: "euclidean" (default), "squared_euclidean" or "cosine";
            TFA's "L2", "squared-L2", "angular" (and its keyword
            `distance_metric`) are accepted.
        name: optional name of the loss.

    Call arguments:
        y_true: int labels of shape `(batch,)` or `(batch, 1)`.
        y_pred: embeddings of shape `(batch, dim)`.
        sample_weight: optional `(batch,)` weights, one per anchor.

    Example:

    >>> loss = keras_mdr.TripletHardLoss(margin=1.0, soft=False)
    >>> value = loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])

    Reference:
        Hermans et al., "In Defense of the Triplet Loss for Person
        Re-Identification", 2017.
    """

    def __init__(
        self, margin=1.0, soft=False, distance="euclidean", name="triplet_hard_loss", **kwargs
    ):
        distance = kwargs.pop("distance_metric", distance)
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)
        self.soft = bool(soft)
        self.distance = distances_lib.distance_from_tfa_name(distance)

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        distances = distances_lib.pairwise_distance(embeddings, self.distance)
        return triplet.hard_triplet_loss(
            labels, distances, self.margin, self.soft, sample_weight
        )

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "soft": self.soft, "distance": self.distance})
        return config
