"""Layers owning learnable state: MDR's regulariser and the slot of a model's loss state."""

from keras_mdr.layers.loss_state import LossState
from keras_mdr.layers.mdr_loss_state import MDRLossState
from keras_mdr.layers.mdr_regularizer import MDRRegularizer

__all__ = ["LossState", "MDRLossState", "MDRRegularizer"]
