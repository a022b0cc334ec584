"""`MetricLoss`: the base class of every metric-learning loss of keras_mdr.

A metric-learning loss is a function of the whole batch (its pairs, its
triplets, its classes), not a mean of per-sample values, so Keras' own
`Loss.__call__` gets three things wrong for it, and `MetricLoss` does them
once for every subclass:

- **Labels stay integers.** Keras casts `y_true` to the loss dtype (float32),
  so class ids above 2**24 merge. Here labels are validated and kept as
  int64 (`keras_mdr.distances.check_labels`); strings are refused with a
  message saying how to map them to ids.
- **Sample weights are a weight per anchor.** Every term of the loss belongs
  to an anchor (the first sample of its pair or triplet, the sample of its
  row); the term is multiplied by the anchor's weight and the loss divides by
  the number of terms, as Keras' "sum_over_batch_size" divides by the batch
  size: weights 1 give the unweighted loss, weights 2 twice it, a zero weight
  removes the anchor's terms (and their gradient), all-zero weights give 0.
  A weight vector of the wrong length is refused.
- **One step under `tf.distribute` equals the 1-device step.** Under a
  multi-replica strategy the embeddings, labels and weights are gathered
  across replicas (`all_gather`), the loss is computed on the global batch
  (mining sees all of it), and divided by `num_replicas_in_sync`, because
  Keras sums the replicas' gradients and does not divide a scalar loss.

Subclasses implement `compute(labels, embeddings, sample_weight, state)` on
the global batch. Losses with learnable state (proxies, learnable margins,
MDR's levels) also implement `build_state()`, returning the Layer that holds
it; a `keras.losses.Loss` cannot own variables in Keras 3 (the optimizer
never sees them), so the model owns that Layer: `keras_mdr.MDRModel` or a
model using `keras_mdr.MDRTrainStepMixin` builds it at `compile()`, trains it,
saves it and passes it to the loss as `state`.
"""

import keras
import tensorflow as tf

from keras_mdr import distances as distances_lib

NO_STATE_OWNER = (
    "{name} has learnable state that a keras.losses.Loss cannot own in Keras 3 "
    "(the optimizer never sees a loss's variables, and .keras files would not "
    "restore it). Compile it on `keras_mdr.MDRModel(encoder)` or on a model class "
    "`class M(keras_mdr.MDRTrainStepMixin, keras.Model)`: the model owns, trains "
    "and saves the loss's state. Received: a call with no state (state=None)."
)


def check_sample_weight(sample_weight, batch_size=None):
    """Sample weights as a float32 `(batch,)` tensor, or None.

    Args:
        sample_weight: None, or a `(batch,)` / `(batch, 1)` tensor.
        batch_size: optional int, the number of embeddings (checked
            statically when known).

    Raises:
        ValueError: for another rank or shape, or a length other than
            `batch_size`.
    """
    if sample_weight is None:
        return None
    weights = tf.convert_to_tensor(sample_weight)
    rank = weights.shape.rank
    if rank is not None and (
        rank == 0 or rank > 2 or (rank == 2 and weights.shape[-1] not in (1, None))
    ):
        raise ValueError(
            "Expected sample_weight of shape (batch,) or (batch, 1), one weight per "
            f"sample. Received: sample_weight.shape={tuple(weights.shape)}"
        )
    weights = tf.cast(tf.reshape(weights, [-1]), tf.float32)
    if batch_size is not None and weights.shape[0] is not None and weights.shape[0] != batch_size:
        raise ValueError(
            "Expected one sample_weight per embedding. Received: "
            f"sample_weight.shape[0]={weights.shape[0]}, embeddings.shape[0]={batch_size}"
        )
    return weights


def multi_replica_context():
    """The replica context under a strategy with more than one replica, else None."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return context


def gather_global_batch(labels, embeddings, sample_weight=None):
    """The global batch: each tensor gathered across replicas, in replica order.

    Outside a multi-replica strategy the tensors come back unchanged.

    Returns:
        `(labels, embeddings, sample_weight, num_replicas)`.
    """
    context = multi_replica_context()
    if context is None:
        return labels, embeddings, sample_weight, 1
    # int64 has no CPU collective kernel: gather the ids' two 32-bit halves.
    halves = context.all_gather(tf.bitcast(tf.cast(labels, tf.int64), tf.int32), axis=0)
    labels = tf.bitcast(halves, tf.int64)
    embeddings = context.all_gather(embeddings, axis=0)
    if sample_weight is not None:
        sample_weight = context.all_gather(sample_weight, axis=0)
    return labels, embeddings, sample_weight, context.num_replicas_in_sync


def weighted_mean(values, mask=None, sample_weight=None):
    """`sum(w_a * values * mask) / sum(mask)`: the per-anchor weighting of `MetricLoss`.

    Args:
        values: float32 tensor whose first axis is the anchor, e.g. `(batch,)`
            per-anchor terms or `(batch, batch)` per-pair terms.
        mask: optional bool tensor of the same shape, the terms that exist
            (e.g. the positive pairs). Defaults to all of them.
        sample_weight: optional float32 `(batch,)` weights of the anchors.

    Returns:
        float32 scalar; 0 when no term exists or every weight is 0. Terms
        outside `mask` or of zero weight get an exactly zero gradient (even
        when their value is inf or NaN).
    """
    values = tf.convert_to_tensor(values, tf.float32)
    mask = tf.ones_like(values, tf.bool) if mask is None else tf.convert_to_tensor(mask)
    count = tf.reduce_sum(tf.cast(mask, tf.float32))
    if sample_weight is not None:
        weights = tf.reshape(sample_weight, [-1] + [1] * (values.shape.rank - 1))
        mask = tf.logical_and(mask, tf.broadcast_to(weights != 0.0, tf.shape(mask)))
        values = values * tf.cast(weights, tf.float32)
    total = tf.reduce_sum(tf.where(mask, values, tf.zeros_like(values)))
    return tf.math.divide_no_nan(total, count)


@keras.saving.register_keras_serializable(package="keras_mdr")
class MetricLoss(keras.losses.Loss):
    """Base class of keras_mdr's metric-learning losses.

    Subclasses implement `compute()` (and `build_state()` if the loss has
    learnable state); `__call__` does the rest (see the module docstring):
    int64 labels, per-anchor sample weights, global-batch mining and replica
    scaling under `tf.distribute`.

    Args:
        name: name of the loss.
        reduction: accepted for Keras compatibility and kept in the config;
            the loss of a batch is a scalar by definition.
        dtype: dtype of the returned value (computation is float32).

    Call arguments:
        y_true: int class labels `(batch,)` or `(batch, 1)`.
        y_pred: embeddings `(batch, dim)`, any float dtype.
        sample_weight: optional `(batch,)` weights, one per anchor.
        state: the Layer from `build_state()`, passed by the model that owns
            it; None for stateless losses.
    """

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        """The loss of the global batch.

        Args:
            labels: int64 `(batch,)` tensor.
            embeddings: float32 `(batch, dim)` tensor.
            sample_weight: float32 `(batch,)` tensor or None.
            state: the Layer returned by `build_state()`, or None.

        Returns:
            float32 scalar.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement compute().")

    def build_state(self):
        """The Layer holding the loss's learnable state; None if it has none.

        Stateful subclasses create every variable here (or in the layer's
        constructor), so they exist before the optimizer is built.
        """
        return None

    @property
    def stateful(self):
        """Whether the loss needs a state Layer owned by the model."""
        return type(self).build_state is not MetricLoss.build_state

    def __call__(self, y_true, y_pred, sample_weight=None, state=None):
        if self.stateful and state is None:
            raise ValueError(NO_STATE_OWNER.format(name=type(self).__name__))
        with tf.name_scope(self.name):
            embeddings = distances_lib.check_embeddings(y_pred)
            batch_size = embeddings.shape[0]
            labels = distances_lib.check_labels(y_true, batch_size)
            weights = check_sample_weight(sample_weight, batch_size)
            labels, embeddings, weights, replicas = gather_global_batch(
                labels, embeddings, weights
            )
            value = tf.cast(self.compute(labels, embeddings, weights, state), tf.float32)
            if replicas > 1:
                # Keras sums the replicas' gradients: each returns its share.
                value = value / float(replicas)
            return tf.cast(value, self.dtype)

    def call(self, y_true, y_pred):
        embeddings = distances_lib.check_embeddings(y_pred)
        labels = distances_lib.check_labels(y_true, embeddings.shape[0])
        return self.compute(labels, embeddings)
