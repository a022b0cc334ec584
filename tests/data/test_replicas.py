"""Batches split over 2 replicas keep whole classes on each replica.

Runs in a fresh process: the CPU must be split into 2 logical devices before
TensorFlow initialises, which the test session has already done.
"""

import json
import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras_mdr.data

    labels = np.repeat(np.arange(12), 5)
    images = np.zeros((len(labels), 2, 2, 1), np.uint8)
    split = keras_mdr.data.Split(labels=labels, images=images, name="train")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dataset = keras_mdr.data.balanced_dataset(
        split, classes_per_batch=6, images_per_class=3, num_replicas=2, seed=5
    )
    slices = []
    for _, (images, labels) in zip(range(25), strategy.experimental_distribute_dataset(dataset)):
        slices.append([
            part.numpy().tolist() for part in strategy.experimental_local_results(labels)
        ])
    print("RESULT" + json.dumps({"replicas": strategy.num_replicas_in_sync, "slices": slices}))
    """
)


def test_every_replica_slice_holds_whole_classes():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT"))
    report = json.loads(line[len("RESULT"):])
    assert report["replicas"] == 2
    assert len(report["slices"]) == 25
    for batch in report["slices"]:
        assert len(batch) == 2
        for labels in batch:
            assert len(labels) == 9  # 3 classes x 3 images per replica
            for label in labels:
                assert labels.count(label) >= 2  # every image has a positive
            groups = [labels[i : i + 3] for i in range(0, 9, 3)]
            assert all(len(set(group)) == 1 for group in groups)
            assert len({group[0] for group in groups}) == 3
        # The two replicas hold different classes.
        assert not set(batch[0]) & set(batch[1])
