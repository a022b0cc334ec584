"""Pairwise distances and label masks: the maths every loss shares.

All functions compute in float32 whatever the input dtype: under mixed
precision the squared norms of un-normalised embeddings overflow float16 fast
(|e|^2 > 65504 once |e| > 256), and bfloat16 keeps only 8 bits of mantissa.
"""

import tensorflow as tf

METRICS = ("euclidean", "squared_euclidean", "cosine")

# TensorFlow Addons' names for the same metrics, accepted for parity.
_ALIASES = {
    "l2": "euclidean",
    "euclidean": "euclidean",
    "squared-l2": "squared_euclidean",
    "squared_l2": "squared_euclidean",
    "squared_euclidean": "squared_euclidean",
    "angular": "cosine",
    "cosine": "cosine",
}


def canonical_metric(metric):
    """Returns the canonical name of a distance metric.

    Accepts our names ("euclidean", "squared_euclidean", "cosine") and
    TensorFlow Addons' ("L2", "squared-L2", "angular"), case-insensitively.
    """
    if not isinstance(metric, str) or metric.lower() not in _ALIASES:
        raise ValueError(
            f"Expected distance metric to be one of {METRICS} (or TensorFlow "
            f"Addons' 'L2', 'squared-L2', 'angular'). Received: metric={metric!r}"
        )
    return _ALIASES[metric.lower()]


def check_embeddings(embeddings, labels=None):
    """Casts embeddings to float32 and labels to a flat int vector, checking shapes.

    Args:
        embeddings: tensor of shape `(batch, dim)`.
        labels: optional tensor of shape `(batch,)` or `(batch, 1)`, int or float.

    Returns:
        `(embeddings, labels)`: float32 `(batch, dim)` and int32/int64 `(batch,)`
        (labels is None when not given).

    Raises:
        ValueError: when shapes are known statically and do not fit.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    if embeddings.shape.rank is not None and embeddings.shape.rank != 2:
        raise ValueError(
            "Expected embeddings of rank 2, shape (batch, dim). Received: "
            f"embeddings.shape={tuple(embeddings.shape)}"
        )
    # Squared norms overflow float16; compute every distance in float32.
    embeddings = tf.cast(embeddings, tf.float32)
    if labels is None:
        return embeddings, None
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank is not None and labels.shape.rank > 1:
        if labels.shape.rank > 2 or (
            labels.shape[-1] is not None and labels.shape[-1] != 1
        ):
            raise ValueError(
                "Expected labels of shape (batch,) or (batch, 1). Received: "
                f"labels.shape={tuple(labels.shape)}"
            )
    labels = tf.reshape(labels, [-1])
    if labels.dtype.is_floating:
        # Keras casts y_true to the loss dtype; class ids are integral.
        labels = tf.cast(tf.round(labels), tf.int64)
    n_labels, n_embeddings = labels.shape[0], embeddings.shape[0]
    if n_labels is not None and n_embeddings is not None and n_labels != n_embeddings:
        raise ValueError(
            "Expected as many labels as embeddings. Received: "
            f"labels.shape[0]={n_labels}, embeddings.shape[0]={n_embeddings}"
        )
    return embeddings, labels


def pairwise_distance(embeddings, metric="euclidean"):
    """Pairwise distance matrix of a batch of embeddings, in float32.

    Follows TensorFlow Addons' `pairwise_distance` exactly: squared distances
    `|a|^2 + |b|^2 - 2 a.b` are clipped at 0; where they are <= 0 the distance
    is exactly 0 with a zero gradient (so coinciding embeddings give finite
    gradients, not the infinite slope of `sqrt` at 0); the diagonal is 0.

    Args:
        embeddings: `(batch, dim)` tensor, any float dtype.
        metric: "euclidean" (default), "squared_euclidean" or "cosine"
            (`1 - cos`, clipped at 0). TFA's names are accepted too.

    Returns:
        float32 `(batch, batch)` tensor.

    Example:

    >>> d = keras_mdr.distances.pairwise_distance([[0.0, 0.0], [3.0, 4.0]])
    >>> float(d[0, 1])
    5.0
    """
    metric = canonical_metric(metric)
    embeddings, _ = check_embeddings(embeddings)
    batch = tf.shape(embeddings)[0]
    off_diagonal = 1.0 - tf.eye(batch, dtype=tf.float32)
    if metric == "cosine":
        unit = tf.math.l2_normalize(embeddings, axis=1)
        distances = tf.maximum(1.0 - tf.matmul(unit, unit, transpose_b=True), 0.0)
        return distances * off_diagonal
    squared_norms = tf.reduce_sum(tf.square(embeddings), axis=1)
    squared = (
        squared_norms[:, None]
        + squared_norms[None, :]
        - 2.0 * tf.matmul(embeddings, embeddings, transpose_b=True)
    )
    squared = tf.maximum(squared, 0.0)
    if metric == "squared_euclidean":
        return squared * off_diagonal
    is_zero = tf.cast(squared <= 0.0, tf.float32)
    # sqrt(0) has an infinite slope: add a tiny value there, then mask it out.
    distances = tf.sqrt(squared + is_zero * 1e-16) * (1.0 - is_zero)
    return distances * off_diagonal


def label_masks(labels):
    """Boolean masks of positive and negative pairs.

    Args:
        labels: int `(batch,)` tensor.

    Returns:
        `(positives, negatives)`: `(batch, batch)` bool tensors. `positives`
        marks pairs `i != j` with the same label; `negatives` pairs with
        different labels.
    """
    same = tf.equal(labels[:, None], labels[None, :])
    diagonal = tf.eye(tf.shape(labels)[0], dtype=tf.bool)
    return tf.logical_and(same, tf.logical_not(diagonal)), tf.logical_not(same)
