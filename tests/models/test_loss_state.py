"""The model owns its loss's learnable state (issue 11 item 2, issue 12 item 10a).

For every stateful loss on `MDRModel`: the state is created at compile() (so
before the optimizer), is in `trainable_variables`, moves in `fit`, comes back
bit for bit from a `.keras` file, and a resumed run equals the uninterrupted
one. A loss with state on a model that cannot own it fails at compile().
"""

import os
import sys

import keras
import numpy as np
import pytest

import keras_mdr

sys.path.insert(0, os.path.dirname(__file__))
import loss_families  # noqa: E402
from loss_families import CLASSES, DIM  # noqa: E402


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    x = rng.normal(size=(CLASSES, 12))[labels] + 0.7 * rng.normal(size=(n, 12))
    return x.astype("float32"), labels.astype("int64")


def _model(loss, seed=1):
    keras.utils.set_random_seed(seed)
    encoder = keras.Sequential([keras.Input((12,)), keras.layers.Dense(DIM),
                                keras.layers.UnitNormalization()])
    model = keras_mdr.MDRModel(encoder)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    return model


def _state_variables(model):
    return list(model.loss_state.layer.trainable_variables)


STATEFUL = dict(loss_families.stateful())
STATEFUL["mdr_triplet"] = lambda: keras_mdr.MDRTripletLoss(base_loss="semihard")
STATEFUL["mdr_proxy_anchor"] = lambda: keras_mdr.MDRLoss(
    keras_mdr.ProxyAnchorLoss(CLASSES, DIM))


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_state_is_trained_saved_and_resumed(name, tmp_path):
    x, y = _data()
    model = _model(STATEFUL[name]())
    state = _state_variables(model)
    # Created at compile, before any step: the optimizer is built with them.
    assert state and all(any(v is w for w in model.trainable_variables) for v in state)
    before = [v.numpy().copy() for v in state]
    model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    moved = max(float(np.abs(v.numpy() - b).max()) for v, b in zip(state, before))
    assert moved > 1e-4, f"{name}: the loss state never moved ({moved})"
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    assert len(again.variables) == len(model.variables)
    for a, b in zip(model.variables, again.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Resume: one more step of the reloaded model equals one of the original.
    want = model.train_on_batch(x[:32], y[:32], return_dict=True)["loss"]
    got = again.train_on_batch(x[:32], y[:32], return_dict=True)["loss"]
    assert got == pytest.approx(want, rel=1e-6, abs=1e-7)
    for a, b in zip(model.variables, again.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)


@pytest.mark.parametrize("make_model", [
    lambda: keras.Sequential([keras.Input((12,)), keras.layers.Dense(DIM)]),
    lambda: keras.Model(*(lambda i: (i, keras.layers.Dense(DIM)(i)))(keras.Input((12,)))),
], ids=["sequential", "functional"])
@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_stateful_loss_on_a_plain_model_fails_at_compile(make_model, name):
    model = make_model()
    with pytest.raises(ValueError, match=r"MDRModel.*MDRTrainStepMixin"):
        model.compile(optimizer="adam", loss=STATEFUL[name]())
    with pytest.raises(ValueError, match="model's only loss"):
        _model(None).compile(optimizer="adam", loss=[STATEFUL[name]()])


@pytest.mark.parametrize("loss", [
    keras_mdr.SupConLoss(), keras_mdr.MarginLoss(learn_beta=False), "mse",
], ids=["supcon", "margin_fixed_beta", "mse"])
def test_stateless_losses_still_compile_save_and_reload_on_plain_models(loss, tmp_path):
    """Also guards the compile() check: wrapped on keras.Model itself, Keras
    would take every model for one that overrides compile() and load_model
    would skip compiling (planted: this test failed with 'No loss')."""
    x, y = _data()
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(DIM)])
    model.compile(optimizer="adam", loss=loss)
    target = y if loss != "mse" else np.zeros((len(y), DIM), "float32")
    model.fit(x, target, batch_size=32, epochs=1, verbose=0)
    path = str(tmp_path / "plain.keras")
    model.save(path)
    again = keras.models.load_model(path)
    assert np.isfinite(again.train_on_batch(x[:32], target[:32]))
    assert not keras_mdr.MarginLoss(learn_beta=False).stateful


def test_stateful_flag_matches_build_state():
    losses = [f() for f in loss_families.bases().values()] + [f() for f in STATEFUL.values()]
    losses.append(keras_mdr.MarginLoss(learn_beta=False))
    for loss in losses:
        if isinstance(loss, keras_mdr.losses.MetricLoss):
            assert loss.stateful == (loss.build_state() is not None), loss.name


def test_recompile_carries_state_over_and_a_stateless_loss_freezes_it():
    x, y = _data()
    model = _model(keras_mdr.ProxyAnchorLoss(CLASSES, DIM))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    trained = model.loss_state.layer.parameter.numpy().copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras_mdr.ProxyAnchorLoss(CLASSES, DIM, alpha=16.0))
    np.testing.assert_array_equal(model.loss_state.layer.parameter.numpy(), trained)
    model.compile(optimizer="adam", loss=keras_mdr.SupConLoss())
    assert not model.loss_state.layer.trainable
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.loss_state.layer.parameter.numpy(), trained)
    with pytest.raises(ValueError, match="variables the model already holds"):
        model.compile(optimizer="adam", loss=keras_mdr.ProxyAnchorLoss(CLASSES + 1, DIM))

