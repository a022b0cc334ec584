import numpy as np
import pytest

import keras_mdr.data


def test_digits_split_by_class():
    splits = keras_mdr.data.load_dataset("digits")
    assert splits.train.images.shape[1:] == (8, 8, 1)
    assert splits.train.images.dtype == np.uint8 and splits.train.images.max() == 255
    assert sorted(splits.train.classes) == [0, 1, 2, 3, 4]
    assert sorted(splits.test.classes) == [5, 6, 7, 8, 9]
    assert len(splits.train) + len(splits.test) == 1797
    assert splits.validation is None


def test_digits_take_no_data_dir():
    with pytest.raises(ValueError, match="data_dir=None"):
        keras_mdr.data.load_dataset("digits", "/data")


def test_digits_feed_both_pipelines():
    splits = keras_mdr.data.load_dataset("digits", validation_classes=1, seed=2)
    transform = keras_mdr.data.grayscale_transform(image_size=16, channels=3)
    images, labels = next(iter(keras_mdr.data.balanced_dataset(
        splits.train, 4, 4, transform=transform, seed=0)))
    assert images.shape == (16, 16, 16, 3) and labels.shape == (16,)
    assert set(labels.numpy()) == set(splits.train.classes)
    count = sum(int(y.shape[0]) for _, y in keras_mdr.data.eval_dataset(splits.validation, 64))
    assert count == len(splits.validation)
