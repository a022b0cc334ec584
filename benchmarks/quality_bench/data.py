"""The benchmark's data: splits, transforms and the fixed evaluation subsets."""

import dataclasses

import numpy as np

from keras_mdr import data as data_lib
from keras_mdr.training.presets import ConfigError

from quality_bench.settings import SMALL


@dataclasses.dataclass
class Data:
    splits: object
    train_transform: object
    val: object
    test: object
    train_eval: object
    subsets: dict


def subset(split, size, seed):
    """(split, count): a seeded subset of `size` images, the whole split if 0 or larger."""
    if not size or size >= len(split):
        return split, len(split)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(split), size=size, replace=False))
    return split.take(picks), size


def eval_data(split, transform, in_memory, batch_size=500):
    dataset = data_lib.eval_dataset(split, batch_size, transform=transform)
    # Small in-memory sets are decoded once and kept; photos are streamed.
    return dataset.cache() if in_memory else dataset


def transforms(config):
    """(train, eval) transforms: pixels in [0, 255], the encoder preprocesses."""
    name = config["dataset"]
    if name in SMALL:
        native = {"digits": 8, "fashion_mnist": 28}[name]
        size = None if config["image_size"] == native else config["image_size"]
        train_tf = data_lib.grayscale_transform(
            image_size=size, channels=3, flip=name == "fashion_mnist", preprocess=None
        )
        eval_tf = data_lib.grayscale_transform(image_size=size, channels=3, preprocess=None)
        return train_tf, eval_tf
    train_tf = data_lib.train_transform(
        image_size=config["image_size"], resize_size=config["resize_size"], preprocess=None
    )
    eval_tf = data_lib.eval_transform(
        image_size=config["image_size"], resize_size=config["resize_size"], preprocess=None
    )
    return train_tf, eval_tf


def _splits(config, data_dir):
    try:
        splits = data_lib.load_dataset(
            config["dataset"], data_dir=data_dir, validation_classes=config["validation_classes"],
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
    return splits


def load_data(config, data_dir=None):
    splits = _splits(config, data_dir)
    train_tf, eval_tf = transforms(config)
    seed = config["split_seed"]
    val, n_val = subset(splits.validation, config["val_subset"], seed)
    test, n_test = subset(splits.test, config["test_subset"], seed + 1)
    train_eval, _ = subset(splits.train, config["train_subset"], seed + 2)
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
        val=eval_data(val, eval_tf, in_memory),
        test=eval_data(test, eval_tf, in_memory),
        train_eval=eval_data(train_eval, eval_tf, in_memory),
        subsets=subsets,
    )
