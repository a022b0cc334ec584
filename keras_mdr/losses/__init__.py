"""Triplet losses (TensorFlow Addons parity), the authors' base loss, and MDR."""

from keras_mdr.losses.distance_weighted_triplet_loss import DistanceWeightedTripletLoss
from keras_mdr.losses.mdr import distance_statistics, level_penalty, mdr_penalty, mean_distance
from keras_mdr.losses.mdr_triplet_loss import MDRTripletLoss
from keras_mdr.losses.metric_loss import MetricLoss, weighted_mean
from keras_mdr.losses.triplet import (
    distance_weighted_triplet_loss,
    hard_triplet_loss,
    semihard_triplet_loss,
)
from keras_mdr.losses.triplet_hard_loss import TripletHardLoss
from keras_mdr.losses.triplet_semihard_loss import TripletSemiHardLoss

__all__ = [
    "DistanceWeightedTripletLoss",
    "MDRTripletLoss",
    "MetricLoss",
    "TripletHardLoss",
    "TripletSemiHardLoss",
    "distance_statistics",
    "distance_weighted_triplet_loss",
    "hard_triplet_loss",
    "level_penalty",
    "mdr_penalty",
    "mean_distance",
    "semihard_triplet_loss",
    "weighted_mean",
]
