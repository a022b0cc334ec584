"""2-D max and average pooling with PyTorch's `ceil_mode=True`.

Keras pools with "valid" (floor) or "same" (TensorFlow's asymmetric padding)
windows. A PyTorch pool `(kernel k, stride s, padding p, ceil_mode=True)` on a
side of length n has

    out = ceil((n + 2p - k) / s) + 1, minus 1 if window out - 1 would start
    at or after n + p (the last window must start inside the input or its
    left padding),

windows starting at i * s - p, and clips each window to the input (max) or
to the padded input (average with `count_include_pad=True`, the divisor
being the number of window cells inside [-p, n + p)). This layer pads (or
crops) each side explicitly so that a "valid" pool sees exactly those
windows: -inf padding for max, zeros plus a constant divisor map for average.
"""

import math

import keras
import numpy as np

MODES = ("max", "avg")


def ceil_mode_output_size(size, kernel, stride, padding=0):
    """The output length of a PyTorch pool with `ceil_mode=True` on a side of `size`.

    Example:

    >>> from keras_mdr.backbones.ceil_mode_pooling import ceil_mode_output_size
    >>> ceil_mode_output_size(112, kernel=3, stride=2)  # floor mode gives 55
    56
    >>> ceil_mode_output_size(5, kernel=2, stride=2, padding=1)  # a 4th window would start in the padding
    3
    """
    out = math.ceil((size + 2 * padding - kernel) / stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def ceil_mode_window_counts(size, kernel, stride, padding=0):
    """Per output position, the cells of its window inside [-padding, size + padding).

    PyTorch's average pool with `count_include_pad=True` divides by this
    count (per axis; the 2-D divisor is the product), which is `kernel`
    except for a last window that sticks out past the padding.
    """
    out = ceil_mode_output_size(size, kernel, stride, padding)
    starts = np.arange(out) * stride - padding
    return np.minimum(starts + kernel, size + padding) - starts


@keras.saving.register_keras_serializable(package="keras_mdr")
class CeilModePooling2D(keras.layers.Layer):
    """Max or average pooling that reproduces PyTorch's `ceil_mode=True`.

    Output sizes and values equal `torch.nn.MaxPool2d(kernel, stride, padding,
    ceil_mode=True)` or `torch.nn.AvgPool2d(kernel, stride, padding,
    ceil_mode=True, count_include_pad=True)` on channels-last inputs. The
    input's height and width must be known when the layer is built.

    Args:
        mode: "max" or "avg".
        pool_size: the window side (an int).
        strides: the stride (an int).
        padding: the symmetric padding PyTorch adds on every side (an int,
            at most `pool_size // 2`).
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, height, width, channels)`.

    Example:

    >>> import numpy as np, keras_mdr.backbones
    >>> pool = keras_mdr.backbones.CeilModePooling2D("max", pool_size=3, strides=2)
    >>> pool(np.zeros((1, 112, 112, 4), "float32")).shape
    TensorShape([1, 56, 56, 4])

    Reference:
        PyTorch's `MaxPool2d` / `AvgPool2d` documentation (`ceil_mode`).
    """

    def __init__(self, mode, pool_size, strides, padding=0, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Expected mode in {MODES}. Received: mode={mode!r}")
        if not 0 <= padding <= pool_size // 2:
            raise ValueError(
                "Expected 0 <= padding <= pool_size // 2 (as PyTorch requires). "
                f"Received: padding={padding}, pool_size={pool_size}"
            )
        self.mode, self.pool_size, self.strides, self.padding = mode, pool_size, strides, padding

    def _axis(self, size):
        """(pad before, pad after, output size) of one axis; pad after < 0 crops."""
        if size is None:
            raise ValueError(
                "Expected a static height and width (the ceil-mode padding depends "
                "on them). Received: an input side of unknown size"
            )
        out = ceil_mode_output_size(size, self.pool_size, self.strides, self.padding)
        after = (out - 1) * self.strides + self.pool_size - size - self.padding
        return self.padding, after, out

    def build(self, input_shape):
        self._rows, self._cols = self._axis(input_shape[1]), self._axis(input_shape[2])
        self._divisor_scale = None
        if self.mode == "avg":
            rows = ceil_mode_window_counts(input_shape[1], self.pool_size, self.strides, self.padding)
            cols = ceil_mode_window_counts(input_shape[2], self.pool_size, self.strides, self.padding)
            counts = np.outer(rows, cols)
            if np.any(counts != self.pool_size**2):
                # A "valid" average divides by k * k; rescale to PyTorch's divisor.
                scale = (self.pool_size**2 / counts)[None, :, :, None]
                self._divisor_scale = scale.astype("float32")

    def call(self, inputs):
        x = inputs
        (top, bottom, _), (left, right, _) = self._rows, self._cols
        if bottom < 0 or right < 0:
            x = x[:, : x.shape[1] + min(bottom, 0), : x.shape[2] + min(right, 0), :]
        pads = [[0, 0], [top, max(bottom, 0)], [left, max(right, 0)], [0, 0]]
        if self.mode == "max":
            # -inf padding: a window's maximum is over its cells inside the input.
            x = keras.ops.pad(x, pads, constant_values=float("-inf"))
            return keras.ops.max_pool(x, self.pool_size, self.strides, padding="valid")
        x = keras.ops.pad(x, pads)
        y = keras.ops.average_pool(x, self.pool_size, self.strides, padding="valid")
        if self._divisor_scale is not None:
            y = y * keras.ops.cast(self._divisor_scale, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        rows, cols = self._axis(input_shape[1]), self._axis(input_shape[2])
        return (input_shape[0], rows[2], cols[2], input_shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            "mode": self.mode,
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
        }
