"""The `Example:` blocks of keras_mdr.backbones run as written (file-free ones)."""

import doctest
import importlib

import pytest

_MODULES = [
    "keras_mdr.backbones.bgr_mean_subtraction",
    "keras_mdr.backbones.bn_inception",
    "keras_mdr.backbones.bn_inception_weights",
    "keras_mdr.backbones.ceil_mode_pooling",
    "keras_mdr.backbones.release_checkpoint",
    "keras_mdr.backbones.torch_checkpoint",
]


@pytest.mark.parametrize("name", _MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
