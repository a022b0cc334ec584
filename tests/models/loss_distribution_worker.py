"""Subprocess body of test_loss_distribution.py: every case of one strategy in one process.

    python loss_distribution_worker.py single|mirrored OUT.npz
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
    else:
        strategy = tf.distribute.get_strategy()
    import keras

    import distributed_cases

    rng = np.random.default_rng(0)
    y = np.repeat(rng.permutation(16)[:8], 4).astype("int64")
    x = (rng.normal(size=(GLOBAL_BATCH, 12)) + y[:, None] * 0.1).astype("float32")
    result = {"replicas": np.array(strategy.num_replicas_in_sync)}
    for name, make_loss in distributed_cases.cases().items():
        for jit in (False,):  # XLA + MirroredStrategy on logical CPUs: see the test docstring
            keras.utils.set_random_seed(1)
            with strategy.scope():
                model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8)])
                model.compile(optimizer=keras.optimizers.SGD(0.5), loss=make_loss(), jit_compile=jit)
            before = [w.numpy().copy() for w in model.trainable_weights]
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
            history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
            key = f"{name}_{'jit' if jit else 'nojit'}"
            result[f"{key}_loss"] = np.array(history.history["loss"][0])
            update = np.concatenate(
                [(w.numpy() - b).ravel() for w, b in zip(model.trainable_weights, before)]
            )
            result[f"{key}_update"] = update
    result.update(owned(strategy, distributed_cases.owned_cases()))
    np.savez(out, **result)


def owned(strategy, cases):
    """One step of an MDRModel per case: the update of every trainable variable
    (encoder and loss state) and, per replica, the state after the step."""
    import keras

    import keras_mdr
    from loss_families import CLASSES, DIM

    rng = np.random.default_rng(1)
    y = np.repeat(rng.permutation(CLASSES), GLOBAL_BATCH // CLASSES).astype("int64")
    x = (rng.normal(size=(GLOBAL_BATCH, 12)) + y[:, None] * 0.1).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
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
        state = model.loss_state.layer.variables
        result[f"{name}_replicas"] = np.stack([np.concatenate(
            [np.ravel(strategy.experimental_local_results(v.value)[r]) for v in state])
            for r in range(strategy.num_replicas_in_sync)])
    return result


if __name__ == "__main__":
    main()
