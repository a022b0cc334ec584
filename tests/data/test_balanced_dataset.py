import os

import numpy as np
import pytest
import tensorflow as tf

import keras_mdr.data


def _indexed_split(class_sizes):
    """An in-memory split whose image i stores i in its two pixels."""
    labels = np.repeat(np.arange(len(class_sizes)), class_sizes)
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]
    index = np.arange(len(labels))
    images = np.stack([index // 256, index % 256], axis=1).astype(np.uint8)
    return keras_mdr.data.Split(labels=labels, images=images.reshape(-1, 1, 2, 1), name="train")


def _identity(image, seed):
    del seed
    return tf.cast(image, tf.float32)


def _indices(images):
    images = images.numpy().astype(np.int64)
    return images[:, 0, 0, 0] * 256 + images[:, 0, 1, 0]


def _batches(dataset, count):
    return [(_indices(x), y.numpy()) for x, y in dataset.take(count)]


def test_batches_hold_p_classes_times_k_distinct_images():
    sizes = [3, 4, 5, 6, 7, 8, 9, 10, 12, 20, 30, 50]
    split = _indexed_split(sizes)
    P, K = 5, 3
    dataset = keras_mdr.data.balanced_dataset(split, P, K, transform=_identity, seed=7)
    assert dataset.element_spec[0].shape == (P * K, 1, 2, 1)
    assert dataset.element_spec[1].dtype == tf.int64
    seen_classes, seen_images = [], set()
    for indices, labels in _batches(dataset, 300):
        groups = labels.reshape(P, K)
        assert np.all(groups == groups[:, :1]), labels  # consecutive K share a class
        assert len(set(groups[:, 0])) == P  # P distinct classes
        np.testing.assert_array_equal(split.labels[indices], labels)  # right images
        for group in indices.reshape(P, K):
            assert len(set(group)) == K  # no repeats when the class is large enough
        seen_classes.extend(groups[:, 0])
        seen_images.update(indices)
    counts = np.bincount(seen_classes, minlength=len(sizes))
    expected = 300 * P / len(sizes)
    assert np.all(np.abs(counts - expected) < 0.35 * expected), counts
    assert len(seen_images) == len(split)  # every image is drawn eventually


def test_stream_is_seeded_and_endless():
    split = _indexed_split([4] * 10)
    make = lambda seed: keras_mdr.data.balanced_dataset(  # noqa: E731
        split, 4, 2, transform=_identity, seed=seed
    )
    assert make(0).cardinality() == tf.data.INFINITE_CARDINALITY
    first, again, other = _batches(make(3), 20), _batches(make(3), 20), _batches(make(4), 20)
    for (a, la), (b, lb) in zip(first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(first, other))


def test_start_batch_resumes_the_same_stream():
    split = _indexed_split([4] * 10)
    make = lambda start: keras_mdr.data.balanced_dataset(  # noqa: E731
        split, 4, 2, transform=_identity, seed=3, start_batch=start
    )
    whole, resumed = _batches(make(0), 12), _batches(make(7), 5)
    for (a, la), (b, lb) in zip(whole[7:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    with pytest.raises(ValueError, match="start_batch"):
        make(-1)


def test_small_classes_repeat_uses_every_image_then_repeats():
    split = _indexed_split([1, 2, 6, 6])
    dataset = keras_mdr.data.balanced_dataset(split, 4, 3, transform=_identity, seed=0)
    for indices, labels in _batches(dataset, 20):
        for group, label in zip(indices.reshape(4, 3), labels[::3]):
            members = set(np.flatnonzero(split.labels == label))
            assert set(group) <= members
            assert len(set(group)) == min(3, len(members))


def test_small_classes_drop_never_draws_them():
    split = _indexed_split([1, 2, 6, 6, 5])
    with pytest.warns(UserWarning, match="Dropped 2 of 5 classes"):
        dataset = keras_mdr.data.balanced_dataset(
            split, 3, 3, transform=_identity, small_classes="drop"
        )
    small = {label for label in split.classes if np.sum(split.labels == label) < 3}
    for _, labels in _batches(dataset, 20):
        assert not small & set(labels)


def test_argument_errors():
    split = _indexed_split([4] * 6)
    with pytest.raises(ValueError, match="multiple of `num_replicas`"):
        keras_mdr.data.balanced_dataset(split, 3, 2, num_replicas=2)
    with pytest.raises(ValueError, match="at least classes_per_batch=7"):
        keras_mdr.data.balanced_dataset(split, 7, 2)
    with pytest.raises(ValueError, match="small_classes"):
        keras_mdr.data.balanced_dataset(split, 2, 2, small_classes="pad")
    with pytest.raises(ValueError, match="images_per_class"):
        keras_mdr.data.balanced_dataset(split, 2, 0)
    with pytest.raises(ValueError, match="seed"):
        keras_mdr.data.balanced_dataset(split, 2, 2, seed=None)


def test_photos_are_decoded_and_augmented(image_folder):
    splits = keras_mdr.data.load_dataset("folder", image_folder(6, 3), test_classes=2)
    transform = keras_mdr.data.train_transform(image_size=16, resize_size=18)
    dataset = keras_mdr.data.balanced_dataset(splits.train, 2, 3, transform=transform)
    images, labels = next(iter(dataset))
    assert images.shape == (6, 16, 16, 3) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
    assert set(labels.numpy()) <= {0, 1, 2, 3}


def _split_with_bad_file(image_folder, truncate, tmp_path):
    root = image_folder(4, 3, root=tmp_path / "photos")
    bad = truncate(os.path.join(root, "class_02", "001.jpg"))
    splits = keras_mdr.data.load_dataset(
        "folder", root, test_classes=1, check_images=None
    )
    return splits.train, bad


def test_unreadable_image_skips_its_group_with_a_count(image_folder, truncate, tmp_path, capfd):
    train, _ = _split_with_bad_file(image_folder, truncate, tmp_path)
    transform = keras_mdr.data.eval_transform(image_size=8, resize_size=8)
    dataset = keras_mdr.data.balanced_dataset(train, 2, 3, transform=transform, seed=1)
    batches = [labels.numpy() for _, labels in dataset.take(30)]
    for labels in batches:
        groups = labels.reshape(2, 3)
        assert np.all(groups == groups[:, :1])
    # Class 2 always includes the bad image (3 images, K = 3): never delivered.
    assert all(2 not in labels for labels in batches)
    assert "class groups holding an image that failed to decode" in capfd.readouterr().err


def test_strict_mode_fails_with_the_path(image_folder, truncate, tmp_path):
    train, bad = _split_with_bad_file(image_folder, truncate, tmp_path)
    transform = keras_mdr.data.eval_transform(image_size=8, resize_size=8)
    dataset = keras_mdr.data.balanced_dataset(train, 3, 3, transform=transform, strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match=bad.replace("\\", "\\\\")):
        for _ in dataset.take(20):
            pass


def test_fit_runs_on_the_endless_stream():
    import keras

    splits = keras_mdr.data.load_dataset("digits")
    dataset = keras_mdr.data.balanced_dataset(splits.train, 5, 2, seed=0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(dataset, steps_per_epoch=3, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2
