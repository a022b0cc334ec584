"""One worker of a two-process MultiWorkerMirroredStrategy: probes for keras_mdr._keras_compat.

Usage: TF_CONFIG=... python keras_compat_worker.py OUT.json

OUT.json gets, for each probe, "ok" or the error's type and message: the two
`tf.distribute` calls Keras' TF trainer makes, and one fit() per set of
`_keras_compat` workarounds in `FITS` (both, then each one left out).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_mdr import _keras_compat  # noqa: E402


FITS = {"both": ("build", "logs"), "no_build": ("logs",), "no_logs": ("build",)}


def outcome(fn):
    try:
        fn()
    except Exception as error:  # the probes report any failure, by type and text
        return f"{type(error).__name__}: {error}"
    return "ok"


def dataset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.normal(size=(16, 2)).astype("float32")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4).with_options(options)


def probe_model(workarounds):
    """A two-layer model that uses only the named workarounds of _keras_compat."""

    class Probe(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            default = super()._maybe_symbolic_build
            if "build" not in workarounds:
                return default(iterator=iterator, data_batch=data_batch)
            return _keras_compat.maybe_symbolic_build(
                self, default, iterator=iterator, data_batch=data_batch
            )

        def get_metrics_result(self):
            logs = super().get_metrics_result()
            return _keras_compat.logs_as_vectors(logs) if "logs" in workarounds else logs

    return Probe()


def main():
    out = sys.argv[1]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    result = {"replicas": strategy.num_replicas_in_sync}
    # What Keras' TF trainer does before its symbolic build.
    batch = next(iter(strategy.experimental_distribute_dataset(dataset())))
    result["reduce_batch"] = outcome(lambda: strategy.reduce("MEAN", batch, axis=None))
    # What Keras' TF trainer does with a step's (scalar) logs.
    scalar = strategy.run(lambda: tf.constant(1.0))
    result["reduce_scalar"] = outcome(lambda: strategy.reduce("MEAN", scalar, axis=0))
    vector = strategy.run(lambda: tf.constant([1.0]))
    result["reduce_vector"] = outcome(lambda: strategy.reduce("MEAN", vector, axis=0))
    for case, workarounds in FITS.items():
        with strategy.scope():
            model = probe_model(workarounds)
            model.compile(optimizer="sgd", loss="mse")
        history = {}

        def fit():
            history.update(model.fit(dataset(), epochs=1, verbose=0).history)

        result[f"fit_{case}"] = outcome(fit)
        result[f"loss_{case}"] = [float(np.ravel(v)[0]) for v in history.get("loss", [])]
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
