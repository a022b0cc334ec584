"""`ArcFaceLoss`: Deng et al.'s additive angular margin softmax."""

import math

import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import pair_terms


def arcface_logits(labels, embeddings, centres, margin=0.5, scale=64.0):
    """ArcFace logits: `scale * cos(theta + margin)` for the true class.

    `cos(theta_ic) = e_i . w_c` with the class centres `w` L2-normalised and
    the embeddings as given (unit rows give the paper's cosine); the true
    class's cosine is clipped to [-1, 1] for its angle. Beyond `theta = pi - margin`, where `cos(theta + margin)` would
    rise again, the target logit is `cos(theta) - margin * sin(margin)`
    (the paper's official code does the same). `cos(theta + margin)` is
    computed as `cos t cos m - sin t sin m`, so the gradient stays finite
    where an embedding coincides with its centre.

    Returns:
        float32 `(batch, num_classes)` logits.
    """
    labels, embeddings = pair_terms.batch_inputs(labels, embeddings)
    centres = tf.math.l2_normalize(tf.cast(centres, tf.float32), axis=1)
    num_classes = tf.shape(centres)[0]
    classes = pair_terms.class_indices(labels, num_classes)
    cosine = tf.matmul(embeddings, centres, transpose_b=True)
    raw_target = tf.gather(cosine, classes, batch_dims=1)
    target = tf.clip_by_value(raw_target, -1.0, 1.0)
    sine_sq = 1.0 - tf.square(target)
    # sqrt has an infinite slope at 0: use 1 there, then mask it out.
    sine = tf.where(sine_sq > 0.0, tf.sqrt(tf.where(sine_sq > 0.0, sine_sq, 1.0)), 0.0)
    shifted = tf.where(
        target >= math.cos(math.pi - margin),
        target * math.cos(margin) - sine * math.sin(margin),
        target - margin * math.sin(margin),
    )
    one_hot = tf.one_hot(classes, num_classes)
    return scale * (cosine + one_hot * (shifted - raw_target)[:, None])


def arcface_loss(labels, embeddings, centres, margin=0.5, scale=64.0, sample_weight=None):
    """ArcFace loss: softmax cross-entropy of `arcface_logits`, batch mean.

    Args:
        labels: int `(batch,)` class indices in `[0, num_classes)`.
        embeddings: `(batch, dim)` tensor, any float dtype (computed in float32).
        centres: float `(num_classes, dim)` tensor, one centre per class.
        margin: the additive angular margin, in radians.
        scale: the logit scale `s`.
        sample_weight: optional `(batch,)` weights, one per sample.

    Returns:
        float32 scalar.
    """
    labels, embeddings = pair_terms.batch_inputs(labels, embeddings)
    logits = arcface_logits(labels, embeddings, centres, margin, scale)
    classes = pair_terms.class_indices(labels, tf.shape(logits)[1])
    per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(classes, logits)
    weights = pair_terms.anchor_weights(sample_weight, tf.shape(labels)[0])
    return tf.reduce_mean(weights * per_sample)
