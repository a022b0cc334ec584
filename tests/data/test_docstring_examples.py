"""The `Example:` blocks of keras_mdr.data run as written (data-free ones)."""

import doctest
import importlib

import pytest

_MODULES = [
    "keras_mdr.data.balanced_dataset",
    "keras_mdr.data.eval_dataset",
    "keras_mdr.data.image_reader",
    "keras_mdr.data.load_dataset",
    "keras_mdr.data.split",
    "keras_mdr.data.transforms",
    "keras_mdr.data.datasets.cars196",
    "keras_mdr.data.datasets.cub200",
    "keras_mdr.data.datasets.digits",
    "keras_mdr.data.datasets.fashion_mnist",
    "keras_mdr.data.datasets.image_folder",
    "keras_mdr.data.datasets.inshop",
    "keras_mdr.data.datasets.sop",
]


@pytest.mark.parametrize("name", _MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
