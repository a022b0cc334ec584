"""Multi-level Distance Regularization as pure functions on tensors.

The terms follow the paper (Kim & Park, AAAI 2021, and the authors'
release): scale normalisation by the batch's mean distance, batch statistics
over all B*B entries (zero diagonal included, unbiased estimator), and the
mean over pairs `i != j` of the distance to the nearest level.
"""

import tensorflow as tf

from keras_mdr import distances as distances_lib

# The paper's initial levels, in units of the normalised distance's std.
DEFAULT_LEVELS = (-3.0, 0.0, 3.0)


def mean_distance(distances):
    """Mean pairwise distance `s` over `i != j` of a matrix with a zero diagonal."""
    batch = tf.cast(tf.shape(distances)[0], tf.float32)
    # The diagonal is exactly 0, so the sum over all entries is the off-diagonal sum.
    return tf.math.divide_no_nan(tf.reduce_sum(distances), batch * (batch - 1.0))


def safe_scale(scale):
    """The scale itself, or 1 where it is 0 or not finite (no NaN from scaling)."""
    return tf.where(scale > 0.0, scale, tf.ones_like(scale))


def distance_statistics(distances, scale=1.0):
    """Mean and unbiased std of `distances / scale` over all B*B entries.

    As the authors' release computes them: the diagonal zeros are included on
    purpose (the paper's term 3). No gradient flows through the
    statistics. Computed from two sums of the raw distances, so the scaled
    matrix is never materialised.
    """
    distances = tf.stop_gradient(distances)
    scale = tf.stop_gradient(tf.cast(scale, tf.float32))
    count = tf.cast(tf.size(distances), tf.float32)
    total = tf.reduce_sum(distances) / scale
    mean = total / count
    # The scaled values are O(1), so the cancellation in sum(x^2) - n mean^2
    # costs no accuracy that matters.
    squares = tf.reduce_sum(tf.square(distances)) / tf.square(scale)
    variance = tf.maximum(squares - total * mean, 0.0) / (count - 1.0)
    return mean, tf.sqrt(variance)


def mdr_penalty(distances, levels, mean, std, scale=1.0, sample_weight=None):
    """`mean_{i != j} w_i min_l |(D_ij / scale - mean) / std - v_l|`.

    Args:
        distances: float32 `(batch, batch)` distances with a zero diagonal.
        levels: float32 `(L,)` level values.
        mean, std: float32 scalars, the statistics to normalise with (no
            gradient flows into them).
        scale: float32 scalar the distances are divided by (the batch's mean
            distance in MDR); the gradient flows through it.
        sample_weight: optional float32 `(batch,)` weights `w`, one per
            anchor (row) as in `keras_mdr.losses.MetricLoss`: the mean still
            divides by the number of pairs, so weights 1 give the unweighted
            value and zeros give 0. Defaults to 1.

    Returns:
        float32 scalar; 0 for a batch of one (no pair). A zero `std` (all
        distances equal) normalises to 0 rather than NaN.
    """
    distances = tf.convert_to_tensor(distances, tf.float32)
    if sample_weight is None:
        weights = tf.ones([tf.shape(distances)[0]], tf.float32)
    else:
        weights = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    return _mdr_penalty(
        distances,
        tf.convert_to_tensor(scale, tf.float32),
        tf.convert_to_tensor(levels, tf.float32),
        tf.stop_gradient(tf.cast(mean, tf.float32)),
        tf.stop_gradient(tf.cast(std, tf.float32)),
        tf.stop_gradient(weights),
    )


@tf.custom_gradient
def _mdr_penalty(distances, scale, levels, mean, std, weights):
    # A hand-written gradient: the nearest level's sign is all the backward
    # pass needs, a few (B, B) passes instead of differentiating L abs/min
    # passes and the scaling. This keeps MDR's cost small next to the base loss.
    batch = tf.shape(distances)[0]
    inv_std = tf.math.divide_no_nan(1.0, std)
    slope = inv_std / scale
    normalized = distances * slope - mean * inv_std
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
    diagonal_residuals = -mean * inv_std - levels
    diagonal_level = tf.argmin(tf.abs(diagonal_residuals), output_type=tf.int32)
    # gather, not [] indexing: XLA needs a strided slice's bounds at compile
    # time and would constant-fold the whole step to find them, every call.
    diagonal = tf.abs(tf.gather(diagonal_residuals, diagonal_level))
    # Weights of 1 multiply exactly: the unweighted value bit for bit.
    rows = weights[:, None]
    total = tf.reduce_sum(best_gap * rows) - tf.reduce_sum(weights) * diagonal
    value = tf.math.divide_no_nan(total, pairs)

    def grad(upstream):
        # The distances need no diagonal mask: pairwise_distance's diagonal is
        # a constant 0, so its gradient goes nowhere and it adds 0 to the
        # scale's sum. The levels' sum takes the B diagonal terms back out.
        sign = tf.sign(normalized - tf.gather(levels, best_index))
        weight = tf.math.divide_no_nan(upstream, pairs)
        weighted_sign = sign * rows
        grad_distances = weighted_sign * (weight * slope)
        grad_scale = -weight * slope / scale * tf.reduce_sum(weighted_sign * distances)
        num_levels = tf.shape(levels)[0]
        per_level = tf.math.unsorted_segment_sum(
            tf.reshape(weighted_sign, [-1]), tf.reshape(best_index, [-1]), num_levels
        )
        per_level -= tf.reduce_sum(weights) * tf.sign(
            tf.gather(diagonal_residuals, diagonal_level)
        ) * tf.one_hot(diagonal_level, num_levels)
        grad_levels = -weight * per_level
        # A batch of one has no pair and undefined (NaN) statistics: its
        # value is 0, and so must its gradient be (0 * NaN would poison the levels).
        usable = pairs > 0.0
        grad_distances = tf.where(usable, grad_distances, tf.zeros_like(grad_distances))
        grad_scale = tf.where(usable, grad_scale, tf.zeros_like(grad_scale))
        grad_levels = tf.where(usable, grad_levels, tf.zeros_like(grad_levels))
        return (grad_distances, grad_scale, grad_levels, tf.zeros_like(mean), tf.zeros_like(std),
                tf.zeros_like(weights))

    return value, grad


def level_penalty(levels):
    """`sum_l v_l^2`, the levels' own regulariser (weight `nu` in the paper)."""
    return tf.reduce_sum(tf.square(tf.cast(levels, tf.float32)))
