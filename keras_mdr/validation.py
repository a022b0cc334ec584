"""Boundary checks of user-supplied values, with one message style.

Every check returns the value in a canonical type or raises
`ValueError("Expected ... Received: name=value")`, so that a user learns at
the call they wrote, not deep inside a graph, what to change.

Example:

>>> import keras_mdr.validation as validation
>>> validation.positive_int(3, "batch_size")
3
>>> validation.int_list("1, 2,4", "recall_ks")
(1, 2, 4)
>>> validation.choice("cosine", "metric", ("euclidean", "cosine"))
'cosine'
"""

import difflib
import math
import numbers

import numpy as np


def is_int(value):
    """True for Python and NumPy integers, False for booleans."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def positive_int(value, name):
    """`value` as an int if it is an integer >= 1, else a `ValueError`."""
    if not is_int(value) or value < 1:
        raise ValueError(f"Expected `{name}` to be a positive int. Received: {name}={value!r}")
    return int(value)


def non_negative_int(value, name):
    """`value` as an int if it is an integer >= 0, else a `ValueError`."""
    if not is_int(value) or value < 0:
        raise ValueError(
            f"Expected `{name}` to be a non-negative int. Received: {name}={value!r}"
        )
    return int(value)


def _finite_float(value, name, what):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"Expected `{name}` to be {what}. Received: {name}={value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Expected `{name}` to be {what}. Received: {name}={value!r}")
    return value


def positive_float(value, name):
    """`value` as a float if it is a finite real number > 0."""
    checked = _finite_float(value, name, "a finite number > 0")
    if checked <= 0:
        raise ValueError(
            f"Expected `{name}` to be a finite number > 0. Received: {name}={value!r}"
        )
    return checked


def non_negative_float(value, name):
    """`value` as a float if it is a finite real number >= 0."""
    checked = _finite_float(value, name, "a finite number >= 0")
    if checked < 0:
        raise ValueError(
            f"Expected `{name}` to be a finite number >= 0. Received: {name}={value!r}"
        )
    return checked


def int_list(value, name, minimum=1):
    """A tuple of ints from a comma-separated string or an iterable of ints.

    Args:
        value: "1,2,4" (spaces and a trailing comma allowed) or `[1, 2, 4]`.
        name: the argument's name, for the message.
        minimum: the smallest value allowed in the list (None: no bound).

    Returns:
        A tuple of Python ints (empty if `value` is "" or empty).
    """
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
        if any(not part for part in parts[:-1]):
            raise ValueError(
                "Expected `{0}` to be comma-separated ints such as 1,2,4. "
                "Received: {0}={1!r}".format(name, value)
            )
        try:
            items = [int(part) for part in parts if part]
        except ValueError:
            raise ValueError(
                "Expected `{0}` to be comma-separated ints such as 1,2,4. "
                "Received: {0}={1!r}".format(name, value)
            ) from None
    else:
        try:
            items = list(value)
        except TypeError:
            raise ValueError(
                f"Expected `{name}` to be a list of ints. Received: {name}={value!r}"
            ) from None
        if not all(is_int(item) for item in items):
            raise ValueError(
                f"Expected `{name}` to be a list of ints. Received: {name}={value!r}"
            )
    if minimum is not None and any(item < minimum for item in items):
        raise ValueError(
            f"Expected every value of `{name}` to be >= {minimum}. Received: {name}={value!r}"
        )
    return tuple(int(item) for item in items)


def choice(value, name, options):
    """`value` if it is one of `options`, else a `ValueError` that lists them
    and suggests the closest one ("did you mean ...?")."""
    options = tuple(options)
    if value in options:
        return value
    suggestion = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value, [str(o) for o in options], n=1)
        if close:
            suggestion = f" (did you mean {close[0]!r}?)"
    raise ValueError(
        f"Expected `{name}` to be one of {list(options)}{suggestion}. "
        f"Received: {name}={value!r}"
    )


def size_pair(size, name):
    """`(height, width)` from a positive int or a pair of positive ints."""
    if is_int(size):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(is_int(s) and s > 0 for s in size)
    ):
        raise ValueError(
            f"Expected `{name}` to be a positive int or a pair of them. "
            f"Received: {name}={size!r}"
        )
    return int(size[0]), int(size[1])


def crop_sizes(image_size, resize_size):
    """`(image_size, resize_size)` as `(height, width)` pairs, the crop within the resize."""
    image_size = size_pair(image_size, "image_size")
    resize_size = size_pair(resize_size, "resize_size")
    if image_size[0] > resize_size[0] or image_size[1] > resize_size[1]:
        raise ValueError(
            "Expected `image_size` no larger than `resize_size`. "
            f"Received: image_size={image_size}, resize_size={resize_size}"
        )
    return image_size, resize_size


def range_pair(values, name, low, high):
    """`(min, max)` as floats with `low < min <= max <= high`."""
    if (
        not isinstance(values, (tuple, list))
        or len(values) != 2
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
        or not low < values[0] <= values[1] <= high
    ):
        raise ValueError(
            f"Expected `{name}` to be a pair (min, max) with {low} < min <= max "
            f"<= {high}. Received: {name}={values!r}"
        )
    return float(values[0]), float(values[1])
