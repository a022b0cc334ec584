"""MDRLossState: MDR's regulariser beside the base loss's own state."""

import keras_mdr
from keras_mdr.layers import MDRLossState


def test_holds_the_regularizer_and_the_base_state():
    state = keras_mdr.MDRLoss(keras_mdr.ProxyAnchorLoss(3, 2)).build_state()
    assert isinstance(state, MDRLossState)
    assert isinstance(state.regularizer, keras_mdr.MDRRegularizer)
    names = {v.name for v in state.weights}
    assert {"levels", "moving_mean", "moving_std", "proxies"} <= names
    assert state() is state.regularizer.levels


def test_a_stateless_base_has_no_base_state():
    state = keras_mdr.MDRLoss(keras_mdr.ContrastiveLoss()).build_state()
    assert state.base is None
    assert {v.name for v in state.trainable_weights} == {"levels"}
