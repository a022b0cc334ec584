"""Models that own and train MDR state."""

from keras_mdr.models.mdr_model import MDRModel, MDRTrainStepMixin

__all__ = ["MDRModel", "MDRTrainStepMixin"]
