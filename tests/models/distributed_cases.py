"""Losses checked by tests/models/test_loss_distribution.py: append a case here.

`cases()` maps a name to a function returning a compiled-ready Keras loss for a
plain `keras.Model` (built inside the strategy's scope); `owned_cases()` the
losses whose state a `keras_mdr.MDRModel` owns: each stateful loss alone and
every family under `keras_mdr.MDRLoss`. The test trains one
SGD step of the same model on the same global batch under the default strategy
and under a 2-replica MirroredStrategy (with and without jit_compile) and
requires the updates to agree within 1e-5.
"""


def cases():
    import keras_mdr

    return {
        "semihard": lambda: keras_mdr.TripletSemiHardLoss(),
        "hard": lambda: keras_mdr.TripletHardLoss(),
        "hard_soft": lambda: keras_mdr.TripletHardLoss(soft=True),
        "distance_weighted": lambda: keras_mdr.DistanceWeightedTripletLoss(seed=3),
    }


def owned_cases():
    import keras_mdr
    import loss_families

    cases = {f"owned_{name}": make for name, make in loss_families.stateful().items()}
    for name, make in loss_families.bases().items():
        cases[f"mdr_{name}"] = (lambda make=make: keras_mdr.MDRLoss(make(), mdr_weight=0.2))
    return cases
