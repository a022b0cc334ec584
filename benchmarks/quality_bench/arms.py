"""The methods compared ("arms") and the compiled model of each.

Every arm trains the same encoder with the same optimizer, schedule, batches
and seeds; only the loss differs.
"""

import dataclasses

import keras

import keras_mdr
from keras_mdr.training import encoders


@dataclasses.dataclass(frozen=True)
class Arm:
    label: str
    base_loss: str
    mdr: bool
    l2norm: bool = False
    # A keras_mdr loss family trained through `keras_mdr.MDRLoss` (see
    # FAMILIES); None for the triplet arms.
    family: str = None
    # The negative sampler of base_loss="distance_weighted" (None otherwise).
    # The first arms were measured with "textbook" (Wu et al.), before the
    # losses' default became "release" (the MDR authors' rule): they name it,
    # so a default change cannot silently change what they measure.
    sampling: str = None


ARMS = {
    "triplet": Arm("Triplet", "distance_weighted", mdr=False, sampling="textbook"),
    "triplet_l2norm": Arm("Triplet + L2Norm", "distance_weighted", mdr=False, l2norm=True,
                          sampling="textbook"),
    "triplet_mdr": Arm("Triplet + MDR", "distance_weighted", mdr=True, sampling="textbook"),
    "semihard": Arm("Semi-hard", "semihard", mdr=False),
    "semihard_mdr": Arm("Semi-hard + MDR", "semihard", mdr=True),
    "triplet_release": Arm("Triplet (release sampler)", "distance_weighted", mdr=False,
                           sampling="release"),
    "triplet_mdr_release": Arm("Triplet + MDR (release sampler)", "distance_weighted", mdr=True,
                               sampling="release"),
    # `triplet` and `triplet_mdr` again, measured with the code of the
    # release arms: the sampler's effect without the other code changes since
    # the first measurements, and the size of those changes.
    "triplet_rerun": Arm("Triplet (textbook, rerun)", "distance_weighted", mdr=False,
                         sampling="textbook"),
    "triplet_mdr_rerun": Arm("Triplet + MDR (textbook, rerun)", "distance_weighted", mdr=True,
                             sampling="textbook"),
}
# The other loss families, each with the classes' default settings, without
# and with MDR: `MDRLoss(base, mdr_weight=0)` against
# `MDRLoss(base, mdr_weight=--mdr_weight)`, so a pair differs only by MDR's
# term (as `triplet` / `triplet_mdr`). Inner-product families get
# unit-normalised embeddings (their cosine), trained and evaluated.
# name: (label, builder(num_classes, embedding_dim), unit-normalised)
FAMILIES = {
    "contrastive": ("Contrastive", lambda n, d: keras_mdr.ContrastiveLoss(), False),
    "margin": ("Margin", lambda n, d: keras_mdr.MarginLoss(), False),
    "multi_similarity": ("Multi-similarity", lambda n, d: keras_mdr.MultiSimilarityLoss(), True),
    "proxy_anchor": ("Proxy-anchor", lambda n, d: keras_mdr.ProxyAnchorLoss(n, d), True),
    "supcon": ("SupCon", lambda n, d: keras_mdr.SupConLoss(), True),
    "ntxent": ("NT-Xent", lambda n, d: keras_mdr.NTXentLoss(), True),
    "arcface": ("ArcFace", lambda n, d: keras_mdr.ArcFaceLoss(n, d), True),
}
for _name, (_label, _, _unit) in FAMILIES.items():
    ARMS[_name] = Arm(_label, _name, mdr=False, l2norm=_unit, family=_name)
    ARMS[f"{_name}_mdr"] = Arm(f"{_label} + MDR", _name, mdr=True, l2norm=_unit, family=_name)
# What `--arms` runs by default: the triplet comparison (the loss families
# are named explicitly, 70 runs at 5 seeds).
DEFAULT_ARMS = tuple(name for name, arm in ARMS.items() if not arm.family)
BASE_LABELS = {"distance_weighted": "Triplet", "semihard": "Semi-hard"}
# (arm, baseline) pairs of the paired-difference tables, in display order:
# the MDR effect per sampler, the sampler's effect within one code version,
# then the comparisons across code versions (first measurements vs later).
PAIRS = (
    ("triplet_l2norm", "triplet"),
    ("triplet_mdr", "triplet"),
    ("semihard_mdr", "semihard"),
    ("triplet_mdr_release", "triplet_release"),
    ("triplet_mdr_rerun", "triplet_rerun"),
    ("triplet_release", "triplet_rerun"),
    ("triplet_mdr_release", "triplet_mdr_rerun"),
    ("triplet_release", "triplet"),
    ("triplet_mdr_release", "triplet_mdr"),
    ("triplet_rerun", "triplet"),
    ("triplet_mdr_rerun", "triplet_mdr"),
) + tuple((f"{name}_mdr", name) for name in FAMILIES)


def arm_of(spec, config):
    """(Arm, mdr_weight) of a run spec: a named arm, or a point of the lambda sweep."""
    if "arm" in spec:
        arm = ARMS[spec["arm"]]
        return arm, (config["mdr_weight"] if arm.mdr else 0.0)
    base = config["sweep_base_loss"]
    # The sweep was measured with the textbook sampler, as the first arms.
    arm = Arm(f"{BASE_LABELS[base]} + MDR, λ = {spec['mdr_weight']:g}", base,
              mdr=spec["mdr_weight"] > 0,
              sampling="textbook" if base == "distance_weighted" else None)
    return arm, spec["mdr_weight"]


def stored_schedule(config):
    """The learning rate of the stored runs: x lr_decay_factor after each decay epoch.

    Deliberately not `keras_mdr.training.trainer.learning_rate`: that one
    decays from the first step of the epoch (boundary `e * steps - 1`), this
    one a step later (boundary `e * steps`), as when the results in
    docs/results/ were measured; switching would change every run.
    """
    steps = config["steps_per_epoch"]
    boundaries = [e * steps for e in config["lr_decay_epochs"] if 0 < e < config["epochs"]]
    if not boundaries:
        return config["learning_rate"]
    values = [config["learning_rate"] * config["lr_decay_factor"] ** i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def _family_model(config, arm, mdr_weight, encoder, num_classes):
    _, builder, unit = FAMILIES[arm.family]
    if unit:
        # float32 whatever the policy, as the L2Norm arm.
        encoder = keras.Sequential([encoder, keras.layers.UnitNormalization(dtype="float32")])
    loss = keras_mdr.MDRLoss(
        builder(num_classes, config["embedding_dim"]), mdr_weight=mdr_weight,
        level_weight=config["level_weight"], levels=config["levels"],
    )
    return keras_mdr.MDRModel(encoder), loss


def build_model(config, arm, mdr_weight, seed, num_classes=None):
    """The compiled model of one arm: same encoder, optimizer and schedule for all.

    `num_classes`: one more than the largest training label (the proxy and
    ArcFace families hold a vector per class).
    """
    encoder = encoders.build_encoder(
        config["backbone"], config["weights"], config["embedding_dim"], config["image_size"],
        channels=3, freeze_batchnorm=config["freeze_batchnorm"],
    )
    optimizer = keras.optimizers.Adam(stored_schedule(config), weight_decay=config["weight_decay"] or None)
    shape = (config["image_size"], config["image_size"], 3)
    if arm.family:
        model, loss = _family_model(config, arm, mdr_weight, encoder, num_classes)
    elif arm.l2norm:
        inputs = keras.Input(shape)
        # float32 whatever the policy: the loss's distances are float32.
        outputs = keras.layers.UnitNormalization(dtype="float32")(encoder(inputs))
        model = keras.Model(inputs, outputs)
        loss = keras_mdr.DistanceWeightedTripletLoss(
            margin=config["l2_margin"], seed=seed, sampling=arm.sampling
        )
    else:
        model = keras_mdr.MDRModel(encoder)
        sampler = {"sampling": arm.sampling} if arm.sampling else {}
        loss = keras_mdr.MDRTripletLoss(
            base_loss=arm.base_loss, margin=config["margin"], mdr_weight=mdr_weight,
            level_weight=config["level_weight"], levels=config["levels"], seed=seed, **sampler,
        )
    model.compile(optimizer=optimizer, loss=loss)
    return model
