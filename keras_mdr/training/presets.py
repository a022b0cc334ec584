"""The training settings per dataset: our recommended protocol, the paper's, and small ones for CPU.

Two protocols for the four photo benchmarks (Kim & Park, AAAI 2021):
- "default" (`cub200`, `cars196`, `sop`, `inshop`): our recommended one.
  InceptionV3 from `keras.applications`, BatchNorm frozen, Keras' Adam, P x K
  batches, and the best epoch picked on a validation split carved from the
  training classes.
- "paper" (`cub200_paper`, `cars196_paper`, `sop_paper`, `inshop_paper`): the
  settings of the authors' release that produced the paper's Table 1
  (`RELEASE`): BN-Inception with the ImageNet weights file, PyTorch's Linear
  head init, BatchNorm statistics frozen while gamma and beta train, coupled-L2
  Adam (`keras_mdr.optimizers.AdamL2`, 1e-5 on every variable), lr 5e-5 (CUB,
  Cars) or 1e-4 (SOP, In-Shop) x0.2 after epochs 40, 60, 80, 100 epochs of
  100 iterations, the release's batches (128 with m = 4, or 256 with m = 3),
  crops and sampler, lambda 0.6 / 0.2 / 0.1 / 0.1 and nu 0.01, and Recall@K
  on the *test* split every epoch (squared Euclidean, raw embeddings); the
  number reported is the best test Recall@1 over the epochs, as the release's.
"""

import dataclasses


class ConfigError(ValueError):
    """A bad flag, flag combination or data location, found before training starts."""

PHOTO_DEFAULTS = dict(
    backbone="inception_v3",
    weights="imagenet",
    embedding_dim=512,
    image_size=224,
    resize_size=256,
    classes_per_batch=32,
    images_per_class=4,
    base_loss="distance_weighted",
    margin=0.2,
    level_weight=0.01,
    learning_rate=5e-5,
    lr_decay_epochs=(40, 60, 80),
    lr_decay_factor=0.2,
    weight_decay=1e-5,
    epochs=100,
    steps_per_epoch=100,
    freeze_batchnorm=True,
    recall_ks=(1, 2, 4, 8),
    eval_every=5,
    validation_classes=0.15,
)

PRESETS = {
    "cars196": dict(PHOTO_DEFAULTS, dataset="cars196", mdr_weight=0.2),
    "cub200": dict(PHOTO_DEFAULTS, dataset="cub200", mdr_weight=0.6),
    "sop": dict(
        PHOTO_DEFAULTS, dataset="sop", mdr_weight=0.1, learning_rate=1e-4,
        classes_per_batch=85, images_per_class=3, recall_ks=(1, 10, 100, 1000),
    ),
    "inshop": dict(
        PHOTO_DEFAULTS, dataset="inshop", mdr_weight=0.1, learning_rate=1e-4,
        classes_per_batch=85, images_per_class=3, recall_ks=(1, 10, 20, 30, 40),
    ),
    # The embedded default: a few minutes on 2 CPU cores. With only five
    # training classes there is no validation split (one or two classes make
    # a degenerate retrieval task); the unseen classes 5-9 are evaluated.
    "digits": dict(
        dataset="digits", backbone="small_cnn", weights="none", embedding_dim=512,
        image_size=8, resize_size=8, classes_per_batch=5, images_per_class=16,
        base_loss="distance_weighted", margin=0.2, mdr_weight=0.2, level_weight=0.01,
        # lr 1e-3 for 600 steps overfits the five training digits: test R@1
        # fell from 96% (epoch 2) to 80% (epoch 20); 1e-4 for 300 steps holds 98%.
        learning_rate=1e-4, lr_decay_epochs=(6, 8), lr_decay_factor=0.2,
        weight_decay=1e-5, epochs=10, steps_per_epoch=30, freeze_batchnorm=False,
        recall_ks=(1, 2, 4, 8), eval_every=2, validation_classes=0,
    ),
}
# Classes 0-4 train: two are held out for validation, three remain.
PRESETS["fashion_mnist"] = dict(
    PRESETS["digits"], dataset="fashion_mnist", image_size=28, resize_size=28,
    classes_per_batch=3, images_per_class=20, learning_rate=1e-3,
    lr_decay_epochs=(10, 15), epochs=20, steps_per_epoch=50, validation_classes=2,
)
# A folder of class subfolders: the photo settings with Cars' lambda.
PRESETS["folder"] = dict(PHOTO_DEFAULTS, dataset="folder", mdr_weight=0.2)

SMALL_IMAGE_DATASETS = ("digits", "fashion_mnist")

# The authors' release, per benchmark: the settings that produced Table 1.
# `weights` names the ImageNet file the release starts from; a run passes its
# path (`--weights=PATH`), and the card compares the file name.
RELEASE_WEIGHTS = "bn_inception-52deb4733.pth"
_RELEASE_COMMON = dict(
    protocol="paper", backbone="bn_inception", weights=RELEASE_WEIGHTS, embedding_dim=512,
    image_size=224, resize_size=256, batchnorm="release", head_init="torch",
    optimizer="adam_l2", weight_decay=1e-5, lr_decay_epochs=(40, 60, 80), lr_decay_factor=0.2,
    epochs=100, steps_per_epoch=100, batches="release", crops="release",
    base_loss="distance_weighted", sampling="release", margin=0.2, level_weight=0.01,
    eval_every=1, validation_classes=0, eval_distance="squared_euclidean",
)
RELEASE = {
    "cub200": dict(_RELEASE_COMMON, mdr_weight=0.6, learning_rate=5e-5, batch_size=128,
                   images_per_class=4, recall_ks=(1, 2, 4, 8)),
    "cars196": dict(_RELEASE_COMMON, mdr_weight=0.2, learning_rate=5e-5, batch_size=128,
                    images_per_class=4, recall_ks=(1, 2, 4, 8)),
    "sop": dict(_RELEASE_COMMON, mdr_weight=0.1, learning_rate=1e-4, batch_size=256,
                images_per_class=3, recall_ks=(1, 10, 100, 1000)),
    "inshop": dict(_RELEASE_COMMON, mdr_weight=0.1, learning_rate=1e-4, batch_size=256,
                   images_per_class=3, recall_ks=(1, 10, 20, 30, 40)),
}
PAPER_DATASETS = tuple(RELEASE)
for _name, _release in RELEASE.items():
    # "imagenet" for bn_inception asks for the file's path (a one-line error
    # names it); classes_per_batch only bounds the release's batches from below.
    PRESETS[f"{_name}_paper"] = dict(
        _release, dataset=_name, weights="imagenet",
        classes_per_batch=_release["batch_size"] // _release["images_per_class"],
        freeze_batchnorm=True,
    )


def preset(name):
    """The settings of a dataset's preset, as a new dict."""
    if name not in PRESETS:
        raise ValueError(
            f"Expected a preset name among {sorted(PRESETS)}. Received: preset={name!r}"
        )
    return dict(PRESETS[name])


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; `train(config)` runs it.

    Defaults are the `digits` preset; `TrainConfig.from_preset(name, **overrides)`
    starts from another dataset's (and records its name in `preset`).

    The fields the paper protocol adds (see `RELEASE`): `batchnorm`
    ("release", "frozen" or "train"; "" takes `freeze_batchnorm`),
    `head_init` ("glorot" or "torch"), `optimizer` ("adam": Keras' Adam,
    decoupled weight decay; "adam_l2": `keras_mdr.optimizers.AdamL2`,
    PyTorch's coupled L2 on every trainable variable), `sampling` (the
    distance-weighted sampler: "release" or "textbook"), `batches`
    ("balanced": P x K; "release": `keras_mdr.data.release_batches` of
    `batch_size` images, at most `images_per_class` per class), `batch_size`
    (0: P x K), `crops` ("default" or "release": the release's Lanczos resize
    and random resized crop), `eval_distance` ("euclidean" or
    "squared_euclidean"; same ranking) and `protocol` ("default": select on
    validation; "paper": evaluate the test split every epoch and before the
    first, and report the best test Recall@1 over the epochs).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    output_dir: str = "runs/digits"
    backbone: str = "small_cnn"
    weights: str = "none"
    embedding_dim: int = 512
    image_size: int = 8
    resize_size: int = 8
    epochs: int = 10
    steps_per_epoch: int = 30
    classes_per_batch: int = 5
    images_per_class: int = 16
    base_loss: str = "distance_weighted"
    margin: float = 0.2
    mdr_weight: float = 0.2
    level_weight: float = 0.01
    learning_rate: float = 1e-4
    lr_decay_epochs: tuple = (6, 8)
    lr_decay_factor: float = 0.2
    weight_decay: float = 1e-5
    freeze_batchnorm: bool = False
    batchnorm: str = ""
    head_init: str = "glorot"
    optimizer: str = "adam"
    sampling: str = "release"
    batches: str = "balanced"
    batch_size: int = 0
    crops: str = "default"
    recall_ks: tuple = (1, 2, 4, 8)
    eval_every: int = 2
    eval_distance: str = "euclidean"
    validation_classes: float = 0
    protocol: str = "default"
    preset: str = ""
    strategy: str = "default"
    mixed_precision: str = "none"
    xla: bool = False
    seed: int = 0
    checkpoint_every: int = 0
    export: bool = True
    max_image_pixels: int = 40_000_000
    verbose: int = 1

    @classmethod
    def from_preset(cls, name, **overrides):
        values = preset(name)
        values["output_dir"] = f"runs/{name}"
        values["preset"] = name
        values.update({k: v for k, v in overrides.items() if v is not None})
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"Expected TrainConfig fields. Received unknown: {unknown}")
        return cls(**values)

    def to_dict(self):
        return dataclasses.asdict(self)
