"""A folder with one subfolder of images per class, split by class."""

import os

import numpy as np

from keras_mdr.data.datasets import missing_data
from keras_mdr.data.split import split_by_class
from keras_mdr.data.split import Split

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def _images_under(directory):
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        found.extend(
            os.path.join(root, name)
            for name in sorted(files)
            if name.lower().endswith(IMAGE_EXTENSIONS)
        )
    return found


def load_image_folder(data_dir=None, test_classes=0.5):
    """Images in `data_dir/<class name>/...`, the classes split into train and test.

    Classes are the subfolders holding at least one image (searched
    recursively), sorted by name; label `i` is the `i`-th of them. The first
    classes go to train and the last `test_classes` to test, so train and test
    share no class.

    Args:
        data_dir: the folder of class subfolders.
        test_classes: a float in (0, 1), the fraction of classes for test
            (rounded, at least one), or an int, their number.

    Returns:
        `keras_mdr.data.DatasetSplits` with train, test and the class names.

    Example:

    >>> from keras_mdr.data.datasets import load_image_folder
    >>> splits = load_image_folder("my_photos", test_classes=0.5)  # doctest: +SKIP
    """
    if data_dir is None or not os.path.isdir(data_dir):
        raise missing_data.missing_dataset_error(
            "an image folder",
            data_dir,
            ["<data_dir>/<class name>/<image>.jpg (also .jpeg, .png, .bmp, .gif, .webp)"],
            ["any folder of your own images, one subfolder per class"],
        )
    classes, paths, labels = [], [], []
    for name in sorted(os.listdir(data_dir)):
        directory = os.path.join(data_dir, name)
        if not os.path.isdir(directory):
            continue
        images = _images_under(directory)
        if images:
            paths.extend(images)
            labels.extend([len(classes)] * len(images))
            classes.append(name)
    if len(classes) < 2:
        raise missing_data.missing_dataset_error(
            "an image folder with at least 2 classes",
            data_dir,
            ["<data_dir>/<class name>/<image>.jpg (also .jpeg, .png, .bmp, .gif, .webp)"],
            ["any folder of your own images, one subfolder per class"],
        )
    if isinstance(test_classes, float) and 0.0 < test_classes < 1.0:
        num_test = max(1, int(round(test_classes * len(classes))))
    elif isinstance(test_classes, (int, np.integer)) and not isinstance(test_classes, bool):
        num_test = int(test_classes)
    else:
        num_test = -1
    if not 0 < num_test < len(classes):
        raise ValueError(
            "Expected `test_classes` to be a float in (0, 1) or an int between 1 "
            f"and {len(classes) - 1}. Received: test_classes={test_classes!r}"
        )
    every = Split(labels=labels, paths=paths, name="all")
    num_train = len(classes) - num_test
    return split_by_class("folder", every, num_train, len(classes), dict(enumerate(classes)))
