"""`ContrastiveLoss`: Hadsell et al.'s pair loss with two margins."""

import keras
import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import pair_terms
from keras_mdr.losses.metric_loss import MetricLoss


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


@keras.saving.register_keras_serializable(package="keras_mdr")
class ContrastiveLoss(MetricLoss):
    """Contrastive loss on every pair of the batch (Hadsell et al.'s loss).

    Positive pairs cost `max(D - pos_margin, 0)`, negative pairs
    `max(neg_margin - D, 0)`, with Euclidean distances of the embeddings as
    given; each kind is averaged over its pairs of positive cost
    (`keras_mdr.losses.contrastive_loss.contrastive_loss`).

    Differences: the paper squares both hinges and halves them, with one
    margin; this is pytorch-metric-learning's form (two margins, unsquared,
    the same defaults 0 and 1). PML L2-normalises the embeddings first by
    default; we do not: end the encoder with `keras.layers.UnitNormalization()`
    for PML's default behaviour.

    Args:
        pos_margin: float, positive pairs closer than this cost nothing.
        neg_margin: float, negative pairs farther than this cost nothing.
        name: name of the loss.
        **kwargs: `keras_mdr.losses.MetricLoss` arguments.

    Call arguments:
        y_true: int class labels `(batch,)` or `(batch, 1)`.
        y_pred: embeddings `(batch, dim)`.
        sample_weight: optional `(batch,)`, a weight per anchor (scales its
            pairs' costs, not the count).

    Returns 0 for a batch with no pair of positive cost.

    Example:

    >>> loss = keras_mdr.losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0)
    >>> value = loss([0, 0, 1], [[0.0, 0.0], [0.0, 0.5], [0.3, 0.0]])

    Reference:
        Hadsell, Chopra and LeCun, "Dimensionality Reduction by Learning an
        Invariant Mapping", CVPR 2006.
    """

    def __init__(self, pos_margin=0.0, neg_margin=1.0, name="contrastive_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        return contrastive_loss(labels, embeddings, self.pos_margin, self.neg_margin, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"pos_margin": self.pos_margin, "neg_margin": self.neg_margin})
        return config
