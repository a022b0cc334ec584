"""`keras_mdr.optimizers.AdamL2` against PyTorch's `Adam(weight_decay=...)`.

Two references: a float64 NumPy transcription of PyTorch's documented update
(coupled L2 before the moments, bias corrections, epsilon after the
bias-corrected square root), and real `torch.optim.Adam` run by
`tools/torch_adam_reference.py` in the torch lane (`bash
tools/make_torch_venv.sh`; `$KERAS_MDR_TORCH_PYTHON`, default
`<repo>/.venv-torch/bin/python`; a missing environment is a failure).

Tolerance: 1e-5 of each parameter's magnitude, the largest |w| it takes over
the run. A weight that crosses 0 has no meaningful elementwise relative
error; against its magnitude, float32 rounding accumulated over 200 steps
measures up to 3.9e-6 against float64 (PyTorch's own float32 run is as far),
and ours against PyTorch 6.6e-7.
"""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch_lane

from keras_mdr.optimizers import AdamL2

WORKER = Path(__file__).resolve().parent / "adam_l2_worker.py"
RTOL = 1e-5
STEPS = 200
# MultiStepLR(milestones=[50, 100, 150], gamma=0.2) as a Keras schedule:
# PiecewiseConstantDecay sees the 0-based step and switches after `step <= boundary`.
MILESTONES = (50, 100, 150)


def _milestone_lrs(lr, steps=STEPS):
    return lr * 0.2 ** np.searchsorted(np.asarray(MILESTONES), np.arange(steps), side="right")


def _milestone_schedule(lr):
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [m - 1 for m in MILESTONES], [lr * 0.2**k for k in range(len(MILESTONES) + 1)]
    )


def _cases():
    """(w0, grads, lrs, hyper, schedule) with hyper = (wd, beta_1, beta_2, epsilon)."""
    rng = np.random.default_rng(0)
    n = 128
    # Magnitudes over many decades, and entries with no data gradient at all.
    w0 = (rng.normal(size=n) * np.exp(rng.uniform(-6, 2, n))).astype(np.float32)
    grads = (rng.normal(size=(STEPS, n)) * np.exp(rng.uniform(-8, 3, n))).astype(np.float32)
    grads[:, :8] = 0.0
    flat = lambda lr: (np.full(STEPS, lr), lr)  # noqa: E731
    return [
        (w0, grads, *flat(5e-5), (1e-5, 0.9, 0.999, 1e-8)),  # the release's setting
        (w0, grads, *flat(1e-3), (1e-2, 0.9, 0.999, 1e-8)),
        (w0, grads, *flat(1e-2), (0.0, 0.8, 0.99, 1e-6)),
        (w0, grads, _milestone_lrs(1e-3), _milestone_schedule(1e-3), (1e-3, 0.9, 0.999, 1e-8)),
    ]


def _numpy_torch_adam(w0, grads, lrs, hyper):
    """PyTorch's Adam update (weight_decay, no amsgrad) in float64: the trajectory."""
    wd, beta_1, beta_2, eps = hyper
    w = w0.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    trajectory = []
    for t, (g, lr) in enumerate(zip(grads.astype(np.float64), lrs), start=1):
        g = g + wd * w
        m = m + (1 - beta_1) * (g - m)
        v = beta_2 * v + (1 - beta_2) * g * g
        w = w - lr / (1 - beta_1**t) * m / (np.sqrt(v) / np.sqrt(1 - beta_2**t) + eps)
        trajectory.append(w)
    return np.asarray(trajectory)


def _trajectory(optimizer, w0, grads):
    """The parameter after every step of `optimizer` fed `grads`, in one tf.function."""
    variable = keras.Variable(w0)
    optimizer.build([variable])

    @tf.function
    def run(grads):
        out = tf.TensorArray(tf.float32, size=tf.shape(grads)[0])
        for t in tf.range(tf.shape(grads)[0]):
            optimizer.apply([grads[t]], [variable])
            out = out.write(t, variable.value)
        return out.stack()

    return run(tf.constant(grads)).numpy()


def _run_ours(w0, grads, learning_rate, hyper):
    wd, beta_1, beta_2, eps = hyper
    optimizer = AdamL2(learning_rate, weight_decay=wd, beta_1=beta_1, beta_2=beta_2, epsilon=eps)
    return _trajectory(optimizer, w0, grads), optimizer


def _slot(optimizer, kind):
    (slot,) = [v for v in optimizer.variables if v.name.endswith(kind)]
    return slot.numpy()


def _assert_trajectories_close(ours, want, what):
    magnitude = np.abs(want).max(axis=0)
    error = np.max(np.abs(ours - want) / magnitude)
    assert error <= RTOL, f"{what}: {error:.2e} of the magnitude"
    return error


def test_matches_a_numpy_reference_of_pytorchs_update_over_200_steps():
    worst = 0.0
    for w0, grads, lrs, learning_rate, hyper in _cases():
        ours, _ = _run_ours(w0, grads, learning_rate, hyper)
        worst = max(worst, _assert_trajectories_close(ours, _numpy_torch_adam(w0, grads, lrs, hyper),
                                                      f"hyper={hyper}"))
    print(f"\n[AdamL2] vs float64 NumPy reference, {STEPS} steps: worst {worst:.2e} of the magnitude")


def test_matches_live_torch_adam(tmp_path):
    cases = _cases() + [_decay_case()]
    arrays = {"num_cases": len(cases)}
    for i, (w0, grads, lrs, _, hyper) in enumerate(cases):
        arrays.update({f"case{i}_w0": w0, f"case{i}_grads": grads, f"case{i}_lrs": lrs,
                       f"case{i}_hyper": np.asarray(hyper, np.float64)})
    np.savez(tmp_path / "cases.npz", **arrays)
    torch_lane.run_torch_script("torch_adam_reference.py", tmp_path / "cases.npz",
                                tmp_path / "torch.npz")
    torch_out = np.load(tmp_path / "torch.npz")
    worst = worst_moments = 0.0
    for i, (w0, grads, _, learning_rate, hyper) in enumerate(cases):
        ours, optimizer = _run_ours(w0, grads, learning_rate, hyper)
        want = torch_out[f"case{i}_trajectory"]
        worst = max(worst, _assert_trajectories_close(ours, want, f"case {i}"))
        # m is a signed average and may cancel to near 0: measured against the
        # gradient's magnitude sqrt(v); v (no cancellation) elementwise.
        m, v = (_slot(optimizer, kind) for kind in ("momentum", "velocity"))
        want_m, want_v = torch_out[f"case{i}_exp_avg"], torch_out[f"case{i}_exp_avg_sq"]
        np.testing.assert_allclose(v, want_v, rtol=RTOL, atol=0.0)
        assert np.all(np.abs(m - want_m) <= RTOL * np.sqrt(want_v))
        worst_moments = max(worst_moments, np.max(np.abs(m - want_m) / np.sqrt(want_v)),
                            np.max(np.abs(v - want_v) / want_v))
    print(f"\n[AdamL2] vs torch {torch_out['torch_version']} Adam, {STEPS} steps: worst "
          f"{worst:.2e} of the magnitude; moments {worst_moments:.2e} (m against sqrt(v), v relative); "
          f"decay case after {DECAY_STEPS} steps: torch {torch_out[f'case{len(cases) - 1}_trajectory'][-1, 0]:.3e}")


DECAY_STEPS, DECAY_LR = 4000, 5e-5


def _decay_case():
    """w = 0.05 with no data gradient, weight_decay 1e-5 at the release's lr 5e-5."""
    grads = np.zeros((DECAY_STEPS, 1), np.float32)
    return np.array([0.05], np.float32), grads, np.full(DECAY_STEPS, DECAY_LR), DECAY_LR, (
        1e-5, 0.9, 0.999, 1e-8)


def test_a_weight_without_data_gradient_decays_as_in_pytorch():
    """w = 0.05, zero data gradient, weight_decay 1e-5, lr 5e-5 (CUB / Cars).

    Coupled: g = 1e-5 w, and Adam divides g by its own running scale, so w
    first falls by about lr per step; as w (hence g) shrinks, sqrt(v)
    remembers the larger past gradients and the steps shorten. Measured
    (float64 reference and ours): 0.0135 after 1,000 steps, 2.1e-5 after
    3,000, 2.4e-8 after 4,000 (real PyTorch: 2.37e-8, in the torch lane).
    Decoupled (Keras' Adam): w (1 - lr wd)^t, 0.05 (1 - 2e-6) = 0.0499999
    in exact arithmetic after 4,000 steps; in float32 each step's decrement
    lr wd w = 2.5e-11 is below half a unit of 0.05 (1.9e-9), so the weight
    stays exactly 0.05.
    """
    w0, grads, lrs, lr, hyper = _decay_case()
    ours, _ = _run_ours(w0, grads, lr, hyper)
    want = _numpy_torch_adam(w0, grads, lrs, hyper)
    keras_adam = _trajectory(keras.optimizers.Adam(lr, weight_decay=1e-5), w0, grads)[-1, 0]
    print(f"\n[AdamL2] w0 = 0.05, zero data gradient, lr {lr}, wd 1e-5: AdamL2 "
          f"{ours[999, 0]:.4f} after 1000 steps, {ours[2999, 0]:.2e} after 3000, "
          f"{ours[-1, 0]:.2e} after {DECAY_STEPS} (float64 reference {want[-1, 0]:.2e}); "
          f"keras Adam(weight_decay=1e-5) {keras_adam!r}")
    _assert_trajectories_close(ours, want, "decay")
    assert abs(ours[-1, 0]) < 1e-7 and 0.01 < ours[999, 0] < 0.02
    assert keras_adam == np.float32(0.05)


def _model(optimizer):
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7, activation="tanh"),
                              keras.layers.Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _batches():
    rng = np.random.default_rng(1)
    return [(rng.normal(size=(8, 5)).astype("float32"), rng.normal(size=(8, 2)).astype("float32"))
            for _ in range(6)]


def test_keras_file_round_trip_and_exact_resume(tmp_path):
    """Save after 3 of 6 steps, reload, go on: bitwise the uninterrupted run
    (moments, iterations and the schedule's position all come back)."""
    make = lambda: AdamL2(keras.optimizers.schedules.PiecewiseConstantDecay(  # noqa: E731
        [2], [0.05, 0.01]), weight_decay=0.1, beta_2=0.99, epsilon=1e-7)
    batches = _batches()
    straight = _model(make())
    for x, y in batches:
        straight.train_on_batch(x, y)
    resumed = _model(make())
    for x, y in batches[:3]:
        resumed.train_on_batch(x, y)
    resumed.save(tmp_path / "mid.keras")
    resumed = keras.saving.load_model(tmp_path / "mid.keras")
    assert type(resumed.optimizer) is AdamL2
    assert resumed.optimizer.get_config() == make().get_config() | {"name": resumed.optimizer.name}
    for x, y in batches[3:]:
        resumed.train_on_batch(x, y)
    for a, b in zip(straight.variables + straight.optimizer.variables,
                    resumed.variables + resumed.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_config_lists_every_argument_and_round_trips():
    optimizer = AdamL2(3e-4, weight_decay=2e-5, beta_1=0.8, beta_2=0.95, epsilon=1e-6, clipnorm=1.0)
    config = optimizer.get_config()
    for arg in ("learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon", "clipnorm"):
        assert arg in config
    assert config["weight_decay"] == 2e-5 and optimizer.weight_decay is None
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
    assert type(restored) is AdamL2 and restored.get_config() == config


@pytest.mark.parametrize("arg, value", [("weight_decay", -1.0), ("beta_1", 1.0), ("beta_2", -0.1),
                                        ("epsilon", -1e-8)])
def test_invalid_arguments_are_refused(arg, value):
    with pytest.raises(ValueError, match=f"Received: {arg}="):
        AdamL2(1e-3, **{arg: value})


def test_inside_loss_scale_optimizer():
    """Scaled gradients (a power of two: exact) give the unscaled step; a
    non-finite gradient skips the step; a mixed_float16 fit trains."""
    rng = np.random.default_rng(2)
    w0 = rng.normal(size=(4, 3)).astype("float32")
    grads = [rng.normal(size=(4, 3)).astype("float32") for _ in range(5)]
    plain_var, scaled_var = keras.Variable(w0), keras.Variable(w0)
    plain = AdamL2(1e-2, weight_decay=0.1)
    scaled = keras.optimizers.LossScaleOptimizer(AdamL2(1e-2, weight_decay=0.1),
                                                 initial_scale=2.0**12, dynamic_growth_steps=1000)
    for g in grads:
        plain.apply([g], [plain_var])
        scaled.apply([g * 2.0**12], [scaled_var])
    np.testing.assert_array_equal(plain_var.numpy(), scaled_var.numpy())
    before = scaled_var.numpy()
    scaled.apply([np.full((4, 3), np.inf, "float32")], [scaled_var])
    np.testing.assert_array_equal(scaled_var.numpy(), before)

    keras.mixed_precision.set_global_policy("mixed_float16")
    model = _model(AdamL2(1e-2, weight_decay=1e-5))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    start = [v.numpy() for v in model.trainable_variables]
    losses = [float(model.train_on_batch(x, y)) for x, y in _batches()]
    assert np.all(np.isfinite(losses))
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(start, model.trainable_variables))


def test_two_replicas_equal_one_device(tmp_path):
    """MirroredStrategy on 2 logical CPUs: the same trajectory as one device,
    and the same weights on both replicas (each configuration in its own
    process; both run at once)."""
    procs = {mode: subprocess.Popen([sys.executable, str(WORKER), mode, str(tmp_path / f"{mode}.npz")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for mode in ("single", "mirrored")}
    for mode, proc in procs.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{mode}: {stderr[-3000:]}"
    single, mirrored = (np.load(tmp_path / f"{mode}.npz") for mode in ("single", "mirrored"))
    assert int(mirrored["replicas"]) == 2 and int(mirrored["iterations"]) == 4
    for key in single.files:
        if key.startswith(("var", "opt")):
            np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-5, atol=1e-7, err_msg=key)
        if key.startswith("copies"):
            np.testing.assert_array_equal(mirrored[key][0], mirrored[key][1], err_msg=key)


def test_docstring_example_runs():
    import doctest

    import keras_mdr.optimizers
    from keras_mdr.optimizers import adam_l2

    result = doctest.testmod(adam_l2, extraglobs={"keras_mdr": keras_mdr})
    assert result.attempted > 0 and result.failed == 0
