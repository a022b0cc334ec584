"""Stanford Cars-196: classes 1-98 train, 99-196 test.

Three sources, tried in this order:
1. the original release: `car_ims/000001.jpg ...` and `cars_annos.mat`;
2. the devkit release: `cars_train/`, `cars_test/`,
   `devkit/cars_train_annos.mat` and `cars_test_annos_withlabels.mat` (in
   `data_dir` or `devkit/`), train and test merged;
3. a prepared TFDS `cars196`, its train and test merged. TFDS cannot prepare it
   any more: the dataset's Stanford URL has been dead since 2023.
Labels are the class number minus one (0-195), as in TFDS.
"""

import os

import numpy as np
import scipy.io

from keras_mdr.data.datasets import missing_data
from keras_mdr.data.datasets import tfds_source
from keras_mdr.data.split import split_by_class
from keras_mdr.data.split import Split
from keras_mdr.data.split import concatenate_splits

_LAYOUTS = [
    "original: car_ims/000001.jpg ... car_ims/016185.jpg and cars_annos.mat",
    "devkit: cars_train/00001.jpg ..., cars_test/00001.jpg ..., "
    "devkit/cars_train_annos.mat, devkit/cars_meta.mat and "
    "cars_test_annos_withlabels.mat (in data_dir or data_dir/devkit)",
    "a prepared TFDS 'cars196' (data_dir is then the TFDS data directory, "
    "default ~/tensorflow_datasets)",
]
_HOW_TO_GET = [
    "the Stanford site (ai.stanford.edu/~jkrause/cars) and with it TFDS's "
    "'cars196' download URL have been dead since 2023, so tfds.load('cars196') "
    "fails to download",
    "mirrors of the original files (search for 'Stanford Cars dataset', e.g. on "
    "Kaggle or Hugging Face) give one of the first two layouts; pass that "
    "folder as data_dir",
]


def _mat_records(path, key):
    """The struct array `key` of a MATLAB file, as a list of structs."""
    mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    return list(np.atleast_1d(mat[key])), mat


def _class_names(names):
    return {i: str(name) for i, name in enumerate(np.atleast_1d(names))}


def _split_by_class(every, class_names):
    return split_by_class("cars196", every, 98, 196, class_names)


def _load_original(root):
    records, mat = _mat_records(os.path.join(root, "cars_annos.mat"), "annotations")
    paths = [os.path.join(root, str(r.relative_im_path)) for r in records]
    labels = [int(getattr(r, "class")) - 1 for r in records]
    names = _class_names(mat["class_names"]) if "class_names" in mat else None
    return _split_by_class(Split(labels=labels, paths=paths, name="all"), names)


def _load_devkit(root, test_annotations):
    parts = []
    for folder, annotations in (
        ("cars_train", os.path.join(root, "devkit", "cars_train_annos.mat")),
        ("cars_test", test_annotations),
    ):
        records, _ = _mat_records(annotations, "annotations")
        parts.append(
            Split(
                labels=[int(getattr(r, "class")) - 1 for r in records],
                paths=[os.path.join(root, folder, str(r.fname)) for r in records],
                name=folder,
            )
        )
    meta = os.path.join(root, "devkit", "cars_meta.mat")
    names = None
    if os.path.exists(meta):
        names = _class_names(scipy.io.loadmat(meta, squeeze_me=True)["class_names"])
    return _split_by_class(concatenate_splits(parts, name="all"), names)


def load_cars196(data_dir=None):
    """Cars-196 with the paper's class-disjoint split (8,054 / 8,131 images).

    Args:
        data_dir: a folder in the original or the devkit layout, or a TFDS data
            directory holding a prepared `cars196`; None tries TFDS's default
            directory.

    Returns:
        `keras_mdr.data.DatasetSplits` with train (labels 0-97) and test
        (labels 98-195).

    Example:

    >>> from keras_mdr.data.datasets import load_cars196
    >>> splits = load_cars196("/data/stanford_cars")  # doctest: +SKIP
    >>> splits.train.num_classes, splits.test.num_classes  # doctest: +SKIP
    (98, 98)
    """
    if data_dir is not None:
        if os.path.exists(os.path.join(data_dir, "cars_annos.mat")):
            return _load_original(data_dir)
        test_annotations = missing_data.first_existing(
            os.path.join(data_dir, "cars_test_annos_withlabels.mat"),
            os.path.join(data_dir, "devkit", "cars_test_annos_withlabels.mat"),
        )
        has_devkit = os.path.exists(os.path.join(data_dir, "devkit", "cars_train_annos.mat"))
        if has_devkit and test_annotations:
            return _load_devkit(data_dir, test_annotations)
        if has_devkit:
            raise missing_data.missing_dataset_error(
                "Cars-196 (the devkit layout lacks cars_test_annos_withlabels.mat, "
                "the test labels released separately from the devkit)",
                data_dir,
                _LAYOUTS,
                _HOW_TO_GET,
            )
    splits, names = tfds_source.tfds_splits("cars196", data_dir, "label")
    if splits is None:
        raise missing_data.missing_dataset_error(
            "Cars-196",
            data_dir,
            _LAYOUTS,
            _HOW_TO_GET,
            searched=[data_dir or tfds_source.default_data_dir()],
        )
    every = concatenate_splits([splits["train"], splits["test"]], name="all")
    return _split_by_class(every, None if names is None else dict(enumerate(names)))
