"""`MultiSimilarityLoss`: Wang et al.'s loss with its own pair miner."""

import keras
import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import pair_terms
from keras_mdr.losses.metric_loss import MetricLoss


def multi_similarity_pairs(labels, similarities, epsilon=0.1):
    """Wang et al.'s pair mining on a similarity matrix.

    A positive pair `(i, j)` is kept when `S_ij - epsilon` is below the
    largest negative similarity of anchor `i`; a negative pair `(i, k)` when
    `S_ik + epsilon` is above the smallest positive similarity of `i`. An
    anchor without positives (or without negatives) keeps no pair. As in
    pytorch-metric-learning's `MultiSimilarityMiner`, a batch without any
    positive or without any negative pair keeps nothing.

    Args:
        labels: int `(batch,)` tensor.
        similarities: float32 `(batch, batch)` similarity matrix.
        epsilon: the mining margin.

    Returns:
        `(positives, negatives)`: bool `(batch, batch)` masks of kept pairs.
    """
    positives, negatives = distances_lib.label_masks(labels)
    inf = tf.fill(tf.shape(similarities), float("inf"))
    hardest_neg = tf.reduce_max(tf.where(negatives, similarities, -inf), axis=1, keepdims=True)
    easiest_pos = tf.reduce_min(tf.where(positives, similarities, inf), axis=1, keepdims=True)
    kept_pos = positives & (similarities - epsilon < hardest_neg)
    kept_neg = negatives & (similarities + epsilon > easiest_pos)
    both = tf.reduce_any(positives) & tf.reduce_any(negatives)
    return kept_pos & both, kept_neg & both


def multi_similarity_loss(
    labels, embeddings, alpha=2.0, beta=50.0, base=1.0, epsilon=0.1, sample_weight=None
):
    """Multi-similarity loss with its miner, on inner-product similarities.

    `S = E E^T` of the embeddings as given (the paper's cosine similarity
    when the rows have unit norm). After mining (`multi_similarity_pairs`),
    anchor `i` costs
    `log(1 + sum_p exp(-alpha (S_ip - base))) / alpha
    + log(1 + sum_n exp(beta (S_in - base))) / beta`,
    and the loss is the mean over all anchors (those without a kept pair
    cost 0 and still count).

    Args:
        labels: int `(batch,)` tensor.
        embeddings: `(batch, dim)` tensor, any float dtype (computed in float32).
        alpha: scale of the positive term.
        beta: scale of the negative term.
        base: the similarity offset `lambda` of the paper.
        epsilon: the miner's margin; `None` keeps every pair (no mining).
        sample_weight: optional `(batch,)` weights, one per anchor.

    Returns:
        float32 scalar; 0 for a batch with no positive or no negative pair.
    """
    labels, embeddings = pair_terms.batch_inputs(labels, embeddings)
    similarities = tf.matmul(embeddings, embeddings, transpose_b=True)
    if epsilon is None:
        positives, negatives = distances_lib.label_masks(labels)
    else:
        positives, negatives = multi_similarity_pairs(labels, similarities, epsilon)
    pos_term = pair_terms.masked_logsumexp(-alpha * (similarities - base), positives, add_one=True)
    neg_term = pair_terms.masked_logsumexp(beta * (similarities - base), negatives, add_one=True)
    weights = pair_terms.anchor_weights(sample_weight, tf.shape(labels)[0])
    per_anchor = pos_term / alpha + neg_term / beta
    return tf.reduce_mean(weights * per_anchor)


@keras.saving.register_keras_serializable(package="keras_mdr")
class MultiSimilarityLoss(MetricLoss):
    """Multi-similarity loss (Wang et al.) with its pair miner.

    `keras_mdr.losses.multi_similarity_loss.multi_similarity_loss` on
    inner-product similarities `S = E E^T`: the paper's cosine similarity
    when the embeddings have unit norm. We never normalise them: end the
    encoder with `keras.layers.UnitNormalization()` (pytorch-metric-learning
    normalises inside).

    Differences with PML: the miner is part of the loss here (PML pairs
    `MultiSimilarityLoss` with a separate `MultiSimilarityMiner`; without it
    PML uses every pair, our `epsilon=None`); `base` defaults to the paper's
    lambda = 1, PML's to 0.5; PML returns 0 when its miner keeps at most one
    positive and one negative pair, we compute their loss.

    Args:
        alpha: float, scale of the positive term. Default 2.
        beta: float, scale of the negative term. Default 50.
        base: float, the similarity offset lambda. Default 1.
        epsilon: float, the miner's margin, or None for no mining. Default 0.1.
        name: name of the loss.
        **kwargs: `keras_mdr.losses.MetricLoss` arguments.

    Call arguments:
        y_true: int class labels `(batch,)` or `(batch, 1)`.
        y_pred: embeddings `(batch, dim)`, unit rows for the paper's loss.
        sample_weight: optional `(batch,)`, a weight per anchor.

    Returns 0 for a batch without a positive or without a negative pair.

    Example:

    >>> loss = keras_mdr.losses.MultiSimilarityLoss()
    >>> value = loss([0, 0, 1, 1], [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])

    Reference:
        Wang, Han, Huang, Dong and Scott, "Multi-Similarity Loss with General
        Pair Weighting for Deep Metric Learning", CVPR 2019.
    """

    compares_inner_products = True

    def __init__(self, alpha=2.0, beta=50.0, base=1.0, epsilon=0.1,
                 name="multi_similarity_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.base = float(base)
        self.epsilon = None if epsilon is None else float(epsilon)

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        return multi_similarity_loss(labels, embeddings, self.alpha, self.beta, self.base,
                                     self.epsilon, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "beta": self.beta, "base": self.base,
                       "epsilon": self.epsilon})
        return config
