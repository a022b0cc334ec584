"""Pairwise distances and label masks: the maths every loss shares.

All functions compute in float32 whatever the input dtype: under mixed
precision the squared norms of un-normalised embeddings overflow float16 fast
(|e|^2 > 65504 once |e| > 256), and bfloat16 keeps only 8 bits of mantissa.
"""

import tensorflow as tf

DISTANCES = ("euclidean", "squared_euclidean", "cosine")

# TensorFlow Addons' spelling of the same distances. Accepted only by the
# losses that are drop-ins for TFA's, through `distance_from_tfa_name`.
_TFA_NAMES = {"l2": "euclidean", "squared-l2": "squared_euclidean", "angular": "cosine"}


def canonical_distance(distance):
    """Checks a distance name: one of `DISTANCES`, returned unchanged.

    Raises:
        ValueError: for any other value, listing the choices.
    """
    if distance not in DISTANCES:
        raise ValueError(
            f"Expected distance to be one of {DISTANCES}. Received: distance={distance!r}"
        )
    return distance


def distance_from_tfa_name(distance):
    """Our name for a distance given in TensorFlow Addons' or our vocabulary.

    TFA's "L2", "squared-L2" and "angular" (case-insensitive) map to
    "euclidean", "squared_euclidean" and "cosine"; our names pass unchanged.
    Used at the boundary of the losses that are drop-ins for TFA's.
    """
    if isinstance(distance, str) and distance.lower() in _TFA_NAMES:
        return _TFA_NAMES[distance.lower()]
    if distance in DISTANCES:
        return distance
    raise ValueError(
        f"Expected distance to be one of {DISTANCES} or TensorFlow Addons' "
        f"{('L2', 'squared-L2', 'angular')}. Received: distance={distance!r}"
    )


def check_embeddings(embeddings):
    """Embeddings as a float32 `(batch, dim)` tensor, rank checked.

    Raises:
        ValueError: when the rank is known and is not 2.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    if embeddings.shape.rank is not None and embeddings.shape.rank != 2:
        raise ValueError(
            "Expected embeddings of rank 2, shape (batch, dim). Received: "
            f"embeddings.shape={tuple(embeddings.shape)}"
        )
    # Squared norms overflow float16; compute every distance in float32.
    return tf.cast(embeddings, tf.float32)


def check_labels(labels, batch_size=None):
    """Class labels as a flat int64 `(batch,)` tensor, compared exactly later.

    Integer labels keep their value whatever its size (int64 ids up to 2**62
    stay distinct). Float labels (what Keras' own losses cast to) are rounded
    to the nearest integer: exact only up to 2**24 in float32, so pass ints.

    Args:
        labels: `(batch,)` or `(batch, 1)` tensor of integer (or integral
            float) class ids.
        batch_size: optional int or scalar tensor, the number of embeddings.

    Raises:
        ValueError: for string labels, a wrong shape, or (when known
            statically) a length other than `batch_size`.
    """
    labels = tf.convert_to_tensor(labels)
    if labels.dtype == tf.string:
        raise ValueError(
            "Expected integer class labels. Received: labels.dtype=string. Map "
            "strings to ids first, e.g. with keras.layers.StringLookup."
        )
    if labels.shape.rank is not None and labels.shape.rank > 1:
        if labels.shape.rank > 2 or (labels.shape[-1] is not None and labels.shape[-1] != 1):
            raise ValueError(
                "Expected labels of shape (batch,) or (batch, 1). Received: "
                f"labels.shape={tuple(labels.shape)}"
            )
    labels = tf.reshape(labels, [-1])
    if labels.dtype.is_floating:
        labels = tf.round(labels)
    labels = tf.cast(labels, tf.int64)
    _check_length("labels", labels, batch_size)
    return labels


def _check_length(name, values, batch_size):
    """Static check of `values.shape[0] == batch_size` (when both are known)."""
    static = tf.get_static_value(batch_size) if batch_size is not None else None
    if static is not None and values.shape[0] is not None and values.shape[0] != int(static):
        raise ValueError(
            f"Expected as many {name} as embeddings. Received: "
            f"{name}.shape[0]={values.shape[0]}, embeddings.shape[0]={int(static)}"
        )


def pairwise_distance(embeddings, distance="euclidean"):
    """Pairwise distance matrix of a batch of embeddings, in float32.

    Follows TensorFlow Addons' `pairwise_distance` exactly: squared distances
    `|a|^2 + |b|^2 - 2 a.b` are clipped at 0; where they are <= 0 the distance
    is exactly 0 with a zero gradient (so coinciding embeddings give finite
    gradients, not the infinite slope of `sqrt` at 0); the diagonal is 0.

    Args:
        embeddings: `(batch, dim)` tensor, any float dtype.
        distance: "euclidean" (default), "squared_euclidean" or "cosine"
            (`1 - cos`, clipped at 0).

    Returns:
        float32 `(batch, batch)` tensor.

    Example:

    >>> d = keras_mdr.distances.pairwise_distance([[0.0, 0.0], [3.0, 4.0]])
    >>> float(d[0, 1])
    5.0
    """
    distance = canonical_distance(distance)
    embeddings = check_embeddings(embeddings)
    batch = tf.shape(embeddings)[0]
    off_diagonal = 1.0 - tf.eye(batch, dtype=tf.float32)
    if distance == "cosine":
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
    if distance == "squared_euclidean":
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
