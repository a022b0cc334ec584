"""The MDR authors' checkpoint layout as a keras_mdr encoder, and examples/evaluate_checkpoint.py.

The torch lane (conftest.py) writes a BN-Inception + 512-d head in the key
layout of the release's cars196.pth / cub200.pth / ... (`base.model.*`,
`num_batches_tracked`, `last_linear`, `linear.*`), in the legacy layout
(PyTorch 1.3 wrote the real ones) and the zip one. Norm as in
test_bn_inception.py: the largest over images of ||ours - torch||_2 /
||torch||_2, at most 1e-4.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

import keras
import keras_mdr.backbones
import keras_mdr.data
import keras_mdr.evaluation
import keras_mdr.training
from keras_mdr.backbones import read_state_dict
from parity import RTOL, loading_error, relative_error

REPO = Path(__file__).resolve().parents[2]
CARS_KS = (1, 2, 4, 8)


@pytest.mark.parametrize("route", ["build_encoder_legacy", "build_encoder_zip", "load_release_checkpoint"])
def test_release_layout_embeddings_match_torch(torch_lane, route):
    """The authors' layout (base.model.* + linear.*) fills backbone and head."""
    if route == "load_release_checkpoint":
        encoder = keras_mdr.backbones.load_release_checkpoint(torch_lane.dir / "release_zip.pth")
    else:
        path = torch_lane.dir / f"release_{route.rsplit('_', 1)[1]}.pth"
        encoder = keras_mdr.training.build_encoder("bn_inception", str(path), 512, 224)
    embeddings = encoder.predict_on_batch(torch_lane.reference["images"])
    error = relative_error(embeddings, torch_lane.reference["embeddings"])
    print(f"\n[BN-Inception parity] {route}: embeddings relative error {error:.2e}")
    assert error <= RTOL


def test_imagenet_weights_leave_the_head_alone(torch_lane):
    encoder = keras_mdr.training.build_encoder(
        "bn_inception", str(torch_lane.dir / "imagenet_zip.pth"), 64, 224)
    # The encoder's Preprocess is the identity for this backbone.
    backbone = encoder.get_layer("bn_inception")
    np.testing.assert_allclose(
        backbone.predict_on_batch(torch_lane.reference["images"]),
        torch_lane.reference["features"], rtol=1e-4, atol=1e-4)
    assert encoder.output_shape == (None, 64)


def test_release_checkpoint_errors(torch_lane):
    release = torch_lane.dir / "release_zip.pth"
    state = dict(read_state_dict(release))
    state["base.model.conv1_7x7_s2.bias"] = np.zeros(65, "float32")
    state["stray.weight"] = np.zeros(1, "float32")
    encoder = keras_mdr.training.build_encoder("bn_inception", "none", 512, 64)
    message = loading_error(encoder, state)
    assert "base.model.conv1_7x7_s2.bias: (65,) in the file, (64,) expected" in message
    assert "unexpected keys (1): stray.weight" in message
    with pytest.raises(ValueError, match="Expected an MDR authors' checkpoint"):
        keras_mdr.backbones.load_release_checkpoint(torch_lane.dir / "imagenet_zip.pth")


def test_encoder_saves_and_reloads(tmp_path):
    encoder = keras_mdr.training.build_encoder("bn_inception", "none", 32, 64)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = encoder.predict_on_batch(images)
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict_on_batch(images), expected, rtol=1e-5, atol=1e-5)


def test_build_encoder_checks():
    with pytest.raises(ValueError, match="bn_inception-52deb4733.pth"):
        keras_mdr.training.build_encoder("bn_inception", "imagenet", 512, 224)
    with pytest.raises(ValueError, match="image_size >= 31"):
        keras_mdr.training.build_encoder("bn_inception", "none", 512, 30)


def test_query_against_gallery():
    """In-Shop's protocol: queries ranked against the gallery only."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    split = lambda idx, name: keras_mdr.data.Split(  # noqa: E731
        labels=np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 3])[idx], images=images[idx], name=name)
    splits = keras_mdr.data.DatasetSplits(
        name="inshop", train=split([9], "train"), test=split(range(9), "test"),
        query=split(range(3), "query"), gallery=split(range(3, 9), "gallery"))
    encoder = keras_mdr.training.build_encoder("bn_inception", "none", 16, 64)
    transform = keras_mdr.data.grayscale_transform(preprocess=None)
    recall, embedded = keras_mdr.backbones.recall_on_test_protocol(encoder, splits, (1, 2), transform)
    assert set(embedded) == {"query", "gallery"}
    (q, q_labels), (g, g_labels) = embedded["query"], embedded["gallery"]
    assert q.shape == (3, 16) and g.shape == (6, 16)
    np.testing.assert_allclose(q, encoder.predict_on_batch(images[:3].astype("float32")), rtol=1e-5, atol=1e-5)
    expected = keras_mdr.evaluation.recall_at_k(q, q_labels, (1, 2), gallery_embeddings=g, gallery_labels=g_labels)
    assert recall == {f"recall@{k}": v for k, v in expected.items()}


# Cars-196 in its original layout: car_ims/NNNNNN.jpg + cars_annos.mat, classes
# 1-98 train, 99-196 test. Classes differ by a faint tint under strong noise, so
# that retrieval is imperfect (R@1 72% with the torch lane's random network) and
# the printed numbers are not all 100.
_CARS_CLASSES = {1: 1, 2: 1, 99: 3, 100: 3, 101: 3, 150: 3, 195: 3, 196: 3}


def _write_cars196(root):
    rng = np.random.default_rng(0)
    dtype = [(f, "O") for f in ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")]
    rows = []
    for number, count in _CARS_CLASSES.items():
        tint = 128 + rng.uniform(-10, 10, 3)
        for _ in range(count):
            relative = f"car_ims/{len(rows) + 1:06d}.jpg"
            pixels = np.clip(tint + rng.normal(0, 90, (48, 64, 3)), 0, 255).astype(np.uint8)
            os.makedirs(os.path.dirname(os.path.join(root, relative)), exist_ok=True)
            Image.fromarray(pixels).save(os.path.join(root, relative))
            rows.append((relative, np.uint16(1), np.uint16(1), np.uint16(64), np.uint16(48),
                         np.uint8(number), np.uint8(number > 98)))
    annotations = np.empty((1, len(rows)), dtype=dtype)
    for i, row in enumerate(rows):
        annotations[0, i] = row
    names = np.array([[f"Make Model {i} 2012" for i in range(1, 197)]], dtype=object)
    scipy.io.savemat(os.path.join(root, "cars_annos.mat"),
                     {"annotations": annotations, "class_names": names})
    return root


def _printed_recall(stdout):
    header = next(line for line in stdout.splitlines() if "R@1" in line)
    row = next(line for line in stdout.splitlines() if line.strip().startswith("checkpoint |"))
    names = [cell.strip() for cell in header.split("|")[1:]]
    values = [float(cell) for cell in row.split("|")[1:]]
    return dict(zip(names, values))


def test_evaluate_checkpoint_example_end_to_end(torch_lane, tmp_path):
    """examples/evaluate_checkpoint.py on a tiny Cars-196 with a torch-written
    checkpoint (legacy layout, as the release's), in a fresh process: its table
    and JSON equal Recall@K computed here on embeddings of the same images."""
    data_dir = _write_cars196(str(tmp_path / "cars"))
    checkpoint = tmp_path / "cars196.pth"
    shutil.copy(torch_lane.dir / "release_legacy.pth", checkpoint)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "evaluate_checkpoint.py"), f"--checkpoint={checkpoint}",
         "--dataset=cars196", f"--data_dir={data_dir}", "--batch_size=8", "--verbose=0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Another route to the same weights than the example's (both checked against torch above).
    encoder = keras_mdr.training.build_encoder("bn_inception", str(checkpoint), 512, 224)
    splits = keras_mdr.data.load_dataset("cars196", data_dir)
    dataset = keras_mdr.data.eval_dataset(splits.test, 8, transform=keras_mdr.data.eval_transform())
    embeddings, labels = keras_mdr.evaluation.embed_dataset(encoder.predict_on_batch, dataset, verbose=0)
    assert embeddings.shape == (18, 512)
    expected = keras_mdr.evaluation.recall_at_k(embeddings, labels, CARS_KS)

    assert 0 < expected[1] < 1, expected
    printed = _printed_recall(proc.stdout)
    assert printed == {f"R@{k}": round(100 * v, 2) for k, v in expected.items()}, proc.stdout
    with open(tmp_path / "cars196.cars196.json") as f:
        results = json.load(f)
    assert results["recall"] == {f"recall@{k}": v for k, v in expected.items()}
    assert results["ks"] == list(CARS_KS) and results["num_queries"] == 18
    assert results["transform"] == "resize 256 x 256, centre crop 224"
    assert re.search(r"Results written to .*cars196\.cars196\.json", proc.stdout)


def test_evaluate_checkpoint_example_reports_a_bad_file_in_one_line(tmp_path):
    (tmp_path / "cars").mkdir()
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "evaluate_checkpoint.py"),
         f"--checkpoint={tmp_path / 'missing.pth'}", "--dataset=cars196", f"--data_dir={tmp_path / 'cars'}"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing.pth" in errors[0], proc.stderr[-2000:]
