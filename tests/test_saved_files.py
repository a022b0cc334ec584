"""issue 12 item 9: every kind of file keras_mdr saves loads after `import keras_mdr` alone.

Saved here, loaded in one fresh process whose only keras_mdr import is the
top-level package:
- `.keras` encoders of each backbone family with custom layers (the paper's
  BN-Inception: BGR mean subtraction and ceil-mode pooling; ResNet-50 with
  the release's batch normalisation);
- a `.keras` `MDRModel` compiled with `MDRTripletLoss` (its levels and
  moving statistics), as a run's checkpoints hold;
- an exported SavedModel, loaded both by TensorFlow and as a Keras layer;
- an `EmbeddingIndex` (its own test: tests/test_index.py).
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

import keras_mdr
from keras_mdr.export import export_for_serving
from keras_mdr.training import build_encoder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32


def _save_everything(tmp_path, images):
    expected = {}
    for name, kwargs in {
        "bn_inception": dict(backbone="bn_inception", weights="none"),
        "resnet50_release_bn": dict(backbone="resnet50", weights="none", batchnorm="release"),
    }.items():
        keras.utils.set_random_seed(0)
        encoder = build_encoder(embedding_dim=8, image_size=SIZE, **kwargs)
        encoder.save(tmp_path / f"{name}.keras")
        expected[name] = encoder.predict(images, verbose=0)
    keras.utils.set_random_seed(1)
    small = build_encoder("small_cnn", "none", embedding_dim=8, image_size=SIZE)
    model = keras_mdr.MDRModel(small)
    model.compile(optimizer="adam", loss=keras_mdr.MDRTripletLoss(seed=0))
    model.fit(images, np.arange(len(images)) % 4, batch_size=len(images), epochs=1, verbose=0)
    model.save(tmp_path / "checkpoint.keras")
    np.save(tmp_path / "levels.npy", model.mdr_regularizer.levels.numpy())
    expected["checkpoint"] = model.predict(images, verbose=0)
    export_for_serving(small, tmp_path / "export", image_size=SIZE, resize_size=SIZE)
    expected["export"] = small.predict(images, verbose=0)
    np.savez(tmp_path / "expected.npz", images=images, **expected)


CHILD = """
import json, sys
import numpy as np
import keras
import tensorflow as tf
import keras_mdr

directory = sys.argv[1]
data = np.load(directory + "/expected.npz")
images = data["images"]
report = {}
for name in ("bn_inception", "resnet50_release_bn", "checkpoint"):
    model = keras.models.load_model(f"{directory}/{name}.keras")
    report[name] = [type(model).__name__,
                    float(np.abs(model.predict(images, verbose=0) - data[name]).max())]
loaded = keras.models.load_model(f"{directory}/checkpoint.keras")
report["checkpoint_loss"] = type(loaded.loss).__name__
report["levels"] = loaded.mdr_regularizer.levels.numpy().tolist()
served = tf.saved_model.load(directory + "/export/1").signatures["serving_default"]
report["export"] = float(np.abs(served(images=tf.constant(images))["embeddings"].numpy()
                                - data["export"]).max())
layer = keras.layers.TFSMLayer(directory + "/export/1", call_endpoint="serving_default")
report["export_layer"] = float(np.abs(layer(images)["embeddings"].numpy() - data["export"]).max())
print("REPORT " + json.dumps(report))
"""


def test_every_saved_file_loads_after_import_keras_mdr_alone(tmp_path):
    images = np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
    _save_everything(tmp_path, images)
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path)],
                             capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in process.stdout.splitlines() if line.startswith("REPORT ")]
    assert process.returncode == 0 and lines, process.stderr[-3000:]
    report = json.loads(lines[0][len("REPORT "):])
    assert report["bn_inception"][0] == "Functional" and report["bn_inception"][1] < 1e-4
    assert report["resnet50_release_bn"][1] < 1e-4, report
    assert report["checkpoint"][0] == "MDRModel" and report["checkpoint"][1] < 1e-5, report
    assert report["checkpoint_loss"] == "MDRTripletLoss", report
    np.testing.assert_allclose(report["levels"], np.load(tmp_path / "levels.npy"), rtol=1e-6)
    assert report["export"] < 1e-4 and report["export_layer"] < 1e-4, report
