"""Optimizers with the update rules of other frameworks, for faithful reproductions."""

from keras_mdr.optimizers.adam_l2 import AdamL2

__all__ = ["AdamL2"]
