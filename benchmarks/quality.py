"""Retrieval quality: Triplet vs Triplet + L2Norm vs Triplet + MDR, on real data.

Trains the same embedding model under the same budget with each method
("arm"), several seeds each, picks every run's epoch on a validation split
carved from the training classes, and reports Recall@K and MAP@R on the unseen
test classes (mean +- std over seeds, and the paired difference to the Triplet
baseline), at the chosen epoch and at the last one.

Usage:
    # The comparison on Fashion-MNIST (7 arms x 5 seeds, about 50 minutes on
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
"""

import dataclasses
import datetime
import json
import os
import platform
import sys
import time

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mdr  # noqa: E402
from keras_mdr import callbacks as callbacks_lib  # noqa: E402
from keras_mdr import data as data_lib  # noqa: E402
from keras_mdr import evaluation  # noqa: E402
from keras_mdr import visualization  # noqa: E402
from keras_mdr.evaluation import embedding as embedding_lib  # noqa: E402
from keras_mdr.training import encoders  # noqa: E402
from keras_mdr.training import presets  # noqa: E402

import provenance  # noqa: E402  (benchmarks/provenance.py)

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DATASETS = ("fashion_mnist", "digits", "cars196", "cub200")
SMALL = ("fashion_mnist", "digits")


@dataclasses.dataclass(frozen=True)
class Arm:
    label: str
    base_loss: str
    mdr: bool
    l2norm: bool = False
    # The negative sampler of base_loss="distance_weighted" (None otherwise).
    # The first arms were measured with "textbook" (Wu et al.), before the
    # losses' default became "release" (the MDR authors' rule): they name it,
    # so a default change cannot silently change what they measure.
    sampling: str = None


ARMS = {
    "triplet": Arm("Triplet", "distance_weighted", mdr=False, sampling="textbook"),
    "triplet_l2norm": Arm("Triplet + L2Norm", "distance_weighted", mdr=False, l2norm=True,
                          sampling="textbook"),
    "triplet_mdr": Arm("Triplet + MDR", "distance_weighted", mdr=True, sampling="textbook"),
    "semihard": Arm("Semi-hard", "semihard", mdr=False),
    "semihard_mdr": Arm("Semi-hard + MDR", "semihard", mdr=True),
    "triplet_release": Arm("Triplet (release sampler)", "distance_weighted", mdr=False,
                           sampling="release"),
    "triplet_mdr_release": Arm("Triplet + MDR (release sampler)", "distance_weighted", mdr=True,
                               sampling="release"),
}
BASE_LABELS = {"distance_weighted": "Triplet", "semihard": "Semi-hard"}
# (arm, baseline) pairs of the paired-difference tables, in display order.
PAIRS = (
    ("triplet_l2norm", "triplet"),
    ("triplet_mdr", "triplet"),
    ("semihard_mdr", "semihard"),
    ("triplet_release", "triplet"),
    ("triplet_mdr_release", "triplet_release"),
    ("triplet_mdr_release", "triplet_mdr"),
)

# The benchmark's settings. The small sets pin every training setting here (a
# change to the training presets must not silently change the benchmark); the
# photo sets take the paper's presets (keras_mdr/training/presets.py). The
# small sets keep two of their five training classes for validation, so
# batches hold the three left.
_SMALL_MODEL = dict(
    backbone="small_cnn", weights="none", embedding_dim=512, freeze_batchnorm=False,
    lr_decay_factor=0.2, weight_decay=1e-5, mdr_weight=0.2, recall_ks=(1, 2, 4, 8),
    validation_classes=2, classes_per_batch=3, eval_every=1, seeds=5,
)
BENCH_DEFAULTS = {
    "fashion_mnist": dict(
        _SMALL_MODEL, image_size=28, resize_size=28, images_per_class=20,
        learning_rate=1e-3, epochs=20, steps_per_epoch=40, lr_decay_epochs=(10, 15),
        test_subset=10000, val_subset=2000, train_subset=2000,
    ),
    # lr 1e-4, 10 x 30 steps: the digits preset's (1e-3 overfits the digits).
    "digits": dict(
        _SMALL_MODEL, image_size=8, resize_size=8, images_per_class=16,
        learning_rate=1e-4, epochs=10, steps_per_epoch=30, lr_decay_epochs=(6, 8),
        test_subset=0, val_subset=0, train_subset=0,
    ),
    "cars196": dict(eval_every=5, test_subset=0, val_subset=0, train_subset=2000, seeds=5),
    "cub200": dict(eval_every=5, test_subset=0, val_subset=0, train_subset=2000, seeds=5),
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", "fashion_mnist", DATASETS, "Dataset.")
flags.DEFINE_string("data_dir", None, "Dataset folder (Cars-196, CUB-200-2011; optional for Fashion-MNIST).")
flags.DEFINE_enum("mode", "compare", ("compare", "sweep"), "compare: the arms; sweep: Triplet + MDR over --lambdas.")
flags.DEFINE_string("arms", ",".join(ARMS), f"Comma-separated arms of compare mode, among {list(ARMS)}.")
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


class ConfigError(ValueError):
    """A bad flag or missing data, reported on one line before training."""


# ----------------------------------------------------------------------------
# Configuration


def _csv(value, cast):
    return tuple(cast(v) for v in str(value).split(",") if v.strip())


def _seeds(value, default):
    if value is None:
        return tuple(range(default))
    values = _csv(value, int)
    if len(values) == 1 and "," not in str(value):
        if values[0] < 1:
            raise ConfigError(f"--seeds must be a positive count or a comma list. Received: {value!r}")
        return tuple(range(values[0]))
    return values


def make_config():
    """The run's settings: the dataset's preset, the benchmark's defaults, the flags."""
    name = FLAGS.dataset
    base = {} if name in SMALL else presets.preset(name)
    base.update(BENCH_DEFAULTS[name])
    overrides = {
        "epochs": FLAGS.epochs, "steps_per_epoch": FLAGS.steps_per_epoch,
        "eval_every": FLAGS.eval_every, "classes_per_batch": FLAGS.classes_per_batch,
        "images_per_class": FLAGS.images_per_class, "learning_rate": FLAGS.learning_rate,
        "mdr_weight": FLAGS.mdr_weight, "embedding_dim": FLAGS.embedding_dim,
        "backbone": FLAGS.backbone, "weights": FLAGS.weights, "image_size": FLAGS.image_size,
        "resize_size": FLAGS.resize_size, "validation_classes": FLAGS.validation_classes,
        "test_subset": FLAGS.test_subset, "val_subset": FLAGS.val_subset,
        "train_subset": FLAGS.train_subset,
    }
    if FLAGS.lr_decay_epochs is not None:
        overrides["lr_decay_epochs"] = _csv(FLAGS.lr_decay_epochs, int)
    base.update({k: v for k, v in overrides.items() if v is not None})
    if FLAGS.image_size is not None and FLAGS.resize_size is None and name in SMALL:
        base["resize_size"] = FLAGS.image_size
    config = {
        "dataset": name,
        "split_seed": FLAGS.split_seed,
        "validation_classes": base["validation_classes"],
        "backbone": base["backbone"],
        "weights": base["weights"],
        "embedding_dim": int(base["embedding_dim"]),
        "image_size": int(base["image_size"]),
        "resize_size": int(base["resize_size"]),
        "freeze_batchnorm": bool(base["freeze_batchnorm"]),
        "classes_per_batch": int(base["classes_per_batch"]),
        "images_per_class": int(base["images_per_class"]),
        "epochs": int(base["epochs"]),
        "steps_per_epoch": int(base["steps_per_epoch"]),
        "eval_every": int(base["eval_every"]),
        "optimizer": "adam",
        "learning_rate": float(base["learning_rate"]),
        "lr_decay_epochs": [int(e) for e in base["lr_decay_epochs"]],
        "lr_decay_factor": float(base["lr_decay_factor"]),
        "weight_decay": float(base["weight_decay"]),
        "margin": float(FLAGS.margin),
        "l2_margin": float(FLAGS.l2_margin),
        "mdr_weight": float(base["mdr_weight"]),
        "level_weight": float(FLAGS.level_weight),
        "levels": [float(v) for v in _csv(FLAGS.levels, float)],
        "recall_ks": [int(k) for k in base["recall_ks"]],
        "test_subset": int(base["test_subset"]),
        "val_subset": int(base["val_subset"]),
        "train_subset": int(base["train_subset"]),
        "mixed_precision": FLAGS.mixed_precision,
    }
    if FLAGS.mode == "sweep":
        config["sweep_base_loss"] = FLAGS.sweep_base_loss
    check_config(config)
    return config, _seeds(FLAGS.seeds, BENCH_DEFAULTS[name]["seeds"])


def check_config(config):
    try:
        encoders.check_backbone(config["backbone"], config["weights"], config["image_size"])
    except ValueError as error:
        raise ConfigError(str(error)) from error
    for name in ("epochs", "steps_per_epoch", "eval_every", "classes_per_batch", "embedding_dim"):
        if config[name] < 1:
            raise ConfigError(f"--{name} must be at least 1. Received: {config[name]}.")
    if config["images_per_class"] < 2:
        raise ConfigError("--images_per_class must be at least 2: a triplet needs a positive pair.")
    if config["resize_size"] < config["image_size"]:
        raise ConfigError(
            f"--resize_size ({config['resize_size']}) must be >= --image_size ({config['image_size']})."
        )
    if not config["validation_classes"]:
        raise ConfigError("--validation_classes must be positive: epochs are chosen on validation.")
    if not config["levels"]:
        raise ConfigError("--levels needs at least one value.")
    if config["mdr_weight"] < 0:
        raise ConfigError(f"--mdr_weight must be >= 0. Received: {config['mdr_weight']}.")


def run_specs(mode, seeds):
    """[(key, group, seed, spec)]: every run of the mode, in the order they run.

    Seeds are the outer loop, so an interrupted compare run has every arm of
    its first seeds (paired differences need both arms of a seed).
    """
    specs = []
    if mode == "compare":
        arms = _csv(FLAGS.arms, str)
        unknown = [a for a in arms if a not in ARMS]
        if unknown or not arms:
            raise ConfigError(f"Unknown --arms {unknown or arms}: use some of {list(ARMS)}.")
        for seed in seeds:
            for arm in arms:
                specs.append((f"{arm}/seed={seed}", arm, seed, dict(arm=arm)))
    else:
        lambdas = _csv(FLAGS.lambdas, float)
        if not lambdas or min(lambdas) < 0:
            raise ConfigError(f"--lambdas must be non-negative numbers. Received: {FLAGS.lambdas!r}")
        for seed in seeds:
            for value in lambdas:
                group = f"lambda={value:g}"
                specs.append((f"{group}/seed={seed}", group, seed, dict(mdr_weight=value)))
    return specs


def versions():
    state = provenance.git_state(REPO)
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "keras_mdr": keras_mdr.__version__,
        "git_commit": state["commit"],
        "git_dirty": state["dirty"],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "gpus": [g.name for g in gpus],
    }


# ----------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class Data:
    splits: object
    train_transform: object
    val: object
    test: object
    train_eval: object
    subsets: dict


def _subset(split, size, seed):
    if not size or size >= len(split):
        return split, len(split)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(split), size=size, replace=False))
    return split.take(picks), size


def _eval_data(split, transform, in_memory, batch_size=500):
    dataset = data_lib.eval_dataset(split, batch_size, transform=transform)
    # Small in-memory sets are decoded once and kept; photos are streamed.
    return dataset.cache() if in_memory else dataset


def load_data(config):
    name = config["dataset"]
    try:
        splits = data_lib.load_dataset(
            name, data_dir=FLAGS.data_dir, validation_classes=config["validation_classes"],
            seed=config["split_seed"],
        )
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from error
    if splits.train.num_classes < config["classes_per_batch"]:
        raise ConfigError(
            f"--classes_per_batch={config['classes_per_batch']} exceeds the "
            f"{splits.train.num_classes} training classes left after carving "
            f"{splits.validation.num_classes} for validation."
        )
    if name in SMALL:
        native = {"digits": 8, "fashion_mnist": 28}[name]
        size = None if config["image_size"] == native else config["image_size"]
        train_tf = data_lib.grayscale_transform(
            image_size=size, channels=3, flip=name == "fashion_mnist", preprocess=None
        )
        eval_tf = data_lib.grayscale_transform(image_size=size, channels=3, preprocess=None)
    else:
        train_tf = data_lib.train_transform(
            image_size=config["image_size"], resize_size=config["resize_size"], preprocess=None
        )
        eval_tf = data_lib.eval_transform(
            image_size=config["image_size"], resize_size=config["resize_size"], preprocess=None
        )
    seed = config["split_seed"]
    val, n_val = _subset(splits.validation, config["val_subset"], seed)
    test, n_test = _subset(splits.test, config["test_subset"], seed + 1)
    train_eval, n_train = _subset(splits.train, config["train_subset"], seed + 2)
    in_memory = splits.train.source == "images"
    subsets = {
        "train_classes": splits.train.classes.tolist(),
        "validation_classes": splits.validation.classes.tolist(),
        "test_classes": splits.test.classes.tolist(),
        "train_images": len(splits.train),
        "validation_images": len(splits.validation),
        "test_images": len(splits.test),
        "validation_evaluated": n_val,
        "test_evaluated": n_test,
    }
    return Data(
        splits=splits,
        train_transform=train_tf,
        val=_eval_data(val, eval_tf, in_memory),
        test=_eval_data(test, eval_tf, in_memory),
        train_eval=_eval_data(train_eval, eval_tf, in_memory),
        subsets=subsets,
    )


# ----------------------------------------------------------------------------
# Models and runs


def _learning_rate(config):
    steps = config["steps_per_epoch"]
    boundaries = [e * steps for e in config["lr_decay_epochs"] if 0 < e < config["epochs"]]
    if not boundaries:
        return config["learning_rate"]
    values = [config["learning_rate"] * config["lr_decay_factor"] ** i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def build_model(config, arm, mdr_weight, seed):
    """The compiled model of one arm: same encoder, optimizer and schedule for all."""
    encoder = encoders.build_encoder(
        config["backbone"], config["weights"], config["embedding_dim"], config["image_size"],
        channels=3, freeze_batchnorm=config["freeze_batchnorm"],
    )
    optimizer = keras.optimizers.Adam(_learning_rate(config), weight_decay=config["weight_decay"] or None)
    shape = (config["image_size"], config["image_size"], 3)
    if arm.l2norm:
        inputs = keras.Input(shape)
        # float32 whatever the policy: the loss's distances are float32.
        outputs = keras.layers.UnitNormalization(dtype="float32")(encoder(inputs))
        model = keras.Model(inputs, outputs)
        loss = keras_mdr.DistanceWeightedTripletLoss(
            margin=config["l2_margin"], seed=seed, sampling=arm.sampling
        )
    else:
        model = keras_mdr.MDRModel(encoder)
        sampler = {"sampling": arm.sampling} if arm.sampling else {}
        loss = keras_mdr.MDRTripletLoss(
            base_loss=arm.base_loss, margin=config["margin"], mdr_weight=mdr_weight,
            level_weight=config["level_weight"], levels=config["levels"], seed=seed, **sampler,
        )
    model.compile(optimizer=optimizer, loss=loss)
    return model


def _embed(fn, data):
    return embedding_lib.embed_dataset(fn, data, verbose=0)


def retrieval(embeddings, labels, ks):
    """Recall@K, MAP@R and R-Precision, exactly.

    The exact faiss engine (searched to the depth of the largest R): a few
    large classes (Fashion-MNIST: R about 2,000 in the 10,000-image test
    subset) are the blocked engine's slow case (18 s against 1 s for 5,000
    images on the 2-core machine); both give the same numbers.
    """
    # A tiny split cannot give Recall@K for K past its size: leave those out.
    ks = [k for k in ks if k < len(labels)] or [1]
    metrics = evaluation.retrieval_metrics(embeddings, labels, ks, method="faiss")
    return {k: float(v) for k, v in metrics.items()}


def _metrics(fn, data, ks):
    """The metrics of a model on `data`; None if its embeddings are not finite."""
    embeddings, labels = _embed(fn, data)
    if not np.all(np.isfinite(embeddings)):
        return None
    return retrieval(embeddings, labels, ks)


class EpochSelector(keras.callbacks.Callback):
    """Validates every n epochs and keeps the weights of the best validation Recall@1.

    Also validates after the last epoch, whatever n.
    """

    def __init__(self, embed_fn, data, ks, every, describe, verbose):
        super().__init__()
        self.embed_fn = embed_fn
        self.data = data
        self.ks = tuple(ks)
        self.every = every
        self.describe = describe
        self.verbose = verbose
        self.history = []
        self.best = None
        self.best_score = None
        self.best_epoch = None
        self.best_row = None
        self.best_weights = None
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.params["epochs"]:
            return
        metrics = _metrics(self.embed_fn, self.data, self.ks)
        if metrics is None:  # diverged: TerminateOnNaN stops the run
            return
        row = {"epoch": epoch + 1, **{f"val_{k}": v for k, v in metrics.items()}}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.history.append(row)
        r1 = metrics["recall@1"]
        # Ties (a saturated validation Recall@1, e.g. 100% on digits) go to
        # the higher validation MAP@R, then to the earlier epoch.
        score = (r1, metrics["map@r"])
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.best, self.best_epoch, self.best_row = r1, epoch + 1, metrics
            # Copies, so that later steps cannot alias them; the non-trainable
            # weights (BatchNorm and MDR statistics) are included.
            self.best_weights = [np.array(w, copy=True) for w in self.model.get_weights()]
        if self.verbose:
            print(
                f"  {self.describe} epoch {epoch + 1:3d}/{self.params['epochs']} "
                f"loss {float((logs or {}).get('loss', float('nan'))):.4f} "
                f"val R@1 {100 * r1:6.2f} (best {100 * self.best:6.2f} @ {self.best_epoch}) "
                f"{time.time() - self.start:6.1f}s",
                flush=True,
            )


def _mdr_state(model):
    levels, stats = callbacks_lib.mdr_state(model)
    return {
        "levels": None if levels is None else [float(v) for v in np.reshape(levels, -1)],
        "moving_mean": None if stats is None else stats[0],
        "moving_std": None if stats is None else stats[1],
    }


def draw_histograms(fn, model, arm_label, has_mdr, data, out_dir, stem, levels_init):
    """The distance histograms of one model, on the test and the training classes."""
    levels, stats = callbacks_lib.mdr_state(model)
    paths = {}
    for split, dataset, where in (("test", data.test, "unseen test classes"),
                                  ("train", data.train_eval, "training classes")):
        embeddings, labels = _embed(fn, dataset)
        if has_mdr:
            marks = levels
            title = f"{arm_label}: {where}, learned levels"
        else:
            marks = levels_init
            title = f"{arm_label}: {where}, levels untrained (initial values shown)"
        if stats is None:
            title += ", sample statistics"
        path = os.path.join(out_dir, f"distances_{stem}_{split}.png")
        visualization.plot_distance_histogram(
            embeddings, path, labels=labels, levels=marks, mean_std=stats, seed=0, title=title,
        )
        paths[split] = os.path.relpath(path, out_dir)
    return paths


def run_one(config, data, key, group, seed, spec, out_dir, draw, verbose):
    """Trains and evaluates one (arm, seed); returns its JSON record."""
    keras.backend.clear_session()
    if config["mixed_precision"] != "none":
        keras.mixed_precision.set_global_policy(config["mixed_precision"])
    keras.utils.set_random_seed(seed)
    if "arm" in spec:
        arm = ARMS[spec["arm"]]
        mdr_weight = config["mdr_weight"] if arm.mdr else 0.0
    else:
        base = config["sweep_base_loss"]
        arm = Arm(f"{BASE_LABELS[base]} + MDR, λ = {spec['mdr_weight']:g}", base,
                  mdr=spec["mdr_weight"] > 0,
                  sampling="textbook" if base == "distance_weighted" else None)
        mdr_weight = spec["mdr_weight"]
    start, cpu_start = time.time(), time.process_time()
    model = build_model(config, arm, mdr_weight, seed)
    size = config["image_size"]
    embed_fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
    )
    train_data = data_lib.balanced_dataset(
        data.splits.train, config["classes_per_batch"], config["images_per_class"],
        transform=data.train_transform, seed=seed,
    )
    selector = EpochSelector(
        embed_fn, data.val, config["recall_ks"], config["eval_every"],
        f"{key:<28s}", verbose,
    )
    model.fit(
        train_data, epochs=config["epochs"], steps_per_epoch=config["steps_per_epoch"],
        callbacks=[selector, keras.callbacks.TerminateOnNaN()], verbose=0, shuffle=False,
    )
    train_s = time.time() - start
    ks = config["recall_ks"]
    # TerminateOnNaN is the only callback that stops training early.
    nan = bool(model.stop_training)
    last_epoch = selector.history[-1]["epoch"] if selector.history else 0
    test_start = time.time()
    test_last = _metrics(embed_fn, data.test, ks)
    state_last = _mdr_state(model)
    test_best = None
    if selector.best_weights is not None:
        model.set_weights(selector.best_weights)
        test_best = _metrics(embed_fn, data.test, ks)
    test_s = time.time() - test_start
    record = {
        "key": key, "group": group, "seed": seed, "label": arm.label,
        "base_loss": arm.base_loss, "sampling": arm.sampling, "l2norm": arm.l2norm,
        "mdr_weight": mdr_weight,
        "margin": config["l2_margin"] if arm.l2norm else config["margin"],
        "best_epoch": selector.best_epoch, "last_epoch": last_epoch,
        "val_best": selector.best_row,
        "test_best": test_best, "test_last": test_last,
        "mdr_state_last": state_last, "history": selector.history,
        "nan": nan,
    }
    if draw and test_best is not None:
        record["histograms"] = draw_histograms(
            embed_fn, model, arm.label, arm.mdr, data, out_dir, group.replace("=", ""),
            config["levels"],
        )
    record["wall_s"] = round(time.time() - start, 2)
    record["train_and_validate_s"] = round(train_s, 2)
    record["test_s"] = round(test_s, 2)
    record["cpu_s"] = round(time.process_time() - cpu_start, 2)
    keras.mixed_precision.set_global_policy("float32")
    return record


# ----------------------------------------------------------------------------
# Results file


def _write_json(path, payload):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def _command():
    return "python benchmarks/quality.py " + " ".join(sys.argv[1:])


def start_session(payload, subsets):
    """The provenance record of this command's runs; None for a new file.

    A new file keeps the layout of the first measurements (`versions`,
    `command`, `finished` at the top). A resumed file keeps them as they are
    and gets one `resumed` entry per command that adds runs (its command,
    versions with the commit, start, finish and run keys), so every run can
    be traced to the code that produced it.
    """
    old = payload.get("subsets")
    if old is not None and old != subsets:
        raise ConfigError(
            "The data splits differ from those of the runs already in the results file "
            f"(stored {old}, now {subsets}): paired differences would not be paired."
        )
    payload["subsets"] = subsets
    if "versions" not in payload:
        payload["versions"] = versions()
        payload["command"] = _command()
        return None
    return {
        "command": _command(), "versions": versions(), "load_before": provenance.load_average(),
        "started": _now(), "finished": None, "runs": [],
    }


def _now():
    return datetime.datetime.now().isoformat(timespec="seconds")


def finish_run(payload, session, key):
    if session is None:
        payload["finished"] = _now()
        return
    if not session["runs"]:
        payload.setdefault("resumed", []).append(session)
    session["runs"].append(key)
    session["finished"] = _now()


def open_results(path, config, report_only):
    if os.path.exists(path):
        with open(path) as f:
            payload = json.load(f)
        if report_only:
            return payload
        old = payload.get("config", {})
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if changed:
            raise ConfigError(
                f"{path} holds runs with another configuration (differs in {changed}): "
                "use another --output_dir, the same flags to resume, or delete the file."
            )
        return payload
    if report_only:
        raise ConfigError(f"--report_only: no results at {path}.")
    return {"config": config, "runs": {}}


# ----------------------------------------------------------------------------
# Reports

METRICS = ("recall@1", "recall@2", "recall@4", "recall@8", "map@r")


def _metric_names(ks):
    return [f"recall@{k}" for k in ks] + ["map@r"]


def _header(name):
    return f"R@{name[7:]}" if name.startswith("recall@") else "MAP@R"


def _ordered_groups(payload, mode, finite=False):
    """The groups (arms, lambdas) in display order; `finite`: with a result."""
    groups = []
    for r in payload["runs"].values():
        if r["group"] not in groups and (not finite or r["test_best"] is not None):
            groups.append(r["group"])
    if mode == "compare":
        return sorted(groups, key=lambda g: list(ARMS).index(g) if g in ARMS else 99)
    return sorted(groups, key=lambda g: float(g.split("=")[1]))


def group_values(payload, group, which, metric):
    """{seed: value} of one group's runs."""
    return {
        r["seed"]: r[which][metric]
        for r in payload["runs"].values()
        if r["group"] == group and r[which] is not None  # None: the run diverged
    }


def _mean_std(values):
    values = np.asarray(list(values), np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return float(values.mean()), std


def _fmt(mean, std, scale=100.0):
    if np.isnan(mean):
        return "-"
    if np.isnan(std):
        return f"{scale * mean:.2f}"
    return f"{scale * mean:.2f} ± {scale * std:.2f}"


def _paired(payload, group, baseline, which, metric):
    a = group_values(payload, group, which, metric)
    b = group_values(payload, baseline, which, metric)
    seeds = sorted(set(a) & set(b))
    diffs = np.asarray([a[s] - b[s] for s in seeds], np.float64)
    return seeds, diffs


def _signed(diffs):
    """Mean ± std of differences, in points, signed."""
    mean, std = _mean_std(diffs)
    return f"{100 * mean:+.2f}" + ("" if np.isnan(std) else f" ± {100 * std:.2f}")


def _ci95(diffs):
    if diffs.size < 2:
        return float("nan")
    from scipy import stats

    return float(stats.t.ppf(0.975, diffs.size - 1) * diffs.std(ddof=1) / np.sqrt(diffs.size))


def _label(payload, group):
    for r in payload["runs"].values():
        if r["group"] == group:
            return r["label"]
    return group


def summary_table(payload, mode, which, ks):
    names = _metric_names(ks)
    lines = [
        "| Method | seeds | " + " | ".join(_header(n) for n in names) + " | epoch |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for group in _ordered_groups(payload, mode):
        cells = []
        for name in names:
            cells.append(_fmt(*_mean_std(group_values(payload, group, which, name).values())))
        runs = [r for r in payload["runs"].values() if r["group"] == group]
        epochs = [r["best_epoch" if which == "test_best" else "last_epoch"]
                  for r in runs if r[which] is not None]
        diverged = len(runs) - len(epochs)
        n = f"{len(epochs)}" + (f" ({diverged} diverged)" if diverged else "")
        epoch = f"{np.mean(epochs):.1f}" if epochs else "-"
        lines.append(f"| {_label(payload, group)} | {n} | " + " | ".join(cells) + f" | {epoch} |")
    return "\n".join(lines)


def paired_table(payload, mode, which):
    groups = _ordered_groups(payload, mode)
    if mode == "compare":
        pairs = [(g, b) for g in groups for a, b in PAIRS if a == g and b in groups]
    else:
        zero = next((g for g in groups if float(g.split("=")[1]) == 0.0), None)
        pairs = [(g, zero) for g in groups if zero is not None and g != zero]
    if not pairs:
        return ""
    lines = [
        "| Method | vs | seeds | ΔR@1 (mean ± std) | 95% CI of ΔR@1 | better / worse | ΔMAP@R (mean ± std) |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, baseline in pairs:
        seeds, d1 = _paired(payload, group, baseline, which, "recall@1")
        _, dm = _paired(payload, group, baseline, which, "map@r")
        if not seeds:
            continue
        ci = _ci95(d1)
        ci_text = "-" if np.isnan(ci) else f"[{100 * (d1.mean() - ci):+.2f}, {100 * (d1.mean() + ci):+.2f}]"
        lines.append(
            f"| {_label(payload, group)} | {_label(payload, baseline)} | {len(seeds)} | "
            f"{_signed(d1)} | {ci_text} | {int(np.sum(d1 > 0))} / {int(np.sum(d1 < 0))} | "
            f"{_signed(dm)} |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def mdr_table(payload, mode):
    lines = ["| Method | levels (end of training) | moving mean | moving std |", "|---|---|---|---|"]
    any_row = False
    for group in _ordered_groups(payload, mode):
        runs = [r for r in payload["runs"].values() if r["group"] == group and r["mdr_weight"] > 0]
        if not runs:
            continue
        any_row = True
        levels = np.asarray([r["mdr_state_last"]["levels"] for r in runs], np.float64)
        mean = [r["mdr_state_last"]["moving_mean"] for r in runs]
        std = [r["mdr_state_last"]["moving_std"] for r in runs]
        if len(runs) > 1:
            level_text = ", ".join(
                f"{m:.2f} ± {s:.2f}" for m, s in zip(levels.mean(0), levels.std(0, ddof=1))
            )
        else:
            level_text = ", ".join(f"{m:.2f}" for m in levels[0])
        lines.append(
            f"| {_label(payload, group)} | {level_text} | {np.mean(mean):.3f} | {np.mean(std):.3f} |"
        )
    return "\n".join(lines) if any_row else ""


def _machine(info):
    return (
        f"TensorFlow {info.get('tensorflow', '?')}, Keras {info.get('keras', '?')}, "
        f"keras_mdr {info.get('keras_mdr', '?')} (commit {info.get('git_commit', '?')}"
        f"{' with uncommitted changes' if info.get('git_dirty') else ''}), "
        f"Python {info.get('python', '?')}, {info.get('cpus', '?')} CPUs, "
        f"GPUs: {info.get('gpus') or 'none'}"
    )


def provenance_lines(payload):
    """Where the runs come from: one line per command that added runs."""
    runs = payload["runs"]
    total = sum(r["wall_s"] for r in runs.values())
    info = payload.get("versions", {})
    resumed = payload.get("resumed", [])
    if not resumed:
        return [
            f"Measured: {len(runs)} runs, {total / 60:.1f} min of training and evaluation, "
            f"finished {payload.get('finished', '?')}; {_machine(info)}.",
            f"Command: `{payload.get('command', '?')}`",
        ]
    later = {key for session in resumed for key in session["runs"]}
    lines = [
        f"Measured: {len(runs)} runs, {total / 60:.1f} min of training and evaluation, by "
        f"{len(resumed) + 1} commands with the same configuration and data splits:",
        "",
        f"- {len(runs) - len(later)} runs, finished {payload.get('finished', '?')}; "
        f"{_machine(info)}: `{payload.get('command', '?')}`",
    ]
    for session in resumed:
        groups = []
        for key in session["runs"]:
            if runs[key]["label"] not in groups:
                groups.append(runs[key]["label"])
        minutes = sum(runs[key]["wall_s"] for key in session["runs"]) / 60
        lines.append(
            f"- {len(session['runs'])} runs ({', '.join(groups)}), {minutes:.1f} min, "
            f"{session['started']} to {session['finished']}; {_machine(session['versions'])}: "
            f"`{session['command']}`"
        )
    return lines


def _sampler_note(payload):
    samplings = {r.get("sampling") for r in payload["runs"].values()}
    if "release" not in samplings:
        return []
    return [
        "",
        "Negative sampling of the distance-weighted arms: Triplet, Triplet + L2Norm and "
        "Triplet + MDR use the textbook rule of Wu et al. (the losses' `sampling=\"textbook\"`); "
        "the arms marked *(release sampler)* use the rule of the MDR authors' code "
        "(`sampling=\"release\"`, the losses' default).",
    ]


def report_markdown(payload, mode, out_dir, doc_dir):
    config = payload["config"]
    ks = config["recall_ks"]
    runs = list(payload["runs"].values())
    subsets = payload.get("subsets", {})
    rel = lambda name: os.path.relpath(os.path.join(out_dir, name), doc_dir)  # noqa: E731
    test_note = (
        f"{subsets.get('test_evaluated', '?'):,} of the {subsets.get('test_images', '?'):,} "
        f"test images (classes {subsets.get('test_classes', '?')}; a fixed seeded subset, the same "
        "for every run)"
        if subsets else "the test images"
    )
    lines = provenance_lines(payload) + [
        "",
        f"Test metrics (%) on {test_note}, at the epoch with the best validation "
        f"Recall@1 (validation: classes {subsets.get('validation_classes', '?')}, "
        f"{subsets.get('validation_evaluated', 0):,} images); mean ± std over seeds "
        "(sample std); `epoch`: the mean chosen epoch.",
        *_sampler_note(payload),
        "",
        summary_table(payload, mode, "test_best", ks),
        "",
        "Paired differences at the chosen epoch (same seed: same initial weights, batches and "
        "evaluation images); the 95% CI is Student's t over seeds:",
        "",
        paired_table(payload, mode, "test_best"),
        "",
        f"At the last epoch ({config['epochs']}):",
        "",
        summary_table(payload, mode, "test_last", ks),
        "",
        "Paired differences at the last epoch:",
        "",
        paired_table(payload, mode, "test_last"),
    ]
    table = mdr_table(payload, mode)
    if table:
        lines += [
            "", "MDR state at the end of training (mean over seeds; the moving mean is "
            "1 - 1/B by construction, the diagonal zeros being counted):", "", table,
        ]
    figure = "recall_at_1.png" if mode == "compare" else "sweep_recall_at_1.png"
    lines += ["", f"![Recall@1 and MAP@R]({rel(figure)})"]
    if mode == "compare":
        hist = [r for r in runs if r.get("histograms")]
        pictures = []
        for group in _ordered_groups(payload, mode):
            for r in hist:
                if r["group"] == group:
                    pictures.append(
                        f"| {r['label']} (seed {r['seed']}) | ![]({rel(r['histograms']['test'])}) "
                        f"| ![]({rel(r['histograms']['train'])}) |"
                    )
                    break
        if pictures:
            lines += [
                "",
                "Distance histograms of the chosen-epoch models (MDR-normalised distances "
                "`Z = (D/mean(D) - mu) / sigma` with each model's moving statistics; "
                "green: same-class pairs, red: different-class pairs; dashed: levels):",
                "",
                "| Model | test classes | training classes |",
                "|---|---|---|",
                *pictures,
            ]
    return "\n".join(lines) + "\n"


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_compare(payload, path, which="test_best"):
    groups = _ordered_groups(payload, "compare", finite=True)
    fig = _figure(10, 4.2)
    for i, (metric, title) in enumerate((("recall@1", "Recall@1"), ("map@r", "MAP@R"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for x, group in enumerate(groups):
            values = np.asarray(list(group_values(payload, group, which, metric).values())) * 100
            mean, std = values.mean(), (values.std(ddof=1) if values.size > 1 else 0.0)
            color = "tab:orange" if "mdr" in group else ("tab:green" if "l2" in group else "tab:blue")
            jitter = np.linspace(-0.15, 0.15, values.size) if values.size > 1 else np.zeros(1)
            ax.scatter(x + 0.25 + jitter, values, color=color, s=12, alpha=0.7, zorder=3)
            ax.errorbar(x, mean, yerr=std, fmt="o", color=color, markersize=8, capsize=6,
                        linewidth=1.6, zorder=4)
        ax.set_xlim(-0.6, len(groups) - 0.2)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([_label(payload, g) for g in groups], rotation=20, ha="right",
                           fontsize="small")
        ax.set_ylabel(f"{title} (%), test classes")
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_title(f"{title}: mean ± std over seeds (small dots: single seeds)", fontsize="small")
    fig.suptitle(f"{payload['config']['dataset']}: at the epoch of best validation Recall@1",
                 fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_sweep(payload, path, which="test_best"):
    groups = _ordered_groups(payload, "sweep", finite=True)
    lambdas = np.asarray([float(g.split("=")[1]) for g in groups])
    fig = _figure(10, 4.2)
    for i, (metric, title) in enumerate((("recall@1", "Recall@1"), ("map@r", "MAP@R"))):
        ax = fig.add_subplot(1, 2, i + 1)
        means, stds = [], []
        for group in groups:
            values = np.asarray(list(group_values(payload, group, which, metric).values())) * 100
            means.append(values.mean())
            stds.append(values.std(ddof=1) if values.size > 1 else 0.0)
            ax.scatter(np.full(values.size, float(group.split("=")[1])), values, color="gray", s=9)
        base = BASE_LABELS[payload["config"]["sweep_base_loss"]]
        ax.errorbar(lambdas, means, yerr=stds, marker="o", capsize=4, color="tab:orange",
                    label=f"{base} + MDR (mean ± std; gray: seeds)")
        if 0.0 in lambdas:
            ax.axhline(means[list(lambdas).index(0.0)], color="tab:blue", linestyle="--",
                       linewidth=1, label=f"lambda = 0 ({base}, no MDR)")
        positive = lambdas[lambdas > 0]
        if positive.size:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
        ax.set_xticks(lambdas)
        ax.set_xticklabels([f"{v:g}" for v in lambdas], fontsize="small")
        ax.set_xlabel("lambda (mdr_weight)")
        ax.set_ylabel(f"{title} (%), test classes")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{payload['config']['dataset']}: test metrics against lambda, at the epoch of "
                 "best validation Recall@1", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def update_doc(doc, marker, text):
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    with open(doc) as f:
        content = f.read()
    if begin not in content or end not in content:
        print(f"warning: {doc} has no {begin} ... {end} markers; left unchanged.")
        return False
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(doc, "w") as f:
        f.write(f"{head}{begin}\n{text}{end}{tail}")
    return True


def write_reports(payload, mode, out_dir, doc):
    if not payload["runs"]:
        return
    stem = "compare" if mode == "compare" else "sweep"
    if mode == "compare":
        plot_compare(payload, os.path.join(out_dir, "recall_at_1.png"))
    else:
        plot_sweep(payload, os.path.join(out_dir, "sweep_recall_at_1.png"))
    with open(os.path.join(out_dir, f"{stem}.md"), "w") as f:
        f.write(report_markdown(payload, mode, out_dir, out_dir))
    if doc:
        marker = f"quality:{payload['config']['dataset']}:{mode}"
        if update_doc(doc, marker, report_markdown(payload, mode, out_dir, os.path.dirname(os.path.abspath(doc)))):
            print(f"Updated {doc} ({marker}).")
    print()
    print(summary_table(payload, mode, "test_best", payload["config"]["recall_ks"]))
    print()
    print(paired_table(payload, mode, "test_best"))
    print(f"\nTables and figures in {out_dir}/{stem}.md")


# ----------------------------------------------------------------------------


def _get(metrics, name):
    return float("nan") if metrics is None else metrics[name]


def main(argv):
    del argv
    try:
        return _main()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def _main():
    logging.set_verbosity(logging.WARNING)  # faiss logs its loader at INFO
    config, seeds = make_config()
    specs = run_specs(FLAGS.mode, seeds)
    out_dir = os.path.abspath(FLAGS.output_dir or os.path.join(REPO, "docs", "results", FLAGS.dataset))
    path = os.path.join(out_dir, "compare.json" if FLAGS.mode == "compare" else "sweep.json")
    doc = os.path.abspath(FLAGS.doc) if FLAGS.doc else None
    if doc and not os.path.exists(doc):
        raise ConfigError(f"--doc={FLAGS.doc!r} does not exist.")
    payload = open_results(path, config, FLAGS.report_only)
    if FLAGS.report_only:
        write_reports(payload, FLAGS.mode, out_dir, doc)
        return
    data = load_data(config)  # before creating anything: missing data fails here
    os.makedirs(out_dir, exist_ok=True)
    session = start_session(payload, data.subsets)
    todo = [s for s in specs if s[0] not in payload["runs"]]
    print(
        f"{config['dataset']}: train classes {data.subsets['train_classes']}, validation "
        f"{data.subsets['validation_classes']} ({data.subsets['validation_evaluated']} images "
        f"evaluated), test {data.subsets['test_classes']} ({data.subsets['test_evaluated']} of "
        f"{data.subsets['test_images']}); batch {config['classes_per_batch']} x "
        f"{config['images_per_class']}, {config['epochs']} x {config['steps_per_epoch']} steps. "
        f"{len(specs) - len(todo)} of {len(specs)} runs already in {path}.",
        flush=True,
    )
    drawn = {r["group"] for r in payload["runs"].values() if r.get("histograms")}
    start = time.time()
    for i, (key, group, seed, spec) in enumerate(todo):
        draw = FLAGS.histograms and FLAGS.mode == "compare" and group not in drawn and seed == seeds[0]
        record = run_one(config, data, key, group, seed, spec, out_dir, draw, FLAGS.verbose)
        if draw:
            drawn.add(group)
        payload["runs"][key] = record
        finish_run(payload, session, key)
        _write_json(path, payload)
        elapsed = time.time() - start
        left = elapsed / (i + 1) * (len(todo) - i - 1)
        val_r1 = (record["val_best"] or {}).get("recall@1", float("nan"))
        print(
            f"[{i + 1}/{len(todo)}] {key}: best epoch {record['best_epoch']} "
            f"val R@1 {100 * val_r1:.2f}{' (stopped: NaN loss)' if record['nan'] else ''}, test R@1 "
            f"{100 * _get(record['test_best'], 'recall@1'):.2f} (last epoch "
            f"{100 * _get(record['test_last'], 'recall@1'):.2f}), MAP@R "
            f"{100 * _get(record['test_best'], 'map@r'):.2f}; {record['wall_s']:.0f}s "
            f"(cpu {record['cpu_s']:.0f}s); elapsed {elapsed / 60:.1f} min, "
            f"about {left / 60:.1f} min left",
            flush=True,
        )
    write_reports(payload, FLAGS.mode, out_dir, doc)


if __name__ == "__main__":
    app.run(main)
