"""`DistanceWeightedTripletLoss`: the MDR authors' base loss."""

import keras

from keras_mdr import distances as distances_lib
from keras_mdr.losses import triplet
from keras_mdr.losses.metric_loss import MetricLoss


@keras.saving.register_keras_serializable(package="keras_mdr")
class DistanceWeightedTripletLoss(MetricLoss):
    """Triplet margin loss with distance-weighted negative sampling.

    Every (anchor, positive) pair of the batch gets one negative, drawn with
    probability inversely proportional to the density of pairwise distances
    on the unit sphere (Wu et al. 2017); the loss is the mean over triplets of
    `max(D[a,p] - D[a,n] + margin, 0)` with Euclidean `D` on the embeddings as
    given (not normalised). Sampling is seeded and stateless per step.

    Args:
        margin: float. Defaults to 0.2, the MDR authors' value.
        cutoff: float, lower clip of the unit-sphere distance used for weights.
        nonzero_loss_cutoff: float, negatives at least this far (on the unit
            sphere) are never sampled.
        seed: optional int seed of the sampler.
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
        name="distance_weighted_triplet_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)
        self.cutoff = float(cutoff)
        self.nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def compute(self, labels, embeddings, sample_weight=None, state=None):
        distances = distances_lib.pairwise_distance(embeddings)
        return triplet.distance_weighted_triplet_loss(
            labels,
            distances,
            embeddings,
            seed=self.seed_generator.next(),
            margin=self.margin,
            cutoff=self.cutoff,
            nonzero_loss_cutoff=self.nonzero_loss_cutoff,
            sample_weight=sample_weight,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "margin": self.margin,
                "cutoff": self.cutoff,
                "nonzero_loss_cutoff": self.nonzero_loss_cutoff,
                "seed": self.seed,
            }
        )
        return config
