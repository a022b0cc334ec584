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
    batch = tf.cast(tf.shape(distances)[0], tf.float32)
    # The diagonal is exactly 0, so the sum over all entries is the off-diagonal sum.
    scale = tf.math.divide_no_nan(tf.reduce_sum(distances), batch * (batch - 1.0))
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
        distances: float32 `(batch, batch)` scale-normalised distances with a
            zero diagonal.
        levels: float32 `(L,)` level values.
        mean, std: float32 scalars, the statistics to normalise with (no
            gradient flows into them).

    Returns:
        float32 scalar; 0 for a batch of one (no pair). A zero `std` (all
        distances equal) normalises to 0 rather than NaN.
    """
    levels = tf.convert_to_tensor(levels, tf.float32)
    return _mdr_penalty(
        tf.convert_to_tensor(distances, tf.float32),
        levels,
        tf.stop_gradient(tf.cast(mean, tf.float32)),
        tf.stop_gradient(tf.cast(std, tf.float32)),
    )


@tf.custom_gradient
def _mdr_penalty(distances, levels, mean, std):
    # A hand-written gradient: the nearest level's sign is all the backward
    # pass needs, one (B, B) multiply instead of differentiating L abs/min
    # passes over (B, B, L). This keeps MDR's cost small next to the base loss.
    batch = tf.shape(distances)[0]
    inv_std = tf.math.divide_no_nan(1.0, std)
    normalized = (distances - mean) * inv_std
    best_gap = tf.abs(normalized - levels[0])
    best_index = tf.zeros_like(distances, dtype=tf.int32)
    for i in range(1, levels.shape[0] or 0):
        gap = tf.abs(normalized - levels[i])
        closer = gap < best_gap
        best_gap = tf.where(closer, gap, best_gap)
        best_index = tf.where(closer, i, best_index)
    pairs = tf.cast(batch * (batch - 1), tf.float32)
    # The zero diagonal normalises to -mean / std: take its gaps back out
    # rather than masking every pair.
    diagonal = tf.reduce_min(tf.abs(-mean * inv_std - levels))
    total = tf.reduce_sum(best_gap) - tf.cast(batch, tf.float32) * diagonal
    value = tf.math.divide_no_nan(total, pairs)

    def grad(upstream):
        off_diagonal = 1.0 - tf.eye(batch, dtype=tf.float32)
        sign = tf.sign(normalized - tf.gather(levels, best_index)) * off_diagonal
        scale = tf.math.divide_no_nan(upstream, pairs)
        grad_distances = sign * (scale * inv_std)
        grad_levels = -scale * tf.math.unsorted_segment_sum(
            tf.reshape(sign, [-1]), tf.reshape(best_index, [-1]), tf.shape(levels)[0]
        )
        return grad_distances, grad_levels, tf.zeros_like(mean), tf.zeros_like(std)

    return value, grad


def level_penalty(levels):
    """`sum_l v_l^2`, the levels' own regulariser (weight `nu` in the paper)."""
    return tf.reduce_sum(tf.square(tf.cast(levels, tf.float32)))
