"""The `Example:` sections of the evaluation modules run as written."""

import doctest

import pytest

from keras_mdr import callbacks, index
from keras_mdr.evaluation import metrics


@pytest.mark.parametrize("module", [metrics, index, callbacks], ids=lambda m: m.__name__)
def test_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
