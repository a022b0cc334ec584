"""The `Example:` sections of the pair, proxy and softmax losses run as written."""

import doctest

import pytest

import keras_mdr
from keras_mdr.losses import arcface_loss, contrastive_loss, loss_parameter, margin_loss
from keras_mdr.losses import multi_similarity_loss, proxy_anchor_loss, supcon_loss

MODULES = [arcface_loss, contrastive_loss, loss_parameter, margin_loss, multi_similarity_loss,
           proxy_anchor_loss, supcon_loss]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_examples_run(module):
    result = doctest.testmod(module, extraglobs={"keras_mdr": keras_mdr},
                             optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
