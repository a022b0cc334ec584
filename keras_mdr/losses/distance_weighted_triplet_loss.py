"""`DistanceWeightedTripletLoss`: the MDR authors' base loss."""

import keras
import tensorflow as tf

from keras_mdr import distances as distances_lib
from keras_mdr.losses import distance_weighted, metric_loss, triplet
from keras_mdr.losses.metric_loss import MetricLoss


@keras.saving.register_keras_serializable(package="keras_mdr")
class DistanceWeightedTripletLoss(MetricLoss):
    """Triplet margin loss with distance-weighted negative sampling.

    Every (anchor, positive) pair of the batch gets one negative, drawn with
    probability inversely proportional to the density of pairwise distances
    on the unit sphere (Wu et al. 2017); the loss is the mean over triplets of
    `max(T[a,p] - T[a,n] + margin, 0)` with `T` the release's triplet
    distance `|e_a - e_j + 1e-6|` on the embeddings as given (not
    normalised): the shared Euclidean matrix misses the release's loss by up
    to 1.85e-4 relative on low-loss batches. One-image classes are accepted
    (their samples serve as negatives only).

    Args:
        margin: float. Defaults to 0.2, the MDR authors' value.
        cutoff: float, lower clip of the unit-sphere distance used for weights.
        nonzero_loss_cutoff: float, negatives at least this far (on the unit
            sphere) are never sampled.
        seed: optional int seed of the sampler; the n-th call samples with
            `(seed, n)`, the same under tf.distribute as on one device.
        sampling: "release" (default: the MDR authors' rule, float32
            underflow and subnormals reproduced) or "textbook" (Wu et al.;
            a row with no negative under the cut-off is uniform over the
            anchor's negatives). See `keras_mdr.losses.distance_weighted`.
        name: optional name of the loss.

    Call arguments:
        y_true: int or float labels of shape `(batch,)` or `(batch, 1)`.
        y_pred: embeddings of shape `(batch, dim)`.

    Example:

    >>> loss = keras_mdr.DistanceWeightedTripletLoss(margin=0.2, seed=1)
    >>> value = loss([0, 0, 1, 1], [[0.0, 0.1], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])

    Reference:
        Wu et al., "Sampling Matters in Deep Embedding Learning", ICCV 2017.
    """

    def __init__(
        self,
        margin=0.2,
        cutoff=0.5,
        nonzero_loss_cutoff=1.4,
        seed=None,
        sampling="release",
        name="distance_weighted_triplet_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if sampling not in distance_weighted.SAMPLINGS:
            raise ValueError(
                f"Expected sampling to be one of {distance_weighted.SAMPLINGS}. "
                f"Received: sampling={sampling!r}"
            )
        self.margin = float(margin)
        self.cutoff = float(cutoff)
        self.nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self.seed = seed
        self.sampling = sampling
        # One draw per call. ONLY_FIRST_REPLICA: under tf.distribute every
        # replica assigns the same next value (see `_next_seed`).
        self.calls = tf.Variable(
            0, dtype=tf.int64, trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    def _next_seed(self):
        """`(seed, call count)`, the same on every replica, advanced once per step.

        Every replica reads the counter before any replica writes it (the
        maximum across replicas waits for all reads), then all write the
        same value: the sequence equals the 1-device one.
        """
        count = tf.convert_to_tensor(self.calls)
        context = metric_loss.multi_replica_context()
        if context is not None:
            # ReduceOp has no MAX: gather every replica's count, take the largest.
            counts = context.all_gather(tf.reshape(tf.cast(count, tf.float64), [1]), axis=0)
            count = tf.cast(tf.reduce_max(counts), tf.int64)
        self.calls.assign(count + 1)
        return tf.stack([tf.constant(self.seed or 0, tf.int64), count])

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        distances = distances_lib.pairwise_distance(embeddings)
        return triplet.distance_weighted_triplet_loss(
            labels,
            distances,
            embeddings,
            seed=self._next_seed(),
            margin=self.margin,
            cutoff=self.cutoff,
            nonzero_loss_cutoff=self.nonzero_loss_cutoff,
            sample_weight=sample_weight,
            sampling=self.sampling,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "margin": self.margin,
                "cutoff": self.cutoff,
                "nonzero_loss_cutoff": self.nonzero_loss_cutoff,
                "seed": self.seed,
                "sampling": self.sampling,
            }
        )
        return config
