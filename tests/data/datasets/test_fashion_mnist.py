"""Fashion-MNIST from small IDX files written in the test (raw and gzipped)."""

import gzip
import os

import numpy as np
import pytest

import keras_mdr.data
from keras_mdr.data.datasets import fashion_mnist


def _write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    opener = gzip.open if compress else open
    with opener(path + (".gz" if compress else ""), "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_fashion(root, compress, per_class=(3, 2)):
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in zip(("train", "t10k"), per_class):
        labels = np.repeat(np.arange(10), count)
        images = rng.integers(0, 256, (len(labels), 28, 28))
        images[:, 0, 0] = labels  # lets the test match images to labels
        _write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte"), images, compress)
        _write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte"), labels, compress)
    return root


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_merged_and_split_by_class(tmp_path, compress):
    root = _write_fashion(str(tmp_path / "fashion"), compress)
    splits = keras_mdr.data.load_dataset("fashion_mnist", root)
    assert splits.train.images.shape == (25, 28, 28, 1)
    assert splits.train.images.dtype == np.uint8
    assert sorted(splits.train.classes) == [0, 1, 2, 3, 4]
    assert sorted(splits.test.classes) == [5, 6, 7, 8, 9]
    np.testing.assert_array_equal(splits.test.images[:, 0, 0, 0], splits.test.labels)
    assert splits.class_names[9] == "Ankle boot"


def test_read_idx_checks_the_header(tmp_path):
    bad = str(tmp_path / "bad-idx")
    with open(bad, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="Expected 5 bytes"):
        fashion_mnist.read_idx(bad)
    with open(bad, "wb") as f:
        f.write(b"PK\x03\x04")
    with pytest.raises(ValueError, match="IDX"):
        fashion_mnist.read_idx(bad)


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        keras_mdr.data.load_dataset("fashion_mnist", str(tmp_path))


def test_default_directory_holds_the_real_files():
    # tools/test.sh installs Debian's dataset-fashion-mnist; a missing package
    # is a failure here, not a skip, so CI always reads the real files.
    assert os.path.exists(fashion_mnist.DEFAULT_DIRS[0]), (
        "apt-get install dataset-fashion-mnist (tools/test.sh does it as root)"
    )
    splits = keras_mdr.data.load_dataset("fashion_mnist", check_images=None)
    assert splits.train.images.shape == (35000, 28, 28, 1)
    assert len(splits.test) == 35000
