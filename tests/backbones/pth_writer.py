"""Writes .pth files opcode by opcode, for what PyTorch 2.13 cannot write any more.

- `write_python2_legacy`: a legacy file as PyTorch 0.3 under Python 2 wrote
  one (the 2017 BN-Inception ImageNet weights): strings as Python 2 byte
  strings (SHORT_BINSTRING), an `OrderedDict` reduced from a list of
  [key, value] pairs, tensors through `torch._utils._rebuild_tensor`
  (4 arguments), CUDA storage types, storage views (view metadata).
- `write_zip`: a zip-layout file from a hand-made pickle (malformed tensors).
- `write_legacy`: a legacy file around any pickle (hostile payloads).

The layouts are those of `torch/serialization.py` (`_legacy_save`,
`_save`): see keras_mdr/backbones/torch_checkpoint.py.
"""

import pickle
import struct
import zipfile

MAGIC = 0x1950A86A20F9469CFC6C
MARK, STOP, TUPLE, TUPLE2, REDUCE, BINPERSID = b"(", b".", b"t", b"\x86", b"R", b"Q"
EMPTY_LIST, APPENDS, EMPTY_DICT, SETITEMS, NONE, TRUE = b"]", b"e", b"}", b"u", b"N", b"\x88"


def py2_str(text):
    data = text.encode("ascii")
    return b"U" + bytes([len(data)]) + data


def py3_str(text):
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def integer(n):
    return b"J" + struct.pack("<i", n)


def global_(module, name):
    return b"c" + f"{module}\n{name}\n".encode("ascii")


def tuple_(*items):
    return MARK + b"".join(items) + TUPLE


def pickled(body):
    return b"\x80\x02" + body + STOP


def tensor(string, storage_module, storage_type, root, numel, view, offset, size, stride,
           rebuild="_rebuild_tensor"):
    """A `_rebuild_tensor(storage, offset, size, stride)` call on a persistent storage."""
    view_ops = NONE if view is None else tuple_(string(view[0]), integer(view[1]), integer(view[2]))
    pid = tuple_(string("storage"), global_(storage_module, storage_type), string(root),
                 string("cuda:0"), integer(numel), view_ops)
    args = [pid + BINPERSID, integer(offset),
            tuple_(*map(integer, size)), tuple_(*map(integer, stride))]
    if rebuild == "_rebuild_tensor_v2":
        args += [b"\x89", global_("collections", "OrderedDict") + b")" + REDUCE]
    return global_("torch._utils", rebuild) + tuple_(*args) + REDUCE


def python2_state_dict(entries):
    """An OrderedDict pickled the Python 2 way: OrderedDict([[key, value], ...])."""
    pairs = b"".join(EMPTY_LIST + MARK + py2_str(key) + value + APPENDS for key, value in entries)
    return pickled(global_("collections", "OrderedDict") + tuple_(EMPTY_LIST + MARK + pairs + APPENDS) + REDUCE)


def write_legacy(path, object_pickle, storages, string=py2_str):
    """A legacy file: magic, protocol, system info, the object, keys, then the storages.

    `storages`: {key: (element bytes, little-endian raw bytes)}, written sorted by key.
    """
    system = pickled(EMPTY_DICT + MARK + string("protocol_version") + integer(1001)
                     + string("little_endian") + TRUE + SETITEMS)
    keys = sorted(storages)
    key_list = pickled(EMPTY_LIST + MARK + b"".join(map(string, keys)) + APPENDS)
    with open(path, "wb") as f:
        f.write(pickle.dumps(MAGIC, protocol=2) + pickle.dumps(1001, protocol=2) + system)
        f.write(object_pickle + key_list)
        for key in keys:
            itemsize, raw = storages[key]
            f.write(struct.pack("<q", len(raw) // itemsize) + raw)
    return path


def write_python2_legacy(path, entries, storages):
    """`entries`: [(key, tensor opcodes)] made with `tensor(py2_str, ...)`."""
    return write_legacy(path, python2_state_dict(entries), storages)


def write_zip(path, object_pickle, storages, byteorder="little"):
    """A zip-layout file: `archive/data.pkl` and `archive/data/<key>` (stored, not compressed)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", object_pickle)
        archive.writestr("archive/byteorder", byteorder)
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
        archive.writestr("archive/version", "3\n")
    return path
