"""keras_mdr.preprocessing: one table of input preprocessing, the same values
from the function, the pipelines' `preprocessor` and the `Preprocess` layer, and
a saved encoder that loads after `import keras_mdr` alone."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mdr
from keras_mdr import preprocessing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pixels():
    return np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")


@pytest.mark.parametrize("mode", preprocessing.APPLICATION_MODES)
def test_application_modes_match_keras(mode):
    images = _pixels()
    expected = getattr(keras.applications, mode).preprocess_input(images.copy())
    np.testing.assert_allclose(preprocessing.preprocess_images(images.copy(), mode), expected,
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(preprocessing.Preprocess(mode)(images.copy()), expected,
                               rtol=1e-6, atol=1e-6)


def test_simple_modes_and_identity():
    images = _pixels()
    np.testing.assert_allclose(preprocessing.preprocess_images(images, "unit"), images / 255.0)
    np.testing.assert_allclose(preprocessing.preprocess_images(images, "symmetric"),
                               images / 127.5 - 1.0, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(preprocessing.Preprocess(None)(images), images)
    custom = lambda x: x * 0  # noqa: E731
    assert preprocessing.preprocessor(custom) is custom


def test_one_table_for_pipelines_and_layer():
    # The data pipelines' `preprocessor` is the same function as the layer's.
    assert keras_mdr.data.preprocessor is preprocessing.preprocessor
    image = tf.constant(_pixels()[0])
    for mode in preprocessing.MODES:
        np.testing.assert_allclose(
            preprocessing.preprocessor(mode)(tf.identity(image)),
            preprocessing.Preprocess(mode)(image[None])[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["bn_inception", "Unit", 3, "resnet-50"])
def test_unknown_modes_are_refused(mode):
    with pytest.raises(ValueError, match=r"Expected the preprocessing mode .*resnet50.*"
                       r"Received: mode="):
        preprocessing.Preprocess(mode)
    with pytest.raises(ValueError, match="Received: mode="):
        preprocessing.preprocessor(mode)


def test_layer_config_round_trip():
    layer = preprocessing.Preprocess("inception_v3", name="pre")
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == "keras_mdr>Preprocess"
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, preprocessing.Preprocess) and clone.mode == "inception_v3"


def test_saved_encoder_loads_after_import_keras_mdr_alone(tmp_path):
    """issue 12: `Could not locate class 'Preprocess'` after `import keras_mdr`.

    A model holding the layer is saved here and loaded in a fresh process that
    imports nothing of keras_mdr but the top-level package.
    """
    inputs = keras.Input((8, 8, 3))
    x = preprocessing.Preprocess("symmetric", name="preprocess")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="embedding")(x)
    model = keras.Model(inputs, outputs)
    path = str(tmp_path / "last.keras")
    model.save(path)
    images = _pixels()[:, :, :, :].repeat(2, axis=1).repeat(2, axis=2)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "expected.npy", model.predict(images, verbose=0))
    script = textwrap.dedent(f"""
        import keras
        import numpy as np
        import keras_mdr
        model = keras.models.load_model({path!r})
        layer = model.get_layer("preprocess")
        assert type(layer).__name__ == "Preprocess" and layer.mode == "symmetric", layer
        got = model.predict(np.load({str(tmp_path / 'images.npy')!r}), verbose=0)
        np.testing.assert_allclose(got, np.load({str(tmp_path / 'expected.npy')!r}), rtol=1e-6)
        print("LOADED")
    """)
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=env, timeout=300)
    assert process.returncode == 0 and "LOADED" in process.stdout, process.stderr[-3000:]
