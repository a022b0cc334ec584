"""The Caffe-style input of BN-Inception: RGB [0, 255] -> BGR minus the channel means."""

import keras

# The BN-Inception ImageNet weights' mean, in BGR order (std 1).
BN_INCEPTION_BGR_MEAN = (104.0, 117.0, 128.0)


@keras.saving.register_keras_serializable(package="keras_mdr")
class BGRMeanSubtraction(keras.layers.Layer):
    """Reverses the channels (RGB -> BGR) and subtracts a per-channel mean.

    Args:
        mean: the mean of each channel in BGR order (blue, green, red); the
            default is BN-Inception's (104, 117, 128).
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        images: RGB images in [0, 255], channels last.

    Example:

    >>> import numpy as np, keras_mdr.backbones
    >>> layer = keras_mdr.backbones.BGRMeanSubtraction()
    >>> layer(np.array([[[[255.0, 0.0, 10.0]]]])).numpy().tolist()  # R, G, B
    [[[[-94.0, -117.0, 127.0]]]]

    Reference:
        The input convention of the BN-Inception weights in Cadene's
        pretrained-models.pytorch (input space BGR, range [0, 255]).
    """

    def __init__(self, mean=BN_INCEPTION_BGR_MEAN, **kwargs):
        super().__init__(**kwargs)
        if len(mean) != 3:
            raise ValueError(f"Expected 3 channel means (B, G, R). Received: mean={mean!r}")
        self.mean = tuple(float(m) for m in mean)

    def call(self, images):
        images = keras.ops.cast(images, self.compute_dtype)
        return keras.ops.flip(images, axis=-1) - keras.ops.convert_to_tensor(self.mean, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean}
