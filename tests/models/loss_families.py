"""One small case per loss family, for the model tests (state, MDR, distribution).

`CLASSES` classes, embeddings of size `DIM` on the unit sphere (the encoders
end with `UnitNormalization`, so the inner-product losses see cosines).
Each factory returns a new loss.
"""

CLASSES, DIM = 8, 8


def stateful():
    """The losses with learnable state of their own."""
    import keras_mdr

    return {
        "margin": lambda: keras_mdr.MarginLoss(num_classes=CLASSES, nu=0.01),
        "proxy_anchor": lambda: keras_mdr.ProxyAnchorLoss(CLASSES, DIM),
        "arcface": lambda: keras_mdr.ArcFaceLoss(CLASSES, DIM, scale=16.0),
    }


def bases():
    """Every family as a base loss of MDR (stateless ones included)."""
    import keras
    import keras_mdr

    families = dict(stateful())
    families.update({
        "triplet_hard": lambda: keras_mdr.TripletHardLoss(margin=0.2),
        "contrastive": lambda: keras_mdr.ContrastiveLoss(neg_margin=1.0),
        "multi_similarity": lambda: keras_mdr.MultiSimilarityLoss(),
        "supcon": lambda: keras_mdr.SupConLoss(),
        "ntxent": lambda: keras_mdr.NTXentLoss(),
        # A Keras loss on (labels, embeddings): a softmax classifier over DIM = CLASSES logits.
        "keras_softmax": lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    })
    return families
