"""The release's batches (issue 9 item 7): min(m, n_c) images of each class in
shuffled class order, no image twice in a batch, exactly the batch size."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import keras_mdr


def _indexed_split(class_sizes):
    """Each image holds its own index (two pixels: index // 256, index % 256)."""
    labels = np.repeat(np.arange(len(class_sizes)) * 1000 + 7, class_sizes)
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]  # not sorted by class
    index = np.arange(len(labels))
    images = np.stack([index // 256, index % 256], axis=1).astype(np.uint8)
    return keras_mdr.data.Split(labels=labels, images=images.reshape(-1, 1, 2, 1), name="toy")


def _identity(image, seed):
    del seed
    return tf.cast(image, tf.float32)


def _batches(split, batch_size, m, count, seed=0, start_batch=0):
    dataset = keras_mdr.data.release_batches(split, batch_size, m, transform=_identity,
                                             seed=seed, start_batch=start_batch)
    out = []
    for images, labels in dataset.take(count):
        pixels = images.numpy().astype(int)
        indices = pixels[:, 0, 0, 0] * 256 + pixels[:, 0, 1, 0]
        out.append((indices, labels.numpy()))
    return out


SIZES = [1, 1, 2, 3, 5, 8, 4, 1, 2, 6, 3, 3, 10, 1, 2]


def test_composition_is_the_releases():
    split = _indexed_split(SIZES)
    counts = collections.Counter(split.labels.tolist())
    seen = collections.Counter()
    for indices, labels in _batches(split, 13, 3, 60):
        assert len(indices) == 13 and labels.dtype == np.int64
        assert len(set(indices)) == 13, "an image twice in a batch"
        np.testing.assert_array_equal(split.labels[indices], labels)
        # Consecutive groups per class, each min(m, n_c) except the cut last one.
        groups = [(label, len(list(run))) for label, run in _runs(labels)]
        assert len({label for label, _ in groups}) == len(groups), "a class split in two"
        for label, size in groups[:-1]:
            assert size == min(3, counts[label]), (label, size)
        assert 1 <= groups[-1][1] <= min(3, counts[groups[-1][0]])
        seen.update(label for label, _ in groups)
    # Single-image classes take part; every class is drawn about equally often.
    assert all(seen[label] > 0 for label in counts if counts[label] == 1)
    frequencies = np.array([seen[label] for label in counts])
    assert frequencies.min() > 0.5 * frequencies.mean(), frequencies


def _runs(labels):
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            yield labels[start], range(start, i)
            start = i


def test_images_within_a_class_are_uniform():
    split = _indexed_split([10, 10, 10, 10])
    picks = collections.Counter()
    for indices, _ in _batches(split, 8, 2, 300):
        picks.update(indices.tolist())
    frequencies = np.array([picks[i] for i in range(40)])
    # 300 batches x 8 images over 40 images: 60 each, binomial sd about 7.
    assert abs(frequencies - 60).max() < 35, frequencies


def test_stream_is_repeatable_and_resumable():
    split = _indexed_split(SIZES)
    a = _batches(split, 9, 3, 5, seed=3)
    b = _batches(split, 9, 3, 5, seed=3)
    c = _batches(split, 9, 3, 5, seed=4)
    resumed = _batches(split, 9, 3, 2, seed=3, start_batch=3)
    for (x, _), (y, _) in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for (x, _), (y, _) in zip(a, c))
    for (x, _), (y, _) in zip(a[3:], resumed):
        np.testing.assert_array_equal(x, y)


def test_too_few_images_and_bad_arguments():
    split = _indexed_split([1, 2, 5])
    with pytest.raises(ValueError, match=r"at least batch_size=6 .*Received: 5"):
        keras_mdr.data.release_batches(split, 6, 2)  # 1 + 2 + 2 images
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        keras_mdr.data.release_batches(split, 0, 2)
    with pytest.raises(ValueError, match="Received: images_per_class=-1"):
        keras_mdr.data.release_batches(split, 4, -1)


def _encoded_split(bad):
    """Eight classes of two PNGs each; the images at `bad` are not images."""
    import io

    from PIL import Image

    encoded = []
    for i in range(16):
        buffer = io.BytesIO()
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(buffer, "PNG")
        encoded.append(b"not an image" if i in bad else buffer.getvalue())
    return keras_mdr.data.Split(labels=np.repeat(np.arange(8), 2), encoded=encoded)


def test_unreadable_images_are_skipped_and_counted(capfd):
    split = _encoded_split(bad={0, 1, 2, 3})
    dataset = keras_mdr.data.release_batches(split, 4, 2, transform=_identity, seed=0)
    for images, labels in dataset.take(6):
        assert images.shape[0] == 4 and int(tf.reduce_min(labels)) >= 2  # classes 0, 1 gone
    assert "skipped" in capfd.readouterr().err


@pytest.mark.parametrize("pipeline", ["release", "balanced"])
def test_a_resumed_stream_reports_no_phantom_skips(pipeline, capfd):
    split = _encoded_split(bad=set())
    if pipeline == "release":
        dataset = keras_mdr.data.release_batches(split, 4, 2, transform=_identity, start_batch=5)
    else:
        dataset = keras_mdr.data.balanced_dataset(split, 2, 2, transform=_identity, start_batch=5)
    list(dataset.take(3))
    assert "skipped" not in capfd.readouterr().err
