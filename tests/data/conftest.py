"""Helpers for the data tests: real image files, written small and fast."""

import os

import numpy as np
import pytest
from PIL import Image


def _write_image(path, size=(24, 20), seed=0, image_format=None, color=None):
    """Writes a real image file (JPEG unless the extension says otherwise).

    Args:
        path: where; folders are created.
        size: (width, height).
        seed: seeds the random pixels.
        image_format: a Pillow format name; default from the extension.
        color: fill with this RGB color instead of random pixels.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    width, height = size
    if color is None:
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        pixels = np.broadcast_to(np.asarray(color, np.uint8), (height, width, 3))
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, format=image_format)
    return path


@pytest.fixture
def write_image():
    """`write_image(path, size=(24, 20), seed=0, image_format=None, color=None)`."""
    return _write_image


@pytest.fixture
def truncate():
    """`truncate(path, keep=0.5)`: cuts a file short, as an interrupted copy would."""

    def cut(path, keep=0.5):
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: int(len(data) * keep)])
        return path

    return cut


@pytest.fixture
def image_folder(tmp_path):
    """A folder of `num_classes` class subfolders of real JPEGs."""

    def make(num_classes=6, per_class=4, size=(24, 20), root=None):
        root = str(root or tmp_path / "folder")
        for c in range(num_classes):
            for i in range(per_class):
                _write_image(
                    os.path.join(root, f"class_{c:02d}", f"{i:03d}.jpg"),
                    size=size,
                    seed=c * 1000 + i,
                )
        return root

    return make
