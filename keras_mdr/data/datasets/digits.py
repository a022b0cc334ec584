"""scikit-learn's 8 x 8 handwritten digits: embedded, no download."""

import numpy as np

from keras_mdr.data.split import split_by_class
from keras_mdr.data.split import Split


def load_digits(data_dir=None):
    """The 1,797 scikit-learn digits, classes 0-4 train / 5-9 test.

    Images are `uint8` `(8, 8, 1)`, scaled from scikit-learn's 0-16 to 0-255.

    Args:
        data_dir: must be None; the data ships with scikit-learn.

    Returns:
        `keras_mdr.data.DatasetSplits` with train and test.

    Example:

    >>> from keras_mdr.data.datasets import load_digits
    >>> splits = load_digits()
    >>> splits.train.images.shape[1:], splits.train.classes.tolist()
    ((8, 8, 1), [0, 1, 2, 3, 4])
    """
    if data_dir is not None:
        raise ValueError(
            "Expected data_dir=None for 'digits' (the data ships with "
            f"scikit-learn). Received: data_dir={data_dir!r}"
        )
    # Imported here: only this loader needs scikit-learn.
    from sklearn import datasets

    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    every = Split(labels=digits.target, images=images, name="all")
    return split_by_class("digits", every, 5, 10, {i: str(i) for i in range(10)})
