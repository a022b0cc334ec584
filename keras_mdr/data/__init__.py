"""Input pipelines for deep metric learning.

- `load_dataset(name, ...)` gives a benchmark's class-disjoint splits
  (train / validation / test, plus query / gallery for In-Shop).
- `balanced_dataset(split, P, K, ...)` gives endless class-balanced training
  batches of P classes x K images; `eval_dataset(split, batch_size, ...)` one
  ordered pass for evaluation.
- `train_transform`, `eval_transform` and `grayscale_transform` are the
  augmentation presets.
- The MDR authors' release, exactly: `release_batches` (min(m, n_c) images per
  class, exactly the batch size), `release_train_transform` /
  `release_eval_transform` (Pillow's Lanczos, torchvision's
  `RandomResizedCrop` box from `random_resized_crop_box`).

Every path yields RGB float32 pixels in [0, 255] (encoders rescale inside)
and int64 labels; JPEGs are decoded as Pillow decodes them.
"""

from keras_mdr.data.balanced_dataset import balanced_dataset
from keras_mdr.data.eval_dataset import eval_dataset
from keras_mdr.data.image_reader import drop_bad_images
from keras_mdr.data.image_reader import find_bad_images
from keras_mdr.data.load_dataset import DATASET_NAMES
from keras_mdr.data.load_dataset import load_dataset
from keras_mdr.data.release_batches import release_batches
from keras_mdr.data.release_transforms import random_resized_crop_box
from keras_mdr.data.release_transforms import release_eval_transform
from keras_mdr.data.release_transforms import release_train_transform
from keras_mdr.data.split import DatasetSplits
from keras_mdr.data.split import Split
from keras_mdr.data.split import split_validation
from keras_mdr.data.transforms import eval_transform
from keras_mdr.data.transforms import grayscale_transform
from keras_mdr.data.transforms import preprocessor
from keras_mdr.data.transforms import train_transform

__all__ = [
    "DATASET_NAMES",
    "DatasetSplits",
    "Split",
    "balanced_dataset",
    "drop_bad_images",
    "eval_dataset",
    "eval_transform",
    "find_bad_images",
    "grayscale_transform",
    "load_dataset",
    "preprocessor",
    "random_resized_crop_box",
    "release_batches",
    "release_eval_transform",
    "release_train_transform",
    "split_validation",
    "train_transform",
]
