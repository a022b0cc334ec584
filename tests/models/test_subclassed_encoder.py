"""issue 12 item 10b: a subclassed encoder builds inside MDRModel without Keras' warning."""

import warnings

import keras
import numpy as np

import keras_mdr


class _Encoder(keras.Model):
    """A subclassed encoder with no build() of its own (its layers made in __init__)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(8)

    def call(self, images):
        return self.dense(self.flatten(images))


def test_subclassed_encoder_builds_without_warnings():
    images = np.random.default_rng(0).uniform(0, 255, (16, 4, 4, 3)).astype("float32")
    labels = np.repeat(np.arange(4), 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = _Encoder()
        model = keras_mdr.MDRModel(encoder)
        model.compile(optimizer="adam", loss=keras_mdr.MDRTripletLoss(seed=0))
        model.fit(images, labels, batch_size=16, epochs=1, verbose=0)
        embeddings = model.predict(images, verbose=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert not [m for m in messages if "build()" in m or "unbuilt state" in m], messages
    assert encoder.built and encoder.dense.built and encoder.dense.kernel.shape == (48, 8)
    assert embeddings.shape == (16, 8)
    np.testing.assert_allclose(embeddings, encoder(images).numpy(), rtol=1e-5, atol=1e-5)
