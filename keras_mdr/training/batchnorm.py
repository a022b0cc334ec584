"""How an encoder's BatchNormalization layers train: the MDR release's way and two others.

- "release": the layers always normalise with their moving statistics and
  never update them, while gamma and beta keep training. This is what the
  MDR authors' PyTorch code does (`model.train()`, then `.eval()` on every
  BatchNorm module), and what fine-tuning with batches of 4 images per class
  needs: the ImageNet statistics stay, the affine part adapts.
- "frozen": the whole layer is frozen (`trainable = False`): moving
  statistics in use and fixed, and gamma and beta fixed too. In Keras 3
  this is the only effect of `trainable = False` on BatchNormalization.
- "train": ordinary BatchNormalization: batch statistics in training, moving
  statistics updated.

Keras has no switch for "release": a frozen layer's gamma and beta leave
`trainable_weights`. `InferenceBatchNormalization` is a BatchNormalization
whose call always runs in inference mode; `use_inference_batchnorm` swaps it
in for every BatchNormalization of a model by cloning, weights included.
"""

import keras

BATCHNORM_MODES = ("release", "frozen", "train")


@keras.saving.register_keras_serializable(package="keras_mdr")
class InferenceBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization that normalises with its moving statistics, also in training.

    The moving mean and variance are never updated (they are the statistics
    the layer was given, e.g. ImageNet's); gamma and beta stay trainable and
    receive gradients. Takes the arguments of `keras.layers.BatchNormalization`.

    Call arguments:
        inputs: the tensor to normalise.
        training: ignored: the layer always runs in inference mode.
        mask: as for `keras.layers.BatchNormalization`.

    Example:

    >>> layer = keras_mdr.training.batchnorm.InferenceBatchNormalization()
    >>> y = layer(np.ones((2, 3), "float32"), training=True)
    >>> [w.name for w in layer.trainable_weights]
    ['gamma', 'beta']

    Reference:
        The MDR release's training loop (kakaoenterprise/AAAI2021_MDR).
    """

    def call(self, inputs, training=None, mask=None):
        # Inference mode: normalise with the moving statistics, update nothing.
        return super().call(inputs, training=False, mask=mask)


def batchnorm_mode(batchnorm=None, freeze_batchnorm=None):
    """The BatchNorm mode from `batchnorm` or the older boolean `freeze_batchnorm`.

    `freeze_batchnorm=True` means "frozen" and False means "train", as they
    did before the modes existed; with neither given the mode is "frozen".

    Raises:
        ValueError: an unknown mode, or the two arguments disagreeing.
    """
    if batchnorm is not None and batchnorm not in BATCHNORM_MODES:
        raise ValueError(
            f"Expected batchnorm to be one of {BATCHNORM_MODES}. Received: batchnorm={batchnorm!r}"
        )
    legacy = None if freeze_batchnorm is None else ("frozen" if freeze_batchnorm else "train")
    if batchnorm is not None and legacy is not None and batchnorm != legacy:
        raise ValueError(
            "Expected batchnorm and freeze_batchnorm to agree (freeze_batchnorm=True is "
            f"'frozen', False is 'train'). Received: batchnorm={batchnorm!r}, "
            f"freeze_batchnorm={freeze_batchnorm!r}"
        )
    return batchnorm or legacy or "frozen"


def _swap(layer):
    config = layer.get_config()
    if isinstance(layer, keras.layers.BatchNormalization):
        return InferenceBatchNormalization.from_config(config)
    return layer.__class__.from_config(config)


def all_layers(model):
    """Every layer of `model`, nested models' layers included."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def use_inference_batchnorm(model):
    """A copy of a functional or Sequential `model` with every BatchNormalization
    replaced by `InferenceBatchNormalization` (names, configs and weights kept).

    Nested functional models are handled; a BatchNormalization hidden inside
    a subclassed layer cannot be swapped and raises.

    Raises:
        ValueError: when some BatchNormalization could not be replaced.
    """
    clone = keras.models.clone_model(model, clone_function=_swap, recursive=True)
    clone.set_weights(model.get_weights())
    left = [
        layer.name for layer in all_layers(clone)
        if isinstance(layer, keras.layers.BatchNormalization)
        and not isinstance(layer, InferenceBatchNormalization)
    ]
    if left:
        raise ValueError(
            "Expected every BatchNormalization to be reachable through the model's layers "
            f"(not inside a subclassed layer). Received: unreachable={left[:5]}"
        )
    return clone
