"""`SupConLoss` and `NTXentLoss`: softmax losses over in-batch similarities."""

import keras
import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import pair_terms
from keras_mdr.losses.metric_loss import MetricLoss


def _scaled_similarities(labels, embeddings, temperature):
    labels, embeddings = pair_terms.batch_inputs(labels, embeddings)
    logits = tf.matmul(embeddings, embeddings, transpose_b=True) / temperature
    positives, negatives = distances_lib.label_masks(labels)
    return labels, logits, positives, negatives


def supcon_loss(labels, embeddings, temperature=0.1, sample_weight=None):
    """Supervised contrastive loss (Khosla et al.'s `L_out`).

    With logits `s_ij = e_i . e_j / temperature` (inner products of the
    embeddings as given: the paper's cosine when rows have unit norm), anchor
    `i` costs `-mean_{p in P(i)} (s_ip - log sum_{j != i} exp(s_ij))`. The
    loss averages the anchors with a positive cost (anchors without a
    positive cost 0 and do not count), as pytorch-metric-learning does.

    Args:
        labels: int `(batch,)` tensor.
        embeddings: `(batch, dim)` tensor, any float dtype (computed in float32).
        temperature: the softmax temperature `tau`.
        sample_weight: optional `(batch,)` weights, one per anchor (they
            scale the anchor's cost, not the count).

    Returns:
        float32 scalar; 0 for a batch with no positive or no negative pair.
    """
    labels, logits, positives, negatives = _scaled_similarities(labels, embeddings, temperature)
    log_denominator = pair_terms.masked_logsumexp(logits, positives | negatives)
    num_pos = tf.reduce_sum(tf.cast(positives, tf.float32), axis=1)
    log_prob = tf.where(positives, logits - log_denominator[:, None], tf.zeros_like(logits))
    per_anchor = -tf.math.divide_no_nan(tf.reduce_sum(log_prob, axis=1), num_pos)
    weights = pair_terms.anchor_weights(sample_weight, tf.shape(labels)[0])
    loss = pair_terms.nonzero_mean(per_anchor, num_pos > 0.0, weights)
    return tf.where(tf.reduce_any(positives) & tf.reduce_any(negatives), loss, 0.0)


def ntxent_loss(labels, embeddings, temperature=0.1, sample_weight=None):
    """NT-Xent (SimCLR's loss; with labels, every same-label pair is a positive).

    With logits `s_ij = e_i . e_j / temperature`, each ordered positive pair
    `(a, p)` costs `log(exp(s_ap) + sum_{n in N(a)} exp(s_an)) - s_ap`: the
    other positives of `a` are left out of its denominator. The loss is the
    mean over positive pairs. For SimCLR give the two views of an image the
    same label.

    Args:
        labels: int `(batch,)` tensor.
        embeddings: `(batch, dim)` tensor, any float dtype (computed in float32).
        temperature: the softmax temperature `tau`.
        sample_weight: optional `(batch,)` weights, one per anchor (they
            scale the anchor's pair costs, not the count).

    Returns:
        float32 scalar; 0 for a batch with no positive or no negative pair.
    """
    labels, logits, positives, negatives = _scaled_similarities(labels, embeddings, temperature)
    # log sum over the negatives of each anchor, then log(exp(s_ap) + that) per pair.
    neg_lse = pair_terms.masked_logsumexp(logits, negatives)
    has_neg = tf.reduce_any(negatives, axis=1)
    pair_lse = tf.where(
        has_neg[:, None], tf.math.reduce_logsumexp(
            tf.stack([logits, tf.broadcast_to(neg_lse[:, None], tf.shape(logits))]), axis=0
        ), logits,
    )
    costs = tf.where(positives, pair_lse - logits, tf.zeros_like(logits))
    weights = pair_terms.anchor_weights(sample_weight, tf.shape(labels)[0])
    total = tf.reduce_sum(weights[:, None] * costs)
    loss = tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(positives, tf.float32)))
    return tf.where(tf.reduce_any(positives) & tf.reduce_any(negatives), loss, 0.0)


@keras.saving.register_keras_serializable(package="keras_mdr")
class SupConLoss(MetricLoss):
    """Supervised contrastive loss (Khosla et al., `L_out`).

    `keras_mdr.losses.supcon_loss.supcon_loss` on inner products divided by
    the temperature: the paper's cosine when the embeddings have unit norm.
    We never normalise them: end the encoder with
    `keras.layers.UnitNormalization()` (pytorch-metric-learning normalises
    inside). Same reduction and default temperature (0.1) as PML.

    Args:
        temperature: float, the softmax temperature. Default 0.1.
        name: name of the loss.
        **kwargs: `keras_mdr.losses.MetricLoss` arguments.

    Call arguments:
        y_true: int class labels `(batch,)` or `(batch, 1)`.
        y_pred: embeddings `(batch, dim)`, unit rows for the paper's loss.
        sample_weight: optional `(batch,)`, a weight per anchor.

    Returns 0 for a batch without a positive or without a negative pair.

    Example:

    >>> loss = keras_mdr.losses.SupConLoss(temperature=0.1)
    >>> value = loss([0, 0, 1, 1], [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])

    Reference:
        Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
    """

    compares_inner_products = True

    def __init__(self, temperature=0.1, name="supcon_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if float(temperature) <= 0:
            raise ValueError(f"Expected temperature > 0. Received: temperature={temperature}")
        self.temperature = float(temperature)

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        return supcon_loss(labels, embeddings, self.temperature, sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature})
        return config


@keras.saving.register_keras_serializable(package="keras_mdr")
class NTXentLoss(SupConLoss):
    """NT-Xent (SimCLR's loss), with labels: every same-label pair is a positive.

    `keras_mdr.losses.supcon_loss.ntxent_loss`: each positive pair is a
    softmax against the anchor's negatives, averaged over positive pairs.
    For SimCLR, give the two views of each image one label. Embeddings are
    used as given (unit rows for the paper's cosine; PML normalises inside).

    Differences: the temperature defaults to 0.1, the best of the
    temperatures SimCLR compares for L2-normalised embeddings;
    pytorch-metric-learning's default is 0.07. PML computes
    `-log(p + tiny)` and caps a pair's loss at 87.3; we compute it in the
    log domain (uncapped, finite gradients).

    Args:
        temperature: float, the softmax temperature. Default 0.1.
        name: name of the loss.
        **kwargs: `keras_mdr.losses.MetricLoss` arguments.

    Call arguments:
        y_true: int labels `(batch,)` or `(batch, 1)` (pair ids for SimCLR).
        y_pred: embeddings `(batch, dim)`.
        sample_weight: optional `(batch,)`, a weight per anchor.

    Returns 0 for a batch without a positive or without a negative pair.

    Example:

    >>> loss = keras_mdr.losses.NTXentLoss(temperature=0.1)
    >>> value = loss([0, 0, 1, 1], [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])

    Reference:
        Chen, Kornblith, Norouzi and Hinton, "A Simple Framework for
        Contrastive Learning of Visual Representations", ICML 2020.
    """

    compares_inner_products = True

    def __init__(self, temperature=0.1, name="ntxent_loss", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        return ntxent_loss(labels, embeddings, self.temperature, sample_weight)
