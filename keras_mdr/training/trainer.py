"""`train(config)`: the one entry point behind every example script.

A run directory holds:
- `config.json`: the configuration (a restart with another one is refused);
- `log.csv`, `metrics.jsonl` and `tensorboard/`: per-epoch logs, appended;
- `checkpoints/last.keras` + `checkpoints/state.json`: the full model (weights,
  MDR levels and statistics, optimizer) every `checkpoint_every` steps and at
  each epoch end; `checkpoints/best.keras` by validation Recall@1;
- `pictures/`: Recall@K curves, distance histograms with the levels, a
  retrieval grid;
- `results.json`: test metrics; `export/<version>/`: the SavedModel for TF Serving.

Restarting the same command resumes from `last.keras` mid-epoch: batches are a
function of (seed, batch number), augmentations of (seed, image position), the
triplet sampler of (seed, optimizer step), so a resumed run ends with the same
variables as one never interrupted.
"""

import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import keras_mdr
from keras_mdr import data as data_lib
from keras_mdr import evaluation
from keras_mdr.training import encoders
from keras_mdr.training import presets

STRATEGIES = ("default", "mirrored", "multiworker")
PRECISIONS = ("none", "auto", "mixed_float16", "mixed_bfloat16")


ConfigError = presets.ConfigError


def _fail(message):
    raise ConfigError(message)


def validate(config):
    """Checks a config before any expensive work; raises a one-line ValueError."""
    if config.dataset not in data_lib.DATASET_NAMES:
        _fail(f"Unknown dataset {config.dataset!r}: use one of {sorted(data_lib.DATASET_NAMES)}.")
    encoders.check_backbone(config.backbone, config.weights, config.image_size)
    if config.strategy not in STRATEGIES:
        _fail(f"Unknown --strategy={config.strategy!r}: use one of {STRATEGIES}.")
    if config.mixed_precision not in PRECISIONS:
        _fail(f"Unknown --mixed_precision={config.mixed_precision!r}: use one of {PRECISIONS}.")
    if config.mixed_precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        _fail("--mixed_precision=mixed_float16 needs a GPU; on CPU use mixed_bfloat16 (or auto).")
    for name in ("epochs", "steps_per_epoch", "classes_per_batch", "images_per_class", "embedding_dim"):
        if int(getattr(config, name)) < 1:
            _fail(f"--{name} must be at least 1. Received: {getattr(config, name)}.")
    if config.images_per_class < 2:
        _fail("--images_per_class must be at least 2: a triplet needs a positive pair.")
    if config.resize_size < config.image_size:
        _fail(f"--resize_size ({config.resize_size}) must be >= --image_size ({config.image_size}).")
    if config.base_loss not in keras_mdr.losses.mdr_triplet_loss.BASE_LOSSES:
        _fail(f"Unknown --base_loss={config.base_loss!r}: use one of "
              f"{keras_mdr.losses.mdr_triplet_loss.BASE_LOSSES}.")
    if config.mdr_weight < 0:
        _fail(f"--mdr_weight must be >= 0. Received: {config.mdr_weight}.")
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


def _transforms(config):
    if config.dataset in presets.SMALL_IMAGE_DATASETS:
        size = None if config.image_size == _native_size(config.dataset) else config.image_size
        make = lambda flip: data_lib.grayscale_transform(  # noqa: E731
            image_size=size, channels=3, flip=flip, preprocess=None
        )
        # Digits are not mirror-symmetric; clothes are.
        return make(config.dataset == "fashion_mnist"), make(False)
    train = data_lib.train_transform(
        image_size=config.image_size, resize_size=config.resize_size, preprocess=None
    )
    test = data_lib.eval_transform(
        image_size=config.image_size, resize_size=config.resize_size, preprocess=None
    )
    return train, test


def _native_size(dataset):
    return {"digits": 8, "fashion_mnist": 28}[dataset]


def _learning_rate(config):
    boundaries = [int(e) * config.steps_per_epoch for e in config.lr_decay_epochs if 0 < e < config.epochs]
    if not boundaries:
        return config.learning_rate
    values = [config.learning_rate * config.lr_decay_factor**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def build_model(config, channels=3):
    """The `MDRModel` of a config, compiled with its loss and optimizer."""
    encoder = encoders.build_encoder(
        config.backbone, config.weights, config.embedding_dim, config.image_size,
        channels=channels, freeze_batchnorm=config.freeze_batchnorm,
    )
    model = keras_mdr.MDRModel(encoder)
    model.compile(
        optimizer=keras.optimizers.Adam(_learning_rate(config), weight_decay=config.weight_decay or None),
        loss=keras_mdr.MDRTripletLoss(
            base_loss=config.base_loss, margin=config.margin, mdr_weight=config.mdr_weight,
            level_weight=config.level_weight, seed=config.seed,
        ),
        jit_compile=bool(config.xla),
    )
    model.build((None, config.image_size, config.image_size, channels))
    model.optimizer.build(model.trainable_variables)
    return model


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves the whole model atomically every n steps and at each epoch end."""

    def __init__(self, directory, every_n_steps=0):
        super().__init__()
        self.directory = directory
        self.every_n_steps = int(every_n_steps)
        os.makedirs(directory, exist_ok=True)

    @property
    def path(self):
        return os.path.join(self.directory, "last.keras")

    def save(self):
        step = int(self.model.optimizer.iterations)
        tmp = os.path.join(self.directory, f".tmp-{os.getpid()}.keras")
        self.model.save(tmp)
        os.replace(tmp, self.path)
        state = os.path.join(self.directory, "state.json")
        with open(state + ".tmp", "w") as f:
            json.dump({"step": step, "time": time.time()}, f)
        os.replace(state + ".tmp", state)

    def on_train_batch_end(self, batch, logs=None):
        if self.every_n_steps and int(self.model.optimizer.iterations) % self.every_n_steps == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()


class JsonLinesLogger(keras.callbacks.Callback):
    """Appends each epoch's logs as one JSON line (kept across restarts)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def _write_config(config, run_dir):
    path = os.path.join(run_dir, "config.json")
    wanted = {k: v for k, v in config.to_dict().items() if k not in ("verbose", "output_dir")}
    wanted = json.loads(json.dumps(wanted))
    if os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
        changed = sorted(k for k in wanted if existing.get(k) != wanted[k])
        if changed:
            _fail(f"{run_dir} holds a run with another configuration (differs in {changed}): "
                  "use another --output_dir or the same flags to resume.")
        return
    with open(path, "w") as f:
        json.dump(wanted, f, indent=2)


def _eval_data(split, transform, batch_size=256):
    return data_lib.eval_dataset(split, batch_size, transform=transform)


def _embed(encoder, dataset):
    embeddings, labels = [], []
    for images, batch_labels in dataset:
        embeddings.append(np.asarray(encoder(images, training=False), np.float32))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(embeddings), np.concatenate(labels)


def _test_metrics(encoder, splits, test_transform, ks):
    if splits.query is not None:
        q, q_labels = _embed(encoder, _eval_data(splits.query, test_transform))
        g, g_labels = _embed(encoder, _eval_data(splits.gallery, test_transform))
        recall = evaluation.recall_at_k(q, q_labels, ks, gallery_embeddings=g, gallery_labels=g_labels)
        return {f"recall@{k}": v for k, v in recall.items()}
    embeddings, labels = _embed(encoder, _eval_data(splits.test, test_transform))
    metrics = {f"recall@{k}": v for k, v in evaluation.recall_at_k(embeddings, labels, ks).items()}
    metrics["map@r"] = evaluation.map_at_r(embeddings, labels)
    return metrics


def print_table(title, rows, ks, stream=sys.stdout):
    """Prints a Recall@K table: rows is {row name: {"recall@k": value, ...}}."""
    extra = sorted({key for r in rows.values() for key in r if not key.startswith("recall@")})
    header = ["", *[f"R@{k}" for k in ks], *extra]
    print(f"\n{title}", file=stream)
    print(" | ".join(f"{h:>10s}" for h in header), file=stream)
    for name, row in rows.items():
        cells = [f"{100 * row[f'recall@{k}']:10.2f}" for k in ks]
        cells += [f"{100 * row[key]:10.2f}" for key in extra]
        print(" | ".join([f"{name:>10s}", *cells]), file=stream)


def train(config):
    """Trains, evaluates, draws and exports one run; returns its results dict.

    Args:
        config: a `keras_mdr.training.TrainConfig`.

    Returns:
        dict with "test" (test metrics of the final model), "best_epoch" and
        "test_at_best" when a validation split exists, "export_dir" and
        "run_dir".
    """
    validate(config)
    run_dir = os.path.abspath(config.output_dir)
    os.makedirs(run_dir, exist_ok=True)
    _write_config(config, run_dir)
    keras.utils.set_random_seed(config.seed)
    precision = set_precision(config.mixed_precision)
    strategy = make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.classes_per_batch % replicas:
        _fail(f"--classes_per_batch={config.classes_per_batch} must be a multiple of the "
              f"{replicas} replicas, so every replica gets whole classes.")

    try:
        splits = data_lib.load_dataset(
            config.dataset, data_dir=config.data_dir,
            validation_classes=config.validation_classes, seed=config.seed,
        )
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from error
    if config.classes_per_batch > splits.train.num_classes:
        _fail(f"--classes_per_batch={config.classes_per_batch} exceeds the "
              f"{splits.train.num_classes} training classes of {config.dataset}.")
    train_transform, test_transform = _transforms(config)

    with strategy.scope():
        model = build_model(config)
    checkpoints = os.path.join(run_dir, "checkpoints")
    resume = ResumeCheckpoint(checkpoints, config.checkpoint_every)
    start_step = 0
    if os.path.exists(resume.path):
        model.load_weights(resume.path)
        start_step = int(model.optimizer.iterations)
        if config.verbose:
            print(f"Resuming {run_dir} from step {start_step}.")

    pictures = os.path.join(run_dir, "pictures")
    monitor_data = splits.validation if splits.validation is not None else splits.test
    prefix = "val_" if splits.validation is not None else "test_"
    retrieval = keras_mdr.callbacks.RetrievalEvaluation(
        _eval_data(monitor_data, test_transform),
        ks=tuple(config.recall_ks),
        every_n_epochs=config.eval_every,
        prefix=prefix,
        embed_fn=lambda images: model.encoder(images, training=False),
        log_dir=pictures,
        plot_distances="epoch",
        grid_queries=8,
        grid_k=5,
        seed=config.seed,
        verbose=config.verbose,
    )
    callbacks = [
        retrieval,
        keras.callbacks.TerminateOnNaN(),
        resume,
        keras.callbacks.CSVLogger(os.path.join(run_dir, "log.csv"), append=True),
        JsonLinesLogger(os.path.join(run_dir, "metrics.jsonl")),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")),
    ]
    if splits.validation is not None:
        callbacks.insert(1, keras.callbacks.ModelCheckpoint(
            os.path.join(checkpoints, "best.keras"), monitor=f"val_recall@{config.recall_ks[0]}",
            mode="max", save_best_only=True,
        ))

    def fit(first_epoch, last_epoch, steps, first_batch):
        dataset = data_lib.balanced_dataset(
            splits.train, config.classes_per_batch, config.images_per_class,
            transform=train_transform, seed=config.seed, num_replicas=replicas,
            start_batch=first_batch,
        )
        model.fit(
            dataset, initial_epoch=first_epoch, epochs=last_epoch, steps_per_epoch=steps,
            callbacks=callbacks, verbose=config.verbose, shuffle=False,
        )

    ks = tuple(config.recall_ks)
    initial = None
    if start_step == 0 and config.dataset in presets.SMALL_IMAGE_DATASETS:
        # What training adds: on digits a random CNN already retrieves well.
        # (Cheap for the small sets; a full extra test pass for the photo ones.)
        initial = _test_metrics(model.encoder, splits, test_transform, ks)

    total = config.epochs * config.steps_per_epoch
    epoch, offset = divmod(start_step, config.steps_per_epoch)
    if offset and start_step < total:
        # Finish the interrupted epoch, then the rest with whole epochs.
        fit(epoch, epoch + 1, config.steps_per_epoch - offset, start_step)
        epoch += 1
    if epoch < config.epochs:
        fit(epoch, config.epochs, config.steps_per_epoch, epoch * config.steps_per_epoch)

    results = {"run_dir": run_dir, "precision": precision, "replicas": replicas}
    results["test"] = _test_metrics(model.encoder, splits, test_transform, ks)
    rows = {}
    if initial is not None:
        results["test_untrained"] = initial
        rows["untrained"] = initial
    rows["final"] = results["test"]
    best_path = os.path.join(checkpoints, "best.keras")
    if splits.validation is not None and os.path.exists(best_path):
        best = keras.saving.load_model(best_path)
        results["test_at_best"] = _test_metrics(best.encoder, splits, test_transform, ks)
        rows["best (val)"] = results["test_at_best"]
    if config.verbose:
        print_table(f"{config.dataset}: retrieval on the unseen test classes (%)", rows, ks)
    if config.export:
        from keras_mdr import export as export_lib

        results["export_dir"] = export_lib.export_for_serving(
            model.encoder, os.path.join(run_dir, "export"), image_size=config.image_size,
            resize_size=config.resize_size, max_pixels=config.max_image_pixels,
        )
        if config.verbose:
            print(f"SavedModel for TF Serving: {results['export_dir']}")
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=float)
    return results


__all__ = ["ConfigError", "ResumeCheckpoint", "build_model", "print_table", "train", "validate"]
