"""Layers owning MDR state."""

from keras_mdr.layers.mdr_regularizer import MDRRegularizer

__all__ = ["MDRRegularizer"]
