"""Subprocess body of tests/losses/test_pair_losses_distributed.py.

    python pair_losses_worker.py single|mirrored OUT.npz

One process, one strategy (strategies created in one process interfere). For
every stateless pair loss (and, on one device, also with `jit_compile`), a plain
`keras.Model` takes STEPS SGD steps on the same global batches from the same
initial weights; OUT.npz holds each run's weight update.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

STEPS = 2
GLOBAL_BATCH = 32


def losses():
    import keras_mdr

    return {
        "contrastive": lambda: keras_mdr.ContrastiveLoss(neg_margin=1.2),
        "margin_fixed_beta": lambda: keras_mdr.MarginLoss(learn_beta=False, beta=0.8),
        "multi_similarity": lambda: keras_mdr.MultiSimilarityLoss(),
        "supcon": lambda: keras_mdr.SupConLoss(),
        "ntxent": lambda: keras_mdr.NTXentLoss(),
    }


def run(name, make_loss, jit):
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(8), keras.layers.UnitNormalization()])
    before = [w.numpy() for w in model.weights]
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=make_loss(), jit_compile=jit)
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.repeat(rng.permutation(16)[:8], 4) for _ in range(STEPS)])
    x = rng.normal(size=(len(labels), 12)).astype("float32") + labels[:, None] * 0.1
    data = tf.data.Dataset.from_tensor_slices((x, labels.astype("int64"))).batch(GLOBAL_BATCH)
    model.fit(data, epochs=1, verbose=0)
    return np.concatenate([(w.numpy() - b).ravel() for w, b in zip(model.weights, before)])


def main():
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.get_strategy()
    updates = {}
    for name, make_loss in losses().items():
        # XLA cannot compile a step over MirroredStrategy's per-device variables
        # ("Trying to access resource ... located in device CPU:1 from CPU:0").
        for jit in ((False,) if mode == "mirrored" else (False, True)):
            with strategy.scope():
                updates[f"{name}_jit{int(jit)}"] = run(name, make_loss, jit)
    np.savez(out, **updates)


if __name__ == "__main__":
    main()
