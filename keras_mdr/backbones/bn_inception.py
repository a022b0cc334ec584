"""BN-Inception (Inception v2 with Batch Normalization), the MDR paper's backbone.

The network of Cadene's `pretrained-models.pytorch` port (the one the MDR
release trains), layer for layer: the same layer names as its PyTorch modules
(`conv1_7x7_s2`, `conv1_7x7_s2_bn`, `inception_3a_1x1`, ...), so that a
PyTorch state_dict maps onto it by name; 1024 features after global average
pooling. Details that must match PyTorch exactly:

- convolutions with stride 2 pad symmetrically (PyTorch `padding=p`), which
  TensorFlow's "same" does not (it pads more at the bottom/right): those get
  an explicit `ZeroPadding2D`;
- the max pools use `ceil_mode=True` (`CeilModePooling2D`);
- the average pools of the inception blocks count the padding in the divisor
  (`count_include_pad=True`): always 9, unlike Keras' "same";
- BatchNorm epsilon 1e-5 (Keras' default is 1e-3).
"""

import os

import keras

from keras_mdr.backbones.bgr_mean_subtraction import BGRMeanSubtraction
from keras_mdr.backbones.bn_inception_weights import load_bn_inception_weights
from keras_mdr.backbones.ceil_mode_pooling import CeilModePooling2D
from keras_mdr.backbones.ceil_mode_pooling import ceil_mode_output_size

FEATURE_DIM = 1024
# The smallest input side whose every feature map keeps at least one cell.
MIN_IMAGE_SIZE = 31
BATCHNORM_EPSILON = 1e-5
# The release's BatchNorm2d(momentum=0.9) in Keras' convention (1 - PyTorch's);
# it only matters if the statistics are updated, which the paper never does.
BATCHNORM_MOMENTUM = 0.1

# The ten inception blocks: (name, 1x1, (3x3 reduce, 3x3), (double 3x3 reduce,
# double 3x3), pool, pool projection). A block without a 1x1 branch (3c, 4e)
# halves the resolution: stride-2 3x3 convolutions and a stride-2 max pool
# with no projection.
BLOCKS = (
    ("3a", 64, (64, 64), (64, 96), "avg", 32),
    ("3b", 64, (64, 96), (64, 96), "avg", 64),
    ("3c", None, (128, 160), (64, 96), "max", None),
    ("4a", 224, (64, 96), (96, 128), "avg", 128),
    ("4b", 192, (96, 128), (96, 128), "avg", 128),
    ("4c", 160, (128, 160), (128, 160), "avg", 128),
    ("4d", 96, (128, 192), (160, 192), "avg", 128),
    ("4e", None, (128, 192), (192, 256), "max", None),
    ("5a", 352, (192, 320), (160, 224), "avg", 128),
    ("5b", 352, (192, 320), (192, 224), "max", 128),
)


def _conv_bn_relu(x, name, filters, kernel, stride=1, padding=0):
    if padding and stride > 1:
        x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    # With stride 1 and kernel 2p + 1, "same" is PyTorch's symmetric padding p.
    same = padding and stride == 1
    x = keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same" if same else "valid", name=name
    )(x)
    x = keras.layers.BatchNormalization(
        epsilon=BATCHNORM_EPSILON, momentum=BATCHNORM_MOMENTUM, name=f"{name}_bn"
    )(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _inception_block(x, block):
    name, filters_1x1, (reduce_3x3, filters_3x3), (reduce_double, filters_double), pool, projection = block
    prefix = f"inception_{name}"
    stride = 1 if filters_1x1 else 2
    branches = []
    if filters_1x1:
        branches.append(_conv_bn_relu(x, f"{prefix}_1x1", filters_1x1, 1))
    y = _conv_bn_relu(x, f"{prefix}_3x3_reduce", reduce_3x3, 1)
    branches.append(_conv_bn_relu(y, f"{prefix}_3x3", filters_3x3, 3, stride, 1))
    y = _conv_bn_relu(x, f"{prefix}_double_3x3_reduce", reduce_double, 1)
    y = _conv_bn_relu(y, f"{prefix}_double_3x3_1", filters_double, 3, 1, 1)
    branches.append(_conv_bn_relu(y, f"{prefix}_double_3x3_2", filters_double, 3, stride, 1))
    y = CeilModePooling2D(pool, 3, stride, 1 if stride == 1 else 0, name=f"{prefix}_pool")(x)
    if projection:
        y = _conv_bn_relu(y, f"{prefix}_pool_proj", projection, 1)
    branches.append(y)
    return keras.layers.Concatenate(name=f"{prefix}_output")(branches)


def supported_side(side):
    """Whether BN-Inception's branches line up for an input side (in PyTorch too).

    In the two reduction blocks (3c, 4e), a stride-2 convolution with padding
    1 gives floor((n - 1) / 2) + 1 and the ceil-mode max pool ceil((n - 3) / 2)
    + 1 cells: equal only for even n. So the side must reach both blocks even:
    sides 32k - 1 to 32k + 6 (31-38, 63-70, ..., 223-230, 255-262, ...).

    Example:

    >>> from keras_mdr.backbones.bn_inception import supported_side
    >>> supported_side(224), supported_side(240)
    (True, False)
    """
    side = (side + 2 * 3 - 7) // 2 + 1  # conv1_7x7_s2
    side = ceil_mode_output_size(side, 3, 2)  # pool1_3x3_s2
    side = ceil_mode_output_size(side, 3, 2)  # pool2_3x3_s2
    for _ in ("3c", "4e"):
        convolved = (side + 2 - 3) // 2 + 1
        if side < 2 or convolved != ceil_mode_output_size(side, 3, 2):
            return False
        side = convolved
    return True


def _check_arguments(include_top, input_shape, pooling):
    if include_top:
        raise ValueError(
            "Expected include_top=False: BNInception has no ImageNet classifier "
            "(the `last_linear.*` of a .pth file is ignored). Received: include_top=True"
        )
    if pooling not in (None, "avg"):
        raise ValueError(f'Expected pooling=None or "avg". Received: pooling={pooling!r}')
    input_shape = tuple(input_shape or (224, 224, 3))
    if len(input_shape) != 3 or input_shape[2] != 3 or None in input_shape[:2]:
        raise ValueError(
            "Expected input_shape=(height, width, 3) with a known height and width "
            f"(ceil-mode pooling needs them). Received: input_shape={input_shape}"
        )
    if not all(supported_side(side) for side in input_shape[:2]):
        raise ValueError(
            "Expected a height and width that BN-Inception's reduction blocks accept: "
            f"32k - 1 to 32k + 6, at least {MIN_IMAGE_SIZE} (e.g. 224, 256). "
            f"Received: input_shape={input_shape}"
        )
    return input_shape


def BNInception(include_top=False, weights=None, input_shape=None, pooling="avg", name="bn_inception"):
    """BN-Inception as a Keras model: RGB images in [0, 255] to 1024 features.

    The input preprocessing of the ImageNet weights happens inside: channels
    reversed to BGR, minus (104, 117, 128), std 1. With `pooling="avg"`
    the output is the global average of the last 1024-channel map, the
    release's `F.avg_pool2d(x, kernel_size=x.shape[2])` for square inputs.
    The arguments follow `keras.applications`.

    Args:
        include_top: must be False (no ImageNet classifier).
        weights: None (or "none") for a random initialisation, or the path of
            a PyTorch `.pth` state_dict of BN-Inception in either key layout:
            the ImageNet weights (`bn_inception-52deb4733.pth`) or an MDR
            authors' checkpoint without its head (see
            `load_bn_inception_weights`; a checkpoint with a head needs an
            encoder: `keras_mdr.backbones.load_release_checkpoint`).
        input_shape: `(height, width, 3)`, default `(224, 224, 3)`; height and
            width must be given.
        pooling: "avg" (1024 features) or None (the last feature map).
        name: the model's name.

    Returns:
        A functional `keras.Model`.

    Example:

    >>> import keras_mdr.backbones
    >>> model = keras_mdr.backbones.BNInception(input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 1024)
    >>> tuple(model.get_layer("conv1_7x7_s2").kernel.shape)  # PyTorch: (64, 3, 7, 7)
    (7, 7, 3, 64)

    Reference:
        Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network
        Training by Reducing Internal Covariate Shift", ICML 2015; the
        network as ported in Cadene's pretrained-models.pytorch (`bninception`).
    """
    input_shape = _check_arguments(include_top, input_shape, pooling)
    inputs = keras.Input(input_shape, name="images")
    x = BGRMeanSubtraction(name="bgr_mean")(inputs)
    x = _conv_bn_relu(x, "conv1_7x7_s2", 64, 7, 2, 3)
    x = CeilModePooling2D("max", 3, 2, name="pool1_3x3_s2")(x)
    x = _conv_bn_relu(x, "conv2_3x3_reduce", 64, 1)
    x = _conv_bn_relu(x, "conv2_3x3", 192, 3, 1, 1)
    x = CeilModePooling2D("max", 3, 2, name="pool2_3x3_s2")(x)
    for block in BLOCKS:
        x = _inception_block(x, block)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None and weights != "none":
        load_bn_inception_weights(model, os.fspath(weights))
    return model
