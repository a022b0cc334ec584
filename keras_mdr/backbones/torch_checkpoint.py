"""Reading PyTorch `.pth` checkpoints with the standard library and NumPy.

PyTorch writes a checkpoint in one of two layouts:

- zip (PyTorch >= 1.6): an archive `<name>/data.pkl` + `<name>/data/<key>`
  (+ `byteorder`, `version`). `data.pkl` pickles the object (for a state_dict,
  an `OrderedDict` of name -> tensor); each tensor is a call to
  `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` whose
  storage is a persistent id `("storage", torch.FloatStorage, key, location,
  numel)`; the storage's elements are the raw bytes of `data/<key>`.
- legacy (before 1.6, and `torch.save(..., _use_new_zipfile_serialization=False)`):
  consecutive pickles in one file: the magic number 0x1950a86a20f9469cfc6c,
  the protocol version 1001, a dict of system info (`little_endian`, ...), the
  object (persistent ids `("storage", type, key, location, numel,
  view_metadata)`), the sorted list of storage keys; then, for each key in
  that order, the element count as an 8-byte integer and the raw elements.
  Files written by Python 2 (the 2017 BN-Inception ImageNet weights) pickle
  strings as byte strings and tensors with `torch._utils._rebuild_tensor`;
  both are read.

Unpickling is restricted: a pickle may name only `collections.OrderedDict`,
the tensor rebuild functions of `torch._utils` (answered by our own functions
that record the tensor's geometry) and the `torch` / `torch.cuda` storage
types (answered by markers). Any other global, which in a hostile file could be
`os.system` or anything else a pickle can call, is refused with a ValueError
before it is looked up, so reading a checkpoint never runs code from it. Every
tensor's offset, shape and strides are checked against its storage before
the bytes are viewed.
"""

import collections
import os
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage type name -> NumPy dtype code; bfloat16 is read as raw
# uint16 and widened to float32 (NumPy has no bfloat16).
STORAGE_DTYPES = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "u2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _StorageType:
    """What the pickle gets for `torch.FloatStorage` and its kind: a name."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


class _Storage:
    """A storage the pickle refers to: elements [offset, offset + numel) of root `key`."""

    __slots__ = ("key", "offset", "numel")

    def __init__(self, key, offset, numel):
        self.key, self.offset, self.numel = key, offset, numel


class _Tensor:
    """A tensor's geometry, made into an array once the storages are read."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    # Stands in for torch._utils._rebuild_tensor (Python 2 era) and
    # _rebuild_tensor_v2 (requires_grad, backward_hooks[, metadata] unused).
    del unused
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    del unused
    return data


_REBUILD_FUNCTIONS = {
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_tensor_v2": _rebuild_tensor,
    "_rebuild_parameter": _rebuild_parameter,
}


def _fail(path, message):
    raise ValueError(f"Expected a PyTorch checkpoint. Received: {path!r}, {message}")


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that answers only the globals a state_dict needs.

    `roots` collects, per storage key, the `(dtype code, numel)` the pickle
    declared, for the data that follows (legacy) or the archive's entries (zip).
    """

    def __init__(self, file, path, roots):
        # Python 2 byte strings (keys of the 2017 files) decode as UTF-8, as torch.load does.
        super().__init__(file, encoding="utf-8")
        self._path, self._roots = path, roots

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in _REBUILD_FUNCTIONS:
            return _REBUILD_FUNCTIONS[name]
        if module in ("torch", "torch.cuda") and name in STORAGE_DTYPES:
            return _StorageType(name)
        _fail(
            self._path,
            f"whose pickle asks for the global {module}.{name}: refused. Only a "
            "state_dict (collections.OrderedDict, torch tensors and storages) is "
            "read; unpickling anything else could run code from the file.",
        )

    def persistent_load(self, pid):
        if not (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and _is_count(pid[4])
        ):
            _fail(self._path, f"with a persistent id that is not a storage: {pid!r}")
        dtype, key, numel = STORAGE_DTYPES[pid[1].name], pid[2], pid[4]
        if self._roots.setdefault(key, (dtype, numel)) != (dtype, numel):
            _fail(self._path, f"whose storage {key!r} is declared twice differently")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return _Storage(key, 0, numel)
        # Before PyTorch 0.4, a storage could be a view of another: (view key, offset, size).
        if not (isinstance(view, tuple) and len(view) == 3 and _is_count(view[1])
                and _is_count(view[2]) and view[1] + view[2] <= numel):
            _fail(self._path, f"with a storage view out of its storage: {pid!r}")
        return _Storage(key, view[1], view[2])


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _load_pickle(file, path, roots):
    try:
        return _RestrictedUnpickler(file, path, roots).load()
    except (pickle.UnpicklingError, EOFError, UnicodeDecodeError) as error:
        _fail(path, f"that is not a readable pickle ({type(error).__name__}: {error})")


def _array(tensor, arrays, path):
    """The NumPy array of one tensor, its geometry checked against its storage."""
    storage, offset, size, stride = tensor.storage, tensor.offset, tensor.size, tensor.stride
    if not (
        isinstance(storage, _Storage)
        and _is_count(offset)
        and isinstance(size, tuple) and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(_is_count(n) for n in size + stride)
    ):
        _fail(path, "with a tensor whose storage, offset, size or stride is malformed")
    flat = arrays[storage.key][storage.offset : storage.offset + storage.numel]
    if 0 in size:
        return np.zeros(size, flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        _fail(path, f"with a tensor of size {size} that reads past its storage "
                    f"({flat.size} elements)")
    strides = tuple(s * flat.itemsize for s in stride)
    view = np.lib.stride_tricks.as_strided(flat[offset:], size, strides, writeable=False)
    return np.array(view, order="C")


def _materialise(obj, arrays, dtypes, path):
    if isinstance(obj, _Tensor):
        value = _array(obj, arrays, path)
        if dtypes[obj.storage.key] == "u2":
            return (value.astype(np.uint32) << 16).view(np.float32)
        return value
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v, arrays, dtypes, path)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, arrays, dtypes, path) for v in obj)
    if isinstance(obj, (_Storage, _StorageType)):
        _fail(path, "holding a bare storage rather than tensors")
    return obj


def _buffer(raw, dtype, byteorder, key, numel, path):
    dtype = np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
    if len(raw) != numel * dtype.itemsize:
        _fail(path, f"whose storage {key!r} has {len(raw)} bytes, not {numel} x {dtype.itemsize}")
    return np.frombuffer(raw, dtype)


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        pickles = sorted(n for n in names if n == "data.pkl" or n.endswith("/data.pkl"))
        if len(pickles) != 1:
            _fail(path, f"a zip archive with {len(pickles)} data.pkl entries (expected 1)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii").strip()
        if byteorder not in ("little", "big"):
            _fail(path, f"whose byteorder record says {byteorder!r}")
        roots = {}
        with archive.open(pickles[0]) as file:
            obj = _load_pickle(file, path, roots)
        arrays = {}
        for key, (dtype, numel) in roots.items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                _fail(path, f"whose storage {key!r} has no entry {entry!r}")
            arrays[key] = _buffer(archive.read(entry), dtype, byteorder, key, numel, path)
    return _materialise(obj, arrays, {k: d for k, (d, _) in roots.items()}, path)


def _read_legacy(file, path):
    header = [_load_pickle(file, path, {}) for _ in range(3)]
    magic, protocol, system = header
    if magic != LEGACY_MAGIC_NUMBER:
        _fail(path, "neither a zip archive nor a legacy file (wrong magic number)")
    if protocol != LEGACY_PROTOCOL_VERSION:
        _fail(path, f"a legacy file of protocol {protocol!r} (expected {LEGACY_PROTOCOL_VERSION})")
    byteorder = "little" if not isinstance(system, dict) or system.get("little_endian", True) else "big"
    roots = {}
    obj = _load_pickle(file, path, roots)
    keys = _load_pickle(file, path, {})
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        _fail(path, "whose list of storage keys is malformed")
    if sorted(keys) != sorted(roots):
        _fail(path, f"whose storage list {sorted(keys)[:5]}... does not match the tensors' storages")
    arrays = {}
    for key in keys:
        dtype, numel = roots[key]
        count_bytes = file.read(8)
        if len(count_bytes) != 8:
            _fail(path, f"cut short before storage {key!r}")
        (count,) = struct.unpack("<q" if byteorder == "little" else ">q", count_bytes)
        if count != numel:
            _fail(path, f"whose storage {key!r} holds {count} elements, not {numel}")
        raw = file.read(numel * np.dtype(dtype).itemsize)
        arrays[key] = _buffer(raw, dtype, byteorder, key, numel, path)
    return _materialise(obj, arrays, {k: d for k, (d, _) in roots.items()}, path)


def load_torch_checkpoint(path):
    """Reads a PyTorch `.pth` file into NumPy, without PyTorch.

    Both layouts `torch.save` writes are read: the zip archive (PyTorch >= 1.6)
    and the legacy one (older files, Python 2 ones included). Unpickling is
    restricted to what a state_dict holds; any other object is refused.

    Args:
        path: the `.pth` file.

    Returns:
        The saved object with every tensor as a NumPy array (its own copy, in
        C order): for a state_dict, an `OrderedDict` name -> array. bfloat16
        tensors become float32.

    Raises:
        ValueError: for a file that is not a PyTorch checkpoint, is truncated,
            or whose pickle asks for anything but `OrderedDict`, tensors and
            storages.

    Example:

    >>> import keras_mdr.backbones
    >>> state = keras_mdr.backbones.load_torch_checkpoint("cars196.pth")  # doctest: +SKIP
    >>> state["linear.weight"].shape  # doctest: +SKIP
    (512, 1024)

    Reference:
        PyTorch's `torch/serialization.py` (the two layouts `torch.save` writes).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Expected the path of a .pth file. Received: path={path!r} (no such file)")
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    with open(path, "rb") as file:
        return _read_legacy(file, path)


def read_state_dict(path):
    """Reads a PyTorch state_dict (name -> tensor) into an `OrderedDict` of NumPy arrays.

    Args:
        path: a `.pth` file holding a state_dict, in either layout (see
            `load_torch_checkpoint`).

    Returns:
        `collections.OrderedDict` from parameter or buffer name to array.

    Raises:
        ValueError: when the file does not hold a flat mapping of names to tensors.

    Example:

    >>> import keras_mdr.backbones
    >>> state = keras_mdr.backbones.read_state_dict("bn_inception-52deb4733.pth")  # doctest: +SKIP
    >>> state["conv1_7x7_s2.weight"].shape  # doctest: +SKIP
    (64, 3, 7, 7)
    """
    obj = load_torch_checkpoint(path)
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()
    ):
        kind = type(obj).__name__
        keys = list(obj)[:5] if isinstance(obj, dict) else []
        raise ValueError(
            "Expected a state_dict (a mapping of names to tensors). Received: "
            f"path={path!r} holding a {kind}" + (f" with keys {keys}..." if keys else "")
        )
    return collections.OrderedDict(obj)
