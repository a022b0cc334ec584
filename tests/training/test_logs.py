"""What a run writes for TensorBoard, read back from the event and projector files."""

import glob
import json
import os
from collections import defaultdict

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mdr
from keras_mdr import training, visualization
from keras_mdr.training import logs as logs_lib


def _events(directory):
    """`{tag: [(step, value), ...]}` of every event file under `directory`."""
    found = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found[value.tag].append((event.step, tf.make_ndarray(value.tensor)))
    return found


def test_distance_summary_writes_the_histogram_and_levels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(30, 4)).astype(np.float32)
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model = keras_mdr.MDRModel(encoder)
    model.compile(optimizer="adam", loss=keras_mdr.MDRTripletLoss(seed=0))
    embed = lambda x: encoder(x, training=False)  # noqa: E731
    summary = logs_lib.DistanceSummary(images, str(tmp_path), embed)
    model.fit(images, np.repeat(np.arange(10), 3), batch_size=30, epochs=2, verbose=0,
              shuffle=False, callbacks=[summary])
    events = _events(tmp_path / "distances")
    steps = [step for step, _ in events["mdr/normalised_distances"]]
    assert steps == [0, 1]  # Keras' TensorBoard epoch axis, so the scalars line up
    histogram = events["mdr/normalised_distances"][-1][1]  # (buckets, [left, right, count])
    assert histogram[:, 2].sum() == 30 * 29 / 2  # every pair once
    regulariser = model.mdr_regularizer
    z = visualization.normalized_distances(
        np.asarray(embed(images)),
        mean_std=(float(regulariser.moving_mean.numpy()), float(regulariser.moving_std.numpy())),
    )["z"]
    assert histogram[0, 0] == pytest.approx(z.min(), rel=1e-4)
    assert histogram[-1, 1] == pytest.approx(z.max(), rel=1e-4)
    levels = [float(events[f"mdr/level_{i}"][-1][1]) for i in range(3)]
    np.testing.assert_allclose(levels, regulariser.levels.numpy(), rtol=1e-6)
    # Refused when made, not at the end of the first epoch.
    with pytest.raises(ValueError, match="at least 2 images"):
        logs_lib.DistanceSummary(images[:1], str(tmp_path), embed)


def test_a_run_gives_tensorboard_metrics_histogram_and_projector(tmp_path):
    """issue 12 item 7: TensorBoard got the scalars only."""
    config = training.TrainConfig.from_preset(
        "digits", output_dir=str(tmp_path / "run"), epochs=2, steps_per_epoch=2,
        embedding_dim=16, eval_every=1, verbose=0, export=False, seed=4,
    )
    training.train(config)
    board = tmp_path / "run" / "tensorboard"
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    scalars = _events(board / "train")
    for name in ("recall@1", "map@r"):
        logged = [float(v) for _, v in scalars[f"epoch_test_{name}"]]
        assert logged == pytest.approx([r[f"test_{name}"] for r in rows]), name
    distances = _events(board / "distances")
    assert len(distances["mdr/normalised_distances"]) == 2
    assert ([s for s, _ in distances["mdr/normalised_distances"]]
            == [s for s, _ in scalars["epoch_test_recall@1"]])  # one x axis
    assert {f"mdr/level_{i}" for i in range(3)} <= set(distances)
    assert len(distances["mdr/distances_with_levels"]) == 2  # the picture with the levels
    pictures = _events(board / "pictures")
    for tag, name in (("pictures/recall_at_k", "recall_at_k.png"),
                      ("pictures/retrieval_grid", "retrieval_grid.png")):
        (step, value), = pictures[tag]
        width, height = (int(v) for v in value[:2])  # an image summary: width, height, PNG
        png = tf.io.decode_png(value[2])
        assert png.shape[:2] == (height, width) and step == 1  # the last epoch, 0-based
        on_disk = tf.io.decode_png(tf.io.read_file(str(tmp_path / "run" / "pictures" / name)))
        np.testing.assert_array_equal(png.numpy(), on_disk.numpy()[..., :3])
    with open(board / "projector" / "projector_config.pbtxt") as f:
        text = f.read()
    assert 'tensor_path: "embeddings.tsv"' in text and 'image_path: "sprite.png"' in text
    vectors = np.loadtxt(board / "projector" / "embeddings.tsv", delimiter="\t")
    labels = open(board / "projector" / "metadata.tsv").read().splitlines()
    assert vectors.shape == (len(labels), 16) and 100 <= len(labels) <= 1000
    model = keras.saving.load_model(tmp_path / "run" / "checkpoints" / "last.keras")
    splits = keras_mdr.data.load_dataset("digits", seed=config.seed)
    assert set(labels) <= {str(c) for c in splits.test.classes.tolist()}
    assert np.isfinite(vectors).all() and model.encoder.output_shape[-1] == 16
