"""The MDR authors' trained checkpoints as keras_mdr encoders, and their test evaluation.

The release (kakaoenterprise/AAAI2021_MDR) ships `cub200.pth`, `cars196.pth`,
`sop.pth` and `inshop.pth`: PyTorch state_dicts of its `Embedding` model,
BN-Inception under `base.model.*` and a `Linear(1024, 512)` head `linear.*`.
`load_release_checkpoint` turns one into the same encoder
`keras_mdr.training.build_encoder("bn_inception", ...)` builds (RGB [0, 255]
in, raw 512-d embeddings out, no L2 normalisation, as the release evaluates);
`evaluate_release_checkpoint` runs the paper's test protocol on it with our
data pipeline and our Recall@K.
"""

from keras_mdr import data
from keras_mdr import evaluation
from keras_mdr.backbones import bn_inception_weights
from keras_mdr.backbones.torch_checkpoint import read_state_dict

# The release's test transform: resize to 256 x 256, centre crop 224.
RESIZE_SIZE = 256
IMAGE_SIZE = 224


def load_release_checkpoint(path, image_size=IMAGE_SIZE):
    """An MDR authors' checkpoint (`cars196.pth`, ...) as a keras_mdr encoder.

    Args:
        path: the `.pth` file (zip or legacy layout; PyTorch is not needed).
        image_size: the encoder's input side (the release tests at 224).

    Returns:
        The `keras.Model` "encoder" of `keras_mdr.training.build_encoder(
        "bn_inception", ...)`, with the checkpoint's backbone and head: RGB
        float images in [0, 255] to float32 `(None, embedding_dim)`, the
        embedding size read from `linear.weight`.

    Raises:
        ValueError: when the file is not an authors' checkpoint (no
            `base.model.*` and `linear.*` keys), or does not match the network.

    Example:

    >>> import keras_mdr.backbones
    >>> encoder = keras_mdr.backbones.load_release_checkpoint("cars196.pth")  # doctest: +SKIP
    >>> encoder.output_shape  # doctest: +SKIP
    (None, 512)

    Reference:
        Kim & Park, "Multi-level Distance Regularization for Deep Metric
        Learning", AAAI 2021; the trained weights of its official release.
    """
    # Imported here: keras_mdr.training imports this package for its backbone table.
    from keras_mdr.training import encoders

    state_dict = read_state_dict(path)
    head = state_dict.get("linear.weight")
    if bn_inception_weights.checkpoint_layout(state_dict) != "release" or head is None or head.ndim != 2:
        raise ValueError(
            "Expected an MDR authors' checkpoint (keys base.model.* and a 2-D "
            f"linear.weight). Received: path={path!r} with keys {list(state_dict)[:4]}...; "
            'for backbone weights alone use build_encoder("bn_inception", weights=path)'
        )
    encoder = encoders.build_encoder("bn_inception", "none", int(head.shape[0]), image_size)
    bn_inception_weights.load_bn_inception_weights(encoder, state_dict)
    return encoder


def _embed(encoder, split, transform, batch_size, verbose):
    dataset = data.eval_dataset(split, batch_size, transform=transform)
    return evaluation.embed_dataset(evaluation.embedding_function(encoder), dataset, verbose=verbose)


def recall_on_test_protocol(encoder, splits, ks, transform, batch_size=64, verbose=0):
    """Recall@K of `encoder` on a dataset's test protocol.

    The test split against itself (each query left out of its own ranking),
    or In-Shop's query images against its gallery; Euclidean distance on the
    raw embeddings, as the release ranks (squared distances, same order).

    Args:
        encoder: images -> embeddings.
        splits: `keras_mdr.data.DatasetSplits`.
        ks: the K of Recall@K.
        transform: the test transform (`keras_mdr.data.eval_transform()`).
        batch_size: images per batch.
        verbose: 1 shows progress bars.

    Returns:
        `({"recall@k": fraction, ...}, embeddings)`: `embeddings` maps "test"
        (or "query" and "gallery") to `(embeddings, labels)`.
    """
    if splits.query is not None:
        embedded = {name: _embed(encoder, getattr(splits, name), transform, batch_size, verbose)
                    for name in ("query", "gallery")}
        (q, q_labels), (g, g_labels) = embedded["query"], embedded["gallery"]
        recall = evaluation.recall_at_k(q, q_labels, ks, gallery_embeddings=g, gallery_labels=g_labels)
    else:
        embedded = {"test": _embed(encoder, splits.test, transform, batch_size, verbose)}
        recall = evaluation.recall_at_k(*embedded["test"], ks)
    return {f"recall@{k}": float(v) for k, v in recall.items()}, embedded


def evaluate_release_checkpoint(path, dataset, data_dir=None, batch_size=64, ks=None,
                                image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE, verbose=0):
    """Evaluates an MDR authors' checkpoint on a benchmark's test split.

    Our pipeline (`keras_mdr.data.load_dataset`, `eval_transform`: resize to
    `resize_size` x `resize_size`, centre crop `image_size`) and our Recall@K,
    with the dataset's Ks from the paper unless `ks` is given: 1, 2, 4, 8
    (CUB-200-2011, Cars-196), 1, 10, 100, 1000 (SOP), 1, 10, 20, 30, 40
    (In-Shop, query against gallery).

    Args:
        path: the checkpoint (`cub200.pth`, `cars196.pth`, `sop.pth`, `inshop.pth`).
        dataset: "cub200", "cars196", "sop" or "inshop".
        data_dir: the dataset's folder (see `keras_mdr.data.load_dataset`).
        batch_size: images per batch.
        ks: the K of Recall@K; None for the paper's.
        image_size, resize_size: the test transform's crop and resize.
        verbose: 1 shows progress bars.

    Returns:
        A dict: "checkpoint", "dataset", "ks", "num_queries", "num_gallery",
        "transform", "recall" ({"recall@k": fraction}), and "embeddings"
        (see `recall_on_test_protocol`; not JSON-serialisable, drop it before saving).

    Example:

    >>> import keras_mdr.backbones
    >>> results = keras_mdr.backbones.evaluate_release_checkpoint(
    ...     "cars196.pth", "cars196", "/data/stanford_cars")  # doctest: +SKIP
    >>> round(100 * results["recall"]["recall@1"], 1)  # doctest: +SKIP
    88.5
    """
    from keras_mdr.training import presets  # imported here, see load_release_checkpoint

    if dataset not in ("cub200", "cars196", "sop", "inshop"):
        raise ValueError(
            'Expected dataset "cub200", "cars196", "sop" or "inshop" (the release\'s '
            f"checkpoints). Received: dataset={dataset!r}"
        )
    ks = tuple(int(k) for k in (ks or presets.PRESETS[dataset]["recall_ks"]))
    encoder = load_release_checkpoint(path, image_size)  # first: a bad file fails fast
    splits = data.load_dataset(dataset, data_dir)
    transform = data.eval_transform(image_size=image_size, resize_size=resize_size)
    recall, embedded = recall_on_test_protocol(encoder, splits, ks, transform, batch_size, verbose)
    sizes = [len(labels) for _, labels in embedded.values()]
    return {
        "checkpoint": str(path),
        "dataset": dataset,
        "ks": list(ks),
        "num_queries": int(sizes[0]),
        "num_gallery": int(sizes[-1] if len(sizes) == 2 else sizes[0] - 1),
        "transform": f"resize {resize_size} x {resize_size}, centre crop {image_size}",
        "recall": recall,
        "embeddings": embedded,
    }
