import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mdr
import reference

DIM_IN, DIM_OUT = 16, 8
# The levels' own term nu * sum(v^2) moves them whatever MDR does, so the
# tests that say "MDR trains the levels" switch it off: with level_weight=0
# only lambda * L_MDR reaches them (a lambda = 0 run leaves them exactly at
# their initial values), and they must move by more than this.
MOVED = 1e-3


def _data(n=64, classes=16, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    centers = rng.normal(size=(classes, DIM_IN))
    x = centers[labels] + 0.5 * rng.normal(size=(n, DIM_IN))
    return (scale * x).astype("float32"), labels.astype("int32")


def _encoder(seed=1, dtype=None):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((DIM_IN,)), keras.layers.Dense(32, activation="relu"),
         keras.layers.Dense(DIM_OUT, dtype="float32" if dtype else None)]
    )


def _model(loss=None, lr=1e-2, seed=1, optimizer=None, **compile_kwargs):
    model = keras_mdr.MDRModel(_encoder(seed))
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(lr),
        loss=loss or keras_mdr.MDRTripletLoss(base_loss="semihard", seed=3),
        **compile_kwargs,
    )
    return model


def _values(model):
    return {v.path: np.array(v.numpy()) for v in model.variables}


def _assert_mdr_moved(levels, initial):
    shift = np.abs(np.asarray(levels) - np.asarray(initial)).max()
    assert shift > MOVED, f"MDR did not move the levels: max shift {shift:.3g}"


def test_levels_stay_without_mdr_and_move_with_it():
    x, y = _data()
    final = {}
    for weight in (0.0, 0.2):
        model = _model(keras_mdr.MDRTripletLoss(mdr_weight=weight, level_weight=0.0, seed=3))
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        final[weight] = model.mdr_regularizer.levels.numpy()
    np.testing.assert_array_equal(final[0.0], [-3.0, 0.0, 3.0])
    _assert_mdr_moved(final[0.2], [-3.0, 0.0, 3.0])


def _level_gradient(mdr, embeddings, mean, std, h=1e-4):
    """Central differences of the float64 reference's total w.r.t. the levels.

    The penalty is piecewise linear in the levels, so these are exact unless
    a normalised distance lies within h of a level or of a midpoint.
    """
    grad = np.zeros_like(mdr.levels)
    for i in range(len(grad)):
        step = np.eye(len(grad))[i] * h
        value = [mdr.terms(embeddings, None, mdr.levels + s, mean, std)["loss"] for s in (step, -step)]
        grad[i] = (value[0] - value[1]) / (2 * h)
    return grad


def test_one_sgd_step_moves_the_levels_by_the_mdr_gradient():
    x, y = _data()
    lr, lam, nu = 0.5, 0.4, 0.01
    model = _model(keras_mdr.MDRTripletLoss(base_loss="semihard", mdr_weight=lam, level_weight=nu),
                   optimizer=keras.optimizers.SGD(lr))
    initial = model.mdr_regularizer.levels.numpy()
    embeddings = model.predict(x[:32], verbose=0)
    model.train_on_batch(x[:32], y[:32])
    moved = model.mdr_regularizer.levels.numpy() - initial
    # The first step normalises with the batch's own statistics.
    mdr = reference.MDRReference(levels=initial, mdr_weight=lam, level_weight=nu, base="none")
    mean, std = mdr.statistics(embeddings, training=True)
    np.testing.assert_allclose(moved, -lr * _level_gradient(mdr, embeddings, mean, std), atol=1e-6)
    # And the MDR share of that step is far above the tolerance.
    _assert_mdr_moved(moved, -lr * 2 * nu * initial)


def test_fit_trains_levels_and_logs_every_term():
    x, y = _data()
    model = _model(keras_mdr.MDRTripletLoss(base_loss="semihard", seed=3, level_weight=0.0))
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    logs = history.history
    for key in ("loss", "base_loss", "mdr_loss", "mdr_level_0", "mdr_level_1",
                "mdr_level_2", "scale"):
        assert key in logs and len(logs[key]) == 3, key
    # The constant mean of the normalised distances is no longer logged.
    assert "mdr_mean" not in logs and "mdr_std" not in logs
    levels = model.mdr_regularizer.levels.numpy()
    _assert_mdr_moved(levels, [-3.0, 0.0, 3.0])
    assert any(v is model.mdr_regularizer.levels for v in model.trainable_variables)
    assert float(model.mdr_regularizer.initialized) == 1.0
    assert logs["mdr_level_0"][-1] == pytest.approx(float(levels[0]))


def test_statistics_change_only_in_training():
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = _values(model)
    model.evaluate(x, y, batch_size=32, verbose=0)
    model.predict(x, batch_size=32, verbose=0)
    model(x, training=False)
    after = _values(model)
    for path in before:
        np.testing.assert_array_equal(before[path], after[path], err_msg=path)


def test_first_fit_symbolic_build_is_not_a_training_step():
    x, y = _data()
    model = _model()
    model.fit(x[:32], y[:32], batch_size=32, epochs=1, verbose=0)
    # One real step: initialised from that batch (mean of D~ over all B*B
    # entries is (B - 1) / B), not blended with the symbolic build pass.
    assert float(model.mdr_regularizer.initialized) == 1.0
    assert int(model.optimizer.iterations) == 1
    assert np.isfinite(float(model.mdr_regularizer.moving_mean))
    assert float(model.mdr_regularizer.moving_mean) == pytest.approx(31 / 32, rel=1e-5)


def test_plain_model_with_mdr_loss_raises_clearly():
    x, y = _data()
    plain = _encoder()
    with pytest.raises(ValueError, match="MDRModel"):
        plain.compile(optimizer="adam", loss=keras_mdr.MDRTripletLoss())


def test_custom_mixin_model():
    class Embedder(keras_mdr.MDRTrainStepMixin, keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = keras.layers.Dense(32, activation="relu")
            self.out = keras.layers.Dense(DIM_OUT)

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    x, y = _data()
    model = Embedder()
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras_mdr.MDRTripletLoss(levels=(-2.0, 0.0, 1.0, 2.0), level_weight=0.0))
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    levels = model.mdr_regularizer.levels.numpy()
    assert levels.shape == (4,)
    _assert_mdr_moved(levels, [-2, 0, 1, 2])


@pytest.mark.parametrize(
    "base_loss",
    ["distance_weighted", "semihard", "hard", keras_mdr.TripletHardLoss(margin=0.3),
     keras.losses.MeanSquaredError()],
    ids=["distance_weighted", "semihard", "hard", "keras_loss", "any_callable"],
)
def test_composes_with_every_base_loss(base_loss):
    x, y = _data()
    if isinstance(base_loss, keras.losses.MeanSquaredError):
        # Any callable (labels, embeddings) works; this one is a toy.
        base = keras.losses.MeanSquaredError()
        base_loss = lambda labels, e: base(tf.zeros_like(e), e)  # noqa: E731
    model = _model(keras_mdr.MDRTripletLoss(base_loss=base_loss, mdr_weight=0.2, level_weight=0.0,
                                            seed=1))
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    _assert_mdr_moved(model.mdr_regularizer.levels.numpy(), [-3, 0, 3])


def test_save_and_resume_equals_uninterrupted(tmp_path):
    x, y = _data()
    uninterrupted = _model(keras_mdr.MDRTripletLoss(seed=5))
    resumed = _model(keras_mdr.MDRTripletLoss(seed=5))
    for model in (uninterrupted, resumed):
        model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    path = str(tmp_path / "m.keras")
    resumed.save(path)
    reloaded = keras.saving.load_model(path)  # no custom_objects
    assert isinstance(reloaded, keras_mdr.MDRModel)
    for v_old, v_new in zip(resumed.variables, reloaded.variables):
        np.testing.assert_array_equal(v_old.numpy(), v_new.numpy(), err_msg=v_old.path)
    assert float(reloaded.mdr_regularizer.initialized) == 1.0
    for a, b in zip(resumed.optimizer.variables, reloaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    loss_a = uninterrupted.train_on_batch(x[:32], y[:32], return_dict=True)
    loss_b = reloaded.train_on_batch(x[:32], y[:32], return_dict=True)
    assert loss_a == pytest.approx(loss_b, rel=1e-6, abs=1e-7)
    for v_a, v_b in zip(uninterrupted.variables, reloaded.variables):
        np.testing.assert_allclose(v_a.numpy(), v_b.numpy(), rtol=1e-6, atol=1e-7, err_msg=v_a.path)


def test_jit_compile_gives_the_same_step():
    x, y = _data()
    results = []
    for jit in (False, True):
        # SGD: Adam's first steps amplify rounding of near-zero gradients to +-lr.
        model = _model(keras_mdr.MDRTripletLoss(seed=2), optimizer=keras.optimizers.SGD(0.1),
                       jit_compile=jit)
        logs = model.train_on_batch(x[:32], y[:32], return_dict=True)
        logs2 = model.train_on_batch(x[32:], y[32:], return_dict=True)
        results.append((logs["loss"], logs2["loss"], _values(model)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-5)
    for a, b in zip(results[0][2].values(), results[1][2].values()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_runs_in_float32_and_stays_finite(policy):
    keras.mixed_precision.set_global_policy(policy)
    x, y = _data(scale=1.0)
    keras.utils.set_random_seed(1)
    encoder = keras.Sequential([
        keras.Input((DIM_IN,)), keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(DIM_OUT),  # compute dtype half: MDRModel casts the output
    ])
    model = keras_mdr.MDRModel(encoder)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras_mdr.MDRTripletLoss(seed=1))
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model(x[:4]).dtype == "float32"
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.mdr_regularizer.levels.dtype == "float32"
    # Losses alone on half-precision embeddings with norms up to 1e3. Computed
    # in float32 they equal the float32 call on the same (rounded) values and
    # the float64 references on them, within 1e-5 relative as in test_triplet
    # (measured: 2.6e-6 semi-hard, 5e-8 hard, 2e-7 for the MDR terms). Any
    # step in the half dtype is off by its rounding, 2^-11 (float16) or 2^-8.
    rng = np.random.default_rng(0)
    e = rng.normal(size=(64, DIM_OUT))
    e = e / np.linalg.norm(e, axis=1, keepdims=True) * rng.uniform(1, 1e3, size=(64, 1))
    half = tf.cast(e, "float16" if policy == "mixed_float16" else "bfloat16")
    rounded = tf.cast(half, "float32")
    values = rounded.numpy().astype(np.float64)
    labels = np.repeat(np.arange(16), 4)
    d = reference.distances(values)
    for make, want in ((keras_mdr.TripletSemiHardLoss, reference.semihard(labels, d, 1.0)),
                       (keras_mdr.TripletHardLoss, reference.hard(labels, d, 1.0)),
                       (lambda: keras_mdr.DistanceWeightedTripletLoss(seed=0), None)):
        value = make()(labels, half)
        assert value.dtype == "float32"
        assert float(value) == pytest.approx(float(make()(labels, rounded)), rel=1e-6)
        if want is not None:
            assert float(value) == pytest.approx(want, rel=1e-5)
    loss = keras_mdr.MDRTripletLoss(base_loss="semihard")
    terms = loss.objective(labels, half, state=loss.build_state(), training=True)
    mdr = reference.MDRReference(base="semihard", margin=0.2)
    mean, std = mdr.statistics(values, training=True)
    for key, want in mdr.terms(values, labels, mdr.levels, mean, std).items():
        assert float(terms[key]) == pytest.approx(want, rel=1e-5), key


@pytest.mark.parametrize("label_form", ["int_flat", "int_column", "float_flat", "float_column"])
def test_label_shapes_and_dtypes_are_accepted(label_form):
    x, y = _data()
    labels = y.astype("float32") if label_form.startswith("float") else y
    if label_form.endswith("column"):
        labels = labels[:, None]
    model = _model(keras_mdr.MDRTripletLoss(base_loss="semihard"))
    logs = model.fit(x, labels, batch_size=32, epochs=1, shuffle=False, verbose=0).history
    reference_model = _model(keras_mdr.MDRTripletLoss(base_loss="semihard"))
    want = reference_model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0).history
    assert logs["loss"][0] == pytest.approx(want["loss"][0], rel=1e-6)


def test_bad_batches():
    loss = keras_mdr.MDRTripletLoss()
    state = loss.build_state()
    regularizer = state.regularizer
    with pytest.raises(ValueError, match="as many labels"):
        loss.batch_objective([0, 1, 2], np.zeros((4, 3), "float32"), state=state)
    with pytest.raises(ValueError, match="rank 2"):
        loss.batch_objective([0, 1], np.zeros((2, 3, 4), "float32"), state=state)
    # A batch of one: no pair, documented value 0 for every term but the levels'.
    terms = loss.batch_objective([0], np.ones((1, 3), "float32"), state=state, training=True)
    assert float(terms["base_loss"]) == 0.0 and float(terms["mdr_loss"]) == 0.0
    assert float(terms["loss"]) == pytest.approx(0.01 * 18)
    assert float(regularizer.initialized) == 0.0  # its std is undefined: no update


def _linear_model():
    # No ReLU: fused matmul+relu kernels turn NaN into 0 before the loss sees it.
    keras.utils.set_random_seed(1)
    model = keras_mdr.MDRModel(keras.Sequential([keras.Input((DIM_IN,)), keras.layers.Dense(DIM_OUT)]))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras_mdr.MDRTripletLoss(seed=1))
    return model


def test_nan_batch_never_poisons_statistics_and_stays_visible():
    x, y = _data()
    model = _linear_model()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    before = (float(model.mdr_regularizer.moving_mean), float(model.mdr_regularizer.moving_std))
    bad = x.copy()
    bad[3] = np.nan
    logs = model.train_on_batch(bad[:32], y[:32], return_dict=True)
    assert np.isnan(logs["loss"])
    after = (float(model.mdr_regularizer.moving_mean), float(model.mdr_regularizer.moving_std))
    assert before == after
    model2 = _linear_model()
    history = model2.fit(bad, y, batch_size=32, epochs=3, verbose=0,
                         callbacks=[keras.callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1 and np.isnan(history.history["loss"][0])
    assert float(model2.mdr_regularizer.initialized) == 0.0


def test_recompile_keeps_state_and_rejects_other_level_count():
    x, y = _data()
    model = _model()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    levels = model.mdr_regularizer.levels.numpy().copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras_mdr.MDRTripletLoss())
    np.testing.assert_array_equal(model.mdr_regularizer.levels.numpy(), levels)
    with pytest.raises(ValueError, match="the variables the model already holds"):
        model.compile(optimizer="adam", loss=keras_mdr.MDRTripletLoss(levels=(0.0, 1.0)))
