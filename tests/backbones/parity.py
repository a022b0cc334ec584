"""What the BN-Inception tests share: the parity norm and the weight-loading error."""

import numpy as np
import pytest

import keras_mdr.backbones

# Bound on the largest, over images, of ||ours - torch||_2 / ||torch||_2.
RTOL = 1e-4


def relative_error(ours, theirs):
    """max over rows of ||ours - theirs||_2 / ||theirs||_2."""
    return float(np.max(np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)))


def loading_error(model, state):
    """The message of the ValueError that loading `state` into `model` must raise."""
    with pytest.raises(ValueError) as info:
        keras_mdr.backbones.load_bn_inception_weights(model, state)
    return str(info.value)
