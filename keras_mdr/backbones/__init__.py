"""Backbones beyond `keras.applications`, and PyTorch weights read without PyTorch.

- `load_torch_checkpoint` / `read_state_dict`: `.pth` files (zip and legacy
  layouts) read with NumPy and a restricted unpickler; no PyTorch needed.
"""

from keras_mdr.backbones.torch_checkpoint import load_torch_checkpoint, read_state_dict

__all__ = [
    "load_torch_checkpoint",
    "read_state_dict",
]
