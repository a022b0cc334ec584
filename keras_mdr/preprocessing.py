"""A backbone's input preprocessing, in one table, as a function and as a layer.

Every data path of keras_mdr yields RGB float32 images in [0, 255]
(`keras_mdr.data`); the encoders map them to their backbone's input range
inside the model, with the `Preprocess` layer, so that a saved or exported
encoder takes raw pixels. A mode is one of:

- None: the identity (the backbone preprocesses inside, as BN-Inception);
- "unit": divide by 255, giving [0, 1];
- "symmetric": scale to [-1, 1];
- the name of a `keras.applications` module in `APPLICATION_MODES`
  ("resnet50", "inception_v3", "efficientnet", ...): its `preprocess_input`.

Example:

>>> import numpy as np
>>> import keras_mdr.preprocessing as preprocessing
>>> float(preprocessing.preprocess_images(np.float32(255.0), "unit"))
1.0
>>> layer = preprocessing.Preprocess("symmetric")
>>> float(layer(np.zeros((1, 2, 2, 3), "float32"))[0, 0, 0, 0])
-1.0
"""

import keras

# Mode name -> the `keras.applications` module whose `preprocess_input` it uses.
APPLICATION_MODES = (
    "convnext",
    "densenet",
    "efficientnet",
    "efficientnet_v2",
    "inception_resnet_v2",
    "inception_v3",
    "mobilenet_v2",
    "mobilenet_v3",
    "resnet",
    "resnet50",
    "resnet_v2",
    "vgg16",
    "xception",
)
MODES = (None, "unit", "symmetric") + APPLICATION_MODES


def check_mode(mode):
    """`mode` if it names a preprocessing, else a `ValueError` listing them."""
    if mode in MODES:
        return mode
    raise ValueError(
        'Expected the preprocessing mode to be None, "unit", "symmetric" or one of '
        f"{sorted(APPLICATION_MODES)}. Received: mode={mode!r}"
    )


def preprocess_images(images, mode):
    """Maps float images in [0, 255] to a backbone's input range.

    Args:
        images: a float tensor (or array) of RGB pixels in [0, 255].
        mode: see the module docstring.

    Returns:
        A tensor of the same shape.
    """
    check_mode(mode)
    if mode is None:
        return images
    if mode == "unit":
        return images / 255.0
    if mode == "symmetric":
        return images / 127.5 - 1.0
    return getattr(keras.applications, mode).preprocess_input(images)


def preprocessor(preprocess):
    """The function that maps [0, 255] float images to a model's input range.

    Args:
        preprocess: a mode (see the module docstring) or a callable, which
            is returned as it is.

    Returns:
        A function from a float32 image tensor to a float32 image tensor.

    Example:

    >>> import keras_mdr.preprocessing
    >>> keras_mdr.preprocessing.preprocessor("unit")(255.0)
    1.0
    """
    if callable(preprocess):
        return preprocess
    mode = check_mode(preprocess)
    return lambda images: preprocess_images(images, mode)


@keras.saving.register_keras_serializable(package="keras_mdr")
class Preprocess(keras.layers.Layer):
    """A backbone's input preprocessing as a layer, for [0, 255] float images.

    It lives in this top-level module, imported by `import keras_mdr`, so that
    `keras.models.load_model` finds it in any saved encoder.

    Args:
        mode: None, "unit", "symmetric" or a name in `APPLICATION_MODES`
            (see the module docstring).

    Call arguments:
        images: float images `(..., H, W, 3)` in [0, 255].

    Example:

    >>> import numpy as np
    >>> import keras_mdr
    >>> layer = keras_mdr.preprocessing.Preprocess("unit")
    >>> float(layer(np.full((1, 1, 1, 3), 255.0, "float32"))[0, 0, 0, 0])
    1.0
    """

    def __init__(self, mode="unit", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_mode(mode)

    def call(self, images):
        return preprocess_images(keras.ops.cast(images, self.compute_dtype), self.mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
