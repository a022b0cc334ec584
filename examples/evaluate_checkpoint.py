"""Evaluate one of the MDR authors' trained checkpoints with keras_mdr (no PyTorch needed).

The release (github.com/kakaoenterprise/AAAI2021_MDR) ships BN-Inception +
MDR checkpoints trained with Triplet + MDR: cub200.pth, cars196.pth, sop.pth
and inshop.pth. This script reads one with keras_mdr's PyTorch-free .pth
reader into a Keras encoder, embeds the dataset's test images with our
pipeline (resize to 256 x 256, centre crop 224) and prints Recall@K on the
unseen test classes (Euclidean distance on the raw embeddings; K = 1, 2, 4, 8
for CUB and Cars, 1, 10, 100, 1000 for SOP, 1, 10, 20, 30, 40 for In-Shop,
query against gallery). The paper reports Recall@1 = 68.8 / 88.5 / 80.1 /
90.5 for these four (Table 1, Triplet + MDR).

Usage:
    python examples/evaluate_checkpoint.py --checkpoint=cars196.pth --dataset=cars196 --data_dir=/data/stanford_cars
    python examples/evaluate_checkpoint.py --checkpoint=inshop.pth --dataset=inshop --data_dir=/data/inshop --output=inshop.json

The results JSON (default: <checkpoint>.<dataset>.json beside the checkpoint)
holds the metrics and the protocol. Dataset layouts: keras_mdr.data.load_dataset.
"""

import json
import os
import sys

import quiet_start  # noqa: F401  (first: TensorFlow start-up messages off)
from absl import app
from absl import flags

import keras_mdr.backbones
from keras_mdr.training import trainer

flags.DEFINE_string("checkpoint", None, "An authors' .pth checkpoint (cub200.pth, cars196.pth, sop.pth, inshop.pth).")
flags.DEFINE_enum("dataset", None, ["cub200", "cars196", "sop", "inshop"], "The checkpoint's dataset.")
flags.DEFINE_string("data_dir", None, "The dataset's folder (see keras_mdr.data.load_dataset).")
flags.DEFINE_string("output", None, "Results JSON path; default <checkpoint>.<dataset>.json.")
flags.DEFINE_integer("batch_size", 64, "Images per batch.")
flags.DEFINE_integer("verbose", 1, "0: quiet, 1: progress bars.")
flags.mark_flags_as_required(["checkpoint", "dataset"])
FLAGS = flags.FLAGS


def main(argv):
    del argv
    try:
        results = keras_mdr.backbones.evaluate_release_checkpoint(
            FLAGS.checkpoint, FLAGS.dataset, FLAGS.data_dir, batch_size=FLAGS.batch_size,
            verbose=FLAGS.verbose,
        )
    except (ValueError, FileNotFoundError) as error:  # a bad file or data folder: one line
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    results.pop("embeddings")
    trainer.print_table(
        f"{FLAGS.dataset}: {os.path.basename(FLAGS.checkpoint)} on the unseen test classes (%)",
        {"checkpoint": results["recall"]}, results["ks"],
    )
    output = FLAGS.output or f"{os.path.splitext(FLAGS.checkpoint)[0]}.{FLAGS.dataset}.json"
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nResults written to {output}")


if __name__ == "__main__":
    app.run(main)
