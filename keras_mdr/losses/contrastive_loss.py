"""`ContrastiveLoss`: Hadsell et al.'s pair loss with two margins."""

import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import pair_terms


def contrastive_loss(labels, embeddings, pos_margin=0.0, neg_margin=1.0, sample_weight=None):
    """Contrastive loss on every pair of the batch (pytorch-metric-learning's form).

    With Euclidean distances `D` (of the embeddings as given), every ordered
    positive pair `(i, j)`, `i != j`, costs `max(D_ij - pos_margin, 0)` and
    every negative pair `max(neg_margin - D_ij, 0)`. Each of the two sums is
    divided by the number of its pairs with a positive cost, and the two
    means are added.

    Args:
        labels: int `(batch,)` tensor.
        embeddings: `(batch, dim)` tensor, any float dtype (computed in float32).
        pos_margin: positive pairs closer than this cost nothing.
        neg_margin: negative pairs farther than this cost nothing.
        sample_weight: optional `(batch,)` weights, one per anchor (row): they
            scale the anchor's pair costs, not the counts.

    Returns:
        float32 scalar; 0 for a batch with no pair of either kind.
    """
    labels, embeddings = pair_terms.batch_inputs(labels, embeddings)
    distances = distances_lib.pairwise_distance(embeddings, "euclidean")
    positives, negatives = distances_lib.label_masks(labels)
    weights = pair_terms.anchor_weights(sample_weight, tf.shape(labels)[0])
    pos_costs = tf.nn.relu(distances - pos_margin)
    neg_costs = tf.nn.relu(neg_margin - distances)
    return pair_terms.nonzero_mean(pos_costs, positives, weights) + pair_terms.nonzero_mean(
        neg_costs, negatives, weights
    )
