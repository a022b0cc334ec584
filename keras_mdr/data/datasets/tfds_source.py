"""Splits from a prepared TensorFlow Datasets copy, images kept encoded."""

import os

import numpy as np

from keras_mdr.data.split import Split


def default_data_dir():
    """TFDS's default data directory: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def tfds_splits(name, data_dir, label_key):
    """Reads every split of a prepared TFDS dataset, if there is one.

    Images stay encoded (JPEG bytes, read with `SkipDecoding`): they are decoded
    only when a pipeline samples them. Nothing is downloaded.

    Args:
        name: the TFDS name, e.g. "cars196".
        data_dir: the TFDS data directory (None: TFDS's default,
            ~/tensorflow_datasets or $TFDS_DATA_DIR).
        label_key: the feature holding the class, e.g. "label".

    Returns:
        A dict from TFDS split name to `Split` (source "encoded"), and the
        label names (or None); `(None, None)` when the dataset is not prepared
        in `data_dir`.
    """
    if not os.path.isdir(os.path.join(data_dir or default_data_dir(), name)):
        return None, None
    # Imported here: TFDS is slow to import and only this source needs it.
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        return None, None
    features = builder.info.features
    skip = {
        key: tfds.decode.SkipDecoding()
        for key in features.keys()
        if isinstance(features[key], tfds.features.Image)
    }
    splits = {}
    for split_name in builder.info.splits.keys():
        dataset = builder.as_dataset(split=split_name, decoders=skip, shuffle_files=False)
        encoded, labels = [], []
        for example in dataset.map(lambda x: (x["image"], x[label_key])).as_numpy_iterator():
            encoded.append(example[0])
            labels.append(example[1])
        splits[split_name] = Split(
            labels=np.asarray(labels, np.int64), encoded=encoded, name=split_name
        )
    label_feature = features[label_key]
    names = getattr(label_feature, "names", None)
    return splits, names
