"""PyTorch BN-Inception state_dicts onto `keras_mdr.backbones.BNInception` layers.

Two key layouts are accepted:

- ImageNet weights (`bn_inception-52deb4733.pth`): `<module>.<tensor>`, e.g.
  `conv1_7x7_s2.weight`; the BatchNorm tensors carry a leading dimension of
  1, `(1, C)`, which is dropped; the ImageNet classifier `last_linear.*` is
  ignored.
- the MDR authors' checkpoints (`cub200.pth`, `cars196.pth`, `sop.pth`,
  `inshop.pth`): `base.model.<module>.<tensor>` plus the embedding head
  `linear.weight` (out, in) / `linear.bias`, which fill the encoder's Dense
  layer "embedding" (kernel (in, out)); `base.model.last_linear.*` is ignored.

In both, `*.num_batches_tracked` (BatchNorm's step counter) is ignored. A
convolution's weight `(out, in, kh, kw)` becomes the Keras kernel
`(kh, kw, in, out)`; a BatchNorm's weight, bias, running_mean and
running_var become gamma, beta, moving_mean and moving_variance.
"""

import os

import keras
import numpy as np

from keras_mdr.backbones.torch_checkpoint import read_state_dict

RELEASE_PREFIX = "base.model."
HEAD_KEYS = ("linear.weight", "linear.bias")
HEAD_LAYER = "embedding"
STEM_LAYER = "conv1_7x7_s2"
_BATCHNORM_TENSORS = ("weight", "bias", "running_mean", "running_var")
_LISTED = 25


def _conv_kernel(weight):
    return np.transpose(weight, (2, 3, 1, 0))


def _conv_torch_shape(shape):
    kh, kw, c_in, c_out = shape
    return (c_out, c_in, kh, kw)


def _dense_kernel(weight):
    return weight.T


def _dense_torch_shape(shape):
    return tuple(shape[::-1])


def _walk(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _walk(layer)


def find_backbone(model):
    """The BN-Inception model inside `model` (or `model` itself): the one holding `conv1_7x7_s2`."""
    for candidate in [model, *(l for l in _walk(model) if isinstance(l, keras.Model))]:
        if any(layer.name == STEM_LAYER for layer in candidate.layers):
            return candidate
    raise ValueError(
        f"Expected a BN-Inception model, or a model holding one (a layer named "
        f"{STEM_LAYER!r}). Received: model={model.name!r}"
    )


def _find_head(model):
    heads = [l for l in model.layers if l.name == HEAD_LAYER and isinstance(l, keras.layers.Dense)]
    return heads[0] if heads else None


def _targets(backbone, head):
    """key (without prefix) -> (Keras variable, PyTorch -> Keras transform,
    PyTorch shape, BatchNorm tensor?)."""
    targets = {}

    def add(key, variable, transform=None, torch_shape=tuple, batchnorm=False):
        targets[key] = (variable, transform, torch_shape(variable.shape), batchnorm)

    for layer in backbone.layers:
        if isinstance(layer, keras.layers.Conv2D):
            add(f"{layer.name}.weight", layer.kernel, _conv_kernel, _conv_torch_shape)
            add(f"{layer.name}.bias", layer.bias)
        elif isinstance(layer, keras.layers.BatchNormalization):
            variables = (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
            for tensor, variable in zip(_BATCHNORM_TENSORS, variables):
                add(f"{layer.name}.{tensor}", variable, batchnorm=True)
    if head is not None:
        add("linear.weight", head.kernel, _dense_kernel, _dense_torch_shape)
        add("linear.bias", head.bias)
    return targets


def checkpoint_layout(state_dict):
    """"release" for the authors' `base.model.*` + `linear.*` keys, else "imagenet"."""
    return "release" if any(k.startswith(RELEASE_PREFIX) for k in state_dict) else "imagenet"


def _by_target(state_dict, layout):
    """target key -> (the file's key, value); keys ignored by design dropped.

    A release file's keys outside `base.model.` and the head keep their full
    name, so that they can only be unexpected.
    """
    entries = {}
    for key, value in state_dict.items():
        target = key
        if layout == "release" and key not in HEAD_KEYS:
            target = key[len(RELEASE_PREFIX):] if key.startswith(RELEASE_PREFIX) else "/" + key
        if target.startswith("last_linear.") or target.endswith(".num_batches_tracked"):
            continue
        entries[target] = (key, value)
    return entries


def _listing(title, items):
    items = sorted(items)
    shown = ", ".join(items[:_LISTED]) + (f", ... ({len(items) - _LISTED} more)" if len(items) > _LISTED else "")
    return f"{title} ({len(items)}): {shown}"


def _plan(state_dict, targets):
    """(variable, value) pairs, and the list of every problem found."""
    layout = checkpoint_layout(state_dict)
    entries = _by_target(state_dict, layout)
    prefix = RELEASE_PREFIX if layout == "release" else ""
    problems, plan, mismatched = [], [], []
    missing = [prefix + k for k in targets if k not in entries and k not in HEAD_KEYS]
    unexpected = [key for target, (key, _) in entries.items() if target not in targets]
    for target, (variable, transform, torch_shape, batchnorm) in targets.items():
        if target not in entries:
            continue
        key, value = entries[target]
        value = np.asarray(value)
        file_shape = value.shape
        if batchnorm and file_shape == (1, *torch_shape):
            value = value[0]  # the ImageNet file's (1, C)
        if value.shape != torch_shape:
            mismatched.append(f"{key}: {file_shape} in the file, {torch_shape} expected")
            continue
        value = value if transform is None else transform(value)
        plan.append((variable, value.astype(variable.dtype)))
    if missing:
        problems.append(_listing("missing keys", missing))
    if unexpected:
        problems.append(_listing("unexpected keys", unexpected))
    if mismatched:
        problems.append(_listing("shape mismatches", mismatched))
    return plan, problems


def load_bn_inception_weights(model, checkpoint):
    """Loads a PyTorch BN-Inception state_dict into a Keras model, by layer name.

    Every key is checked before any variable changes: a missing key, an
    unexpected key or a shape mismatch raises one error that lists them all.
    Keys `linear.*` (the authors' embedding head) need a Dense layer named
    "embedding" at the top of `model`; without them the head keeps its
    initialisation (ImageNet weights have no head).

    Args:
        model: a `keras_mdr.backbones.BNInception` model, or an encoder that
            holds one (e.g. `keras_mdr.training.build_encoder("bn_inception",
            ...)`) and optionally a Dense head "embedding".
        checkpoint: the path of a `.pth` file, or a state_dict already read
            (a mapping of names to NumPy arrays, see `read_state_dict`).

    Returns:
        The checkpoint's layout: "imagenet" or "release".

    Raises:
        ValueError: listing the missing keys, unexpected keys and shape
            mismatches, when there are any.

    Example:

    >>> import keras_mdr.backbones
    >>> model = keras_mdr.backbones.BNInception()
    >>> keras_mdr.backbones.load_bn_inception_weights(
    ...     model, "bn_inception-52deb4733.pth")  # doctest: +SKIP
    'imagenet'
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        state_dict = read_state_dict(checkpoint)
    else:
        state_dict = checkpoint
    layout = checkpoint_layout(state_dict)
    head = _find_head(model)
    plan, problems = _plan(state_dict, _targets(find_backbone(model), head))
    if head is None and any(k in state_dict for k in HEAD_KEYS):
        problems.append(
            "linear.* is the authors' embedding head: load the file into an encoder "
            "(keras_mdr.backbones.load_release_checkpoint, or "
            'keras_mdr.training.build_encoder("bn_inception", weights=path))'
        )
    if problems:
        where = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else "the state_dict"
        raise ValueError(
            f"Expected a BN-Inception state_dict matching model {model.name!r} "
            f"({layout} layout). Received: {where} with " + "; ".join(problems)
        )
    for variable, value in plan:
        variable.assign(value)
    return layout
