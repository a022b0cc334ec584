"""`train(config)`: the one entry point behind every example script.

A run directory holds:
- `config.json`: the configuration (a restart with another one is refused;
  `--epochs` may be raised to extend a run, see `run_files.EXTENSIBLE`);
- `metrics.jsonl`, `log.csv` and `tensorboard/`: per-epoch logs, epochs
  numbered from 1 (`keras_mdr.training.logs`); TensorBoard gets the retrieval
  metrics, the distance histogram with the levels and, at the end, the test
  embeddings in its projector (`keras_mdr.projector`);
- `checkpoints/last.keras` + `checkpoints/state.json`: the full model (weights,
  MDR levels and statistics, optimizer) every `checkpoint_every` steps and at
  each epoch end; `checkpoints/best.keras` by validation Recall@1 (by test
  Recall@1 under the paper protocol, as the release's `best.pth`);
- `pictures/`: Recall@K curves, distance histograms with the levels, a
  retrieval grid;
- `results.json`: test metrics; `export/<version>/`: the SavedModel for TF Serving.

Restarting the same command resumes from `last.keras` mid-epoch and replays
the steps a kill lost on the same data (`keras_mdr.training.checkpoint`).
Re-running a finished run measures and exports nothing twice.
"""

import dataclasses
import os
import sys

import keras
import numpy as np
import tensorflow as tf

import keras_mdr
from keras_mdr import data as data_lib
from keras_mdr import evaluation
from keras_mdr import optimizers as optimizers_lib
from keras_mdr import projector
from keras_mdr import validation
from keras_mdr.losses import distance_weighted
from keras_mdr.training import checkpoint as checkpoint_lib
from keras_mdr.training import encoders
from keras_mdr.training import logs as logs_lib
from keras_mdr.training import presets
from keras_mdr.training import protocol as protocol_lib
from keras_mdr.training import run_files

STRATEGIES = ("default", "mirrored", "multiworker")
PRECISIONS = ("none", "auto", "mixed_float16", "mixed_bfloat16")
# Metrics that count queries, printed as integers.
COUNT_METRICS = ("num_queries", "excluded_queries")
# The string settings with a fixed set of values.
CHOICES = {
    "protocol": ("default", "paper"),
    "batchnorm": ("", "release", "frozen", "train"),
    "head_init": encoders.HEAD_INITS,
    "optimizer": ("adam", "adam_l2"),
    "sampling": distance_weighted.SAMPLINGS,
    "batches": ("balanced", "release"),
    "crops": ("default", "release"),
    "eval_distance": ("euclidean", "squared_euclidean"),
}


ConfigError = presets.ConfigError


def _fail(message):
    raise ConfigError(message)


def _flag(check, config, name, *args):
    """Runs a `keras_mdr.validation` check on a config field, as a `ConfigError`."""
    try:
        return check(getattr(config, name), f"--{name}", *args)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _validate_numbers(config):
    for name in ("epochs", "steps_per_epoch", "classes_per_batch", "images_per_class",
                 "embedding_dim", "eval_every", "image_size", "resize_size"):
        _flag(validation.positive_int, config, name)
    if config.classes_per_batch < 2:
        _fail("--classes_per_batch must be at least 2: a triplet needs a negative class.")
    if config.images_per_class < 2:
        _fail("--images_per_class must be at least 2: a triplet needs a positive pair.")
    for name in ("learning_rate", "lr_decay_factor"):
        _flag(validation.positive_float, config, name)
    for name in ("mdr_weight", "level_weight", "weight_decay", "margin"):
        _flag(validation.non_negative_float, config, name)
    _flag(validation.non_negative_int, config, "checkpoint_every")
    if not _flag(validation.int_list, config, "recall_ks"):
        _fail("--recall_ks needs at least one K.")
    decay = list(_flag(validation.int_list, config, "lr_decay_epochs"))
    if decay != sorted(set(decay)):
        _fail(f"--lr_decay_epochs must be increasing. Received: {decay}.")
    if config.resize_size < config.image_size:
        _fail(f"--resize_size ({config.resize_size}) must be >= --image_size ({config.image_size}).")
    _flag(validation.non_negative_int, config, "batch_size")
    balanced = config.classes_per_batch * config.images_per_class
    if config.batches == "balanced" and config.batch_size not in (0, balanced):
        _fail(f"--batch_size={config.batch_size} needs --batches=release: balanced batches hold "
              f"--classes_per_batch x --images_per_class = {balanced} images (use 0).")


def _validate_protocol(config):
    for name, allowed in CHOICES.items():
        if getattr(config, name) not in allowed:
            _fail(f"Unknown --{name}={getattr(config, name)!r}: use one of {allowed}.")
    if config.protocol == "paper" and config.validation_classes:
        _fail("--protocol=paper evaluates the test split every epoch, without a validation "
              "split: use --validation_classes=0, or --protocol=default to select on validation.")
    if config.crops == "release" and config.dataset in presets.SMALL_IMAGE_DATASETS:
        _fail(f"--crops=release is the release's photo pipeline; --dataset={config.dataset} "
              "uses its own small-image transform (--crops=default).")


def _validate_choices(config):
    _validate_protocol(config)
    if config.dataset not in data_lib.DATASET_NAMES:
        _fail(f"Unknown dataset {config.dataset!r}: use one of {sorted(data_lib.DATASET_NAMES)}.")
    encoders.check_backbone(config.backbone, config.weights, config.image_size)
    if config.strategy not in STRATEGIES:
        _fail(f"Unknown --strategy={config.strategy!r}: use one of {STRATEGIES}.")
    if config.mixed_precision not in PRECISIONS:
        _fail(f"Unknown --mixed_precision={config.mixed_precision!r}: use one of {PRECISIONS}.")
    if config.mixed_precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        _fail("--mixed_precision=mixed_float16 needs a GPU; on CPU use mixed_bfloat16 (or auto).")
    try:  # the loss checks its own arguments
        make_loss(config)
    except ValueError as error:
        _fail(f"Bad loss flags (--base_loss, --margin, --mdr_weight, --level_weight): {error}")


def validate(config):
    """Checks a config before any expensive work; raises a one-line `ConfigError`."""
    _validate_choices(config)
    _validate_numbers(config)
    if config.dataset in presets.SMALL_IMAGE_DATASETS and config.backbone != "small_cnn":
        if config.image_size < encoders.MIN_IMAGE_SIZE.get(config.backbone, 1):
            _fail(f"--dataset={config.dataset} with --backbone={config.backbone} needs --image_size >= "
                  f"{encoders.MIN_IMAGE_SIZE[config.backbone]} (images are upsampled).")
    if config.dataset not in presets.SMALL_IMAGE_DATASETS:
        if config.data_dir is not None and not os.path.isdir(config.data_dir):
            _fail(f"--data_dir={config.data_dir!r} does not exist: point it at the dataset's folder.")
    if config.dataset == "folder" and config.data_dir is None:
        _fail("--dataset=folder needs --data_dir pointing at a folder of class subfolders.")


def make_strategy(name):
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def set_precision(name):
    if name == "auto":
        name = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy("float32" if name == "none" else name)
    return name


@dataclasses.dataclass
class RunData:
    """A run's splits and transforms, and the held-out split it monitors."""

    splits: data_lib.DatasetSplits
    train_transform: object
    test_transform: object

    @property
    def monitor_prefix(self):
        return "val_" if self.splits.validation is not None else "test_"

    def eval_data(self, split, batch_size=256):
        return data_lib.eval_dataset(split, batch_size, transform=self.test_transform)


def _transforms(config):
    if config.dataset in presets.SMALL_IMAGE_DATASETS:
        native = {"digits": 8, "fashion_mnist": 28}[config.dataset]
        size = None if config.image_size == native else config.image_size
        make = lambda flip: data_lib.grayscale_transform(  # noqa: E731
            image_size=size, channels=3, flip=flip, preprocess=None
        )
        # Digits are not mirror-symmetric; clothes are.
        return make(config.dataset == "fashion_mnist"), make(False)
    if config.crops == "release":
        return (data_lib.release_train_transform(config.image_size, config.resize_size),
                data_lib.release_eval_transform(config.image_size, config.resize_size))
    train = data_lib.train_transform(
        image_size=config.image_size, resize_size=config.resize_size, preprocess=None
    )
    test = data_lib.eval_transform(
        image_size=config.image_size, resize_size=config.resize_size, preprocess=None
    )
    return train, test


def load_data(config):
    """Loads the dataset's splits (a missing dataset is a `ConfigError`)."""
    try:
        splits = data_lib.load_dataset(
            config.dataset, data_dir=config.data_dir,
            validation_classes=config.validation_classes, seed=config.seed,
        )
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from error
    if config.batches == "release":
        _check_release_batches(config, splits.train)
    elif config.classes_per_batch > splits.train.num_classes:
        _fail(f"--classes_per_batch={config.classes_per_batch} exceeds the "
              f"{splits.train.num_classes} training classes of {config.dataset}.")
    return RunData(splits, *_transforms(config))


def _check_release_batches(config, train):
    counts = np.unique(train.labels, return_counts=True)[1]
    available = int(np.minimum(counts, config.images_per_class).sum())
    if available < protocol_lib.effective_batch_size(config):
        _fail(f"--batches=release with --batch_size={protocol_lib.effective_batch_size(config)} "
              f"needs that many training images at --images_per_class={config.images_per_class} "
              f"per class; {config.dataset} has {available} ({len(counts)} classes).")


def prepare_devices(config):
    """Seeds, sets the precision policy and makes the strategy; returns both."""
    keras.utils.set_random_seed(config.seed)
    precision = set_precision(config.mixed_precision)
    strategy = make_strategy(config.strategy)
    if config.batches == "release":
        if protocol_lib.effective_batch_size(config) % strategy.num_replicas_in_sync:
            _fail(f"--batch_size={protocol_lib.effective_batch_size(config)} must be a multiple "
                  f"of the {strategy.num_replicas_in_sync} replicas.")
    elif config.classes_per_batch % strategy.num_replicas_in_sync:
        _fail(f"--classes_per_batch={config.classes_per_batch} must be a multiple of the "
              f"{strategy.num_replicas_in_sync} replicas, so every replica gets whole classes.")
    return strategy, precision


def learning_rate(config):
    """Adam's learning rate: constant, or x `lr_decay_factor` at each decay epoch.

    A decay "at epoch e" applies from the first step of epoch e + 1 (0-based
    step `e * steps_per_epoch`): `PiecewiseConstantDecay` switches to the next
    value once `step > boundary`, so the boundary is that step minus one.
    """
    if not config.lr_decay_epochs:
        return config.learning_rate
    boundaries = [int(e) * config.steps_per_epoch - 1 for e in config.lr_decay_epochs]
    values = [config.learning_rate * config.lr_decay_factor**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def make_loss(config):
    return keras_mdr.MDRTripletLoss(
        base_loss=config.base_loss, margin=config.margin, mdr_weight=config.mdr_weight,
        level_weight=config.level_weight, seed=config.seed, sampling=config.sampling,
    )


def make_optimizer(config):
    """Keras' Adam (decoupled weight decay) or `AdamL2` (PyTorch's coupled L2, the release's)."""
    if config.optimizer == "adam_l2":
        return optimizers_lib.AdamL2(learning_rate(config), weight_decay=config.weight_decay)
    return keras.optimizers.Adam(learning_rate(config), weight_decay=config.weight_decay or None)


def build_model(config, channels=3):
    """The `MDRModel` of a config, compiled with its loss and optimizer."""
    encoder = encoders.build_encoder(
        config.backbone, config.weights, config.embedding_dim, config.image_size,
        channels=channels, batchnorm=protocol_lib.effective_batchnorm(config),
        head_init=config.head_init,
    )
    model = keras_mdr.MDRModel(encoder)
    model.compile(
        optimizer=make_optimizer(config),
        loss=make_loss(config),
        jit_compile=bool(config.xla),
    )
    model.build((None, config.image_size, config.image_size, channels))
    model.optimizer.build(model.trainable_variables)
    return model


def build_or_resume(config, run, strategy):
    """Builds the model and restores `last.keras`; returns (model, checkpoint, step)."""
    with strategy.scope():
        model = build_model(config)
    checkpoint = checkpoint_lib.ResumeCheckpoint(run.checkpoints, config.checkpoint_every)
    start_step = checkpoint.restore(model)
    if start_step and config.verbose:
        print(f"Resuming {run.directory} from step {start_step}.")
    return model, checkpoint, start_step


def test_metrics(encoder, data, ks, distance="euclidean"):
    """Retrieval metrics of `encoder` on the test classes (In-Shop: query vs gallery)."""
    splits = data.splits

    def embed(split):
        return evaluation.embed_dataset(
            lambda images: encoder(images, training=False), data.eval_data(split), verbose=0
        )

    if splits.query is not None:
        (q, q_labels), (g, g_labels) = embed(splits.query), embed(splits.gallery)
        return evaluation.retrieval_metrics(q, q_labels, ks, gallery_embeddings=g,
                                            gallery_labels=g_labels, distance=distance)
    return evaluation.retrieval_metrics(*embed(splits.test), ks, distance=distance)


def training_batches(config, data, replicas, first_batch):
    """The endless training batches from batch number `first_batch`.

    `--batches=balanced`: P classes x K images, whole classes per replica;
    `--batches=release`: the release's `batch_size` images, `min(m, n_c)` per class.
    """
    if config.batches == "release":
        return data_lib.release_batches(
            data.splits.train, protocol_lib.effective_batch_size(config), config.images_per_class,
            transform=data.train_transform, seed=config.seed, start_batch=first_batch,
        )
    return data_lib.balanced_dataset(
        data.splits.train, config.classes_per_batch, config.images_per_class,
        transform=data.train_transform, seed=config.seed, num_replicas=replicas,
        start_batch=first_batch,
    )


def _monitored(data):
    """(data, gallery) the run evaluates each epoch: validation, else test."""
    splits = data.splits
    if splits.validation is not None:
        return data.eval_data(splits.validation), None
    if splits.query is not None:
        return data.eval_data(splits.query), data.eval_data(splits.gallery)
    return data.eval_data(splits.test), None


def _best_checkpoint(config, run, prefix):
    """`best.keras` by the monitored Recall@1, continuing the best of earlier invocations.

    The paper protocol monitors the test split, as the release's `best.pth`:
    saved only when an epoch beats every earlier one, epoch 0 included.
    """
    monitor = f"{prefix}recall@{config.recall_ks[0]}"
    earlier = [r[monitor] for r in logs_lib.read_rows(run.path("metrics.jsonl")) if monitor in r]
    return keras.callbacks.ModelCheckpoint(
        run.path("checkpoints", "best.keras"), monitor=monitor, mode="max", save_best_only=True,
        initial_value_threshold=max(earlier) if earlier else None,
    )


def make_callbacks(config, run, data, model, checkpoint, extra=()):
    """Retrieval evaluation, logs, TensorBoard, checkpoints, then the user's callbacks.

    The retrieval callback comes first so that the others see its metrics;
    the logs are written before the checkpoint, so an epoch whose row was
    written and whose checkpoint was not is redone and logged again (once).
    """
    monitor, gallery = _monitored(data)
    embed = lambda images: model.encoder(images, training=False)  # noqa: E731
    measure = keras_mdr.callbacks.RetrievalMetrics(
        monitor, gallery, ks=tuple(config.recall_ks), every_n_epochs=config.eval_every,
        prefix=data.monitor_prefix, distance=config.eval_distance, embed_fn=embed,
        seed=config.seed, verbose=config.verbose,
    )
    callbacks = [
        measure,
        keras_mdr.callbacks.RetrievalPictures(measure, run.path("pictures"), grid_queries=8,
                                              seed=config.seed),
        keras.callbacks.TerminateOnNaN(),
    ]
    if data.splits.validation is not None:
        callbacks.append(_best_checkpoint(config, run, "val_"))
    elif config.protocol == "paper":
        callbacks.append(_best_checkpoint(config, run, "test_"))
    callbacks += [
        logs_lib.RunLogger(run.directory),
        keras.callbacks.TensorBoard(run.path("tensorboard")),
        logs_lib.DistanceSummary(
            next(iter(monitor.take(1)))[0], run.path("tensorboard"), embed,
            every_n_epochs=config.eval_every, picture_dir=run.path("pictures"),
        ),
        logs_lib.PictureSummary(run.path("pictures"), run.path("tensorboard")),
        projector.ProjectorExport(data.eval_data(data.splits.test),
                                  run.path("tensorboard"), embed, seed=config.seed),
        checkpoint,
    ]
    return callbacks + list(extra)


def evaluate_on_test(config, data, model, run, results):
    """Adds the test metrics (and those of `best.keras`) unless measured at this step."""
    step = int(model.optimizer.iterations)
    if results.get("step") == step and "test" in results:
        return results  # a finished run started again: nothing new to measure
    ks = tuple(config.recall_ks)
    results.update(step=step, test=test_metrics(model.encoder, data, ks, config.eval_distance))
    best_path = run.path("checkpoints", "best.keras")
    if data.splits.validation is not None and os.path.exists(best_path):
        best = keras.saving.load_model(best_path)
        results["test_at_best"] = test_metrics(best.encoder, data, ks, config.eval_distance)
        monitor = f"val_recall@{ks[0]}"
        rows = [r for r in logs_lib.read_rows(run.path("metrics.jsonl")) if monitor in r]
        results["best_epoch"] = max(rows, key=lambda r: r[monitor])["epoch"] if rows else None
    return results


def export_once(config, run, model, results):
    """Exports the encoder for TF Serving, unless this step's export already exists."""
    if not config.export:
        return
    done = results.get("export_dir")
    if done and os.path.isdir(done) and results.get("export_step") == results["step"]:
        return
    from keras_mdr import export as export_lib  # needs the TensorFlow backend

    results["export_dir"] = export_lib.export_for_serving(
        model.encoder, run.path("export"), image_size=config.image_size,
        resize_size=config.resize_size, max_pixels=config.max_image_pixels,
    )
    results["export_step"] = results["step"]


def print_table(title, rows, ks, stream=None):
    """Prints a Recall@K table: rows is {row name: {"recall@k": value, ...}}.

    Fractions are shown in %, the query counts ("num_queries",
    "excluded_queries") as they are. `stream` defaults to the current `sys.stdout`.
    """
    stream = stream or sys.stdout
    extra = sorted({key for r in rows.values() for key in r if not key.startswith("recall@")})
    width = max([12, *map(len, rows)])
    header = [f"{'':>{width}s}", *[f"{h:>12s}" for h in [f"R@{k}" for k in ks] + extra]]
    print(f"\n{title}", file=stream)
    print(" | ".join(header), file=stream)

    def cell(key, value):
        return f"{int(value):12d}" if key in COUNT_METRICS else f"{100 * value:12.2f}"

    for name, row in rows.items():
        cells = [cell("recall", row[f"recall@{k}"]) for k in ks]
        cells += [cell(key, row[key]) if key in row else f"{'':12s}" for key in extra]
        print(" | ".join([f"{name:>{width}s}", *cells]), file=stream)


def report(config, results):
    """Prints the test table (untrained, final, best by validation) and the export."""
    if not config.verbose:
        return
    names = {"test_untrained": "untrained", "test": "final", "test_at_best": "best (val)"}
    rows = {name: results[key] for key, name in names.items() if key in results}
    paper = results.get("paper_protocol")
    if paper:
        rows[f"best (test, epoch {paper['best_epoch']})"] = paper["best_epoch_metrics"]
    print_table(f"{config.dataset}: retrieval on the unseen test classes (%)", rows,
                tuple(config.recall_ks))
    if paper:
        k = config.recall_ks[0]
        print(f"\n{paper['label']}: {100 * paper[f'best_test_recall@{k}']:.2f} "
              f"(epoch {paper['best_epoch']}; the number the release reports)")
        print(f"last epoch's test Recall@{k}: {100 * paper[f'last_test_recall@{k}']:.2f} "
              f"(epoch {paper['last_epoch']})")
        if results.get("differs_from_release"):
            print(f"Settings that differ from the release: {', '.join(results['differs_from_release'])} "
                  "(protocol_card.md).")
    if "export_dir" in results:
        print(f"SavedModel for TF Serving: {results['export_dir']}")


def evaluate_before_training(config, data, model, run, results):
    """The paper protocol's epoch-0 evaluation of the test split, logged as epoch 0 (once)."""
    monitor = f"test_recall@{config.recall_ks[0]}"
    if any(r["epoch"] == 0 and monitor in r for r in logs_lib.read_rows(run.path("metrics.jsonl"))):
        return
    metrics = test_metrics(model.encoder, data, tuple(config.recall_ks), config.eval_distance)
    results["test_untrained"] = metrics
    # RunLogger numbers rows epoch + 1: this is row 0, before the first epoch.
    logs_lib.RunLogger(run.directory).on_epoch_end(-1, {f"test_{k}": v for k, v in metrics.items()})


def start_card(config, run, results, overridden_by):
    """Writes (and prints, when verbose) the run's protocol card."""
    text, rows = protocol_lib.write_card(config, run.directory, overridden_by)
    results["differs_from_release"] = [r["setting"] for r in rows if r["matches"] is False]
    if config.verbose:
        print(text)


def train(config, callbacks=(), overridden_by="argument"):
    """Trains, evaluates and exports one run; returns its results dict.

    Args:
        config: a `keras_mdr.training.TrainConfig`.
        callbacks: extra `keras.callbacks.Callback`s for `fit`, run after
            the run's own (they see the retrieval metrics in the logs).
        overridden_by: how the protocol card names a value that differs
            from the preset ("flag" from the command line).

    Returns:
        dict with "test" (test metrics of the final model), "step",
        "test_untrained" (small datasets), "test_at_best" and "best_epoch"
        when a validation split exists, "export_dir" and "run_dir";
        under `protocol="paper"`, "paper_protocol" (`protocol.paper_summary`:
        the best test Recall@1 over the epochs, and the last epoch's), and
        "differs_from_release" (the card's settings that are not the release's).
    """
    validate(config)
    data = load_data(config)
    strategy, precision = prepare_devices(config)
    run = run_files.RunFiles(config.output_dir)
    run.write_config(config)  # every check above passed: the run may start
    model, checkpoint, start_step = build_or_resume(config, run, strategy)
    results = run.read_results()
    results.update(run_dir=run.directory, precision=precision,
                   replicas=strategy.num_replicas_in_sync)
    start_card(config, run, results, overridden_by)
    if config.protocol == "paper" and start_step == 0:
        evaluate_before_training(config, data, model, run, results)
    elif start_step == 0 and config.dataset in presets.SMALL_IMAGE_DATASETS:
        # What training adds: on digits a random CNN already retrieves well.
        results["test_untrained"] = test_metrics(model.encoder, data, tuple(config.recall_ks))
    run.write_results(results)
    checkpoint_lib.fit_resumably(
        model, lambda first: training_batches(config, data, strategy.num_replicas_in_sync, first),
        make_callbacks(config, run, data, model, checkpoint, callbacks),
        start_step=start_step, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch,
        verbose=config.verbose,
    )
    evaluate_on_test(config, data, model, run, results)
    if config.protocol == "paper":
        results["paper_protocol"] = protocol_lib.paper_summary(
            logs_lib.read_rows(run.path("metrics.jsonl")), config.recall_ks[0])
    export_once(config, run, model, results)
    report(config, results)
    run.write_results(results)
    return results


__all__ = [
    "ConfigError", "build_model", "learning_rate", "print_table", "test_metrics", "train",
    "validate",
]
