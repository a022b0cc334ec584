"""A run's per-epoch logs: `metrics.jsonl`, `log.csv` and TensorBoard extras.

`RunLogger` keeps one row per epoch, numbered from 1 (the epochs completed),
in `metrics.jsonl` and the same rows in `log.csv`. The CSV is rewritten from
the JSON rows at each epoch, so its columns are the union of every epoch's
keys (retrieval metrics appear from the first evaluated epoch on; epochs
without an evaluation leave those cells empty) and no column is always empty.
A restarted run replaces the rows of the epochs it redoes, so an epoch
interrupted and finished after a restart is logged once.

`DistanceSummary` adds to TensorBoard, at each evaluated epoch, the histogram
of MDR-normalised distances of a fixed batch of held-out images (normalised
as `keras_mdr.visualization.normalized_distances` does) and the levels, as
scalars and drawn on the histogram picture; `PictureSummary` adds the
Recall@K curves and the retrieval grid at the end of training.
"""

import csv
import json
import os

import keras
import numpy as np
import tensorflow as tf

from keras_mdr import callbacks as callbacks_lib
from keras_mdr import visualization


def read_rows(path):
    """The rows of a `metrics.jsonl` file (a list of dicts; [] if absent)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_atomically(path, write):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        write(f)
    os.replace(tmp, path)


def write_csv(path, rows):
    """Writes `rows` as CSV with the union of their keys as columns, "epoch" first."""
    columns = ["epoch"]
    for row in rows:
        columns += [key for key in row if key not in columns]

    def write(f):
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)

    _write_atomically(path, write)


class RunLogger(keras.callbacks.Callback):
    """Logs each epoch to `metrics.jsonl` and `log.csv`, epochs numbered from 1.

    Args:
        directory: the run directory.
    """

    def __init__(self, directory):
        super().__init__()
        self.jsonl = os.path.join(directory, "metrics.jsonl")
        self.csv = os.path.join(directory, "log.csv")

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        row.update({k: float(np.asarray(v).reshape(-1)[0]) for k, v in (logs or {}).items()})
        rows = [r for r in read_rows(self.jsonl) if r["epoch"] < row["epoch"]] + [row]
        _write_atomically(self.jsonl, lambda f: f.writelines(json.dumps(r) + "\n" for r in rows))
        write_csv(self.csv, rows)


class DistanceSummary(keras.callbacks.Callback):
    """Writes the MDR-normalised distance histogram and the levels to TensorBoard.

    Args:
        images: a fixed batch of held-out images (a few hundred at most).
        log_dir: the TensorBoard directory (a `distances` run is added).
        embed_fn: `images -> embeddings`.
        every_n_epochs: write after every n-th epoch.
        picture_dir: where the retrieval callback draws
            `distances_epoch_{E}.png` (the histogram with the levels); the
            picture is added as a TensorBoard image when present.
    """

    def __init__(self, images, log_dir, embed_fn, every_n_epochs=1, picture_dir=None):
        super().__init__()
        if len(images) < 2:
            raise ValueError(
                "Expected at least 2 images for the distance histogram (it shows pairs). "
                f"Received: {len(images)}"
            )
        self.images = images
        self.embed_fn = embed_fn
        self.every_n_epochs = int(every_n_epochs)
        self.picture_dir = picture_dir
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "distances"))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        levels, mean_std = callbacks_lib.mdr_state(self.model)
        if levels is None:
            levels = np.asarray(visualization.DEFAULT_LEVELS)
        embeddings = np.asarray(self.embed_fn(self.images), np.float32)
        values = visualization.normalized_distances(embeddings, mean_std=mean_std)["z"]
        # The step of Keras' TensorBoard epoch scalars (0-based), so both share one axis.
        with self.writer.as_default(step=epoch):
            tf.summary.histogram("mdr/normalised_distances", values)
            for i, level in enumerate(np.asarray(levels).reshape(-1)):
                tf.summary.scalar(f"mdr/level_{i}", float(level))
            picture = os.path.join(self.picture_dir or "", f"distances_epoch_{epoch + 1:03d}.png")
            if self.picture_dir and os.path.exists(picture):
                png = tf.io.decode_png(tf.io.read_file(picture), channels=3)
                tf.summary.image("mdr/distances_with_levels", png[None])
        self.writer.flush()


class PictureSummary(keras.callbacks.Callback):
    """At the end of training, adds the run's end-of-training pictures to TensorBoard.

    Put it after the `RetrievalPictures` callback that draws them, so that
    they exist when it runs.

    Args:
        picture_dir: the folder of the pictures.
        log_dir: the TensorBoard directory (a `pictures` run is added).
        names: the PNG files to add (those that exist), each as an image
            tagged `pictures/<name without .png>`.
    """

    def __init__(self, picture_dir, log_dir, names=("recall_at_k.png", "retrieval_grid.png")):
        super().__init__()
        self.picture_dir = picture_dir
        self.log_dir = os.path.join(log_dir, "pictures")
        self.names = tuple(names)
        self.last_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        self.last_epoch = epoch

    def on_train_end(self, logs=None):
        writer = tf.summary.create_file_writer(self.log_dir)
        # At the last epoch on Keras' TensorBoard epoch axis (0-based).
        with writer.as_default(step=self.last_epoch):
            for name in self.names:
                path = os.path.join(self.picture_dir, name)
                if os.path.exists(path):
                    png = tf.io.decode_png(tf.io.read_file(path), channels=3)
                    tf.summary.image(f"pictures/{os.path.splitext(name)[0]}", png[None])
        writer.close()


__all__ = ["DistanceSummary", "PictureSummary", "RunLogger", "read_rows", "write_csv"]
