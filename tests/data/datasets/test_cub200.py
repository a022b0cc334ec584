"""CUB-200-2011 from a small copy of the official CUB_200_2011/ folder."""

import os

import numpy as np
import pytest

import keras_mdr.data

_CLASSES = (1, 2, 100, 101, 150, 200)
_PER_CLASS = 3


def _class_folder(number):
    return f"{number:03d}.Bird_{number}"


def _write_cub(parent, write_image):
    root = os.path.join(parent, "CUB_200_2011")
    images, labels, split = [], [], []
    for number in _CLASSES:
        for i in range(_PER_CLASS):
            relative = f"{_class_folder(number)}/Bird_{number}_{i:04d}_{number * 7 + i}.jpg"
            write_image(os.path.join(root, "images", relative), seed=number * 10 + i)
            images.append(relative)
            labels.append(number)
            split.append(i % 2)
    ids = range(1, len(images) + 1)
    with open(os.path.join(root, "images.txt"), "w") as f:
        f.writelines(f"{i} {path}\n" for i, path in zip(ids, images))
    with open(os.path.join(root, "image_class_labels.txt"), "w") as f:
        f.writelines(f"{i} {label}\n" for i, label in zip(ids, labels))
    with open(os.path.join(root, "train_test_split.txt"), "w") as f:
        f.writelines(f"{i} {s}\n" for i, s in zip(ids, split))
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.writelines(f"{n} {_class_folder(n)}\n" for n in range(1, 201))
    return root


def _check(splits):
    assert splits.name == "cub200"
    assert sorted(splits.train.classes) == [0, 1, 99]
    assert sorted(splits.test.classes) == [100, 149, 199]
    assert len(splits.train) == len(splits.test) == 3 * _PER_CLASS


@pytest.mark.parametrize("given", ["parent", "folder"])
def test_official_folder(tmp_path, write_image, given):
    root = _write_cub(str(tmp_path), write_image)
    splits = keras_mdr.data.load_dataset("cub200", root if given == "folder" else str(tmp_path))
    _check(splits)
    index = list(splits.test.labels).index(199)
    assert "/images/200.Bird_200/" in splits.test.paths[index].replace(os.sep, "/")
    assert splits.class_names[199] == "200.Bird_200"


def test_missing_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="CUB_200_2011.tgz"):
        keras_mdr.data.load_dataset("cub200", str(tmp_path))


def test_prepared_tfds_copy(tmp_path, write_image):
    """A real TFDS `caltech_birds2011`, written offline through TFDS."""
    import tensorflow_datasets as tfds
    from PIL import Image
    from tensorflow_datasets.image_classification import caltech_birds

    root = _write_cub(str(tmp_path / "raw"), write_image)
    mask = str(tmp_path / "mask.png")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(mask)
    with open(os.path.join(root, "images.txt")) as f:
        rows = [line.split() for line in f]
    with open(os.path.join(root, "image_class_labels.txt")) as f:
        labels = dict(line.split() for line in f)

    class OfflineCaltechBirds2011(caltech_birds.CaltechBirds2011, skip_registration=True):
        name = "caltech_birds2011"
        # Nothing is downloaded, so no checksums file is needed.
        _checksums_path = None

        def _split_generators(self, dl_manager):
            del dl_manager
            return [
                tfds.core.SplitGenerator(name=name, gen_kwargs={"parity": parity})
                for name, parity in (("train", 0), ("test", 1))
            ]

        def _generate_examples(self, parity):
            for i, path in rows:
                if int(i) % 2 != parity:
                    continue
                yield i, {
                    "image": os.path.join(root, "images", path),
                    "image/filename": path,
                    "label": int(labels[i]) - 1,
                    "label_name": path.split("/")[0],
                    "bbox": tfds.features.BBox(0.1, 0.1, 0.9, 0.9),
                    "segmentation_mask": mask,
                }

    tfds_dir = str(tmp_path / "tensorflow_datasets")
    OfflineCaltechBirds2011(data_dir=tfds_dir).download_and_prepare()
    splits = keras_mdr.data.load_dataset("cub200", tfds_dir)
    _check(splits)
    assert splits.test.source == "encoded"
