"""Cars-196 from small copies of its three real layouts.

The .mat files have the fields and order of the real ones:
- cars_annos.mat: `annotations` (1 x N struct: relative_im_path, bbox_x1,
  bbox_y1, bbox_x2, bbox_y2, class, test) and `class_names` (1 x 196 cell);
- devkit/cars_train_annos.mat and cars_test_annos_withlabels.mat:
  `annotations` (1 x N struct: bbox_x1, bbox_y1, bbox_x2, bbox_y2, class, fname);
- devkit/cars_meta.mat: `class_names` (1 x 196 cell).
"""

import os

import numpy as np
import pytest
import scipy.io

import keras_mdr.data

# Class numbers (1-based, as in the files) and images per class.
_CLASSES = (1, 2, 98, 99, 100, 196)
_PER_CLASS = 2
_NAMES = np.array([[f"Brand Model {i} 2012" for i in range(1, 197)]], dtype=object)


def _struct(rows, fields):
    dtype = [(field, "O") for field in fields]
    array = np.empty((1, len(rows)), dtype=dtype)
    for i, row in enumerate(rows):
        array[0, i] = row
    return array


def _write_original(root, write_image):
    rows, n = [], 0
    for number in _CLASSES:
        for _ in range(_PER_CLASS):
            n += 1
            relative = f"car_ims/{n:06d}.jpg"
            write_image(os.path.join(root, relative), seed=n)
            rows.append(
                (relative, np.uint16(1), np.uint16(1), np.uint16(20), np.uint16(18),
                 np.uint8(number), np.uint8(n % 2))
            )
    fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
    scipy.io.savemat(
        os.path.join(root, "cars_annos.mat"),
        {"annotations": _struct(rows, fields), "class_names": _NAMES},
    )
    return root


def _write_devkit(root, write_image, test_labels_in="devkit"):
    fields = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")
    os.makedirs(os.path.join(root, "devkit"), exist_ok=True)
    for folder, annotations in (
        ("cars_train", os.path.join(root, "devkit", "cars_train_annos.mat")),
        ("cars_test", os.path.join(root, test_labels_in, "cars_test_annos_withlabels.mat")),
    ):
        rows = []
        for c, number in enumerate(_CLASSES):
            for i in range(_PER_CLASS):
                fname = f"{c * _PER_CLASS + i + 1:05d}.jpg"
                write_image(os.path.join(root, folder, fname), seed=c * 10 + i)
                rows.append(
                    (np.uint16(1), np.uint16(1), np.uint16(20), np.uint16(18),
                     np.uint8(number), fname)
                )
        scipy.io.savemat(annotations, {"annotations": _struct(rows, fields)})
    scipy.io.savemat(os.path.join(root, "devkit", "cars_meta.mat"), {"class_names": _NAMES})
    return root


def _check(splits, images_per_class):
    assert splits.name == "cars196"
    assert sorted(splits.train.classes) == [0, 1, 97]
    assert sorted(splits.test.classes) == [98, 99, 195]
    assert len(splits.train) == len(splits.test) == 3 * images_per_class
    assert np.bincount(splits.train.labels).max() == images_per_class


def test_original_layout(tmp_path, write_image):
    root = _write_original(str(tmp_path / "cars"), write_image)
    splits = keras_mdr.data.load_dataset("cars196", root)
    _check(splits, _PER_CLASS)
    assert all(os.path.exists(p) for p in splits.train.paths)
    assert splits.class_names[97] == "Brand Model 98 2012"


@pytest.mark.parametrize("test_labels_in", ["devkit", "."])
def test_devkit_layout_merges_train_and_test(tmp_path, write_image, test_labels_in):
    root = _write_devkit(str(tmp_path / "cars"), write_image, test_labels_in)
    splits = keras_mdr.data.load_dataset("cars196", root, validation_classes=1, seed=0)
    # Each class has images in cars_train/ and in cars_test/.
    assert len(splits.train) + len(splits.validation) == 3 * 2 * _PER_CLASS
    assert splits.validation.num_classes == 1
    assert {os.path.basename(os.path.dirname(p)) for p in splits.test.paths} == {
        "cars_train", "cars_test"
    }
    assert sorted(splits.test.classes) == [98, 99, 195]
    assert splits.class_names[0] == "Brand Model 1 2012"


def test_devkit_without_test_labels_says_what_is_missing(tmp_path, write_image):
    root = _write_devkit(str(tmp_path / "cars"), write_image)
    os.remove(os.path.join(root, "devkit", "cars_test_annos_withlabels.mat"))
    with pytest.raises(FileNotFoundError, match="cars_test_annos_withlabels.mat"):
        keras_mdr.data.load_dataset("cars196", root)


def test_missing_data_names_layouts_and_the_dead_tfds_url(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as error:
        keras_mdr.data.load_dataset("cars196", str(empty))
    message = str(error.value)
    for expected in ("car_ims/", "cars_annos.mat", "devkit/cars_train_annos.mat",
                     "cars196", "dead since 2023", "nothing_here"):
        assert expected in message


def test_prepared_tfds_copy(tmp_path, write_image):
    """A real TFDS `cars196` prepared offline by TFDS's own generator."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification import cars196

    raw = _write_devkit(str(tmp_path / "raw"), write_image)

    class OfflineCars196(cars196.Cars196, skip_registration=True):
        name = "cars196"
        # Nothing is downloaded, so no checksums file is needed.
        _checksums_path = None

        def _split_generators(self, dl_manager):
            del dl_manager
            return [
                tfds.core.SplitGenerator(
                    name=split,
                    gen_kwargs={
                        "split_name": split,
                        "data_dir_path": os.path.join(raw, f"cars_{split}"),
                        "data_annotations_path": annotations,
                    },
                )
                for split, annotations in (
                    ("train", os.path.join(raw, "devkit", "cars_train_annos.mat")),
                    ("test", os.path.join(raw, "devkit", "cars_test_annos_withlabels.mat")),
                )
            ]

    tfds_dir = str(tmp_path / "tensorflow_datasets")
    OfflineCars196(data_dir=tfds_dir).download_and_prepare()
    splits = keras_mdr.data.load_dataset("cars196", tfds_dir)
    _check(splits, 2 * _PER_CLASS)  # TFDS train and test merged
    assert splits.train.source == "encoded"
    images, labels = next(iter(keras_mdr.data.eval_dataset(splits.test, 4)))
    assert images.shape == (4, 224, 224, 3) and set(labels.numpy()) <= {98, 99, 195}
    transform = keras_mdr.data.train_transform(image_size=16, resize_size=18)
    images, labels = next(iter(keras_mdr.data.balanced_dataset(splits.train, 2, 3, transform)))
    assert images.shape == (6, 16, 16, 3) and set(labels.numpy()) <= {0, 1, 97}
