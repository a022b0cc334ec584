import os

import pytest

import keras_mdr.data


def test_classes_split_by_sorted_name(image_folder, tmp_path, write_image):
    root = image_folder(num_classes=5, per_class=3)
    write_image(os.path.join(root, "class_04", "nested", "extra.png"), image_format="PNG")
    open(os.path.join(root, "class_00", "notes.txt"), "w").close()
    os.makedirs(os.path.join(root, "empty_class"))
    splits = keras_mdr.data.load_dataset("folder", root, test_classes=0.4)
    assert sorted(splits.train.classes) == [0, 1, 2]
    assert sorted(splits.test.classes) == [3, 4]
    assert len(splits.train) == 9 and len(splits.test) == 7  # nested PNG included
    assert splits.class_names[4] == "class_04"
    assert all(p.endswith((".jpg", ".png")) for p in splits.test.paths)


def test_test_classes_as_a_count_and_errors(image_folder):
    root = image_folder(num_classes=4, per_class=2)
    splits = keras_mdr.data.load_dataset("folder", root, test_classes=1)
    assert splits.test.num_classes == 1
    for bad in (0, 4, 1.5, "half"):
        with pytest.raises(ValueError, match="test_classes"):
            keras_mdr.data.load_dataset("folder", root, test_classes=bad)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="<class name>"):
        keras_mdr.data.load_dataset("folder", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="<class name>"):
        keras_mdr.data.load_dataset("folder", None)
