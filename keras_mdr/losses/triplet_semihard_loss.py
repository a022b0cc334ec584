"""`TripletSemiHardLoss`: TensorFlow Addons' semi-hard triplet loss, O(B^2) memory."""

import keras

from keras_mdr import distances as distances_lib
from keras_mdr.losses import triplet
from keras_mdr.losses.metric_loss import MetricLoss


@keras.saving.register_keras_serializable(package="keras_mdr")
class TripletSemiHardLoss(MetricLoss):
    """Semi-hard online triplet loss (FaceNet), a drop-in for TFA's.

    Same arguments, defaults and values as `tfa.losses.TripletSemiHardLoss`
    (TensorFlow Addons 0.23, which cannot be imported on TF >= 2.16), computed
    in O(B^2) memory instead of O(B^3). Distances are computed in float32
    whatever the embeddings' dtype. Where TFA returns NaN (a batch with no
    positive pair) this loss returns 0. Unlike TFA's, labels stay integers
    (ids above 2**24 do not merge), a sample weight weighs the anchor's
    positive pairs, and under `tf.distribute` the negatives are mined on the
    global batch (`keras_mdr.losses.MetricLoss`).

    Args:
        margin: float, the margin term of the loss. Defaults to 1.0.
        distance: "euclidean" (default), "squared_euclidean" or "cosine"
            (1 - cosine); TFA's "L2", "squared-L2" and "angular" are
            accepted and stored under our names. TFA's keyword
            `distance_metric` is accepted too.
        name: optional name of the loss.

    Call arguments:
        y_true: int labels of shape `(batch,)` or `(batch, 1)`.
        y_pred: embeddings of shape `(batch, dim)`, not L2-normalised here.
        sample_weight: optional `(batch,)` weights, one per anchor.

    Example:

    >>> loss = keras_mdr.TripletSemiHardLoss(margin=1.0)
    >>> value = loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])

    Reference:
        Schroff et al., "FaceNet", CVPR 2015.
    """

    def __init__(self, margin=1.0, distance="euclidean", name="triplet_semihard_loss", **kwargs):
        distance = kwargs.pop("distance_metric", distance)
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)
        self.distance = distances_lib.distance_from_tfa_name(distance)

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        distances = distances_lib.pairwise_distance(embeddings, self.distance)
        return triplet.semihard_triplet_loss(labels, distances, self.margin, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "distance": self.distance})
        return config
