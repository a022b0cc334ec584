"""Triplet losses as pure functions of labels and a distance matrix.

Each function takes the `(batch, batch)` float32 distance matrix, so a caller
that already has one (the MDR objective) shares it instead of recomputing it.
Sample weights are per anchor (`keras_mdr.losses.weighted_mean`).

Degenerate batches never give NaN:
- semi-hard: a batch with no positive pair (all classes of one sample, or a
  batch of one) gives 0. TensorFlow Addons returns NaN there (0 / 0).
- hard: an anchor with no positive uses 0 as its hardest positive distance (the
  row minimum, like TFA); an anchor with no negative uses the row maximum. A
  single-class batch or a batch of one therefore gives `margin` (as TFA does).
- distance-weighted: an anchor with no negative contributes no triplet; a batch
  with no triplet gives 0.
"""

import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import metric_loss


def _row_masked_max(distances, mask, fallback):
    """Row-wise max over `mask`, `fallback` where the row's mask is empty."""
    masked = tf.where(mask, distances, tf.fill(tf.shape(distances), -float("inf")))
    return tf.where(tf.reduce_any(mask, axis=1), tf.reduce_max(masked, axis=1), fallback)


def _row_masked_min(distances, mask, fallback):
    """Row-wise min over `mask`, `fallback` where the row's mask is empty."""
    masked = tf.where(mask, distances, tf.fill(tf.shape(distances), float("inf")))
    return tf.where(tf.reduce_any(mask, axis=1), tf.reduce_min(masked, axis=1), fallback)


_MASK32 = 0xFFFFFFFF


def _mix32(x):
    """lowbias32 integer hash (C. Wellons) on int64 lanes holding 32-bit values."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = tf.bitwise.bitwise_and(x * 0x7FEB352D, _MASK32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = tf.bitwise.bitwise_and(x * 0x846CA68B, _MASK32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def _hash_uniform(shape, seed):
    """Uniform [0, 1) floats from a counter-based hash of (seed, position).

    TensorFlow's stateless random ops return different numbers when compiled
    with XLA; plain integer arithmetic gives the same bits everywhere, so a
    training step samples the same negatives with and without `jit_compile`.
    """
    seed = tf.bitwise.bitwise_and(tf.cast(seed, tf.int64), _MASK32)
    key = _mix32(tf.bitwise.bitwise_xor(_mix32(seed[0] + 0x9E3779B9), seed[1]))
    count = tf.cast(tf.reduce_prod(shape), tf.int64)
    counter = tf.range(count, dtype=tf.int64)
    bits = _mix32(tf.bitwise.bitwise_and(counter * 0x9E3779B1 + key, _MASK32))
    bits = _mix32(tf.bitwise.bitwise_xor(bits, key))
    # 24 high bits: exactly representable in float32.
    uniform = tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) / float(1 << 24)
    return tf.reshape(uniform, shape)


def semihard_triplet_loss(labels, distances, margin=1.0, sample_weight=None):
    """Semi-hard triplet loss (FaceNet; TensorFlow Addons' rule and value).

    For every ordered positive pair (a, p), a != p, the negative is the closest
    one strictly farther from a than p; if there is none, the farthest negative
    of a (if a has no negative at all, the row minimum, 0, as in TFA). The loss
    is the mean over positive pairs of `max(margin + D[a,p] - D[a,n], 0)`.

    Unlike TFA's O(B^3)-memory mask, each anchor's row of negative distances is
    sorted once and the semi-hard negative of every positive is found by binary
    search: O(B^2 log B) time, O(B^2) memory, the same values.

    Args:
        labels: int `(batch,)` tensor.
        distances: float32 `(batch, batch)` distance matrix.
        margin: float.
        sample_weight: optional float32 `(batch,)` weights of the anchors
            (see `keras_mdr.losses.weighted_mean`).

    Returns:
        float32 scalar; 0 for a batch with no positive pair.
    """
    positives, negatives = distances_lib.label_masks(labels)
    batch = tf.shape(distances)[0]
    inf = tf.fill(tf.shape(distances), float("inf"))
    negative_distances = tf.where(negatives, distances, inf)
    order = tf.argsort(negative_distances, axis=1, stable=True)
    sorted_negatives = tf.gather(negative_distances, order, batch_dims=1)
    # First sorted negative strictly farther than each positive (side="right").
    position = tf.searchsorted(sorted_negatives, distances, side="right")
    num_negatives = tf.reduce_sum(tf.cast(negatives, tf.int32), axis=1, keepdims=True)
    has_outside = position < num_negatives
    outside_index = tf.gather(order, tf.minimum(position, batch - 1), batch_dims=1)
    farthest_index = tf.argmax(
        tf.where(negatives, distances, -inf), axis=1, output_type=tf.int32
    )
    # No negative at all: TFA's masked maximum falls back to the row minimum.
    fallback_index = tf.where(
        num_negatives[:, 0] > 0,
        farthest_index,
        tf.argmin(distances, axis=1, output_type=tf.int32),
    )
    negative_index = tf.where(
        has_outside, outside_index, tf.broadcast_to(fallback_index[:, None], tf.shape(order))
    )
    negative_distance = tf.gather(distances, negative_index, batch_dims=1)
    losses = tf.maximum(margin + distances - negative_distance, 0.0)
    return metric_loss.weighted_mean(losses, positives, sample_weight)


def hard_triplet_loss(labels, distances, margin=1.0, soft=False, sample_weight=None):
    """Batch-hard triplet loss (TensorFlow Addons' rule and value).

    For every anchor: hardest positive `max D[a,p]` (row minimum, i.e. 0, if none)
    and hardest negative `min D[a,n]` (row maximum if none); the loss is the mean
    over all anchors of `max(hp - hn + margin, 0)`, or `softplus(hp - hn)` with
    `soft=True` (TFA's `log1p(exp(.))` overflows to inf for gaps above ~88;
    softplus is the same function, computed stably).

    Args:
        labels: int `(batch,)` tensor.
        distances: float32 `(batch, batch)` distance matrix.
        margin: float, unused when `soft=True`.
        soft: bool.
        sample_weight: optional float32 `(batch,)` weights of the anchors.

    Returns:
        float32 scalar.
    """
    positives, negatives = distances_lib.label_masks(labels)
    hardest_positive = _row_masked_max(
        distances, positives, tf.reduce_min(distances, axis=1)
    )
    hardest_negative = _row_masked_min(
        distances, negatives, tf.reduce_max(distances, axis=1)
    )
    gap = hardest_positive - hardest_negative
    if soft:
        losses = tf.nn.softplus(gap)
    else:
        losses = tf.maximum(gap + margin, 0.0)
    return metric_loss.weighted_mean(losses, sample_weight=sample_weight)


def distance_weighted_triplet_loss(
    labels,
    distances,
    embeddings,
    seed,
    margin=0.2,
    cutoff=0.5,
    nonzero_loss_cutoff=1.4,
    sample_weight=None,
):
    """Triplet margin loss with distance-weighted negative sampling.

    The base loss of the MDR authors' release (Wu et al. 2017, "Sampling
    Matters"). Every (anchor, positive) pair gets one negative drawn from the
    anchor's negatives with probability proportional to the inverse of the
    density of distances on the unit sphere of the embedding's dimension:
    on L2-normalised copies `u`, `q = max(|u_a - u_n|, cutoff)`,
    `log w = (2 - d) log q - (d - 3) / 2 log(1 - q^2 / 4)`, kept for
    `q < nonzero_loss_cutoff` (a row with none becomes uniform over its
    negatives). The loss is the mean over triplets of
    `max(D[a,p] - D[a,n] + margin, 0)` with `D` the given distances.

    Args:
        labels: int `(batch,)` tensor.
        distances: float32 `(batch, batch)` Euclidean distances used by the
            margin loss (MDR passes the scale-normalised ones).
        embeddings: float32 `(batch, dim)` embeddings the sampling weights are
            computed from (their direction only).
        seed: int32 `(2,)` tensor for stateless sampling.
        margin: float.
        cutoff: float, lower clip of the sampling distance.
        nonzero_loss_cutoff: float, negatives at this unit-sphere distance or
            more are never sampled (they cannot violate the margin).

    Returns:
        float32 scalar; 0 when the batch has no (anchor, positive, negative).
    """
    positives, negatives = distances_lib.label_masks(labels)
    dim = tf.cast(tf.shape(embeddings)[1], tf.float32)
    unit = tf.math.l2_normalize(embeddings, axis=1)
    unit_distances = distances_lib.pairwise_distance(unit, "squared_euclidean")
    unit_distances = tf.sqrt(unit_distances + tf.eye(tf.shape(unit)[0]))
    q = tf.maximum(unit_distances, cutoff)
    log_weights = (2.0 - dim) * tf.math.log(q) - ((dim - 3.0) / 2.0) * tf.math.log(
        tf.maximum(1.0 - 0.25 * tf.square(q), 1e-8)
    )
    allowed = tf.logical_and(negatives, q < nonzero_loss_cutoff)
    row_has_allowed = tf.reduce_any(allowed, axis=1, keepdims=True)
    # A row with no negative under the cutoff samples uniformly among its negatives.
    allowed = tf.where(row_has_allowed, allowed, negatives)
    neg_inf = tf.fill(tf.shape(q), -float("inf"))
    logits = tf.where(allowed, log_weights, neg_inf)
    logits = logits - tf.reduce_max(
        tf.where(allowed, logits, tf.fill(tf.shape(q), -3.0e38)), axis=1, keepdims=True
    )
    # Rows with no negative at all get dummy logits; their triplets are masked.
    logits = tf.where(tf.reduce_any(negatives, axis=1, keepdims=True), logits, tf.zeros_like(logits))
    probabilities = tf.stop_gradient(tf.nn.softmax(logits, axis=1))
    # Inverse-CDF sampling, one uniform per (anchor, positive): O(B^2) memory
    # and XLA-compatible (StatelessMultinomial has no XLA kernel).
    cdf = tf.cumsum(probabilities, axis=1)
    batch = tf.shape(distances)[0]
    uniform = _hash_uniform(tf.stack([batch, batch]), seed) * cdf[:, -1:]
    sampled = tf.searchsorted(cdf, uniform, side="right", out_type=tf.int32)
    sampled = tf.minimum(sampled, batch - 1)  # sampled[a, p]: negative of pair (a, p)
    negative_distance = tf.gather(distances, sampled, batch_dims=1)
    triplets = tf.logical_and(positives, tf.reduce_any(negatives, axis=1, keepdims=True))
    losses = tf.maximum(distances - negative_distance + margin, 0.0)
    return metric_loss.weighted_mean(losses, triplets, sample_weight)
