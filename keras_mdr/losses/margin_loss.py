"""`MarginLoss`: Wu et al.'s margin loss with a learnable boundary beta."""

import keras
import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr import validation
from keras_mdr.losses import pair_terms
from keras_mdr.losses.metric_loss import MetricLoss
from keras_mdr.losses.loss_parameter import LossParameter


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


@keras.saving.register_keras_serializable(package="keras_mdr")
class MarginLoss(MetricLoss):
    """Margin loss (Wu et al.) with a learnable boundary beta.

    Every triplet costs `max(D_ap - beta + margin, 0) + max(beta - D_an +
    margin, 0)` (Euclidean distances of the embeddings as given), divided by
    the number of positive-cost halves, plus `nu * beta`
    (`keras_mdr.losses.margin_loss.margin_loss`, O(B^2) memory).

    With `learn_beta=True` (the paper's setting, the default) beta is a
    variable held by a `keras_mdr.losses.LossParameter`, one per class when
    `num_classes` is given, else one; the model owns it (compile this loss
    on `keras_mdr.MDRModel` or a `keras_mdr.MDRTrainStepMixin` model).

    Differences: the paper samples pairs by distance; this is
    pytorch-metric-learning's all-triplets form. PML's `learn_beta` defaults
    to False; ours to True (the paper learns beta; pass `learn_beta=False`
    for a fixed one that a plain `keras.Model` can use). PML normalises the
    embeddings by default; we do not (add `keras.layers.UnitNormalization()`).
    The regulariser applies only to a learnt beta (as in PML) and is weighted
    like the triplets it comes with.

    Args:
        margin: float, the margin alpha around the boundary. Default 0.2.
        nu: float, weight of the regulariser `nu * beta`. Default 0.
        beta: float, the initial (or fixed) boundary. Default 1.2.
        learn_beta: bool, make beta a trained variable. Default True.
        num_classes: optional int, one beta per class (labels must then be
            class indices in `[0, num_classes)`).
        beta_lr_multiplier: float, a learnt beta's learning-rate multiplier
            (`keras_mdr.losses.LossParameter`: exact for Adam-family
            optimizers; Wu et al. train beta with its own learning rate).
            Default 1.
        name: name of the loss.
        **kwargs: `keras_mdr.losses.MetricLoss` arguments.

    Call arguments:
        y_true: int class labels `(batch,)` or `(batch, 1)`.
        y_pred: embeddings `(batch, dim)`.
        sample_weight: optional `(batch,)`, a weight per anchor.
        state: the `LossParameter` from `build_state()` (passed by the model).

    Returns 0 for a batch without a triplet.

    Example:

    >>> loss = keras_mdr.losses.MarginLoss(margin=0.2, beta=1.2, num_classes=2)
    >>> beta = loss.build_state()
    >>> value = loss([0, 0, 1, 1], [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]],
    ...              state=beta)

    Reference:
        Wu, Manmatha, Smola and Krahenbuhl, "Sampling Matters in Deep
        Embedding Learning", ICCV 2017.
    """

    def __init__(self, margin=0.2, nu=0.0, beta=1.2, learn_beta=True, num_classes=None,
                 beta_lr_multiplier=1.0, name="margin_loss", **kwargs):
        super().__init__(name=name, **kwargs)

        self.margin = float(margin)
        self.nu = float(nu)
        self.beta = float(beta)
        self.learn_beta = bool(learn_beta)
        self.num_classes = (None if num_classes is None
                            else validation.positive_int(num_classes, "num_classes"))
        self.beta_lr_multiplier = float(beta_lr_multiplier)

    @property
    def stateful(self):
        return self.learn_beta

    def build_state(self):
        if not self.learn_beta:
            return None
        return LossParameter((self.num_classes or 1,), keras.initializers.Constant(self.beta),
                             "beta", learning_rate_multiplier=self.beta_lr_multiplier,
                             name=f"{self.name}_beta")

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        if self.learn_beta:
            beta = state.parameter
        else:
            beta = tf.fill([self.num_classes or 1], self.beta)
        return margin_loss(labels, embeddings, beta, self.margin, self.nu if self.learn_beta else 0.0,
                           sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "nu": self.nu, "beta": self.beta,
                       "learn_beta": self.learn_beta, "num_classes": self.num_classes,
                       "beta_lr_multiplier": self.beta_lr_multiplier})
        return config
