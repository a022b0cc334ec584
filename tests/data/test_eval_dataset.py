import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import keras_mdr.data


def _indexed_split(count):
    index = np.arange(count)
    images = np.stack([index // 256, index % 256], axis=1).astype(np.uint8)
    labels = index % 7
    return keras_mdr.data.Split(labels=labels, images=images.reshape(-1, 1, 2, 1), name="test")


def _identity(image, seed):
    del seed
    return tf.cast(image, tf.float32)


def test_one_ordered_pass_with_a_partial_last_batch():
    split = _indexed_split(23)
    dataset = keras_mdr.data.eval_dataset(split, 5, transform=_identity, with_indices=True)
    batches = list(dataset)
    assert [int(b[1].shape[0]) for b in batches] == [5, 5, 5, 5, 3]
    images = np.concatenate([b[0].numpy() for b in batches]).astype(int)
    np.testing.assert_array_equal(images[:, 0, 0, 0] * 256 + images[:, 0, 1, 0], np.arange(23))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), split.labels)
    np.testing.assert_array_equal(np.concatenate([b[2] for b in batches]), np.arange(23))
    assert batches[0][1].dtype == tf.int64


def test_default_transform_for_in_memory_images():
    split = _indexed_split(4)
    images, _ = next(iter(keras_mdr.data.eval_dataset(split, 4)))
    # issue 12: [0, 255] like every other path, not [0, 1].
    assert images.dtype == tf.float32
    np.testing.assert_array_equal(images, split.images.astype("float32"))


def test_batch_size_is_checked():
    with pytest.raises(ValueError, match="batch_size"):
        keras_mdr.data.eval_dataset(_indexed_split(3), 0)


def _photos_with_bad_files(image_folder, truncate, tmp_path):
    root = image_folder(3, 3, root=tmp_path / "photos")
    splits = keras_mdr.data.load_dataset("folder", root, test_classes=1, check_images=None)
    split = splits.train  # classes 0 and 1, 6 images
    truncate(split.paths[1])
    truncate(split.paths[-1])  # the very last image: caught by the end sentinel
    return split


def test_unreadable_images_are_skipped_and_counted(image_folder, truncate, tmp_path, capfd):
    split = _photos_with_bad_files(image_folder, truncate, tmp_path)
    transform = keras_mdr.data.eval_transform(image_size=8, resize_size=10)
    dataset = keras_mdr.data.eval_dataset(split, 4, transform=transform, with_indices=True)
    indices = np.concatenate([b[2].numpy() for b in dataset])
    labels = np.concatenate([b[1].numpy() for b in dataset])
    np.testing.assert_array_equal(indices, [0, 2, 3, 4])
    np.testing.assert_array_equal(labels, split.labels[[0, 2, 3, 4]])
    err = capfd.readouterr().err
    assert "skipped 1 images that failed to decode (2 so far)" in err


def test_strict_mode_fails_with_the_path(image_folder, truncate, tmp_path):
    split = _photos_with_bad_files(image_folder, truncate, tmp_path)
    transform = keras_mdr.data.eval_transform(image_size=8, resize_size=10)
    dataset = keras_mdr.data.eval_dataset(split, 4, transform=transform, strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match=os.path.basename(split.paths[1])):
        list(dataset)


def test_evaluation_equals_the_transform_of_the_decoded_image(image_folder):
    """What `eval_dataset` gives is `eval_transform(decoded image)`, as in
    serving, the image decoded as Pillow decodes it (accurate IDCT)."""
    root = image_folder(2, 3, size=(40, 30))
    splits = keras_mdr.data.load_dataset("folder", root, test_classes=1)
    transform = keras_mdr.data.eval_transform(image_size=16, resize_size=20)
    images, _ = next(iter(keras_mdr.data.eval_dataset(splits.train, 3, transform=transform)))
    for image, path in zip(images, splits.train.paths):
        decoded = tf.constant(np.asarray(Image.open(path).convert("RGB")))
        np.testing.assert_array_equal(image, transform(decoded, None))
