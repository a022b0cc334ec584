"""Every Keras / TensorFlow version workaround in keras_mdr, behind one door.

`keras_mdr.models.MDRTrainStepMixin` overrides Keras hooks in a few places
where Keras 3 does not do what a model that owns its loss state needs. The
code of each workaround lives here, once, beside the upstream report it works
around and the versions it was checked on; the rest of the package calls these
functions and touches no private Keras name itself.

`WORKAROUNDS` is the guard: the Keras versions on which each bug was
reproduced. Outside that range the workaround is still applied (removing it
would break training if the bug is still there), a `UserWarning` says so once,
and `tests/test_keras_compat.py` fails until someone re-runs its probes on the
new version and widens the range or deletes the workaround.

Not here, because they work around no Keras bug: `keras_mdr.optimizers.AdamL2`
maps each distributed copy of a variable to its slots with public
`tf.distribute` calls (Keras' own optimizers use a private index), and
`keras_mdr.losses.MetricLoss` replaces `Loss.__call__`'s float cast of the
labels and its reduction (Keras' documented behaviour, wrong for a loss of the
whole batch).
"""

import dataclasses
import functools
import inspect
import warnings

import keras
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Workaround:
    """One Keras behaviour worked around here.

    Attributes:
        upstream: the upstream report, or a sentence saying there is none.
        verified: `(first, last)` Keras versions (`major.minor`) on which the
            behaviour was reproduced by the probe in `tests/test_keras_compat.py`.
    """

    upstream: str
    verified: tuple


WORKAROUNDS = {
    # fit() under MultiWorkerMirroredStrategy: Keras' TF trainer builds the
    # model from the first distributed batch after an eager
    # `strategy.reduce("MEAN", batch, axis=None)`, which raises "unsupported
    # type PerReplica" when the batch spans several workers.
    "symbolic_build_from_local_batch": Workaround(
        upstream=(
            "keras-team/keras#20585 (Keras 3 fit() fails under "
            "MultiWorkerMirroredStrategy) and ray-project/ray#47464 (the same "
            "PerReplica error); no upstream report names this call"
        ),
        verified=("3.15", "3.15"),
    ),
    # fit() under MultiWorkerMirroredStrategy: a step's logs are reduced
    # across workers with `strategy.reduce("MEAN", v, axis=0)`, which rejects
    # scalars ("Invalid reduction dimension 0 for input with 0 dimensions").
    "logs_as_vectors": Workaround(
        upstream="tensorflow/tensorflow#72388",
        verified=("3.15", "3.15"),
    ),
    # load_model() on a model whose class overrides compile(): Keras skips
    # compile_from_config with only a warning, yet marks the model compiled,
    # so training after a reload fails with "No loss to compute". Keras' own
    # warning asks such models to override compile_from_config; no upstream
    # bug report found (it is the documented contract, not a bug).
    "compile_from_config": Workaround(
        upstream="none found: Keras' warning in Trainer.compile_from_config asks for it",
        verified=("3.15", "3.15"),
    ),
    # A compute_loss override that never calls the compiled loss leaves it
    # unbuilt, and Keras' TF trainer then repeats the symbolic build (an
    # extra trace of compute_loss) on every fit()/train_on_batch() under a
    # distribution strategy. No upstream report found.
    "mark_compiled_loss_built": Workaround(
        upstream="none found",
        verified=("3.15", "3.15"),
    ),
    # compile() never calls or inspects the loss, so a loss whose state the
    # model must own, compiled on a plain keras.Model, fails only at the first
    # step. keras.Model.compile is wrapped to check the loss first
    # (`install_compile_check`). Not a Keras bug: Keras has no hook for it.
    "compile_check": Workaround(
        upstream="none: Keras offers no compile-time hook for a loss",
        verified=("3.15", "3.15"),
    ),
}


def _minor(version):
    return tuple(int(part) for part in version.split(".")[:2])


def unverified_workarounds(keras_version=None):
    """Names of the workarounds not checked on `keras_version` (default: the installed one)."""
    installed = _minor(keras_version or keras.version())
    return [
        name for name, w in WORKAROUNDS.items()
        if not _minor(w.verified[0]) <= installed <= _minor(w.verified[1])
    ]


def warn_if_unverified():
    """One `UserWarning` naming the workarounds not checked on the installed Keras."""
    names = unverified_workarounds()
    if names:
        warnings.warn(
            "keras_mdr works around Keras behaviours checked on other Keras versions "
            f"({', '.join(names)}); they are still applied. Run tests/test_keras_compat.py "
            f"to recheck them. Received: keras={keras.version()}",
            stacklevel=2,
        )


warn_if_unverified()


def is_multi_worker():
    """True under a `tf.distribute.MultiWorkerMirroredStrategy` scope."""
    return isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy)


def maybe_symbolic_build(model, default_build, iterator=None, data_batch=None):
    """`Trainer._maybe_symbolic_build` that also runs under MultiWorkerMirroredStrategy.

    Shapes are all the build needs, so this worker's local copy of the first
    batch stands in for the cross-worker mean Keras asks for. Any other case
    goes to `default_build` (the overridden Keras method).
    """
    strategy = model._distribute_strategy
    if iterator is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return default_build(iterator=iterator, data_batch=data_batch)
    for _, _, batches in iterator:
        data_batch = tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0], next(batches)
        )
        break
    with strategy.scope():
        model._symbolic_build(data_batch=data_batch)


def logs_as_vectors(logs):
    """A step's logs as vectors of one under MultiWorkerMirroredStrategy, else unchanged."""
    if is_multi_worker() and tf.distribute.in_cross_replica_context() is False:
        return {k: tf.reshape(v, [1]) for k, v in logs.items()}
    return logs


def compile_from_config(model, config):
    """What Keras' `compile_from_config` does for a model that keeps Keras' `compile()`."""
    config = keras.saving.deserialize_keras_object(config)
    model.compile(**config)
    if getattr(model, "optimizer", None) is not None and model.built:
        model.optimizer.build(model.trainable_variables)


def mark_compiled_loss_built(model, y, y_pred):
    """Builds the compiled loss that a `compute_loss` override bypasses, once."""
    compiled = model._compile_loss
    if compiled is not None and not compiled.built:
        compiled.build(y, y_pred)


_MARK = "_keras_mdr_compile_check"


def install_compile_check(check):
    """Makes every `keras.Model.compile()` call `check(model, loss)` first.

    Why: Keras' `compile()` never calls or inspects the loss, so a keras_mdr
    loss whose state the model must own (MDR's levels, proxies, centres,
    beta) compiled on a plain `keras.Model` or `Sequential` would be
    accepted and fail only at the first training step. Keras' own
    `compile` is the one method every model's `compile()` reaches
    (subclasses that override it call `super().compile`), so it is wrapped,
    once, in the class that defines it (Keras' `Trainer`, found on
    `keras.Model`'s MRO). Not on `keras.Model` itself: Keras'
    `compile_from_config` compares `cls.compile` with `Trainer.compile` to
    detect models that override `compile()`, and would then skip compiling
    every model that `load_model` restores.

    Version guard: `WORKAROUNDS["compile_check"]`; besides, on a Keras whose
    `compile` has no `loss` parameter nothing is installed, and such a loss
    still fails, clearly, at its first step.

    Args:
        check: callable `(model, loss)` that raises for a loss the model
            cannot train; its return value is ignored.

    Returns:
        True if the check is installed (now or before), else False.
    """
    owner = next(klass for klass in keras.Model.__mro__ if "compile" in vars(klass))
    original = vars(owner)["compile"]
    if getattr(original, _MARK, None) is not None:
        setattr(original, _MARK, check)
        return True
    signature = inspect.signature(original)
    if "loss" not in signature.parameters:
        return False

    @functools.wraps(original)
    def compile(self, *args, **kwargs):
        loss = signature.bind_partial(self, *args, **kwargs).arguments.get("loss")
        getattr(compile, _MARK)(self, loss)
        return original(self, *args, **kwargs)

    setattr(compile, _MARK, check)
    setattr(owner, "compile", compile)
    return True
