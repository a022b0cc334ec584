"""Shared maths of the pair, proxy and softmax losses: masked log-sum-exp,
non-zero averages, per-anchor weights and class-index checks.

Everything is float32 (the callers cast first) and written so that empty
masks give finite values *and* finite gradients: a `tf.where` only ever
selects between two finite branches.
"""

import numpy as np
import tensorflow as tf


def masked_logsumexp(x, mask, axis=1, add_one=False):
    """`log(sum_{mask} exp(x))` along `axis`, 0 where the mask is empty.

    With `add_one=True` the sum also holds `exp(0)`: `log(1 + sum exp(x))`,
    the soft-plus-of-many form of the multi-similarity and proxy-anchor
    losses. A row whose mask is empty gives 0 either way (it contributes
    nothing), with a zero gradient.

    Args:
        x: float32 tensor.
        mask: bool tensor of the same shape.
        axis: the reduced axis.
        add_one: include a constant `exp(0)` term in every sum.

    Returns:
        float32 tensor, `x` reduced along `axis`.
    """
    masked = tf.where(mask, x, tf.fill(tf.shape(x), -np.inf))
    shift = tf.reduce_max(masked, axis=axis, keepdims=True)
    if add_one:
        shift = tf.maximum(shift, 0.0)
    # A constant shift for stability: it does not change the value or the gradient.
    shift = tf.stop_gradient(tf.where(tf.math.is_finite(shift), shift, tf.zeros_like(shift)))
    total = tf.reduce_sum(tf.exp(masked - shift), axis=axis, keepdims=True)
    if add_one:
        total += tf.exp(-shift)
    any_kept = tf.reduce_any(mask, axis=axis, keepdims=True)
    safe_total = tf.where(any_kept & (total > 0.0), total, tf.ones_like(total))
    out = tf.where(any_kept, tf.math.log(safe_total) + shift, tf.zeros_like(total))
    return tf.squeeze(out, axis=axis)


def anchor_weights(sample_weight, batch):
    """Per-anchor weights as a float32 `(batch,)` vector (ones when None)."""
    if sample_weight is None:
        return tf.ones([batch], tf.float32)
    sample_weight = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    return sample_weight


def nonzero_mean(losses, mask, weights):
    """`sum(w_row * loss)` over the masked entries with a positive loss,
    divided by how many there are (unweighted); 0 when there is none.

    This is pytorch-metric-learning's `AvgNonZeroReducer` with a weight per
    anchor (row) that scales the anchor's terms and leaves the count alone,
    so weights of 1 give the unweighted value and weights of 0 give 0.
    """
    kept = tf.logical_and(mask, losses > 0.0)
    count = tf.reduce_sum(tf.cast(kept, tf.float32))
    weights = tf.reshape(weights, [-1] + [1] * (losses.shape.rank - 1))
    total = tf.reduce_sum(tf.where(kept, losses * weights, tf.zeros_like(losses)))
    return tf.math.divide_no_nan(total, count)


def class_indices(labels, num_classes, name="labels"):
    """Labels as int32 class indices, checked to lie in `[0, num_classes)`.

    Eagerly the check raises a `ValueError`; in a graph it is an assertion
    (XLA drops assertions, so there an out-of-range label gets an all-zero
    one-hot row: check labels before compiling with `jit_compile=True`).
    """
    labels = tf.convert_to_tensor(labels)
    if tf.executing_eagerly():
        values = labels.numpy()
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"Expected {name} in [0, num_classes={num_classes}) for a loss with one "
                f"parameter per class. Received: {name} in [{values.min()}, {values.max()}]"
            )
        return tf.cast(labels, tf.int32)
    checks = [
        tf.debugging.assert_non_negative(labels, message=f"Expected {name} >= 0"),
        tf.debugging.assert_less(
            labels, tf.cast(num_classes, labels.dtype),
            message=f"Expected {name} < num_classes={num_classes}",
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.cast(tf.identity(labels), tf.int32)


def batch_inputs(labels, embeddings):
    """`(labels, embeddings)` as a flat int vector and float32 `(batch, dim)`.

    The losses' classes pass labels already checked (int64, by
    `MetricLoss`); this keeps the pure functions usable on plain arrays.
    Every distance is computed in float32: squared norms overflow float16.
    """
    embeddings = tf.cast(tf.convert_to_tensor(embeddings), tf.float32)
    labels = tf.reshape(tf.convert_to_tensor(labels), [-1])
    if labels.dtype.is_floating:
        labels = tf.cast(tf.round(labels), tf.int64)
    return labels, embeddings
