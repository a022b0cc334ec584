"""`ProxyAnchorLoss`: Kim et al.'s loss with one learnable proxy per class."""

import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import pair_terms


def proxy_anchor_loss(labels, embeddings, proxies, margin=0.1, alpha=32.0, sample_weight=None):
    """Proxy-anchor loss.

    `S = E P^T` with the proxies `P` L2-normalised (they are the loss's own
    parameters; the paper compares unit vectors) and the embeddings as given
    (the paper's cosine when rows have unit norm). Proxy `c` costs
    `log(1 + sum_{i: y_i = c} exp(-alpha (S_ic - margin)))`, averaged over
    the proxies with a positive in the batch, plus
    `log(1 + sum_{i: y_i != c} exp(alpha (S_ic + margin)))`, averaged over
    all proxies.

    Args:
        labels: int `(batch,)` class indices in `[0, num_classes)`.
        embeddings: `(batch, dim)` tensor, any float dtype (computed in float32).
        proxies: float `(num_classes, dim)` tensor.
        margin: the margin `delta` of the paper.
        alpha: the scale `alpha` of the paper.
        sample_weight: optional `(batch,)` weights, multiplicities of the
            samples inside the sums (weight 2 counts a sample twice, weight 0
            removes it).

    Returns:
        float32 scalar.
    """
    labels, embeddings = pair_terms.batch_inputs(labels, embeddings)
    proxies = tf.math.l2_normalize(tf.cast(proxies, tf.float32), axis=1)
    num_classes = tf.shape(proxies)[0]
    classes = pair_terms.class_indices(labels, num_classes)
    similarities = tf.matmul(embeddings, proxies, transpose_b=True)
    is_class = tf.cast(tf.one_hot(classes, num_classes), tf.bool)
    weights = pair_terms.anchor_weights(sample_weight, tf.shape(labels)[0])
    # A weight w multiplies the sample's exp term: log w added to its exponent.
    present = weights[:, None] > 0.0
    log_w = tf.math.log(tf.where(present, weights[:, None], tf.ones_like(weights[:, None])))
    pos_term = pair_terms.masked_logsumexp(
        -alpha * (similarities - margin) + log_w, is_class & present, axis=0, add_one=True
    )
    neg_term = pair_terms.masked_logsumexp(
        alpha * (similarities + margin) + log_w, ~is_class & present, axis=0, add_one=True
    )
    with_pos = tf.reduce_sum(tf.cast(tf.reduce_any(is_class & present, axis=0), tf.float32))
    return tf.math.divide_no_nan(tf.reduce_sum(pos_term), with_pos) + tf.reduce_sum(
        neg_term
    ) / tf.cast(num_classes, tf.float32)
