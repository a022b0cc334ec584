"""LossState, the slot through which a model owns its loss's state: attach,
carry-over on recompile, freezing, layout changes, trackers."""

import numpy as np
import pytest

import keras_mdr
from keras_mdr.layers import LossState


def test_attach_holds_the_state_and_a_stateless_loss_freezes_it():
    slot = LossState()
    slot.attach(keras_mdr.ProxyAnchorLoss(3, 2))
    proxies = slot.layer.parameter
    assert any(v is proxies for v in slot.trainable_weights)
    slot.attach(keras_mdr.TripletSemiHardLoss())
    assert slot.layer is not None and not slot.layer.trainable and not slot.trainable_weights
    slot.attach(None)
    assert slot.trackers == []


def test_recompiling_carries_the_values_over_and_another_layout_raises():
    slot = LossState()
    slot.attach(keras_mdr.ProxyAnchorLoss(3, 2))
    slot.layer.parameter.assign(np.full((3, 2), 7.0, "float32"))
    slot.attach(keras_mdr.ProxyAnchorLoss(3, 2, margin=0.2))
    np.testing.assert_array_equal(slot.layer.parameter.numpy(), np.full((3, 2), 7.0))
    with pytest.raises(ValueError, match="the variables the model already holds"):
        slot.attach(keras_mdr.ProxyAnchorLoss(4, 2))


def test_one_tracker_per_logged_term():
    slot = LossState()
    slot.attach(keras_mdr.MDRLoss(keras_mdr.ContrastiveLoss()))
    assert [t.name for t in slot.trackers] == ["base_loss", "mdr_loss", "scale"]
    slot.record({"base_loss": 1.0, "mdr_loss": 3.0, "scale": 2.0})
    slot.record({"base_loss": 3.0, "mdr_loss": 1.0, "scale": 2.0})
    assert [float(t.result()) for t in slot.trackers] == [2.0, 2.0, 2.0]
