"""In-Shop Clothes Retrieval from a small copy of its img/ + list_eval_partition.txt."""

import os

import numpy as np
import pytest

import keras_mdr.data

# (item id, gender/category, [(image name, status), ...])
_ITEMS = [
    (2, "WOMEN/Dresses", [("02_1_front", "train"), ("02_2_side", "train"), ("02_4_full", "train")]),
    (8, "MEN/Denim", [("01_1_front", "train"), ("01_2_side", "train")]),
    (15, "WOMEN/Skirts", [("01_1_front", "query"), ("01_2_side", "query"), ("01_3_back", "gallery")]),
    (20, "MEN/Tees_Tanks", [("03_1_front", "query"), ("03_2_side", "gallery"), ("03_7_additional", "gallery")]),
]


def _write_inshop(root, write_image, official=False):
    image_root = os.path.join(root, "Img") if official else root
    list_dir = os.path.join(root, "Eval") if official else root
    rows = []
    for item, category, images in _ITEMS:
        for name, status in images:
            relative = f"img/{category}/id_{item:08d}/{name}.jpg"
            write_image(os.path.join(image_root, relative), seed=item * 10 + len(rows))
            rows.append(f"{relative:<60s}id_{item:08d}             {status}\n")
    os.makedirs(list_dir, exist_ok=True)
    with open(os.path.join(list_dir, "list_eval_partition.txt"), "w") as f:
        f.write(f"{len(rows)}\n")
        f.write("image_name item_id evaluation_status\n")
        f.writelines(rows)
    return root


@pytest.mark.parametrize("official", [False, True])
def test_train_query_and_gallery(tmp_path, write_image, official):
    root = _write_inshop(str(tmp_path / "inshop"), write_image, official)
    splits = keras_mdr.data.load_dataset("inshop", root)
    assert sorted(splits.train.classes) == [2, 8] and len(splits.train) == 5
    assert len(splits.query) == 3 and len(splits.gallery) == 3
    np.testing.assert_array_equal(splits.query.labels, [15, 15, 20])
    np.testing.assert_array_equal(splits.gallery.labels, [15, 20, 20])
    # test is query then gallery; every query item has a gallery image.
    np.testing.assert_array_equal(splits.test.labels, [15, 15, 20, 15, 20, 20])
    assert set(splits.query.classes) <= set(splits.gallery.classes)
    assert not set(splits.train.classes) & set(splits.test.classes)
    assert all(os.path.exists(p) for p in splits.gallery.paths)


def test_validation_comes_from_train_items(tmp_path, write_image):
    root = _write_inshop(str(tmp_path / "inshop"), write_image)
    splits = keras_mdr.data.load_dataset("inshop", root, validation_classes=1, seed=3)
    assert splits.train.num_classes == 1 and splits.validation.num_classes == 1
    assert set(splits.train.classes) | set(splits.validation.classes) == {2, 8}


def test_missing_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt"):
        keras_mdr.data.load_dataset("inshop", str(tmp_path))
