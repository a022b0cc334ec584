"""Backbones beyond `keras.applications`, and PyTorch weights read without PyTorch.

- `BNInception`: the MDR paper's backbone (BN-Inception, 1024 features), with
  the PyTorch port's layer names, ceil-mode pools and BGR input inside.
- `load_torch_checkpoint` / `read_state_dict`: `.pth` files (zip and legacy
  layouts) read with NumPy and a restricted unpickler; no PyTorch needed.
- `load_bn_inception_weights`: a state_dict (ImageNet weights or an MDR
  authors' checkpoint) onto the Keras layers, every key checked.
- `load_release_checkpoint` / `evaluate_release_checkpoint`: the authors'
  trained checkpoints as keras_mdr encoders, evaluated with our pipeline.
"""

from keras_mdr.backbones.bgr_mean_subtraction import BGRMeanSubtraction
from keras_mdr.backbones.bn_inception import BNInception
from keras_mdr.backbones.bn_inception_weights import checkpoint_layout, load_bn_inception_weights
from keras_mdr.backbones.ceil_mode_pooling import CeilModePooling2D
from keras_mdr.backbones.release_checkpoint import (
    evaluate_release_checkpoint,
    load_release_checkpoint,
    recall_on_test_protocol,
)
from keras_mdr.backbones.torch_checkpoint import load_torch_checkpoint, read_state_dict

__all__ = [
    "BGRMeanSubtraction",
    "BNInception",
    "CeilModePooling2D",
    "checkpoint_layout",
    "evaluate_release_checkpoint",
    "load_bn_inception_weights",
    "load_release_checkpoint",
    "load_torch_checkpoint",
    "read_state_dict",
    "recall_on_test_protocol",
]
