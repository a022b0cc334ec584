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
# level_weight=0: nu * sum(v^2) alone would move the levels, so "the levels
# moved" would not show that MDR's gradient reaches them.
STATEFUL["mdr_triplet"] = lambda: keras_mdr.MDRTripletLoss(base_loss="semihard", level_weight=0.0)
# The documented baseline (mdr_weight=0) still has levels and statistics to own.
STATEFUL["mdr_triplet_baseline"] = lambda: keras_mdr.MDRTripletLoss(mdr_weight=0.0)
STATEFUL["mdr_proxy_anchor"] = lambda: keras_mdr.MDRLoss(
    keras_mdr.ProxyAnchorLoss(CLASSES, DIM), level_weight=0.0)


def _train_save_resume(loss, tmp_path):
    """Fits, checks the loss state moved, saves, reloads bit for bit, resumes one step."""
    x, y = _data()
    model = _model(loss)
    state = [] if model.loss_state.layer is None else _state_variables(model)
    # Created at compile, before any step: the optimizer is built with them.
    assert all(any(v is w for w in model.trainable_variables) for v in state)
    before = [v.numpy().copy() for v in state]
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for v, b in zip(state, before):
        moved = float(np.abs(v.numpy() - b).max())
        assert moved > 1e-5, f"{loss.name}: the loss state {v.path} never moved ({moved})"
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.models.load_model(path)
    assert len(again.variables) == len(model.variables)
    for a, b in zip(model.variables, again.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Resume: one more step of the reloaded model equals one of the original.
    want = model.train_on_batch(x[:32], y[:32], return_dict=True)["loss"]
    got = again.train_on_batch(x[:32], y[:32], return_dict=True)["loss"]
    assert np.isfinite(want) and got == pytest.approx(want, rel=1e-6, abs=1e-7)
    for a, b in zip(model.variables, again.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.path)
    return state


def test_mdr_triplet_state_is_trained_saved_and_resumed(tmp_path):
    assert _train_save_resume(STATEFUL["mdr_triplet"](), tmp_path), "no state to own"


# Every family with MDR; bare, the stateful ones and two stateless ones (the
# other stateless losses take the same path).
SWAPS = [(name, True) for name in sorted(loss_families.bases())] + [
    (name, False) for name in sorted(loss_families.stateful()) + ["supcon", "keras_softmax"]]


@pytest.mark.parametrize("name,with_mdr", SWAPS,
                         ids=[f"{n}-{'mdr' if m else 'bare'}" for n, m in SWAPS])
def test_every_family_swaps_in_and_out_of_mdr_with_one_argument(name, with_mdr, tmp_path):
    """The same training code with `loss=base` or `loss=keras_mdr.MDRLoss(base)`:
    trains, saves, reloads and resumes; with MDR the levels (and the base
    loss's own state) train, and the logs carry MDR's terms."""
    base = loss_families.bases()[name]()
    loss = keras_mdr.MDRLoss(base, mdr_weight=0.2, level_weight=0.0) if with_mdr else base
    state = _train_save_resume(loss, tmp_path)
    own = isinstance(base, keras_mdr.losses.MetricLoss) and base.stateful
    assert len(state) == int(with_mdr) + int(own)


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



def test_sample_and_class_weights_are_per_anchor_in_mdr_model():
    """Weights reach the loss as a weight per anchor (base loss and MDR's
    term); the levels' own regulariser `nu * sum(v^2)` is a penalty on the
    state, like a kernel regulariser, and is not weighted. So weights 2
    double the rest, zeros leave only it, and zero weights never move the
    encoder (planted: compute_loss dropped sample_weight -> this test failed)."""
    x, y = _data()
    model = _model(keras_mdr.MDRLoss(keras_mdr.ContrastiveLoss(), level_weight=0.01))
    level_term = 0.01 * float(np.sum(np.square(model.mdr_regularizer.levels.numpy())))

    def evaluate(weights):
        return model.evaluate(x[:32], y[:32], sample_weight=weights, batch_size=32, verbose=0,
                              return_dict=True)

    one, two, zero = evaluate(None), evaluate(np.full(32, 2.0)), evaluate(np.zeros(32))
    assert one["loss"] - level_term > 1e-3
    assert two["loss"] - level_term == pytest.approx(2 * (one["loss"] - level_term), rel=1e-5)
    assert zero["loss"] == pytest.approx(level_term, rel=1e-6)
    assert zero["base_loss"] == 0.0 and zero["mdr_loss"] == 0.0
    for kwargs in ({"sample_weight": np.zeros(64)}, {"class_weight": {c: 0.0 for c in range(CLASSES)}}):
        model = _model(keras_mdr.MDRLoss(keras_mdr.ContrastiveLoss()))
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=model.loss)
        encoder = [w.numpy().copy() for w in model.encoder.weights]
        model.fit(x, y, batch_size=32, epochs=1, verbose=0, **kwargs)
        for a, b in zip(encoder, model.encoder.weights):
            np.testing.assert_array_equal(a, b.numpy(), err_msg=str(kwargs))
    with pytest.raises(ValueError, match="one sample_weight per embedding"):
        model.compute_loss(x[:32], y[:32], model(x[:32]), sample_weight=np.ones(31, "float32"))


def test_logs_show_the_batch_scale_and_jit_steps_match():
    """`scale` in the logs is the batch's raw mean pairwise distance s (what
    the progress bar shows instead of the constant mean of the normalised
    distances); a stateful loss's step is the same under jit_compile."""
    x, y = _data()
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(1)
        encoder = keras.Sequential([keras.Input((12,)), keras.layers.Dense(DIM)])
        model = keras_mdr.MDRModel(encoder)
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=jit,
                      loss=keras_mdr.MDRLoss(keras_mdr.ProxyAnchorLoss(CLASSES, DIM)))
        e = model(x[:32]).numpy().astype(np.float64)
        d = np.linalg.norm(e[:, None] - e[None], axis=-1)
        logs = model.train_on_batch(x[:32], y[:32], return_dict=True)
        assert logs["scale"] == pytest.approx(d.sum() / (32 * 31), rel=1e-5)
        results.append([v.numpy() for v in model.trainable_variables])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
