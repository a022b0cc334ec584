import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mdr.data


def _coordinate_image(height=200, width=160):
    """Channel 0 holds the column, channel 1 the row, in pixels (uint8)."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([cols, rows, np.zeros_like(rows)], axis=-1)
    return tf.constant(image.astype(np.uint8))


def test_eval_transform_is_a_centre_crop_of_the_resized_image():
    image = _coordinate_image()
    out = keras_mdr.data.eval_transform(image_size=112, resize_size=128)(image, None).numpy()
    assert out.shape == (112, 112, 3) and out.dtype == np.float32
    # The window is the central 112/128 of each axis: columns 10..150 of 160.
    assert abs(out[..., 0].min() - 10) <= 1.5 and abs(out[..., 0].max() - 149) <= 1.5
    assert abs(out[..., 1].min() - 12.5) <= 1.5 and abs(out[..., 1].max() - 187) <= 1.5


def test_train_transform_samples_the_papers_crops():
    image = _coordinate_image()
    transform = keras_mdr.data.train_transform(image_size=64)
    areas, ratios, flips = [], [], 0
    for i in range(60):
        out = transform(image, tf.constant([3, i])).numpy()
        assert out.shape == (64, 64, 3)
        cols, rows = out[..., 0], out[..., 1]
        width = (cols.max() - cols.min() + 1) / 160
        height = (rows.max() - rows.min() + 1) / 200
        areas.append(width * height)
        if height < 0.98 and width < 0.98:  # not clipped to the image
            ratios.append(width / height)
        flips += cols[0, 0] > cols[0, -1]
    assert min(areas) >= 0.16 - 0.03 and max(areas) <= 1.0
    assert min(ratios) >= 0.75 - 0.08 and max(ratios) <= 1.33 + 0.08
    assert 15 <= flips <= 45


def test_train_transform_is_reproducible_per_seed():
    image = _coordinate_image(50, 60)
    transform = keras_mdr.data.train_transform(image_size=16, resize_size=18)
    a = transform(image, tf.constant([1, 2]))
    b = transform(image, tf.constant([1, 2]))
    c = transform(image, tf.constant([1, 3]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_keras_cv_implementation_runs_in_tf_data():
    transform = keras_mdr.data.train_transform(
        image_size=16, resize_size=20, implementation="keras_cv", seed=1
    )
    dataset = tf.data.Dataset.from_tensors(_coordinate_image(30, 40)).repeat(12)
    dataset = dataset.map(lambda image: transform(image, tf.constant([0, 0])))
    outputs = [out.numpy() for out in dataset]
    assert all(out.shape == (16, 16, 3) and out.dtype == np.float32 for out in outputs)
    # Values, not shapes: each output is a window of the coordinate image with
    # the paper's area range, and the windows differ (a random crop).
    windows = set()
    for out in outputs:
        cols, rows = out[..., 0], out[..., 1]
        assert cols.min() >= -0.5 and cols.max() <= 39.5 and rows.min() >= -0.5
        assert rows.max() <= 29.5
        area = (cols.max() - cols.min() + 1) / 40 * (rows.max() - rows.min() + 1) / 30
        assert 0.16 - 0.1 <= area <= 1.0 + 1e-6, area
        windows.add((round(float(cols.min())), round(float(rows.min())),
                     round(float(cols.max())), round(float(rows.max()))))
    assert len(windows) >= 6, windows


def test_preprocess_options():
    image = tf.fill((10, 10, 3), tf.constant(255, tf.uint8))
    unit = keras_mdr.data.eval_transform(8, 8, preprocess="unit")(image, None)
    symmetric = keras_mdr.data.eval_transform(8, 8, preprocess="symmetric")(image, None)
    resnet = keras_mdr.data.eval_transform(8, 8, preprocess="resnet50")(image, None)
    custom = keras_mdr.data.eval_transform(8, 8, preprocess=lambda x: x * 0)(image, None)
    np.testing.assert_allclose(unit, 1.0)
    np.testing.assert_allclose(symmetric, 1.0)
    expected = keras.applications.resnet50.preprocess_input(np.full((8, 8, 3), 255.0, "float32"))
    np.testing.assert_allclose(resnet, expected, rtol=1e-6)
    np.testing.assert_allclose(custom, 0.0)
    with pytest.raises(ValueError, match="resnet50"):
        keras_mdr.data.preprocessor("bn_inception")


def test_size_and_range_errors():
    with pytest.raises(ValueError, match="image_size"):
        keras_mdr.data.train_transform(image_size=0)
    with pytest.raises(ValueError, match="crop_area"):
        keras_mdr.data.train_transform(crop_area=(0.5, 0.2))
    with pytest.raises(ValueError, match="no larger than"):
        keras_mdr.data.eval_transform(image_size=256, resize_size=224)
    with pytest.raises(ValueError, match="implementation"):
        keras_mdr.data.train_transform(implementation="torch")
    with pytest.raises(ValueError, match="channels"):
        keras_mdr.data.grayscale_transform(channels=2)


def test_grayscale_transform():
    image = tf.constant(np.full((8, 8, 1), 51, np.uint8))
    plain = keras_mdr.data.grayscale_transform()(image, tf.constant([0, 0]))
    assert plain.shape == (8, 8, 1)
    np.testing.assert_allclose(plain, 51.0)  # [0, 255] by default (issue 12)
    rgb = keras_mdr.data.grayscale_transform(image_size=32, channels=3, preprocess=None)
    out = rgb(image, tf.constant([0, 0]))
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out, 51.0)
