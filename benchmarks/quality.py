"""Retrieval quality: Triplet vs Triplet + L2Norm vs Triplet + MDR, on real data.

Trains the same embedding model under the same budget with each method
("arm"), several seeds each, picks every run's epoch on a validation split
carved from the training classes, and reports Recall@K and MAP@R on the unseen
test classes (mean +- std over seeds, and the paired difference to the Triplet
baseline), at the chosen epoch and at the last one.

Usage:
    # The comparison on Fashion-MNIST (9 arms x 5 seeds, about 60 minutes on
    # two idle CPU cores); writes docs/results/fashion_mnist/ and the measured
    # tables into docs/results.md:
    python benchmarks/quality.py --doc=docs/results.md
    # The lambda sweep (Triplet + MDR at several mdr_weight values):
    python benchmarks/quality.py --mode=sweep --seeds=3 --doc=docs/results.md
    # A quick check (one seed, two short epochs, two arms):
    python benchmarks/quality.py --seeds=1 --epochs=2 --steps_per_epoch=5 \\
        --arms=triplet,triplet_mdr --output_dir=/tmp/quality
    # scikit-learn digits (embedded, a few minutes):
    python benchmarks/quality.py --dataset=digits
    # Cars-196 / CUB-200-2011 with the paper's presets (for a GPU machine):
    python benchmarks/quality.py --dataset=cars196 --data_dir=/data/cars196
    python benchmarks/quality.py --dataset=cub200 --data_dir=/data/CUB_200_2011 \\
        --seeds=1 --arms=triplet,triplet_l2norm,triplet_mdr
    # Redraw tables and figures from the JSON without training:
    python benchmarks/quality.py --report_only [--mode=sweep]

Arms (all on the same encoder, batches, optimizer, schedule and seeds):
    triplet         the MDR authors' baseline: distance-weighted triplet loss,
                    margin 0.2, on embeddings divided by the batch's mean
                    pairwise distance, no L2 normalisation
                    (`MDRTripletLoss(mdr_weight=0, sampling="textbook")`).
                    This arm and the next two sample negatives with the
                    textbook rule of Wu et al., as when they were measured.
    triplet_l2norm  the same loss on L2-normalised embeddings instead of the
                    scaling (`UnitNormalization` + `DistanceWeightedTripletLoss`,
                    margin --l2_margin, 0.2 as in the paper); evaluated on the
                    unit-norm embeddings it was trained on.
    triplet_mdr     `MDRTripletLoss(mdr_weight=--mdr_weight)`.
    semihard        FaceNet semi-hard mining on the scaled embeddings, margin
                    0.2, without MDR (`MDRTripletLoss("semihard", mdr_weight=0)`).
    semihard_mdr    the same with MDR.
    triplet_release      `triplet` with the MDR authors' sampler
                         (`sampling="release"`, the losses' default).
    triplet_mdr_release  `triplet_mdr` with the MDR authors' sampler.
    triplet_rerun        `triplet` again, measured with the release arms' code.
    triplet_mdr_rerun    `triplet_mdr` again, likewise.
    <family>, <family>_mdr  `MDRLoss(<family's loss>, mdr_weight=0)` and with
                    --mdr_weight, for contrastive, margin, multi_similarity,
                    proxy_anchor, supcon, ntxent, arcface (default settings
                    of each class; the inner-product ones on unit-normalised
                    embeddings). Not in the default --arms.

Protocol: the dataset's class-disjoint split (Fashion-MNIST and digits:
classes 0-4 train, 5-9 test), of which --validation_classes training classes
(chosen once with --split_seed, the same for every run) form the validation
split. Each run evaluates validation Recall@1 every --eval_every epochs, keeps
the weights of its best epoch in memory (ties: the higher validation MAP@R,
then the earlier epoch), and reports the test metrics of that epoch and of the
last one. --test_subset / --val_subset
evaluate a fixed, seeded subset of those images (the same for every run).

Outputs, in --output_dir (default docs/results/<dataset>):
    compare.json / sweep.json   every run (config, per-epoch validation
                                metrics and losses, test metrics, MDR state,
                                timings) plus the configuration and versions;
                                a restarted command skips the runs already
                                there, so a killed run resumes (it loses
                                only the run in progress), and a command
                                that adds runs to an existing file is
                                recorded under `resumed` (command, commit,
                                times, run keys).
    compare.md / sweep.md       the tables (mean +- std over seeds, paired
                                differences to the baseline).
    recall_at_1.png             Recall@1 and MAP@R per method with error bars.
    distances_<arm>_<split>.png MDR-normalised distance histograms with the
                                levels, for the first seed's run of each arm,
                                on the test classes and on the training classes.
    sweep_recall_at_1.png       Recall@1 and MAP@R against lambda.
With --doc=FILE, the tables also replace the text between the markers
`<!-- quality:<dataset>:<mode>:begin -->` and `<!-- ...:end -->` in FILE.

This file holds the flags and the loop over runs; the parts live in
benchmarks/quality_bench/ (settings, arms, data, runs, results, tables,
report, figures).
"""


import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from keras_mdr.training.presets import ConfigError  # noqa: E402

from quality_bench import arms  # noqa: E402
from quality_bench import data as data_lib  # noqa: E402
from quality_bench import report  # noqa: E402
from quality_bench import results  # noqa: E402
from quality_bench import runs  # noqa: E402
from quality_bench import settings  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "fashion_mnist", settings.DATASETS, "Dataset.")
flags.DEFINE_string("data_dir", None, "Dataset folder (Cars-196, CUB-200-2011; optional for Fashion-MNIST).")
flags.DEFINE_enum("mode", "compare", ("compare", "sweep"), "compare: the arms; sweep: Triplet + MDR over --lambdas.")
flags.DEFINE_string("arms", ",".join(arms.DEFAULT_ARMS), f"Comma-separated arms of compare mode, among {list(arms.ARMS)}.")
flags.DEFINE_string("lambdas", "0,0.05,0.1,0.2,0.4,0.8", "Sweep mode: the mdr_weight values.")
flags.DEFINE_enum("sweep_base_loss", "distance_weighted", ("distance_weighted", "semihard"), "Sweep mode: the base loss.")
flags.DEFINE_string("seeds", None, "A count n (seeds 0..n-1) or a comma list of seeds. Default: 5.")
flags.DEFINE_integer("epochs", None, "Epochs (default: the dataset's).")
flags.DEFINE_integer("steps_per_epoch", None, "Training steps per epoch (default: the dataset's).")
flags.DEFINE_integer("eval_every", None, "Validate every n epochs (default: 1 for small sets, 5 for photos).")
flags.DEFINE_integer("classes_per_batch", None, "P, classes per batch.")
flags.DEFINE_integer("images_per_class", None, "K, images per class.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate.")
flags.DEFINE_string("lr_decay_epochs", None, "Epochs at which lr is multiplied by 0.2 (comma list).")
flags.DEFINE_float("mdr_weight", None, "lambda of the MDR arms (default: the preset's, 0.2 on the small sets).")
flags.DEFINE_float("margin", 0.2, "Triplet margin on the scaled embeddings (mean pairwise distance 1).")
flags.DEFINE_float("l2_margin", 0.2, "Triplet margin of the L2Norm arm, on the unit sphere.")
flags.DEFINE_string("levels", "-3,0,3", "Initial MDR levels.")
flags.DEFINE_float("level_weight", 0.01, "nu, the weight of sum(levels^2).")
flags.DEFINE_integer("embedding_dim", None, "Embedding size (default: the preset's, 512).")
flags.DEFINE_string("backbone", None, "Encoder backbone (default: small_cnn for small sets, the preset's for photos).")
flags.DEFINE_string("weights", None, "Backbone weights: imagenet, none or a path (default: the preset's).")
flags.DEFINE_integer("image_size", None, "Input size (default: the preset's).")
flags.DEFINE_integer("resize_size", None, "Resize before cropping, photos (default: the preset's).")
flags.DEFINE_integer("validation_classes", None, "Training classes held out for validation (photos: 15%).")
flags.DEFINE_integer("split_seed", 0, "Seed of the choice of validation classes and of the evaluation subsets.")
flags.DEFINE_integer("test_subset", None, "Evaluate this many test images (seeded subset); 0: all.")
flags.DEFINE_integer("val_subset", None, "Validate on this many validation images; 0: all.")
flags.DEFINE_integer("train_subset", None, "Training-class images in the training-class histogram; 0: all.")
flags.DEFINE_enum("mixed_precision", "none", ("none", "mixed_float16", "mixed_bfloat16"), "Keras dtype policy (GPU: mixed_float16).")
flags.DEFINE_string("output_dir", None, "Where JSON, tables and figures go (default docs/results/<dataset>).")
flags.DEFINE_string("doc", None, "A markdown file whose quality markers receive the tables.")
flags.DEFINE_boolean("report_only", False, "Only redraw tables and figures from the JSON.")
flags.DEFINE_boolean("histograms", True, "Draw the distance histograms of the first seed's runs.")
flags.DEFINE_integer("verbose", 1, "0: one line per run; 1: one line per evaluated epoch.")



def _get(metrics, name):
    return float("nan") if metrics is None else metrics[name]


def _progress(i, todo, record, elapsed):
    left = elapsed / (i + 1) * (len(todo) - i - 1)
    val_r1 = (record["val_best"] or {}).get("recall@1", float("nan"))
    print(
        f"[{i + 1}/{len(todo)}] {record['key']}: best epoch {record['best_epoch']} "
        f"val R@1 {100 * val_r1:.2f}{' (stopped: NaN loss)' if record['nan'] else ''}, test R@1 "
        f"{100 * _get(record['test_best'], 'recall@1'):.2f} (last epoch "
        f"{100 * _get(record['test_last'], 'recall@1'):.2f}), MAP@R "
        f"{100 * _get(record['test_best'], 'map@r'):.2f}; {record['wall_s']:.0f}s "
        f"(cpu {record['cpu_s']:.0f}s); elapsed {elapsed / 60:.1f} min, "
        f"about {left / 60:.1f} min left",
        flush=True,
    )


def _describe(config, data, done, total, path):
    s = data.subsets
    print(
        f"{config['dataset']}: train classes {s['train_classes']}, validation "
        f"{s['validation_classes']} ({s['validation_evaluated']} images "
        f"evaluated), test {s['test_classes']} ({s['test_evaluated']} of "
        f"{s['test_images']}); batch {config['classes_per_batch']} x "
        f"{config['images_per_class']}, {config['epochs']} x {config['steps_per_epoch']} steps. "
        f"{done} of {total} runs already in {path}.",
        flush=True,
    )


def run_all(config, seeds, specs, payload, path, out_dir):
    """Runs what the results file lacks, saving it after every run."""
    data = data_lib.load_data(config, FLAGS.data_dir)  # before anything: missing data fails here
    os.makedirs(out_dir, exist_ok=True)
    session = results.start_session(payload, data.subsets)
    todo = [s for s in specs if s[0] not in payload["runs"]]
    _describe(config, data, len(specs) - len(todo), len(specs), path)
    drawn = {r["group"] for r in payload["runs"].values() if r.get("histograms")}
    start = time.time()
    for i, (key, group, seed, spec) in enumerate(todo):
        draw = FLAGS.histograms and FLAGS.mode == "compare" and group not in drawn and seed == seeds[0]
        record = runs.run_one(config, data, key, group, seed, spec, out_dir, draw, FLAGS.verbose)
        if draw:
            drawn.add(group)
        payload["runs"][key] = record
        results.finish_run(payload, session, key)
        results.write_json(path, payload)
        _progress(i, todo, record, time.time() - start)


def main(argv):
    del argv
    try:
        return _main()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def _main():
    logging.set_verbosity(logging.WARNING)  # faiss logs its loader at INFO
    config, seeds = settings.make_config(FLAGS)
    specs = settings.run_specs(FLAGS.mode, seeds, FLAGS.arms, FLAGS.lambdas)
    out_dir = os.path.abspath(FLAGS.output_dir or os.path.join(REPO, "docs", "results", FLAGS.dataset))
    path = os.path.join(out_dir, "compare.json" if FLAGS.mode == "compare" else "sweep.json")
    doc = os.path.abspath(FLAGS.doc) if FLAGS.doc else None
    if doc and not os.path.exists(doc):
        raise ConfigError(f"--doc={FLAGS.doc!r} does not exist.")
    payload = results.open_results(path, config, FLAGS.report_only)
    if not FLAGS.report_only:
        run_all(config, seeds, specs, payload, path, out_dir)
    report.write_reports(payload, FLAGS.mode, out_dir, doc)


if __name__ == "__main__":
    app.run(main)
