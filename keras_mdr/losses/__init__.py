"""Triplet losses (TensorFlow Addons parity), the authors' base loss, MDR, and the
pair, proxy and softmax losses (pytorch-metric-learning parity).

The pure functions of the latter live in their modules, e.g.
`keras_mdr.losses.contrastive_loss.contrastive_loss`.
"""

from keras_mdr.losses.arcface_loss import ArcFaceLoss
from keras_mdr.losses.contrastive_loss import ContrastiveLoss
from keras_mdr.losses.distance_weighted import distance_weighted_probabilities
from keras_mdr.losses.distance_weighted_triplet_loss import DistanceWeightedTripletLoss
from keras_mdr.losses.mdr import distance_statistics, level_penalty, mdr_penalty, mean_distance
from keras_mdr.losses.loss_parameter import LossParameter
from keras_mdr.losses.margin_loss import MarginLoss
from keras_mdr.losses.mdr_loss import MDRLoss
from keras_mdr.losses.mdr_triplet_loss import MDRTripletLoss
from keras_mdr.losses.metric_loss import MetricLoss, weighted_mean
from keras_mdr.losses.multi_similarity_loss import MultiSimilarityLoss
from keras_mdr.losses.proxy_anchor_loss import ProxyAnchorLoss
from keras_mdr.losses.supcon_loss import NTXentLoss, SupConLoss
from keras_mdr.losses.triplet import (
    distance_weighted_triplet_loss,
    hard_triplet_loss,
    semihard_triplet_loss,
)
from keras_mdr.losses.triplet_hard_loss import TripletHardLoss
from keras_mdr.losses.triplet_semihard_loss import TripletSemiHardLoss

__all__ = [
    "ArcFaceLoss",
    "ContrastiveLoss",
    "LossParameter",
    "MarginLoss",
    "MultiSimilarityLoss",
    "NTXentLoss",
    "ProxyAnchorLoss",
    "SupConLoss",
    "DistanceWeightedTripletLoss",
    "MDRLoss",
    "MDRTripletLoss",
    "MetricLoss",
    "TripletHardLoss",
    "TripletSemiHardLoss",
    "distance_statistics",
    "distance_weighted_probabilities",
    "distance_weighted_triplet_loss",
    "hard_triplet_loss",
    "level_penalty",
    "mdr_penalty",
    "mean_distance",
    "semihard_triplet_loss",
    "weighted_mean",
]
