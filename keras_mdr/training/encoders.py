"""Embedding encoders: a `keras.applications` backbone (or a small CNN) + a linear head.

The encoder takes float images in [0, 255] and applies the backbone's own input
preprocessing inside, so a SavedModel export serves raw pixels. The head is a
linear layer to `embedding_dim` on global-average-pooled features, in float32
whatever the dtype policy (the losses need float32 distances).

BatchNormalization trains in one of three modes (`keras_mdr.training.batchnorm`):
"release" (the MDR authors' way: moving statistics used and kept, gamma and
beta trained), "frozen" (the whole layer fixed) or "train". The head starts
from Glorot-uniform weights and zero bias, or from PyTorch `nn.Linear`'s
default (`head_init="torch"`: weights and bias uniform in
+-1/sqrt(fan_in), fan_in the backbone's feature size), as the release's head.
"""

import math
import os

import keras

from keras_mdr import backbones
from keras_mdr.preprocessing import Preprocess
from keras_mdr.training import batchnorm as batchnorm_lib
from keras_mdr.training.presets import ConfigError

# name -> (constructor, keras.applications preprocessing module)
BACKBONES = {
    "resnet50": (lambda: keras.applications.ResNet50, "resnet50"),
    "inception_v3": (lambda: keras.applications.InceptionV3, "inception_v3"),
    "efficientnet_b0": (lambda: keras.applications.EfficientNetB0, "efficientnet"),
    "mobilenet_v2": (lambda: keras.applications.MobileNetV2, "mobilenet_v2"),
    "small_cnn": (None, "unit"),
    # Preprocesses inside (BGR, minus 104/117/128); weights: a PyTorch .pth file.
    "bn_inception": (lambda: backbones.BNInception, None),
}
# Smallest input side each keras.applications backbone accepts.
MIN_IMAGE_SIZE = {"resnet50": 32, "inception_v3": 75, "efficientnet_b0": 32, "mobilenet_v2": 32,
                  "bn_inception": 31}


def _small_cnn(input_shape):
    """Three conv blocks for small grayscale sets (digits, Fashion-MNIST)."""
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        if x.shape[1] >= 4:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name="small_cnn")


_all_layers = batchnorm_lib.all_layers
HEAD_INITS = ("glorot", "torch")


def head_initializers(head_init, fan_in):
    """(kernel, bias) initializers of the linear head.

    "glorot": Keras' Dense default (Glorot uniform, zero bias). "torch":
    PyTorch `nn.Linear`'s default, weights and bias uniform in
    +-1/sqrt(fan_in) (its Kaiming-uniform with a = sqrt(5) is exactly that
    bound for the weights).
    """
    if head_init not in HEAD_INITS:
        raise ValueError(
            f"Expected head_init to be one of {HEAD_INITS}. Received: head_init={head_init!r}"
        )
    if head_init == "glorot":
        return "glorot_uniform", "zeros"
    bound = 1.0 / math.sqrt(fan_in)
    return (keras.initializers.RandomUniform(-bound, bound),
            keras.initializers.RandomUniform(-bound, bound))


def check_backbone(backbone, weights, image_size):
    """Raises a one-line ConfigError (a ValueError) naming the fix for a bad backbone / weights choice."""
    if backbone not in BACKBONES:
        raise ConfigError(
            f"Unknown backbone {backbone!r}: use one of {sorted(BACKBONES)}."
        )
    if weights not in ("imagenet", "none") and not os.path.exists(str(weights)):
        kind = ("a PyTorch .pth state_dict (bn_inception-52deb4733.pth, or an authors' "
                "checkpoint such as cars196.pth)" if backbone == "bn_inception"
                else "a .weights.h5 / .keras file of the backbone")
        raise ConfigError(
            f"--weights={weights!r} is neither 'imagenet', 'none' nor an existing file: "
            f"pass a path to {kind}."
        )
    if backbone == "small_cnn" and weights == "imagenet":
        raise ConfigError("--backbone=small_cnn has no ImageNet weights: use --weights=none.")
    if backbone == "bn_inception" and weights == "imagenet":
        raise ConfigError("--backbone=bn_inception reads its ImageNet weights from a file: "
                          "pass --weights=PATH to bn_inception-52deb4733.pth.")
    minimum = MIN_IMAGE_SIZE.get(backbone, 1)
    if image_size < minimum:
        raise ConfigError(
            f"--backbone={backbone} needs --image_size >= {minimum}. Received: {image_size}."
        )


def build_encoder(
    backbone="resnet50",
    weights="imagenet",
    embedding_dim=512,
    image_size=224,
    channels=3,
    freeze_batchnorm=None,
    batchnorm=None,
    head_init="glorot",
):
    """Builds an embedding encoder: preprocessing, backbone, pooling, linear head.

    Args:
        backbone: one of `BACKBONES` ("resnet50", "inception_v3",
            "efficientnet_b0", "mobilenet_v2", "small_cnn", or "bn_inception":
            the paper's BN-Inception, `keras_mdr.backbones.BNInception`).
        weights: "imagenet" (downloaded by Keras when first asked; needs a
            network), "none", or a path to weights of the backbone; for
            "bn_inception" a PyTorch `.pth` state_dict (the ImageNet weights,
            or an MDR authors' checkpoint, whose `linear.*` fills the head).
        embedding_dim: the embedding size (512 in the paper).
        image_size: input height and width.
        channels: input channels (3 for `keras.applications` backbones).
        freeze_batchnorm: the older switch: True is `batchnorm="frozen"`,
            False is "train".
        batchnorm: "release" (moving statistics used and never updated, gamma
            and beta trained: the MDR authors' way, for the paper presets),
            "frozen" (the whole layer fixed; the default when neither this
            nor `freeze_batchnorm` is given) or "train".
        head_init: "glorot" (Keras' default) or "torch" (PyTorch
            `nn.Linear`'s default, the release's head).

    Returns:
        A `keras.Model` named "encoder": float images `(None, image_size,
        image_size, channels)` in [0, 255] to float32 `(None, embedding_dim)`.

    Example:

    >>> encoder = keras_mdr.training.build_encoder(
    ...     "small_cnn", weights="none", embedding_dim=64, image_size=8)
    >>> encoder.output_shape
    (None, 64)
    """
    check_backbone(backbone, weights, image_size)
    mode = batchnorm_lib.batchnorm_mode(batchnorm, freeze_batchnorm)
    head_initializers(head_init, 1)  # refuses a bad head_init before the backbone is built
    input_shape = (image_size, image_size, channels)
    features = _backbone_features(backbone, weights, input_shape)
    torch_weights = str(weights).endswith((".pth", ".pt"))
    if weights not in ("imagenet", "none") and not torch_weights:
        features.load_weights(weights)
    features = _set_batchnorm(features, mode)
    inputs = keras.Input(input_shape, name="images")
    x = features(Preprocess(BACKBONES[backbone][1], name="preprocess")(inputs))
    embeddings = _embedding_head(features, embedding_dim, head_init)(x)
    encoder = keras.Model(inputs, embeddings, name="encoder")
    if torch_weights:
        # A PyTorch state_dict: the backbone, and an authors' checkpoint's head.
        backbones.load_bn_inception_weights(encoder, weights)
    return encoder


def _backbone_features(backbone, weights, input_shape):
    """The backbone without its top, globally average-pooled (ImageNet weights if asked)."""
    if backbone == "small_cnn":
        return _small_cnn(input_shape)
    if input_shape[-1] != 3:
        raise ValueError(f"--backbone={backbone} needs 3 channels. Received: channels={input_shape[-1]}.")
    constructor = BACKBONES[backbone][0]
    try:
        return constructor()(
            include_top=False,
            weights="imagenet" if weights == "imagenet" else None,
            input_shape=input_shape,
            pooling="avg",
        )
    except Exception as error:  # the download is the only network access
        if weights == "imagenet":
            raise RuntimeError(
                f"Could not fetch ImageNet weights for {backbone} ({error}). Without a "
                "network, use --weights=none or --weights=PATH to a local file."
            ) from error
        raise


def _embedding_head(features, embedding_dim, head_init):
    """The linear head on `features`' pooled output, float32 under any dtype policy."""
    kernel_init, bias_init = head_initializers(head_init, features.output_shape[-1])
    return keras.layers.Dense(embedding_dim, dtype="float32", name="embedding",
                              kernel_initializer=kernel_init, bias_initializer=bias_init)


def _set_batchnorm(features, mode):
    """`features` with its BatchNormalization layers in `mode` ("frozen", "release", "train")."""
    if mode == "frozen":
        for layer in _all_layers(features):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    if mode == "release":
        features = batchnorm_lib.use_inference_batchnorm(features)
    return features
