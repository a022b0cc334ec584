"""keras_mdr._keras_compat: each workaround is still needed, still works, and is guarded.

For every entry of `_keras_compat.WORKAROUNDS` a probe reproduces the Keras
behaviour on the installed version (asserting it is still there: when a newer
Keras fixes it, the test fails and says the workaround can go) and runs the
workaround (asserting it still helps: when a newer Keras breaks it, the test
fails). The guard test fails on any Keras outside the verified range.
"""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mdr
from keras_mdr import _keras_compat

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "models"))
import local_cluster  # noqa: E402

WORKER = os.path.join(os.path.dirname(__file__), "keras_compat_worker.py")
X = np.ones((4, 3), "float32")
Y = np.ones((4, 2), "float32")


def test_every_workaround_was_verified_on_the_installed_keras():
    assert _keras_compat.unverified_workarounds() == [], (
        f"Keras {keras.version()} is outside the range these workarounds were checked on: "
        "run this file's probes, then widen Workaround.verified or delete the workaround"
    )


def test_the_guard_names_and_warns_about_other_versions(monkeypatch):
    assert _keras_compat.unverified_workarounds("3.15.9") == []
    assert _keras_compat.unverified_workarounds("3.16.0") == list(_keras_compat.WORKAROUNDS)
    assert _keras_compat.unverified_workarounds("3.14.2") == list(_keras_compat.WORKAROUNDS)
    monkeypatch.setattr(keras, "version", lambda: "3.16.0")
    with pytest.warns(UserWarning, match="keras=3.16.0") as record:
        _keras_compat.warn_if_unverified()
    assert all(name in str(record[0].message) for name in _keras_compat.WORKAROUNDS)


def test_every_workaround_names_its_upstream_report_or_says_there_is_none():
    for name, workaround in _keras_compat.WORKAROUNDS.items():
        assert "#" in workaround.upstream or workaround.upstream.startswith("none"), name


# --- compile_check -------------------------------------------------------------


def _plain_model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


def _keras_compile():
    """The `compile` of the Keras class that defines it, as keras_mdr installed it."""
    owner = next(klass for klass in keras.Model.__mro__ if "compile" in vars(klass))
    return vars(owner)["compile"]


def test_keras_compile_still_accepts_a_loss_it_cannot_train():
    # Keras' own compile (unwrapped) takes a stateful loss on a plain model
    # and fails only at the first step: the compile-time check is still needed.
    model = _plain_model()
    _keras_compile().__wrapped__(model, optimizer="sgd", loss=keras_mdr.MDRTripletLoss())
    assert model.compiled, "Keras now refuses at compile(): compile_check may be unnecessary"
    with pytest.raises(ValueError, match="learnable state"):
        model.train_on_batch(np.ones((4, 3), "float32"), np.array([0, 0, 1, 1]))


def test_compile_check_refuses_at_compile_and_leaves_other_losses_alone():
    with pytest.raises(ValueError, match="must own"):
        _plain_model().compile(optimizer="sgd", loss=keras_mdr.MDRTripletLoss())
    model = _plain_model()
    model.compile(optimizer="sgd", loss="mse")
    assert np.isfinite(model.train_on_batch(X[:, :3], Y))


# --- compile_from_config -------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_mdr_tests")
class OwnCompile(keras.Model):
    """A model that overrides compile(), as MDRTrainStepMixin does."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)


@keras.saving.register_keras_serializable(package="keras_mdr_tests")
class OwnCompileWithWorkaround(OwnCompile):
    def compile_from_config(self, config):
        _keras_compat.compile_from_config(self, config)


def _reload(model, tmp_path):
    model.compile(optimizer="sgd", loss="mse")
    model.train_on_batch(X, Y)
    path = str(tmp_path / "model.keras")
    model.save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(path)
    return loaded, [str(w.message) for w in caught]


def test_keras_still_skips_compile_when_loading_a_model_that_overrides_it(tmp_path):
    loaded, messages = _reload(OwnCompile(), tmp_path)
    assert any("compile()` was not called" in m for m in messages), (
        "Keras now compiles a model with its own compile() on load: "
        "the compile_from_config workaround may be unnecessary"
    )
    with pytest.raises(ValueError, match="No loss to compute"):
        loaded.train_on_batch(X, Y)


def test_compile_from_config_workaround_restores_training_after_load(tmp_path):
    loaded, messages = _reload(OwnCompileWithWorkaround(), tmp_path)
    assert not any("compile()` was not called" in m for m in messages)
    assert int(loaded.optimizer.iterations) == 1
    assert np.isfinite(loaded.train_on_batch(X, Y))


# --- mark_compiled_loss_built --------------------------------------------------


class BypassesCompiledLoss(keras.Model):
    """compute_loss never calls the compiled loss, as MDRTrainStepMixin's does."""

    def __init__(self, mark_built, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)
        self.mark_built = mark_built
        self.symbolic_builds = 0

    def call(self, x):
        return self.dense(x)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        # Only Keras' symbolic build calls compute_loss with training=False here.
        self.symbolic_builds += 0 if training else 1
        if self.mark_built:
            _keras_compat.mark_compiled_loss_built(self, y, y_pred)
        return keras.ops.mean((y - y_pred) ** 2)


def _symbolic_builds(mark_built, steps=3):
    # The TF trainer builds symbolically only under a distribution strategy.
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        model = BypassesCompiledLoss(mark_built)
        model.compile(optimizer="sgd", loss="mse")
    for _ in range(steps):
        model.train_on_batch(X, Y)
    return model.symbolic_builds


def test_keras_still_rebuilds_symbolically_when_the_compiled_loss_is_bypassed():
    assert _symbolic_builds(mark_built=False, steps=3) == 3, (
        "Keras no longer repeats the symbolic build for a bypassed compiled loss: "
        "the mark_compiled_loss_built workaround may be unnecessary"
    )


def test_marking_the_compiled_loss_built_leaves_one_symbolic_build():
    assert _symbolic_builds(mark_built=True, steps=3) == 1


# --- MultiWorkerMirroredStrategy: symbolic build and logs ----------------------


@pytest.fixture(scope="module")
def multi_worker(tmp_path_factory):
    """The worker's probe results from both workers of a two-process cluster."""
    out = tmp_path_factory.mktemp("keras_compat")
    procs = []
    for index, env in enumerate(local_cluster.worker_environments(2)):
        procs.append(subprocess.Popen(
            [sys.executable, WORKER, str(out / f"w{index}.json")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    errors = [p.communicate(timeout=300)[1] for p in procs]
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads((out / f"w{i}.json").read_text()) for i in range(2)]
    assert [r["replicas"] for r in results] == [2, 2]
    return results


@pytest.mark.slow
def test_keras_multi_worker_build_still_fails_without_the_workaround(multi_worker):
    for result in multi_worker:
        for probe in ("reduce_batch", "fit_no_build"):
            assert "unsupported type" in result[probe] and "PerReplica" in result[probe], (
                f"{probe}: {result[probe][:300]} -- Keras/TF now reduce a distributed batch: "
                "the symbolic_build_from_local_batch workaround may be unnecessary"
            )


@pytest.mark.slow
def test_keras_multi_worker_logs_still_fail_as_scalars(multi_worker):
    for result in multi_worker:
        assert result["reduce_vector"] == "ok", result["reduce_vector"]
        for probe in ("reduce_scalar", "fit_no_logs"):
            assert "Invalid reduction dimension 0" in result[probe], (
                f"{probe}: {result[probe][:300]} -- tensorflow/tensorflow#72388 looks fixed: "
                "the logs_as_vectors workaround may be unnecessary"
            )


@pytest.mark.slow
def test_multi_worker_fit_runs_with_both_workarounds(multi_worker):
    losses = []
    for result in multi_worker:
        assert result["fit_both"] == "ok", result["fit_both"][-3000:]
        losses.append(result["loss_both"])
    assert len(losses[0]) == 1 and np.isfinite(losses[0][0])
    assert losses[0] == losses[1]
