"""Stanford Online Products: the official class-disjoint train / test split.

Sources, tried in this order: the `Stanford_Online_Products/` folder of the
official archive (`Ebay_train.txt`, `Ebay_test.txt` and the
`<super class>_final/` image folders), then a prepared TFDS
`stanford_online_products`. Labels are `class_id` minus one, as in TFDS: train
0-11317, test 11318-22633.
"""

import os

from keras_mdr.data.datasets import missing_data
from keras_mdr.data.datasets import tfds_source
from keras_mdr.data.split import DatasetSplits
from keras_mdr.data.split import Split

_LAYOUTS = [
    "Stanford_Online_Products/ (data_dir itself or inside it) with "
    "Ebay_train.txt and Ebay_test.txt (header 'image_id class_id "
    "super_class_id path', then e.g. '1 1 1 bicycle_final/111085122871_0.JPG') "
    "and the <super class>_final/ image folders",
    "a prepared TFDS 'stanford_online_products' (data_dir is then the TFDS data "
    "directory, default ~/tensorflow_datasets)",
]
_HOW_TO_GET = [
    "Stanford_Online_Products.zip from the Lifted Structure project page "
    "(cvgl.stanford.edu/projects/lifted_struct); unzip it and pass the folder "
    "holding Stanford_Online_Products/ as data_dir",
    "or `tfds.load('stanford_online_products')`, which downloads and prepares it",
]


def _read_ebay(root, name):
    with open(os.path.join(root, name)) as f:
        header = f.readline().split()
        column = {key: i for i, key in enumerate(header)}
        rows = [line.split() for line in f if line.strip()]
    if "class_id" not in column or "path" not in column:
        raise ValueError(
            f"Expected a header with 'class_id' and 'path' in {name}. "
            f"Received: {header}"
        )
    return Split(
        labels=[int(row[column["class_id"]]) - 1 for row in rows],
        paths=[os.path.join(root, row[column["path"]]) for row in rows],
        name="train" if "train" in name else "test",
    )


def load_sop(data_dir=None):
    """Stanford Online Products (59,551 train / 60,502 test images).

    Args:
        data_dir: the `Stanford_Online_Products` folder, a folder holding it,
            or a TFDS data directory with a prepared `stanford_online_products`;
            None tries TFDS's default directory.

    Returns:
        `keras_mdr.data.DatasetSplits` with train (11,318 classes) and test
        (11,316 classes).

    Example:

    >>> from keras_mdr.data.datasets import load_sop
    >>> splits = load_sop("/data")  # doctest: +SKIP
    >>> splits.train.num_classes, splits.test.num_classes  # doctest: +SKIP
    (11318, 11316)
    """
    if data_dir is not None:
        for root in (data_dir, os.path.join(data_dir, "Stanford_Online_Products")):
            if os.path.exists(os.path.join(root, "Ebay_train.txt")) and os.path.exists(
                os.path.join(root, "Ebay_test.txt")
            ):
                return DatasetSplits(
                    name="sop",
                    train=_read_ebay(root, "Ebay_train.txt"),
                    test=_read_ebay(root, "Ebay_test.txt"),
                )
    splits, _ = tfds_source.tfds_splits("stanford_online_products", data_dir, "class_id")
    if splits is None:
        raise missing_data.missing_dataset_error(
            "Stanford Online Products", data_dir, _LAYOUTS, _HOW_TO_GET,
            searched=[data_dir or tfds_source.default_data_dir()],
        )
    return DatasetSplits(name="sop", train=splits["train"], test=splits["test"])
