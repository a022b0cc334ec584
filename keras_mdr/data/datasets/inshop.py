"""In-Shop Clothes Retrieval (DeepFashion): train, and test as query / gallery."""

import os

from keras_mdr.data.datasets import missing_data
from keras_mdr.data.split import DatasetSplits
from keras_mdr.data.split import Split
from keras_mdr.data.split import concatenate_splits

_LAYOUTS = [
    "img/<gender>/<category>/id_XXXXXXXX/<image>.jpg and list_eval_partition.txt "
    "(in data_dir or data_dir/Eval; first line the image count, second the "
    "header 'image_name item_id evaluation_status', then "
    "'img/.../02_1_front.jpg id_00000002 train|query|gallery')",
    "the benchmark's own folders: Img/img/... and Eval/list_eval_partition.txt",
]
_HOW_TO_GET = [
    "the DeepFashion 'In-shop Clothes Retrieval Benchmark' "
    "(mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html): "
    "Img/img.zip and Eval/list_eval_partition.txt; unzip img.zip next to the list",
]


def load_inshop(data_dir=None):
    """In-Shop with its official split: 3,997 train items, query and gallery test.

    Labels are the item numbers (`id_00000002` is 2), shared by an item's
    query and gallery images.

    Args:
        data_dir: the folder holding `img/` (or `Img/img/`) and
            `list_eval_partition.txt` (or `Eval/list_eval_partition.txt`).

    Returns:
        `keras_mdr.data.DatasetSplits` with train (25,882 images), query
        (14,218), gallery (12,612) and test (query then gallery).

    Example:

    >>> from keras_mdr.data.datasets import load_inshop
    >>> splits = load_inshop("/data/inshop")  # doctest: +SKIP
    >>> len(splits.query), len(splits.gallery)  # doctest: +SKIP
    (14218, 12612)
    """
    partition, image_root = _find_layout(data_dir)
    columns = {"train": ([], []), "query": ([], []), "gallery": ([], [])}
    with open(partition) as f:
        lines = [line.split() for line in f if line.strip()]
    # Line 1 is the image count, line 2 the header.
    for row in lines[2:]:
        name, item, status = row[0], row[1], row[2]
        paths, labels = columns[status]
        paths.append(os.path.join(image_root, name))
        labels.append(int(item.rsplit("_", 1)[-1]))
    splits = {
        status: Split(labels=labels, paths=paths, name=status)
        for status, (paths, labels) in columns.items()
    }
    return DatasetSplits(
        name="inshop",
        train=splits["train"],
        test=concatenate_splits([splits["query"], splits["gallery"]], name="test"),
        query=splits["query"],
        gallery=splits["gallery"],
    )


def _find_layout(data_dir):
    """(the partition list, the folder holding `img/`); raises when either is missing."""
    partition = image_root = None
    if data_dir is not None:
        partition = missing_data.first_existing(
            os.path.join(data_dir, "list_eval_partition.txt"),
            os.path.join(data_dir, "Eval", "list_eval_partition.txt"),
        )
    if partition is not None:
        image_root = next(
            (root for root in (data_dir, os.path.join(data_dir, "Img"))
             if os.path.isdir(os.path.join(root, "img"))),
            None,
        )
    if image_root is None:
        raise missing_data.missing_dataset_error(
            "In-Shop Clothes Retrieval", data_dir, _LAYOUTS, _HOW_TO_GET
        )
    return partition, image_root
