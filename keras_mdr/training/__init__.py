"""Training runs: presets, encoders, the `train` entry point the examples call."""

from keras_mdr.training.encoders import Preprocess, build_encoder
from keras_mdr.training.presets import PRESETS, TrainConfig, preset
from keras_mdr.training.trainer import ConfigError, build_model, train, validate

__all__ = [
    "PRESETS",
    "ConfigError",
    "Preprocess",
    "TrainConfig",
    "build_encoder",
    "build_model",
    "preset",
    "train",
    "validate",
]
