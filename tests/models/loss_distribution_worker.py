"""Subprocess body of test_loss_distribution.py: every case of one strategy in one process.

    python loss_distribution_worker.py single|mirrored OUT.npz
    TF_CONFIG=... python loss_distribution_worker.py multiworker OUT.npz
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH = 32


def main():
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    elif mode == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    import keras

    import distributed_cases
    import keras_mdr

    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

    rng = np.random.default_rng(0)
    y = np.repeat(rng.permutation(16)[:8], 4).astype("int64")
    x = (rng.normal(size=(GLOBAL_BATCH, 12)) + y[:, None] * 0.1).astype("float32")
    result = {"replicas": np.array(strategy.num_replicas_in_sync)}
    for name, make_loss in distributed_cases.cases().items():
        for jit in (False,):  # XLA + MirroredStrategy on logical CPUs: see the test docstring
            keras.utils.set_random_seed(1)
            with strategy.scope():
                model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8)])
                if multi_worker:
                    # Keras 3.15 cannot fit a plain keras.Model under
                    # MultiWorkerMirroredStrategy, whatever the loss (probes:
                    # tests/test_keras_compat.py); MDRModel works around it.
                    model = keras_mdr.MDRModel(model)
                model.compile(optimizer=keras.optimizers.SGD(0.5), loss=make_loss(), jit_compile=jit)
            before = [w.numpy().copy() for w in model.trainable_weights]
            ds = global_batches(x, y, strategy)
            history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
            key = f"{name}_{'jit' if jit else 'nojit'}"
            result[f"{key}_loss"] = np.array(history.history["loss"][0])
            update = np.concatenate(
                [(w.numpy() - b).ravel() for w, b in zip(model.trainable_weights, before)]
            )
            result[f"{key}_update"] = update
    result.update(owned(strategy, distributed_cases.owned_cases()))
    np.savez(out, **result)


def global_batches(x, y, strategy):
    """One global batch; under multi-worker, split by data (each worker its half)."""
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        ds = ds.with_options(options)
    return ds


def owned(strategy, cases):
    """One step of an MDRModel per case: the update of every trainable variable
    (encoder and loss state) and, per replica, the state after the step."""
    import keras

    import keras_mdr
    from loss_families import CLASSES, DIM

    rng = np.random.default_rng(1)
    y = np.repeat(rng.permutation(CLASSES), GLOBAL_BATCH // CLASSES).astype("int64")
    x = (rng.normal(size=(GLOBAL_BATCH, 12)) + y[:, None] * 0.1).astype("float32")
    ds = global_batches(x, y, strategy)
    result = {}
    for name, make_loss in cases.items():
        keras.utils.set_random_seed(1)
        with strategy.scope():
            encoder = keras.Sequential([keras.Input((12,)), keras.layers.Dense(DIM),
                                        keras.layers.UnitNormalization()])
            model = keras_mdr.MDRModel(encoder)
            model.compile(optimizer=keras.optimizers.SGD(0.5), loss=make_loss())
        before = [w.numpy().copy() for w in model.trainable_variables]
        history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
        result[f"{name}_nojit_loss"] = np.array(history.history["loss"][0])
        result[f"{name}_nojit_update"] = np.concatenate(
            [(w.numpy() - b).ravel() for w, b in zip(model.trainable_variables, before)])
        # This process's replicas (all of them, or one per worker).
        copies = [strategy.experimental_local_results(v.value) for v in model.loss_state.layer.variables]
        result[f"{name}_replicas"] = np.stack([np.concatenate([np.ravel(c[r]) for c in copies])
                                               for r in range(len(copies[0]))])
    return result


if __name__ == "__main__":
    main()
