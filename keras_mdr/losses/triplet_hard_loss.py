"""`TripletHardLoss`: TensorFlow Addons' batch-hard triplet loss."""

import keras

from keras_mdr import distances as distances_lib
from keras_mdr.losses import triplet


@keras.saving.register_keras_serializable(package="keras_mdr")
class TripletHardLoss(keras.losses.Loss):
    """Batch-hard online triplet loss, a drop-in for TFA's.

    Same arguments, defaults and values as `tfa.losses.TripletHardLoss`
    (TensorFlow Addons 0.23). With `soft=True`, TFA's `log1p(exp(gap))`
    overflows to inf for gaps above ~88; this loss uses the stable softplus,
    which is finite there.

    Args:
        margin: float, the margin term of the loss. Defaults to 1.0.
        soft: bool, use the soft-margin form `softplus(hp - hn)`.
        distance_metric: "L2" (default), "squared-L2" or "angular" (or our
            "euclidean", "squared_euclidean", "cosine").
        name: optional name of the loss.

    Call arguments:
        y_true: int or float labels of shape `(batch,)` or `(batch, 1)`.
        y_pred: embeddings of shape `(batch, dim)`.

    Example:

    >>> loss = keras_mdr.TripletHardLoss(margin=1.0, soft=False)
    >>> value = loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])

    Reference:
        Hermans et al., "In Defense of the Triplet Loss for Person
        Re-Identification", 2017.
    """

    def __init__(
        self, margin=1.0, soft=False, distance_metric="L2", name="triplet_hard_loss", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        distances_lib.canonical_metric(distance_metric)
        self.margin = float(margin)
        self.soft = bool(soft)
        self.distance_metric = distance_metric

    def call(self, y_true, y_pred):
        embeddings, labels = distances_lib.check_embeddings(y_pred, y_true)
        distances = distances_lib.pairwise_distance(embeddings, self.distance_metric)
        return triplet.hard_triplet_loss(labels, distances, self.margin, self.soft)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"margin": self.margin, "soft": self.soft, "distance_metric": self.distance_metric}
        )
        return config
