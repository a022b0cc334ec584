import os

import numpy as np
import pytest
import tensorflow as tf

import keras_mdr.data
from keras_mdr.data import image_reader


def _files(tmp_path, write_image, truncate):
    good_jpeg = write_image(str(tmp_path / "good.jpg"), seed=1)
    good_png = write_image(str(tmp_path / "good.png"), seed=2)
    cut_jpeg = truncate(write_image(str(tmp_path / "cut.jpg"), seed=3))
    cut_png = truncate(write_image(str(tmp_path / "cut.png"), seed=4))
    empty = str(tmp_path / "empty.jpg")
    open(empty, "wb").close()
    text = str(tmp_path / "text.jpg")
    with open(text, "w") as f:
        f.write("<html>404 not found</html>")
    missing = str(tmp_path / "missing.jpg")
    return [good_jpeg, good_png, cut_jpeg, cut_png, empty, text, missing]


def test_find_bad_images_names_each_problem(tmp_path, write_image, truncate):
    paths = _files(tmp_path, write_image, truncate)
    split = keras_mdr.data.Split(labels=np.zeros(len(paths), int), paths=paths)
    bad = {os.path.basename(name): reason for _, name, reason in keras_mdr.data.find_bad_images(split)}
    assert set(bad) == {"cut.jpg", "cut.png", "empty.jpg", "text.jpg", "missing.jpg"}
    assert "truncated JPEG" in bad["cut.jpg"] and "truncated PNG" in bad["cut.png"]
    assert bad["empty.jpg"] == "empty file" and "cannot be read" in bad["missing.jpg"]
    decoded = keras_mdr.data.find_bad_images(split, check="decode")
    assert {os.path.basename(n) for _, n, _ in decoded} == set(bad)


def test_find_bad_images_on_encoded_bytes(tmp_path, write_image, truncate):
    paths = _files(tmp_path, write_image, truncate)[:6]
    encoded = [open(p, "rb").read() for p in paths]
    split = keras_mdr.data.Split(labels=np.zeros(len(encoded), int), encoded=encoded)
    assert [i for i, _, _ in keras_mdr.data.find_bad_images(split)] == [2, 3, 4, 5]


def test_strict_reader_refuses_exactly_what_the_file_check_flags(tmp_path, write_image, truncate):
    # The strict reader's in-graph check, seen through its public effect: it
    # names the file for every file `image_problem` flags (a cut JPEG would
    # otherwise decode, partly grey) and decodes every other one.
    paths = _files(tmp_path, write_image, truncate)[:6]
    split = keras_mdr.data.Split(labels=np.zeros(len(paths), int), paths=paths, name="train")
    read = image_reader.image_reader(split, strict=True)
    for index, path in enumerate(paths):
        data = open(path, "rb").read()
        if image_reader.image_problem(data[:16], data[-4096:], len(data)) is None:
            assert read(tf.constant(index, tf.int64)).shape[-1] == 3, path
        else:
            with pytest.raises(tf.errors.InvalidArgumentError, match="strict mode"):
                read(tf.constant(index, tf.int64))


def test_drop_bad_images_warns_or_raises(tmp_path, write_image, truncate):
    paths = _files(tmp_path, write_image, truncate)
    split = keras_mdr.data.Split(labels=np.arange(len(paths)), paths=paths, name="train")
    with pytest.warns(UserWarning, match="Skipped 5 unreadable images of 7 in split 'train'"):
        kept = keras_mdr.data.drop_bad_images(split)
    np.testing.assert_array_equal(kept.labels, [0, 1])
    with pytest.raises(ValueError, match="cut.jpg: truncated JPEG"):
        keras_mdr.data.drop_bad_images(split, strict=True)
    assert keras_mdr.data.drop_bad_images(kept) is kept


def test_reader_decodes_grayscale_and_png_as_rgb(tmp_path, write_image):
    from PIL import Image

    gray = str(tmp_path / "gray.jpg")
    Image.fromarray(np.full((6, 5), 128, np.uint8)).save(gray)
    png = write_image(str(tmp_path / "a.png"), size=(7, 4))
    split = keras_mdr.data.Split(labels=[0, 1], paths=[gray, png])
    read = image_reader.image_reader(split)
    # Values, not shapes: gray replicated to RGB as Pillow's convert("RGB")
    # does, and the PNG's pixels exactly (lossless).
    gray_rgb = read(tf.constant(0, tf.int64)).numpy()
    np.testing.assert_array_equal(gray_rgb, np.asarray(Image.open(gray).convert("RGB")))
    assert (gray_rgb == gray_rgb[..., :1]).all() and abs(int(gray_rgb.mean()) - 128) <= 1
    np.testing.assert_array_equal(read(tf.constant(1, tf.int64)), np.asarray(Image.open(png)))
    assert np.asarray(Image.open(png)).shape == (4, 7, 3)
