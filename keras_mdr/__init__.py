"""keras_mdr: deep metric learning with Multi-level Distance Regularization for Keras 3."""

from keras_mdr import _backend_check

_backend_check.require_tensorflow_backend()

from keras_mdr import backbones, callbacks, data, distances, evaluation, losses, optimizers
from keras_mdr import index, preprocessing, validation
from keras_mdr.layers import MDRRegularizer
from keras_mdr.losses import (
    DistanceWeightedTripletLoss,
    MDRLoss,
    MDRTripletLoss,
    TripletHardLoss,
    TripletSemiHardLoss,
)
from keras_mdr.losses import ArcFaceLoss, ContrastiveLoss, MarginLoss, MultiSimilarityLoss
from keras_mdr.losses import NTXentLoss, ProxyAnchorLoss, SupConLoss
from keras_mdr.models import MDRModel, MDRTrainStepMixin
# Last: registers the layers a run's checkpoints hold (InferenceBatchNormalization).
from keras_mdr import training  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ArcFaceLoss",
    "ContrastiveLoss",
    "MarginLoss",
    "MultiSimilarityLoss",
    "NTXentLoss",
    "ProxyAnchorLoss",
    "SupConLoss",
    "DistanceWeightedTripletLoss",
    "MDRLoss",
    "MDRModel",
    "MDRRegularizer",
    "MDRTrainStepMixin",
    "MDRTripletLoss",
    "TripletHardLoss",
    "TripletSemiHardLoss",
    "backbones",
    "callbacks",
    "data",
    "distances",
    "evaluation",
    "index",
    "losses",
    "optimizers",
    "preprocessing",
    "training",
    "validation",
]
