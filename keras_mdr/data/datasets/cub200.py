"""CUB-200-2011: classes 1-100 train, 101-200 test.

Sources, tried in this order: the `CUB_200_2011/` folder of the official
archive (`images/`, `images.txt`, `image_class_labels.txt`, `classes.txt`),
then a prepared TFDS `caltech_birds2011` (its train and test merged). Labels
are the class number minus one (0-199), as in TFDS.
"""

import os

from keras_mdr.data.datasets import missing_data
from keras_mdr.data.datasets import tfds_source
from keras_mdr.data.split import split_by_class
from keras_mdr.data.split import Split
from keras_mdr.data.split import concatenate_splits

_LAYOUTS = [
    "CUB_200_2011/ (data_dir itself or inside it) with images/<class>/<image>.jpg, "
    "images.txt ('<id> <class>/<image>.jpg'), image_class_labels.txt "
    "('<id> <class 1-200>') and classes.txt",
    "a prepared TFDS 'caltech_birds2011' (data_dir is then the TFDS data "
    "directory, default ~/tensorflow_datasets)",
]
_HOW_TO_GET = [
    "CUB_200_2011.tgz from CaltechDATA (data.caltech.edu/records/65de6-vp158); "
    "unpack it and pass the folder holding CUB_200_2011/ as data_dir",
    "or `tfds.load('caltech_birds2011')`, which downloads and prepares it",
]


def _read_table(path):
    """A '<id> <value>' text file as a dict from id to value."""
    with open(path) as f:
        rows = [line.split(maxsplit=1) for line in f if line.strip()]
    return {int(key): value.strip() for key, value in rows}


def _split_by_class(every, class_names):
    return split_by_class("cub200", every, 100, 200, class_names)


def _load_folder(root):
    images = _read_table(os.path.join(root, "images.txt"))
    classes = _read_table(os.path.join(root, "image_class_labels.txt"))
    ids = sorted(images)
    every = Split(
        labels=[int(classes[i]) - 1 for i in ids],
        paths=[os.path.join(root, "images", images[i]) for i in ids],
        name="all",
    )
    names_file = os.path.join(root, "classes.txt")
    names = None
    if os.path.exists(names_file):
        names = {key - 1: value for key, value in _read_table(names_file).items()}
    return _split_by_class(every, names)


def load_cub200(data_dir=None):
    """CUB-200-2011 with the paper's class-disjoint split (5,864 / 5,924 images).

    Args:
        data_dir: the `CUB_200_2011` folder, a folder holding it, or a TFDS
            data directory with a prepared `caltech_birds2011`; None tries
            TFDS's default directory.

    Returns:
        `keras_mdr.data.DatasetSplits` with train (labels 0-99) and test
        (labels 100-199).

    Example:

    >>> from keras_mdr.data.datasets import load_cub200
    >>> splits = load_cub200("/data")  # doctest: +SKIP
    >>> len(splits.train), len(splits.test)  # doctest: +SKIP
    (5864, 5924)
    """
    if data_dir is not None:
        for root in (data_dir, os.path.join(data_dir, "CUB_200_2011")):
            if os.path.exists(os.path.join(root, "images.txt")) and os.path.exists(
                os.path.join(root, "image_class_labels.txt")
            ):
                return _load_folder(root)
    splits, _ = tfds_source.tfds_splits("caltech_birds2011", data_dir, "label")
    if splits is None:
        raise missing_data.missing_dataset_error(
            "CUB-200-2011", data_dir, _LAYOUTS, _HOW_TO_GET,
            searched=[data_dir or tfds_source.default_data_dir()],
        )
    every = concatenate_splits([splits["train"], splits["test"]], name="all")
    return _split_by_class(every, None)
