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
the global batch (or `objective()`, to return named terms to log too).

**Learnable state.** A `keras.losses.Loss` cannot own variables in Keras 3
(the optimizer never sees them, `.keras` files do not restore them), so a
loss with state (proxies, learnable margins, MDR's levels) says so by
returning a new Layer from `build_state()`; `stateful` is true exactly when
it does (None means stateless). The model owns that Layer:
`keras_mdr.MDRModel` or a `keras_mdr.MDRTrainStepMixin` model calls
`build_state()` once at `compile()` (before the optimizer is built), trains,
saves and restores it, mirrors it under `tf.distribute`, and passes it back
as `state`. Compiling a stateful loss on a model that cannot own its state
(a plain `keras.Model`, `Sequential`) raises at `compile()`; called without
`state`, a stateful loss raises too.
"""

import keras
import tensorflow as tf

from keras_mdr import _keras_compat
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
        """A new Layer holding the loss's learnable state; None if it has none.

        The model that owns the state (`keras_mdr.MDRModel`, or a model using
        `keras_mdr.MDRTrainStepMixin`) calls this once, at `compile()`, so
        every variable exists before the optimizer is built; it then trains,
        saves and restores the Layer and passes it back as `state`. Name
        the Layer after the loss: `.keras` files store its variables under
        that name.
        """
        return None

    @property
    def stateful(self):
        """Whether `build_state()` returns a Layer (the loss needs a model to own it).

        The default says True for a subclass that overrides `build_state()`;
        a subclass whose `build_state()` can return None (e.g. `MarginLoss`
        with a fixed beta) overrides this to match.
        """
        return type(self).build_state is not MetricLoss.build_state

    # True for losses on inner products of the embeddings as given (cosine
    # losses for unit rows): `MDRLoss` then does not divide their input by
    # the batch's mean distance, which would act as a temperature.
    compares_inner_products = False

    # Names of the terms `objective()` returns besides "loss" that a model
    # logs (averaged over the epoch, like the loss).
    log_names = ()

    def objective(self, labels, embeddings, sample_weight=None, state=None, training=False,
                  step=None):
        """The loss of the global batch and its named terms.

        Args:
            labels, embeddings, sample_weight, state: as for `compute()`.
            training: bool; state that changes only in training (MDR's
                moving statistics) is updated only when true.
            step: optional int scalar tensor, the optimizer's step (losses that
                sample use it to be resumable).

        Returns:
            dict of float32 scalars: "loss" and one entry per `log_names`.
        """
        return {"loss": self.compute(labels, embeddings, sample_weight, state)}

    def state_logs(self, state):
        """Values of `state` to show in the training logs (dict of scalars)."""
        return {}

    def batch_objective(self, y_true, y_pred, sample_weight=None, state=None, training=False,
                        step=None):
        """`objective()` on a batch as Keras hands it over: checked, gathered, scaled.

        Labels are validated and kept integral, weights checked, and under a
        multi-replica strategy the global batch is gathered and "loss" is
        divided by the replica count (the other terms are not: they are
        logged). This is the path of `__call__` and of the models that own
        the loss's state.
        """
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
            terms = self.objective(labels, embeddings, weights, state, training=training,
                                   step=step)
            terms = {k: tf.cast(v, tf.float32) for k, v in terms.items()}
            if replicas > 1:
                # Keras sums the replicas' gradients: each returns its share.
                terms["loss"] = terms["loss"] / float(replicas)
            return terms

    def __call__(self, y_true, y_pred, sample_weight=None, state=None):
        terms = self.batch_objective(y_true, y_pred, sample_weight, state)
        return tf.cast(terms["loss"], self.dtype)

    def call(self, y_true, y_pred):
        embeddings = distances_lib.check_embeddings(y_pred)
        labels = distances_lib.check_labels(y_true, embeddings.shape[0])
        return self.compute(labels, embeddings)


NO_OWNER_AT_COMPILE = (
    "{name} has learnable state that the model must own, train and save, and a "
    "{model} cannot. Compile it on `keras_mdr.MDRModel(encoder)` or on a model class "
    "`class M(keras_mdr.MDRTrainStepMixin, keras.Model)`. (To add MDR to any model and "
    "loss, put a `keras_mdr.MDRRegularizer` layer on the embeddings; "
    "`MarginLoss(learn_beta=False)` has no state.) Received: loss={loss!r}"
)


def check_state_owner(model, loss):
    """Raises unless `model` can own the state of every stateful keras_mdr loss in `loss`.

    Installed in `keras.Model.compile()`, so the error comes at compile time.
    A model owns loss state when its class says `owns_loss_state = True`
    (`keras_mdr.MDRTrainStepMixin` does), and then only for a single loss.
    """
    nested = isinstance(loss, (list, tuple, dict))
    for item in tf.nest.flatten(loss) if nested else [loss]:
        if not (isinstance(item, MetricLoss) and item.stateful):
            continue
        if not getattr(model, "owns_loss_state", False):
            raise ValueError(NO_OWNER_AT_COMPILE.format(
                name=type(item).__name__, model=type(model).__name__, loss=item))
        if nested:
            raise ValueError(
                f"Expected {type(item).__name__} as the model's only loss (its state is "
                f"owned for a single loss). Received: loss={loss!r}"
            )


_keras_compat.install_compile_check(check_state_owner)
