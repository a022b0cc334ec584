"""`MarginLoss`: Wu et al.'s margin loss with a learnable boundary beta."""

import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import pair_terms


def margin_loss(labels, embeddings, beta, margin=0.2, nu=0.0, sample_weight=None):
    """Margin loss over all triplets of the batch, in O(B^2) memory.

    With Euclidean distances `D` and the boundary `b_a` of anchor `a` (the
    single entry of `beta`, or `beta[label_a]` when `beta` has one entry per
    class), every triplet `(a, p, n)` costs
    `max(D_ap - b_a + margin, 0) + max(b_a - D_an + margin, 0)`. The sum is
    divided by the number of positive and negative halves with a positive
    cost, as pytorch-metric-learning's `MarginLoss(triplets_per_anchor="all")`
    does. A triplet repeats its pair terms, so the sum is computed from pairs:
    anchor `a`'s positive terms count once per negative of `a` and vice versa
    (no `B^3` tensor). The regulariser `nu * b` is added per triplet (one
    boundary per class) or once (a global boundary).

    Args:
        labels: int `(batch,)` tensor; with per-class `beta`, class indices in
            `[0, len(beta))`.
        embeddings: `(batch, dim)` tensor, any float dtype (computed in float32).
        beta: float `(1,)` or `(num_classes,)` tensor, the boundaries.
        margin: the margin `alpha` around the boundary.
        nu: weight of the boundary regulariser.
        sample_weight: optional `(batch,)` weights, one per anchor: they scale
            the anchor's triplet costs (and its share of the regulariser),
            not the count.

    Returns:
        float32 scalar; 0 for a batch without a triplet.
    """
    labels, embeddings = pair_terms.batch_inputs(labels, embeddings)
    beta = tf.reshape(tf.cast(beta, tf.float32), [-1])
    distances = distances_lib.pairwise_distance(embeddings, "euclidean")
    positives, negatives = distances_lib.label_masks(labels)
    weights = pair_terms.anchor_weights(sample_weight, tf.shape(labels)[0])
    per_class = beta.shape[0] is None or beta.shape[0] != 1
    if per_class:
        boundary = tf.gather(beta, pair_terms.class_indices(labels, tf.shape(beta)[0]))
    else:
        boundary = tf.broadcast_to(beta, tf.shape(labels))
    pos_costs = tf.nn.relu(distances - boundary[:, None] + margin)
    neg_costs = tf.nn.relu(boundary[:, None] - distances + margin)
    num_pos = tf.reduce_sum(tf.cast(positives, tf.float32), axis=1)
    num_neg = tf.reduce_sum(tf.cast(negatives, tf.float32), axis=1)
    # Each positive term appears in num_neg[a] triplets, each negative one in num_pos[a].
    pos_kept = tf.cast(positives & (pos_costs > 0.0), tf.float32)
    neg_kept = tf.cast(negatives & (neg_costs > 0.0), tf.float32)
    divisor = tf.reduce_sum(num_neg * tf.reduce_sum(pos_kept, axis=1)) + tf.reduce_sum(
        num_pos * tf.reduce_sum(neg_kept, axis=1)
    )
    row_cost = num_neg * tf.reduce_sum(pos_kept * pos_costs, axis=1) + num_pos * tf.reduce_sum(
        neg_kept * neg_costs, axis=1
    )
    triplets = num_pos * num_neg
    loss = tf.math.divide_no_nan(tf.reduce_sum(weights * row_cost), divisor)
    if per_class:
        reg = tf.math.divide_no_nan(nu * tf.reduce_sum(weights * triplets * boundary), divisor)
    else:
        share = tf.math.divide_no_nan(tf.reduce_sum(weights * triplets), tf.reduce_sum(triplets))
        reg = nu * beta[0] * share
    return tf.where(tf.reduce_sum(triplets) > 0.0, loss + reg, 0.0)
