"""`ProxyAnchorLoss`: Kim et al.'s loss with one learnable proxy per class."""

import keras
import tensorflow as tf

from keras_mdr import validation
from keras_mdr.losses import pair_terms
from keras_mdr.losses.metric_loss import MetricLoss
from keras_mdr.losses.loss_parameter import LossParameter


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


@keras.saving.register_keras_serializable(package="keras_mdr")
class ProxyAnchorLoss(MetricLoss):
    """Proxy-anchor loss (Kim et al.) with one learnable proxy per class.

    `keras_mdr.losses.proxy_anchor_loss.proxy_anchor_loss`. The proxies are
    a `(num_classes, embedding_size)` variable in a
    `keras_mdr.losses.LossParameter` that the model owns (compile on
    `keras_mdr.MDRModel` or a `keras_mdr.MDRTrainStepMixin` model); they
    are L2-normalised inside, the embeddings are not: end the encoder with
    `keras.layers.UnitNormalization()` for the paper's cosine
    (pytorch-metric-learning normalises both). The paper trains the proxies
    with a 100x learning rate.

    Names follow PML: `margin` is the paper's delta (0.1), `alpha` its
    scale (32). PML's default proxy initialiser (Kaiming normal, fan-out)
    has the scale of our `"he_normal"` on a `(classes, dim)` tensor.

    Args:
        num_classes: int, the number of classes (labels are indices below it).
        embedding_size: int, the embedding dimension.
        margin: float, delta. Default 0.1.
        alpha: float, the scale. Default 32.
        proxy_initializer: Keras initializer of the proxies. Default "he_normal".
        proxy_lr_multiplier: float, the proxies' learning-rate multiplier
            (`keras_mdr.losses.LossParameter`: exact for Adam-family
            optimizers; the paper uses 100). Default 1.
        name: name of the loss.
        **kwargs: `keras_mdr.losses.MetricLoss` arguments.

    Call arguments:
        y_true: int class indices `(batch,)` in `[0, num_classes)`.
        y_pred: embeddings `(batch, embedding_size)`.
        sample_weight: optional `(batch,)`: a sample's multiplicity inside the
            proxies' sums (weight 0 removes it).
        state: the `LossParameter` from `build_state()` (passed by the model).

    Example:

    >>> loss = keras_mdr.losses.ProxyAnchorLoss(num_classes=3, embedding_size=2)
    >>> proxies = loss.build_state()
    >>> value = loss([0, 1], [[1.0, 0.0], [0.0, 1.0]], state=proxies)

    Reference:
        Kim, Kim, Cho and Kwak, "Proxy Anchor Loss for Deep Metric
        Learning", CVPR 2020.
    """

    compares_inner_products = True

    def __init__(self, num_classes, embedding_size, margin=0.1, alpha=32.0,
                 proxy_initializer="he_normal", proxy_lr_multiplier=1.0, name="proxy_anchor_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = validation.positive_int(num_classes, "num_classes")
        self.embedding_size = validation.positive_int(embedding_size, "embedding_size")
        self.margin = float(margin)
        self.alpha = float(alpha)
        self.proxy_initializer = keras.initializers.get(proxy_initializer)
        self.proxy_lr_multiplier = float(proxy_lr_multiplier)

    def build_state(self):
        return LossParameter((self.num_classes, self.embedding_size), self.proxy_initializer,
                             "proxies", learning_rate_multiplier=self.proxy_lr_multiplier,
                             name=f"{self.name}_proxies")

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        return proxy_anchor_loss(labels, embeddings, state.parameter, self.margin, self.alpha,
                                 sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes, "embedding_size": self.embedding_size,
            "margin": self.margin, "alpha": self.alpha,
            "proxy_initializer": keras.initializers.serialize(self.proxy_initializer),
            "proxy_lr_multiplier": self.proxy_lr_multiplier,
        })
        return config

