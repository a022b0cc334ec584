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
from keras_mdr.losses import distance_weighted, metric_loss


def _row_masked_max(distances, mask, fallback):
    """Row-wise max over `mask`, `fallback` where the row's mask is empty."""
    masked = tf.where(mask, distances, tf.fill(tf.shape(distances), -float("inf")))
    return tf.where(tf.reduce_any(mask, axis=1), tf.reduce_max(masked, axis=1), fallback)


def _row_masked_min(distances, mask, fallback):
    """Row-wise min over `mask`, `fallback` where the row's mask is empty."""
    masked = tf.where(mask, distances, tf.fill(tf.shape(distances), float("inf")))
    return tf.where(tf.reduce_any(mask, axis=1), tf.reduce_min(masked, axis=1), fallback)


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
    sampling="release",
    scale=1.0,
):
    """Triplet margin loss with distance-weighted negative sampling.

    The base loss of the MDR authors' release (Wu et al. 2017, "Sampling
    Matters"). Every (anchor, positive) pair gets one negative drawn from
    `keras_mdr.losses.distance_weighted_probabilities(embeddings, labels,
    sampling)` ("release": the authors' rule, float32 underflow included;
    "textbook": Wu et al.'s, whose fallback is uniform over the allowed
    negatives). The loss is the mean over triplets of
    `max(T[a,p] - T[a,n] + margin, 0)` with `T` PyTorch's triplet distance
    `|x_a - x_j + 1e-6|` (`release_triplet_distances`): plain Euclidean
    distances miss the release's loss by up to 1.85e-4 relative on a
    low-loss batch, against a 1e-5 target.

    Args:
        labels: int `(batch,)` tensor; anchors with no positive (one-image
            classes) or no negative contribute no triplet.
        distances: float32 `(batch, batch)` Euclidean distances of `embeddings`.
        embeddings: float32 `(batch, dim)` embeddings the distances were
            computed from (the sampling uses their directions only).
        seed: int `(2,)` tensor for stateless sampling.
        margin: float, in the units of `distances` (MDR passes `margin * s`).
        cutoff, nonzero_loss_cutoff: floats of the sampler.
        sample_weight: optional float32 `(batch,)` weights of the anchors.
        sampling: "release" (default) or "textbook".
        scale: float32 scalar the release divides the embeddings by (MDR's
            mean distance; 1 for raw embeddings).

    Returns:
        float32 scalar; 0 when the batch has no (anchor, positive, negative).
    """
    positives, negatives = distances_lib.label_masks(labels)
    probabilities = distance_weighted.distance_weighted_probabilities(
        embeddings, labels, sampling, cutoff, nonzero_loss_cutoff
    )
    sampled = distance_weighted.sample_negatives(probabilities, seed)
    triplet_distances = distance_weighted.release_triplet_distances(distances, embeddings, scale)
    negative_distance = tf.gather(triplet_distances, sampled, batch_dims=1)
    triplets = tf.logical_and(positives, tf.reduce_any(negatives, axis=1, keepdims=True))
    losses = tf.maximum(triplet_distances - negative_distance + margin, 0.0)
    return metric_loss.weighted_mean(losses, triplets, sample_weight)
