"""`ArcFaceLoss`: Deng et al.'s additive angular margin softmax."""

import math

import keras
import tensorflow as tf

from keras_mdr import validation
from keras_mdr.losses import pair_terms
from keras_mdr.losses.metric_loss import MetricLoss
from keras_mdr.losses.loss_parameter import LossParameter


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


@keras.saving.register_keras_serializable(package="keras_mdr")
class ArcFaceLoss(MetricLoss):
    """ArcFace (Deng et al.): softmax with an additive angular margin.

    `keras_mdr.losses.arcface_loss.arcface_loss`. The class centres are a
    `(num_classes, embedding_size)` variable in a
    `keras_mdr.losses.LossParameter` that the model owns; they are
    L2-normalised inside, the embeddings are not: end the encoder with
    `keras.layers.UnitNormalization()` for the paper's cosine
    (pytorch-metric-learning normalises both).

    Differences: `margin` is in radians (the paper's 0.5);
    pytorch-metric-learning takes degrees (its default 28.6 degrees is
    0.4992 rad). PML keeps its centres as `(embedding_size, num_classes)`;
    ours are the transpose. Where an embedding coincides with its centre,
    PML's `acos` gives an infinite gradient; ours is finite.

    Args:
        num_classes: int, the number of classes (labels are indices below it).
        embedding_size: int, the embedding dimension.
        margin: float, the angular margin in radians. Default 0.5.
        scale: float, the logit scale s. Default 64.
        centre_initializer: Keras initializer of the centres. Default
            "random_normal".
        centre_lr_multiplier: float, the centres' learning-rate multiplier
            (`keras_mdr.losses.LossParameter`: exact for Adam-family
            optimizers). Default 1.
        name: name of the loss.
        **kwargs: `keras_mdr.losses.MetricLoss` arguments.

    Call arguments:
        y_true: int class indices `(batch,)` in `[0, num_classes)`.
        y_pred: embeddings `(batch, embedding_size)`.
        sample_weight: optional `(batch,)`, a weight per sample.
        state: the `LossParameter` from `build_state()` (passed by the model).

    Example:

    >>> loss = keras_mdr.losses.ArcFaceLoss(num_classes=3, embedding_size=2)
    >>> centres = loss.build_state()
    >>> value = loss([0, 1], [[1.0, 0.0], [0.0, 1.0]], state=centres)

    Reference:
        Deng, Guo, Xue and Zafeiriou, "ArcFace: Additive Angular Margin Loss
        for Deep Face Recognition", CVPR 2019.
    """

    compares_inner_products = True

    def __init__(self, num_classes, embedding_size, margin=0.5, scale=64.0,
                 centre_initializer="random_normal", centre_lr_multiplier=1.0,
                 name="arcface_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(margin) < math.pi:
            raise ValueError(f"Expected margin in radians, in [0, pi). Received: margin={margin}")
        self.num_classes = validation.positive_int(num_classes, "num_classes")
        self.embedding_size = validation.positive_int(embedding_size, "embedding_size")
        self.margin = float(margin)
        self.scale = float(scale)
        self.centre_initializer = keras.initializers.get(centre_initializer)
        self.centre_lr_multiplier = float(centre_lr_multiplier)

    def build_state(self):
        return LossParameter((self.num_classes, self.embedding_size), self.centre_initializer,
                             "centres", learning_rate_multiplier=self.centre_lr_multiplier,
                             name=f"{self.name}_centres")

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        return arcface_loss(labels, embeddings, state.parameter, self.margin, self.scale,
                            sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes, "embedding_size": self.embedding_size,
            "margin": self.margin, "scale": self.scale,
            "centre_initializer": keras.initializers.serialize(self.centre_initializer),
            "centre_lr_multiplier": self.centre_lr_multiplier,
        })
        return config
