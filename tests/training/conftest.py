"""Tiny benchmark copies in their real on-disk layouts, for training runs."""

import os

import numpy as np
import pytest
from PIL import Image


def _photo(path, label, index, size=(40, 36)):
    """A JPEG whose faint tint says its class under strong noise (retrieval is imperfect)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(label * 100 + index)
    tint = 128 + np.array([(label * 53) % 7, (label * 97) % 7, (label * 31) % 7]) - 3
    pixels = tint + rng.integers(-100, 100, (size[1], size[0], 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def write_cub(parent, train_classes=(1, 2, 3, 4), test_classes=(101, 102, 103), per_class=4):
    """`parent/CUB_200_2011/` with images.txt, image_class_labels.txt, classes.txt and images/."""
    root = os.path.join(parent, "CUB_200_2011")
    rows = []
    for number in (*train_classes, *test_classes):
        for i in range(per_class):
            relative = f"{number:03d}.Bird_{number}/Bird_{number}_{i:04d}.jpg"
            _photo(os.path.join(root, "images", relative), number, i)
            rows.append((relative, number))
    ids = range(1, len(rows) + 1)
    files = {
        "images.txt": [f"{i} {path}\n" for i, (path, _) in zip(ids, rows)],
        "image_class_labels.txt": [f"{i} {label}\n" for i, (_, label) in zip(ids, rows)],
        "train_test_split.txt": [f"{i} {i % 2}\n" for i in ids],
        "classes.txt": [f"{n} {n:03d}.Bird_{n}\n" for n in range(1, 201)],
    }
    for name, lines in files.items():
        with open(os.path.join(root, name), "w") as f:
            f.writelines(lines)
    return parent


def write_inshop(root, train_items=(1, 2, 3, 4), test_items=(5, 6, 7), per_item=4):
    """`root/img/...` and `root/list_eval_partition.txt`: half of each test item queries."""
    rows = []
    for item in (*train_items, *test_items):
        for i in range(per_item):
            relative = f"img/WOMEN/Dresses/id_{item:08d}/{i:02d}_1_front.jpg"
            _photo(os.path.join(root, relative), item, i)
            status = "train" if item in train_items else ("query" if i % 2 else "gallery")
            rows.append(f"{relative:<60s}id_{item:08d}             {status}\n")
    with open(os.path.join(root, "list_eval_partition.txt"), "w") as f:
        f.write(f"{len(rows)}\nimage_name item_id evaluation_status\n")
        f.writelines(rows)
    return root


@pytest.fixture
def cub_dir(tmp_path):
    """A CUB-200-2011 copy: 4 training and 3 test classes of 4 JPEGs."""
    return write_cub(str(tmp_path / "cub"))


@pytest.fixture
def inshop_dir(tmp_path):
    """An In-Shop copy: 4 training items, 3 test items split into query and gallery."""
    return write_inshop(str(tmp_path / "inshop"))
