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
"""

import dataclasses
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
