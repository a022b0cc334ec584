import numpy as np
import pytest

import keras_mdr.data
from keras_mdr.data.split import concatenate_splits


def _split(labels, name="all"):
    labels = np.asarray(labels)
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1)
    return keras_mdr.data.Split(labels=labels, images=images, name=name)


def test_split_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of"):
        keras_mdr.data.Split(labels=[0])
    with pytest.raises(ValueError, match="exactly one of"):
        keras_mdr.data.Split(labels=[0], paths=["a.jpg"], encoded=[b"x"])


def test_split_checks_lengths_and_types():
    with pytest.raises(ValueError, match="as many images as labels"):
        keras_mdr.data.Split(labels=[0, 1], paths=["a.jpg"])
    with pytest.raises(ValueError, match="integers"):
        keras_mdr.data.Split(labels=[0.5], paths=["a.jpg"])
    with pytest.raises(ValueError, match="uint8"):
        keras_mdr.data.Split(labels=[0], images=np.zeros((1, 2, 2), np.uint8))


def test_take_and_with_classes_keep_images_and_labels_together():
    split = _split([3, 1, 3, 2, 1])
    sub = split.with_classes([1, 3], name="sub")
    np.testing.assert_array_equal(sub.labels, [3, 1, 3, 1])
    np.testing.assert_array_equal(sub.images[:, 0, 0, 0], [0, 1, 2, 4])
    assert sub.name == "sub" and sub.num_classes == 2
    assert repr(sub) == "Split(name='sub', 4 images of 2 classes, in memory (1, 1, 1))"
    paths = keras_mdr.data.Split(labels=[0, 1], paths=["a.jpg", "b.jpg"])
    assert list(paths.take([1]).paths) == ["b.jpg"] and paths.source == "paths"


def test_concatenate_splits():
    a = keras_mdr.data.Split(labels=[0], encoded=[b"a"])
    b = keras_mdr.data.Split(labels=[1], encoded=[b"b"])
    both = concatenate_splits([a, b], name="ab")
    assert list(both.encoded) == [b"a", b"b"] and list(both.labels) == [0, 1]
    with pytest.raises(ValueError, match="one source"):
        concatenate_splits([a, _split([1])], name="x")


@pytest.mark.parametrize("validation_classes, expected", [(3, 3), (0.25, 5), (0.01, 1)])
def test_split_validation_is_by_class(validation_classes, expected):
    split = _split(np.repeat(np.arange(20), 3), name="train")
    train, validation = keras_mdr.data.split_validation(split, validation_classes, seed=4)
    assert validation.num_classes == expected
    assert train.num_classes == 20 - expected
    assert not set(train.classes) & set(validation.classes)
    assert len(train) + len(validation) == len(split)
    assert validation.name == "validation" and train.name == "train"


def test_split_validation_is_seeded():
    split = _split(np.repeat(np.arange(50), 2))
    first = keras_mdr.data.split_validation(split, 10, seed=1)[1].classes
    again = keras_mdr.data.split_validation(split, 10, seed=1)[1].classes
    other = keras_mdr.data.split_validation(split, 10, seed=2)[1].classes
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_split_validation_zero_and_bad_values():
    split = _split(np.repeat(np.arange(4), 2))
    train, validation = keras_mdr.data.split_validation(split, 0)
    assert validation is None and train is split
    for bad in (4, -1, 1.0, 0.0, "2", True):
        with pytest.raises(ValueError, match="validation_classes"):
            keras_mdr.data.split_validation(split, bad)


def test_dataset_splits_lists_its_splits():
    splits = keras_mdr.data.DatasetSplits(
        name="toy", train=_split([0, 0, 1]), test=_split([2, 2])
    )
    assert list(splits.splits()) == ["train", "test"]
    assert "train=3 images/2 classes" in repr(splits)
