"""Stanford Online Products from a small copy of Stanford_Online_Products/."""

import os

import pytest

import keras_mdr.data

# (class_id, super_class_id, super class folder, images)
_TRAIN = [(1, 1, "bicycle_final", 2), (2, 1, "bicycle_final", 3), (11318, 12, "toaster_final", 2)]
_TEST = [(11319, 1, "bicycle_final", 2), (11320, 5, "fan_final", 4), (22634, 12, "toaster_final", 2)]


def _write_sop(parent, write_image):
    root = os.path.join(parent, "Stanford_Online_Products")
    image_id = 0
    for name, rows in (("Ebay_train.txt", _TRAIN), ("Ebay_test.txt", _TEST)):
        lines = ["image_id class_id super_class_id path\n"]
        for class_id, super_id, folder, count in rows:
            for i in range(count):
                image_id += 1
                relative = f"{folder}/{100000 + class_id}_{i}.JPG"
                write_image(os.path.join(root, relative), seed=image_id, image_format="JPEG")
                lines.append(f"{image_id} {class_id} {super_id} {relative}\n")
        with open(os.path.join(root, name), "w") as f:
            f.writelines(lines)
    return root


def _check(splits):
    assert splits.name == "sop"
    assert sorted(splits.train.classes) == [0, 1, 11317]
    assert sorted(splits.test.classes) == [11318, 11319, 22633]
    assert (len(splits.train), len(splits.test)) == (7, 8)


def test_official_folder(tmp_path, write_image):
    _write_sop(str(tmp_path), write_image)
    splits = keras_mdr.data.load_dataset("sop", str(tmp_path))
    _check(splits)
    assert all(os.path.exists(p) for p in splits.test.paths)
    # SOP has classes of 2 images: P x 3 batches repeat some (documented).
    batch = next(iter(keras_mdr.data.balanced_dataset(
        splits.train, 3, 3, transform=keras_mdr.data.eval_transform(8, 8))))
    assert batch[0].shape == (9, 8, 8, 3)


def test_missing_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="Ebay_train.txt"):
        keras_mdr.data.load_dataset("sop", str(tmp_path))


def test_prepared_tfds_copy(tmp_path, write_image):
    """A real TFDS `stanford_online_products`, prepared by TFDS's own generator."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.datasets.stanford_online_products import (
        stanford_online_products_dataset_builder as sop_builder,
    )

    root = _write_sop(str(tmp_path / "raw"), write_image)

    class OfflineStanfordOnlineProducts(sop_builder.Builder, skip_registration=True):
        name = "stanford_online_products"
        # TFDS finds the builder's metadata folder (citation) from the module
        # that defines it; there is nothing to download, so no checksums.
        __module__ = sop_builder.__name__
        _checksums_path = None

        def _split_generators(self, dl_manager):
            del dl_manager
            return [
                tfds.core.SplitGenerator(
                    name=name, gen_kwargs={"file_path": os.path.join(root, f"Ebay_{name}.txt")}
                )
                for name in ("train", "test")
            ]

    tfds_dir = str(tmp_path / "tensorflow_datasets")
    OfflineStanfordOnlineProducts(data_dir=tfds_dir).download_and_prepare()
    splits = keras_mdr.data.load_dataset("sop", tfds_dir)
    _check(splits)
    assert splits.train.source == "encoded"
