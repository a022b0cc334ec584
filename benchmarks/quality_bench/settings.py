"""The benchmark's settings: defaults per dataset, the flags, the list of runs."""

from keras_mdr.training import encoders
from keras_mdr.training import presets
from keras_mdr.training.presets import ConfigError

from quality_bench import arms as arms_lib

DATASETS = ("fashion_mnist", "digits", "cars196", "cub200")
SMALL = ("fashion_mnist", "digits")

# The small sets pin every training setting here (a change to the training
# presets must not silently change the benchmark); the photo sets take the
# paper's presets (keras_mdr/training/presets.py). The small sets keep two of
# their five training classes for validation, so batches hold the three left.
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

# Settings that flags of the same name override when given.
_OVERRIDABLE = (
    "epochs", "steps_per_epoch", "eval_every", "classes_per_batch", "images_per_class",
    "learning_rate", "mdr_weight", "embedding_dim", "backbone", "weights", "image_size",
    "resize_size", "validation_classes", "test_subset", "val_subset", "train_subset",
)


def csv_values(value, cast):
    return tuple(cast(v) for v in str(value).split(",") if v.strip())


def seed_list(value, default):
    """`--seeds`: a count n (seeds 0..n-1) or a comma list; None: `default` seeds."""
    if value is None:
        return tuple(range(default))
    values = csv_values(value, int)
    if len(values) == 1 and "," not in str(value):
        if values[0] < 1:
            raise ConfigError(f"--seeds must be a positive count or a comma list. Received: {value!r}")
        return tuple(range(values[0]))
    return values


def _settings(options):
    """The dataset's preset, then the benchmark's defaults, then the flags given."""
    name = options.dataset
    base = {} if name in SMALL else presets.preset(name)
    base.update(BENCH_DEFAULTS[name])
    overrides = {key: getattr(options, key) for key in _OVERRIDABLE}
    if options.lr_decay_epochs is not None:
        overrides["lr_decay_epochs"] = csv_values(options.lr_decay_epochs, int)
    base.update({k: v for k, v in overrides.items() if v is not None})
    if options.image_size is not None and options.resize_size is None and name in SMALL:
        base["resize_size"] = options.image_size
    return base


def make_config(options):
    """(config, seeds) of a command; `options` holds the flag values (absl's FLAGS)."""
    base = _settings(options)
    config = {
        "dataset": options.dataset,
        "split_seed": options.split_seed,
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
        "margin": float(options.margin),
        "l2_margin": float(options.l2_margin),
        "mdr_weight": float(base["mdr_weight"]),
        "level_weight": float(options.level_weight),
        "levels": [float(v) for v in csv_values(options.levels, float)],
        "recall_ks": [int(k) for k in base["recall_ks"]],
        "test_subset": int(base["test_subset"]),
        "val_subset": int(base["val_subset"]),
        "train_subset": int(base["train_subset"]),
        "mixed_precision": options.mixed_precision,
    }
    if options.mode == "sweep":
        config["sweep_base_loss"] = options.sweep_base_loss
    check_config(config)
    return config, seed_list(options.seeds, BENCH_DEFAULTS[options.dataset]["seeds"])


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


def run_specs(mode, seeds, arms, lambdas):
    """[(key, group, seed, spec)]: every run of the mode, in the order they run.

    `arms` and `lambdas` are the comma lists of `--arms` and `--lambdas`.
    Seeds are the outer loop, so an interrupted compare run has every arm of
    its first seeds (paired differences need both arms of a seed).
    """
    specs = []
    if mode == "compare":
        names = csv_values(arms, str)
        unknown = [a for a in names if a not in arms_lib.ARMS]
        if unknown or not names:
            raise ConfigError(f"Unknown --arms {unknown or names}: use some of {list(arms_lib.ARMS)}.")
        for seed in seeds:
            for arm in names:
                specs.append((f"{arm}/seed={seed}", arm, seed, dict(arm=arm)))
    else:
        values = csv_values(lambdas, float)
        if not values or min(values) < 0:
            raise ConfigError(f"--lambdas must be non-negative numbers. Received: {lambdas!r}")
        for seed in seeds:
            for value in values:
                group = f"lambda={value:g}"
                specs.append((f"{group}/seed={seed}", group, seed, dict(mdr_weight=value)))
    return specs
