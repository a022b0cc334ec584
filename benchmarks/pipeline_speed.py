"""Throughput of the training input pipeline against a plain tf.data baseline.

Measures images per second of `keras_mdr.data.balanced_dataset` with the
paper's train transform (decode, random resized crop, flip, P x K batches) on a
folder of real JPEG files, and of a plain decode-and-batch `tf.data` pipeline
over the same files in the same run (read, decode, resize to the output size,
batch; parallel map and prefetch, no sampling, no augmentation). Rounds of the
pipelines alternate, so that the load of a shared machine hits both alike; the
JSON (benchmarks/results/pipeline_speed.json) holds every round, the medians
with 95% intervals and the per-round ratio to the baseline (target: >= 0.9),
and also images per CPU-second (process CPU time over all threads), which other
processes on a shared machine disturb much less than wall-clock time.

Without --data_dir it writes --num_images JPEGs (random crops of the two
photos that ship with scikit-learn, resized to 400-640 x 300-480 pixels, the
size of typical Cars-196 / CUB images) into a temporary folder of class
subfolders.

Usage:
    python benchmarks/pipeline_speed.py
    python benchmarks/pipeline_speed.py --data_dir=/data/photos --rounds=7
    python benchmarks/pipeline_speed.py --keras_cv  # also time the keras-cv crop
"""

import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras_mdr.data  # noqa: E402
import provenance  # noqa: E402
import stats  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Folder of class subfolders of JPEGs.")
flags.DEFINE_integer("num_images", 1024, "JPEGs to write when no --data_dir.")
flags.DEFINE_integer("classes_per_batch", 32, "P.")
flags.DEFINE_integer("images_per_class", 4, "K.")
flags.DEFINE_integer("image_size", 224, "Output size of both pipelines.")
flags.DEFINE_integer("batches", 16, "Timed batches per round.")
flags.DEFINE_integer("warmup", 4, "Untimed batches per round.")
flags.DEFINE_integer("rounds", 15, "Alternating rounds per pipeline (>= 6 for an interval).")
flags.DEFINE_bool("keras_cv", False, "Also time the keras-cv implementation.")


def write_jpegs(directory, num_images, num_classes=64, seed=0):
    """Writes real JPEGs cut from scikit-learn's sample photos."""
    from PIL import Image
    from sklearn import datasets

    photos = [np.asarray(photo) for photo in datasets.load_sample_images().images]
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        photo = photos[i % len(photos)]
        height, width = photo.shape[:2]
        crop_h, crop_w = rng.integers(200, height), rng.integers(200, width)
        y, x = rng.integers(0, height - crop_h), rng.integers(0, width - crop_w)
        size = (int(rng.integers(400, 641)), int(rng.integers(300, 481)))
        image = Image.fromarray(photo[y : y + crop_h, x : x + crop_w]).resize(size)
        folder = os.path.join(directory, f"class_{i % num_classes:03d}")
        os.makedirs(folder, exist_ok=True)
        image.save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def baseline_dataset(paths, image_size, batch_size):
    """Plain decode-and-batch: read, decode, resize, batch, prefetch."""

    def load(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(image, (image_size, image_size))

    dataset = tf.data.Dataset.from_tensor_slices(paths).repeat()
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def measure(dataset, batch_size):
    """Images per wall-clock second and per CPU second (all threads)."""
    iterator = iter(dataset)
    for _ in range(FLAGS.warmup):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.batches):
        next(iterator)
    images = FLAGS.batches * batch_size
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def main(argv):
    del argv
    recorder = provenance.Recorder()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = FLAGS.data_dir
        if data_dir is None:
            data_dir = os.path.join(scratch, "jpegs")
            write_jpegs(data_dir, FLAGS.num_images)
        splits = keras_mdr.data.load_dataset("folder", data_dir, test_classes=1)
        train = splits.train
        size = FLAGS.image_size
        batch_size = FLAGS.classes_per_batch * FLAGS.images_per_class
        pipelines = {
            "baseline": baseline_dataset(list(train.paths), size, batch_size),
            "keras_mdr": keras_mdr.data.balanced_dataset(
                train,
                FLAGS.classes_per_batch,
                FLAGS.images_per_class,
                transform=keras_mdr.data.train_transform(
                    image_size=size, resize_size=size * 8 // 7
                ),
                seed=0,
            ),
        }
        if FLAGS.keras_cv:
            pipelines["keras_mdr_keras_cv"] = keras_mdr.data.balanced_dataset(
                train,
                FLAGS.classes_per_batch,
                FLAGS.images_per_class,
                transform=keras_mdr.data.train_transform(
                    image_size=size,
                    resize_size=size * 8 // 7,
                    implementation="keras_cv",
                    seed=0,
                ),
                seed=0,
            )
        rates, cpu_rates = interleaved_rounds(pipelines, batch_size)
        report(rates, cpu_rates, len(train), batch_size, size)
        path = recorder.write("pipeline_speed", results(rates, cpu_rates, len(train), batch_size, size),
                              versions=provenance.tf_versions())
        print(f"wrote {path}")


def interleaved_rounds(pipelines, batch_size):
    """Per pipeline, images/s (wall) and images per CPU-second of every round."""
    rates = {name: [] for name in pipelines}
    cpu_rates = {name: [] for name in pipelines}
    for _ in range(FLAGS.rounds):
        for name, dataset in pipelines.items():
            wall, cpu = measure(dataset, batch_size)
            rates[name].append(wall)
            cpu_rates[name].append(cpu)
    return rates, cpu_rates


def results(rates, cpu_rates, num_images, batch_size, size):
    """The JSON payload: every round, medians with intervals, per-round ratios."""
    def summary(values):
        return {name: {"rounds": [round(v, 1) for v in rounds], **stats.median_ci(rounds)}
                for name, rounds in values.items()}

    def ratios(values):
        return {name: stats.paired_ratio(rounds, values["baseline"])
                for name, rounds in values.items() if name != "baseline"}

    return {
        "num_images": num_images, "batch_size": batch_size,
        "classes_per_batch": FLAGS.classes_per_batch, "images_per_class": FLAGS.images_per_class,
        "image_size": size, "batches_per_round": FLAGS.batches, "rounds": FLAGS.rounds,
        "data": FLAGS.data_dir or "cut from scikit-learn's sample photos, 400-640 x 300-480 px",
        "images_per_second": summary(rates), "images_per_cpu_second": summary(cpu_rates),
        "ratio_to_baseline": ratios(rates), "cpu_ratio_to_baseline": ratios(cpu_rates),
    }


def report(rates, cpu_rates, num_images, batch_size, size):
    print(f"{num_images} JPEGs, batches of {batch_size} ({FLAGS.classes_per_batch} x "
          f"{FLAGS.images_per_class}), {size} x {size}, {os.cpu_count()} CPUs")
    base, cpu_base = statistics.median(rates["baseline"]), statistics.median(cpu_rates["baseline"])
    for name, values in rates.items():
        wall, cpu = statistics.median(values), statistics.median(cpu_rates[name])
        print(f"{name:20s} median {wall:7.0f} images/s ({wall / base:.2f}x baseline), "
              f"{cpu:6.0f} images per CPU-second ({cpu / cpu_base:.2f}x); rounds: "
              + ", ".join(f"{v:.0f}" for v in values))


if __name__ == "__main__":
    app.run(main)
