"""keras_mdr's PyTorch-free .pth reader, on files torch 2.13 wrote and on hand-written ones."""

import os
import pickle
import struct

import numpy as np
import pytest

import keras_mdr.backbones
import pth_writer
from keras_mdr.backbones import read_state_dict

READER_CASES = ("float32", "transposed", "offset_slice", "scalar", "empty", "float64", "float16",
                "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_reads_what_torch_saved(torch_lane, layout):
    """Every storage type and view geometry comes back with torch's values and dtypes
    (bfloat16 widened to float32, as the reference stores it)."""
    state = read_state_dict(torch_lane.dir / f"reader_{layout}.pth")
    assert list(state) == list(READER_CASES)
    for key, value in state.items():
        expected = torch_lane.reference[f"reader_{key}"]
        assert value.dtype == expected.dtype, key
        assert value.shape == expected.shape, key
        np.testing.assert_array_equal(value, expected, err_msg=key)
        # Its own memory (views of the file's bytes are read-only), in C order.
        assert value.flags.c_contiguous and value.flags.writeable, key


def test_both_layouts_of_bn_inception_agree(torch_lane):
    legacy = read_state_dict(torch_lane.dir / "imagenet_legacy.pth")
    zipped = read_state_dict(torch_lane.dir / "imagenet_zip.pth")
    assert list(legacy) == list(zipped)
    for key in legacy:
        np.testing.assert_array_equal(legacy[key], zipped[key], err_msg=key)
    assert legacy["conv1_7x7_s2.weight"].shape == (64, 3, 7, 7)
    assert legacy["conv1_7x7_s2_bn.running_var"].shape == (1, 64)
    assert legacy["last_linear.weight"].shape == (1000, 1024)
    release = read_state_dict(torch_lane.dir / "release_legacy.pth")
    assert release["base.model.conv1_7x7_s2_bn.num_batches_tracked"].dtype == np.int64
    assert release["linear.weight"].shape == (512, 1024)


def _floats(values):
    return 4, np.asarray(values, "<f4").tobytes()


def test_python2_era_legacy_file(tmp_path):
    """Byte strings, `_rebuild_tensor` (v1), CUDA storage types and storage views,
    as in the 2017 ImageNet weights. `weight` is a view at offset 2 (size 8) of
    root 1's 0..11; the tensor starts 1 further with strides (3, 1): 3..8."""
    s = pth_writer.py2_str
    entries = [
        ("weight", pth_writer.tensor(s, "torch.cuda", "FloatStorage", "1", 12, ("9", 2, 8), 1, (2, 3), (3, 1))),
        ("bn.bias", pth_writer.tensor(s, "torch.cuda", "FloatStorage", "2", 3, None, 0, (1, 3), (3, 1))),
        ("count", pth_writer.tensor(s, "torch", "LongStorage", "3", 1, None, 0, (), ())),
    ]
    storages = {"1": _floats(np.arange(12)), "2": _floats([0.5, -1, 2]),
                "3": (8, struct.pack("<q", 7))}
    path = pth_writer.write_python2_legacy(tmp_path / "py2.pth", entries, storages)
    state = read_state_dict(path)
    assert list(state) == ["weight", "bn.bias", "count"]
    np.testing.assert_array_equal(state["weight"], [[3, 4, 5], [6, 7, 8]])
    np.testing.assert_array_equal(state["bn.bias"], [[0.5, -1, 2]])
    assert state["count"].shape == () and state["count"] == 7


def test_big_endian_zip(tmp_path):
    s = pth_writer.py3_str
    body = (pth_writer.global_("collections", "OrderedDict") + b")" + pth_writer.REDUCE
            + pth_writer.MARK + s("w")
            + pth_writer.tensor(s, "torch", "FloatStorage", "0", 3, None, 0, (3,), (1,),
                                rebuild="_rebuild_tensor_v2")
            + pth_writer.SETITEMS)
    raw = np.asarray([1.5, -2, 3], ">f4").tobytes()
    path = pth_writer.write_zip(tmp_path / "be.pth", pth_writer.pickled(body), {"0": raw}, "big")
    np.testing.assert_array_equal(read_state_dict(path)["w"], [1.5, -2, 3])


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_refuses_to_run_code(tmp_path, layout):
    """A pickle that calls os.system is refused, and the command never runs."""
    marker = tmp_path / "ran"
    payload = pickle.dumps({"weight": _Hostile(marker)}, protocol=2)
    path = tmp_path / "hostile.pth"
    if layout == "zip":
        pth_writer.write_zip(path, payload, {})
    else:
        pth_writer.write_legacy(path, payload, {}, string=pth_writer.py3_str)
    with pytest.raises(ValueError, match=r"asks for the global (posix|os)\.system: refused"):
        keras_mdr.backbones.load_torch_checkpoint(path)
    assert not marker.exists()


def _zip_with_tensor(tmp_path, numel, size, stride, offset=0):
    s = pth_writer.py3_str
    body = (pth_writer.global_("collections", "OrderedDict") + b")" + pth_writer.REDUCE
            + pth_writer.MARK + s("w")
            + pth_writer.tensor(s, "torch", "FloatStorage", "0", numel, None, offset,
                                size, stride, rebuild="_rebuild_tensor_v2")
            + pth_writer.SETITEMS)
    return pth_writer.write_zip(tmp_path / "bad.pth", pth_writer.pickled(body),
                                {"0": np.zeros(numel, "<f4").tobytes()})


@pytest.mark.parametrize(
    "size, stride, offset, message",
    [
        ((3, 3), (3, 1), 0, "reads past its storage"),  # needs 9 of 4 elements
        ((2,), (1,), 3, "reads past its storage"),  # offset 3 + 2 elements
        ((2,), (-1,), 0, "malformed"),
    ],
)
def test_refuses_tensors_outside_their_storage(tmp_path, size, stride, offset, message):
    with pytest.raises(ValueError, match=message):
        read_state_dict(_zip_with_tensor(tmp_path, 4, size, stride, offset))


def test_clear_errors_for_files_that_are_not_checkpoints(tmp_path, torch_lane):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable pickle"):
        read_state_dict(text)
    with pytest.raises(ValueError, match="no such file"):
        read_state_dict(tmp_path / "missing.pth")
    data = (torch_lane.dir / "reader_legacy.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) - 10])
    with pytest.raises(ValueError, match="Expected a PyTorch checkpoint"):
        read_state_dict(cut)
    plain = tmp_path / "list.pth"
    pth_writer.write_zip(plain, pickle.dumps([1, 2], protocol=2), {})
    with pytest.raises(ValueError, match="Expected a state_dict"):
        read_state_dict(plain)
