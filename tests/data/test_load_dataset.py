import os

import numpy as np
import pytest

import keras_mdr.data


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        keras_mdr.data.load_dataset("imagenet")
    for name in keras_mdr.data.DATASET_NAMES:
        assert repr(name) in str(error.value)
    assert keras_mdr.data.DATASET_NAMES == (
        "cars196", "cub200", "sop", "inshop", "folder", "fashion_mnist", "digits"
    )


def test_validation_split_is_carved_from_train_by_class():
    splits = keras_mdr.data.load_dataset("digits", validation_classes=2, seed=0)
    assert splits.train.num_classes == 3 and splits.validation.num_classes == 2
    classes = [set(s.classes) for s in (splits.train, splits.validation, splits.test)]
    assert not classes[0] & classes[1] and not classes[0] & classes[2]
    assert not classes[1] & classes[2]
    assert list(splits.splits()) == ["train", "validation", "test"]


def test_bad_files_are_dropped_up_front_with_a_warning(image_folder, truncate):
    root = image_folder(num_classes=4, per_class=3)
    truncate(os.path.join(root, "class_00", "000.jpg"))
    truncate(os.path.join(root, "class_03", "002.jpg"))
    with pytest.warns(UserWarning) as record:
        splits = keras_mdr.data.load_dataset("folder", root)
    messages = " ".join(str(w.message) for w in record)
    assert "Skipped 1 unreadable images of 6 in split 'train'" in messages
    assert "Skipped 1 unreadable images of 6 in split 'test'" in messages
    assert len(splits.train) == len(splits.test) == 5


def test_strict_mode_names_the_bad_file(image_folder, truncate):
    root = image_folder(num_classes=2, per_class=2)
    bad = truncate(os.path.join(root, "class_01", "001.jpg"))
    with pytest.raises(ValueError, match="001.jpg: truncated JPEG"):
        keras_mdr.data.load_dataset("folder", root, strict=True)
    splits = keras_mdr.data.load_dataset("folder", root, check_images=None)
    assert bad in list(splits.test.paths)
    with pytest.raises(ValueError, match="check_images"):
        keras_mdr.data.load_dataset("folder", root, check_images="full")


def test_in_shop_test_is_rebuilt_from_checked_query_and_gallery(tmp_path, write_image, truncate):
    root = str(tmp_path / "inshop")
    rows = []
    for item, status, count in ((1, "train", 2), (2, "train", 2), (3, "query", 2), (3, "gallery", 2)):
        for i in range(count):
            relative = f"img/WOMEN/Tees/id_{item:08d}/{status}_{i}.jpg"
            write_image(os.path.join(root, relative), seed=len(rows))
            rows.append(f"{relative} id_{item:08d} {status}\n")
    with open(os.path.join(root, "list_eval_partition.txt"), "w") as f:
        f.writelines([f"{len(rows)}\n", "image_name item_id evaluation_status\n"] + rows)
    truncate(os.path.join(root, "img/WOMEN/Tees/id_00000003/gallery_1.jpg"))
    with pytest.warns(UserWarning, match="split 'gallery'"):
        splits = keras_mdr.data.load_dataset("inshop", root)
    assert len(splits.gallery) == 1 and len(splits.test) == 3
    np.testing.assert_array_equal(splits.test.labels, [3, 3, 3])
