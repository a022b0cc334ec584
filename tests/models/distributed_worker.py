"""Subprocess body of tests/models/test_distributed.py (TF must be configured before use).

    python distributed_worker.py mirrored OUT.npz BASE_LOSS
    python distributed_worker.py single OUT.npz BASE_LOSS
    TF_CONFIG=... python distributed_worker.py multiworker OUT.npz BASE_LOSS

Each trains the same small MDRModel from the same initial weights on the same
global batches (32 = 8 classes x 4) for STEPS SGD steps and writes the losses,
the update of the trained variables, the final variables (and, for mirrored
variables, every replica's copy), and where the levels would be on their own
`nu * sum(v^2)` term alone.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

STEPS = 3
GLOBAL_BATCH = 32
LEARNING_RATE, LEVEL_WEIGHT = 0.5, 0.01


def data():
    rng = np.random.default_rng(0)
    batches = []
    for step in range(STEPS):
        labels = np.repeat(rng.permutation(16)[:8], 4).astype("int32")
        x = rng.normal(size=(GLOBAL_BATCH, 12)).astype("float32") + labels[:, None] * 0.1
        batches.append((x, labels))
    return batches


def build(base_loss):
    import keras

    import keras_mdr

    keras.utils.set_random_seed(1)
    encoder = keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(8)]
    )
    model = keras_mdr.MDRModel(encoder)
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss=keras_mdr.MDRTripletLoss(base_loss=base_loss, mdr_weight=0.5, level_weight=LEVEL_WEIGHT,
                                      seed=3),
    )
    return model


def dataset(batches):
    xs = np.concatenate([b[0] for b in batches])
    ys = np.concatenate([b[1] for b in batches])
    return tf.data.Dataset.from_tensor_slices((xs, ys)).batch(GLOBAL_BATCH)


def main():
    mode, out, base_loss = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    elif mode == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    batches = data()
    with strategy.scope():
        model = build(base_loss)
    ds = dataset(batches)
    if mode == "multiworker":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        ds = ds.with_options(options)
    initial = [np.array(v.numpy()) for v in model.trainable_variables]
    levels = model.mdr_regularizer.levels.numpy()
    # Where SGD would take the levels on nu * sum(v^2) alone (no MDR gradient).
    without_mdr = levels * (1.0 - 2.0 * LEARNING_RATE * LEVEL_WEIGHT) ** STEPS
    history = model.fit(ds, epochs=1, steps_per_epoch=STEPS, verbose=0, shuffle=False)
    result = {"loss": np.array(history.history["loss"]), "replicas": np.array(strategy.num_replicas_in_sync),
              "levels_without_mdr": without_mdr}
    for i, v in enumerate(model.variables):
        result[f"var{i}"] = np.array(v.numpy())
        values = getattr(v.value, "values", None) or getattr(v, "values", None)
        if values is not None and not callable(values):
            result[f"replicas{i}"] = np.stack([np.array(t) for t in values])
    # The step's update of every trained variable (weights and levels), flattened.
    result["update"] = np.concatenate(
        [(np.array(v.numpy()) - v0).ravel() for v, v0 in zip(model.trainable_variables, initial)]
    )
    result["levels"] = model.mdr_regularizer.levels.numpy()
    result["moving_mean"] = np.array(model.mdr_regularizer.moving_mean.numpy())
    result["moving_std"] = np.array(model.mdr_regularizer.moving_std.numpy())
    np.savez(out, **result)


if __name__ == "__main__":
    main()
