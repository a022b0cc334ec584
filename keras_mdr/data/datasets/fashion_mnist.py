"""Fashion-MNIST from its IDX files, classes 0-4 train / 5-9 test."""

import gzip
import os

import numpy as np

from keras_mdr.data.datasets import missing_data
from keras_mdr.data.split import split_by_class
from keras_mdr.data.split import Split

DEFAULT_DIRS = (
    "/usr/share/datasets/fashion-mnist",  # Debian's dataset-fashion-mnist
    os.path.join(os.path.expanduser("~"), ".keras", "datasets", "fashion-mnist"),
)
_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = (
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)
# IDX type codes (third byte of the magic number) to NumPy big-endian dtypes.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Reads an IDX file (gzipped or not) into a NumPy array.

    Args:
        path: the file, e.g. "train-images-idx3-ubyte.gz".

    Returns:
        The array, with the shape and type its header gives.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(
            f"Expected an IDX file (magic 0x0000TTNN). Received: {path!r} "
            f"starting with {data[:4]!r}"
        )
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ValueError(
            f"Expected {expected} bytes of data for shape {shape} in {path!r}. "
            f"Received: {len(data) - offset}"
        )
    return np.frombuffer(data, dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory, name):
    return missing_data.first_existing(
        os.path.join(directory, name), os.path.join(directory, name + ".gz")
    )


def _complete(directory):
    return all(_find(directory, name) for pair in _FILES for name in pair)


def load_fashion_mnist(data_dir=None):
    """Fashion-MNIST (train and t10k merged), classes 0-4 train / 5-9 test.

    Images are `uint8` `(28, 28, 1)`.

    Args:
        data_dir: the directory of the four IDX files (gzipped or not). None
            looks in /usr/share/datasets/fashion-mnist (Debian's
            `dataset-fashion-mnist` package), then ~/.keras/datasets/fashion-mnist.

    Returns:
        `keras_mdr.data.DatasetSplits` with train (35,000 images) and test
        (35,000 images).

    Example:

    >>> from keras_mdr.data.datasets import load_fashion_mnist
    >>> splits = load_fashion_mnist()  # doctest: +SKIP
    >>> splits.train.images.shape  # doctest: +SKIP
    (35000, 28, 28, 1)
    """
    candidates = DEFAULT_DIRS if data_dir is None else (data_dir,)
    directory = next((d for d in candidates if _complete(d)), None)
    if directory is None:
        raise missing_data.missing_dataset_error(
            "Fashion-MNIST",
            data_dir,
            [
                "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each "
                "optionally gzipped (.gz)",
            ],
            [
                "Debian/Ubuntu: `apt-get install dataset-fashion-mnist` "
                "(installs them in /usr/share/datasets/fashion-mnist)",
                "the four .gz files of github.com/zalandoresearch/fashion-mnist "
                "(data/fashion)",
            ],
            searched=list(candidates),
        )
    images, labels = [], []
    for image_name, label_name in _FILES:
        images.append(read_idx(_find(directory, image_name)))
        labels.append(read_idx(_find(directory, label_name)))
    images = np.concatenate(images).astype(np.uint8)[..., None]
    every = Split(labels=np.concatenate(labels).astype(np.int64), images=images, name="all")
    return split_by_class("fashion_mnist", every, 5, 10, dict(enumerate(_CLASS_NAMES)))
