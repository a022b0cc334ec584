"""Subprocess body of tests/optimizers/test_adam_l2.py's distribution test.

    python adam_l2_worker.py mirrored OUT.npz    (2 logical CPUs, MirroredStrategy)
    python adam_l2_worker.py single OUT.npz      (the default strategy)

Trains the same small model from the same initial weights on the same global
batches with AdamL2 (coupled weight decay, a PiecewiseConstantDecay
schedule) and writes the final variables, every replica's copy of them, and
the optimizer's moments. Logical devices must be set before TensorFlow
starts, hence a process per configuration.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

STEPS = 4
GLOBAL_BATCH = 16


def main():
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.get_strategy()
    import keras

    from keras_mdr.optimizers import AdamL2

    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * GLOBAL_BATCH, 6)).astype("float32")
    y = rng.normal(size=(STEPS * GLOBAL_BATCH, 3)).astype("float32")
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                                  keras.layers.Dense(3)])
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.05, 0.01])
        optimizer = AdamL2(schedule, weight_decay=0.1)
        model.compile(optimizer=optimizer, loss="mse")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    model.fit(ds, epochs=1, verbose=0, shuffle=False)
    result = {"replicas": np.array(strategy.num_replicas_in_sync),
              "iterations": np.array(int(optimizer.iterations.numpy()))}
    for i, v in enumerate(model.trainable_variables):
        result[f"var{i}"] = np.array(v.numpy())
        result[f"copies{i}"] = np.stack(
            [c.numpy() for c in strategy.experimental_local_results(v.value)])
    for i, v in enumerate(optimizer.variables):
        result[f"opt{i}"] = np.array(v.numpy())
    np.savez(out, **result)


if __name__ == "__main__":
    main()
