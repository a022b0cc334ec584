"""Multi-level Distance Regularization as pure functions on tensors.

The terms follow `MDR_SPEC.md` (Kim & Park, AAAI 2021, and the authors'
release): scale normalisation by the batch's mean distance, batch statistics
over all B*B entries (zero diagonal included, unbiased estimator), and the
mean over pairs `i != j` of the distance to the nearest level.
"""

import tensorflow as tf

from keras_mdr import distances as distances_lib


def scale_normalize(embeddings, distances):
    """Divides embeddings and distances by the batch's mean pairwise distance.

    "Learning without L2 norm" (Sec. 3.1): the gradient flows through the
    scale. A batch whose mean distance is 0 or not finite (one sample, all
    embeddings equal) is left unscaled, so the scale never creates a NaN;
    NaN inputs stay NaN.

    Returns:
        `(scaled_embeddings, scaled_distances, scale)`.
    """
    scale = distances_lib.mean_off_diagonal(distances)
    scale = tf.where(scale > 0.0, scale, tf.ones_like(scale))
    return embeddings / scale, distances / scale, scale


def distance_statistics(distances):
    """Mean and unbiased std over all B*B entries, as the authors' release does.

    The diagonal zeros are included on purpose (see `MDR_SPEC.md`, term 3).
    No gradient flows through the statistics.
    """
    distances = tf.stop_gradient(distances)
    values = tf.reshape(distances, [-1])
    count = tf.cast(tf.size(values), tf.float32)
    mean = tf.reduce_mean(values)
    variance = tf.reduce_sum(tf.square(values - mean)) / (count - 1.0)
    return mean, tf.sqrt(variance)


def mdr_penalty(distances, levels, mean, std):
    """`mean_{i != j} min_l |(D_ij - mean) / std - v_l|`.

    Args:
        distances: float32 `(batch, batch)` scale-normalised distances.
        levels: float32 `(L,)` level values.
        mean, std: float32 scalars, the statistics to normalise with.

    Returns:
        float32 scalar; 0 for a batch of one (no pair). A zero `std` (all
        distances equal) normalises to 0 rather than NaN.
    """
    normalized = tf.math.divide_no_nan(distances - mean, std)
    gaps = tf.abs(normalized[:, :, None] - tf.cast(levels, tf.float32)[None, None, :])
    nearest = tf.reduce_min(gaps, axis=-1)
    return distances_lib.mean_off_diagonal(nearest)


def level_penalty(levels):
    """`sum_l v_l^2`, the levels' own regulariser (weight `nu` in the paper)."""
    return tf.reduce_sum(tf.square(tf.cast(levels, tf.float32)))
