"""`TripletSemiHardLoss`: TensorFlow Addons' semi-hard triplet loss, O(B^2) memory."""

import keras

from keras_mdr import distances as distances_lib
from keras_mdr.losses import triplet


@keras.saving.register_keras_serializable(package="keras_mdr")
class TripletSemiHardLoss(keras.losses.Loss):
    """Semi-hard online triplet loss (FaceNet), a drop-in for TFA's.

    Same arguments, defaults and values as `tfa.losses.TripletSemiHardLoss`
    (TensorFlow Addons 0.23, which cannot be imported on TF >= 2.16), computed
    in O(B^2) memory instead of O(B^3). Distances are computed in float32
    whatever the embeddings' dtype. Where TFA returns NaN (a batch with no
    positive pair) this loss returns 0.

    Args:
        margin: float, the margin term of the loss. Defaults to 1.0.
        distance_metric: "L2" (Euclidean, default), "squared-L2" or "angular"
            (1 - cosine); "euclidean", "squared_euclidean" and "cosine" too.
        name: optional name of the loss.

    Call arguments:
        y_true: int or float labels of shape `(batch,)` or `(batch, 1)`.
        y_pred: embeddings of shape `(batch, dim)`, not L2-normalised here.

    Example:

    >>> loss = keras_mdr.TripletSemiHardLoss(margin=1.0)
    >>> value = loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])

    Reference:
        Schroff et al., "FaceNet", CVPR 2015.
    """

    def __init__(self, margin=1.0, distance_metric="L2", name="triplet_semihard_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        distances_lib.canonical_metric(distance_metric)
        self.margin = float(margin)
        self.distance_metric = distance_metric

    def call(self, y_true, y_pred):
        embeddings, labels = distances_lib.check_embeddings(y_pred, y_true)
        distances = distances_lib.pairwise_distance(embeddings, self.distance_metric)
        return triplet.semihard_triplet_loss(labels, distances, self.margin)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "distance_metric": self.distance_metric})
        return config
