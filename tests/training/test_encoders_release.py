"""The release's BatchNorm mode and head init in `build_encoder`.

BatchNorm "release": after real training steps every moving mean and
variance is bitwise what it was, and every gamma and beta has moved, for
every backbone we offer (weights=None, the smallest input each accepts).
Random weights with moving statistics 0 / 1 make a deep backbone's
activations explode or vanish (gradients of 1e22 in ResNet-50, 1e-12 in
MobileNetV2's first layer), so each test first gives the BatchNorm layers
statistics like pretrained ones: every layer's batch mean and variance of
one forward pass in training mode on the test images (momentum 0), scaled
by random factors in [0.9, 1.1] so that they are no batch's statistics.
The fit runs eagerly (`run_eagerly=True`: the same train step, without
tracing, which costs a minute per backbone on 2 cores).

Head "torch": PyTorch `nn.Linear`'s default, weights and bias uniform in
+-1/sqrt(fan_in), fan_in the backbone's feature size.
"""

import math

import keras
import numpy as np
import pytest
import scipy.stats

from keras_mdr.training import batchnorm as batchnorm_lib
from keras_mdr.training import encoders


def _encoder(backbone, batchnorm, embedding_dim=8, **kwargs):
    size = encoders.MIN_IMAGE_SIZE.get(backbone, 8)
    keras.utils.set_random_seed(0)
    return encoders.build_encoder(backbone, "none", embedding_dim, size, batchnorm=batchnorm,
                                  **kwargs)


def _batchnorms(model):
    return [l for l in batchnorm_lib.all_layers(model) if isinstance(l, keras.layers.BatchNormalization)]


def _pretrained_like_statistics(model, images, rng):
    """Sets every BatchNorm's moving statistics to its batch statistics on
    `images` (one training-mode pass of a "train" copy), times U(0.9, 1.1)."""
    backbone = next(l for l in model.layers if isinstance(l, keras.Model))
    copy = keras.models.clone_model(backbone, clone_function=_as_plain_batchnorm, recursive=True)
    copy.set_weights(backbone.get_weights())
    for layer in _batchnorms(copy):
        layer.momentum = 0.0
    copy(model.get_layer("preprocess")(images), training=True)
    for mine, theirs in zip(_batchnorms(backbone), _batchnorms(copy)):
        mine.moving_mean.assign(theirs.moving_mean * rng.uniform(0.9, 1.1, mine.moving_mean.shape))
        mine.moving_variance.assign(
            theirs.moving_variance * rng.uniform(0.9, 1.1, mine.moving_variance.shape))


def _as_plain_batchnorm(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        return keras.layers.BatchNormalization.from_config(layer.get_config())
    return layer.__class__.from_config(layer.get_config())


def _images(model, rng, n=8):
    size = model.input_shape[1]
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32")


def _snapshot(model):
    """name -> {"mean", "variance", "gamma", "beta"} (the ones the layer has)."""
    snapshot = {}
    for layer in _batchnorms(model):
        values = {"mean": layer.moving_mean.numpy(), "variance": layer.moving_variance.numpy()}
        for key in ("gamma", "beta"):
            if getattr(layer, key) is not None:
                values[key] = getattr(layer, key).numpy()
        snapshot[layer.name] = values
    return snapshot


def _fit_two_steps(model, images, rng):
    """A real `fit`: mse towards random targets, Adam, two batches of 4 images."""
    targets = rng.normal(size=(len(images), model.output_shape[-1])).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", run_eagerly=True)
    model.fit(images, targets, batch_size=4, epochs=1, shuffle=False, verbose=0)


def _check_release_training(before, after):
    """Statistics bitwise kept; every gamma and beta moved. Returns the fraction
    of gamma / beta entries that moved."""
    moved = total = 0
    for name, values in before.items():
        for key in ("mean", "variance"):
            assert np.array_equal(values[key], after[name][key]), f"{name}: moving {key} changed"
        for key in ("gamma", "beta"):
            if key in values:
                changed = values[key] != after[name][key]
                assert changed.any(), f"{name}: {key} did not move"
                moved, total = moved + changed.sum(), total + changed.size
    return moved / total


@pytest.mark.parametrize("backbone", sorted(encoders.BACKBONES))
def test_release_batchnorm_keeps_statistics_and_trains_gamma_beta(backbone):
    rng = np.random.default_rng(0)
    encoder = _encoder(backbone, "release")
    layers = _batchnorms(encoder)
    assert layers and all(isinstance(l, batchnorm_lib.InferenceBatchNormalization) for l in layers)
    images = _images(encoder, rng)
    _pretrained_like_statistics(encoder, images, rng)
    before = _snapshot(encoder)
    _fit_two_steps(encoder, images, rng)
    fraction = _check_release_training(before, _snapshot(encoder))
    print(f"\n[batchnorm] {backbone}: {len(layers)} layers, statistics unchanged, "
          f"{fraction:.1%} of gamma / beta entries moved")


def test_frozen_and_train_modes_fail_the_release_check():
    """The check above catches both ways of getting it wrong: "frozen" keeps
    gamma and beta fixed, "train" updates the statistics."""
    rng = np.random.default_rng(1)
    for mode, message in (("frozen", "did not move"), ("train", "changed")):
        encoder = _encoder("small_cnn", mode)
        images = _images(encoder, rng)
        _pretrained_like_statistics(encoder, images, rng)
        before = _snapshot(encoder)
        _fit_two_steps(encoder, images, rng)
        with pytest.raises(AssertionError, match=message):
            _check_release_training(before, _snapshot(encoder))


def test_release_batchnorm_normalises_with_the_moving_statistics_in_training():
    """y = gamma (x - mean) / sqrt(var + eps) + beta with the moving values,
    whatever `training` says."""
    rng = np.random.default_rng(2)
    layer = batchnorm_lib.InferenceBatchNormalization(epsilon=1e-3)
    x = rng.normal(2.0, 3.0, (16, 4)).astype("float32")
    layer.build(x.shape)
    mean, variance = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    layer.set_weights([gamma, beta, mean, variance])
    want = gamma * (x - mean) / np.sqrt(variance + 1e-3) + beta
    for training in (True, False, None):
        np.testing.assert_allclose(layer(x, training=training).numpy(), want, rtol=1e-5, atol=1e-5)
    assert [w.name for w in layer.trainable_weights] == ["gamma", "beta"]


def test_release_encoder_round_trips_in_a_keras_file(tmp_path):
    rng = np.random.default_rng(3)
    encoder = _encoder("small_cnn", "release")
    x = _images(encoder, rng, n=4)
    _pretrained_like_statistics(encoder, x, rng)
    encoder.save(tmp_path / "encoder.keras")
    restored = keras.saving.load_model(tmp_path / "encoder.keras")
    assert all(isinstance(l, batchnorm_lib.InferenceBatchNormalization) for l in _batchnorms(restored))
    np.testing.assert_array_equal(restored.predict(x, verbose=0), encoder.predict(x, verbose=0))


def test_batchnorm_mode_arguments():
    assert batchnorm_lib.batchnorm_mode() == "frozen"
    assert batchnorm_lib.batchnorm_mode(freeze_batchnorm=True) == "frozen"
    assert batchnorm_lib.batchnorm_mode(freeze_batchnorm=False) == "train"
    assert batchnorm_lib.batchnorm_mode("release") == "release"
    with pytest.raises(ValueError, match="Received: batchnorm='release', freeze_batchnorm=True"):
        batchnorm_lib.batchnorm_mode("release", True)
    with pytest.raises(ValueError, match="Received: batchnorm='eval'"):
        encoders.build_encoder("small_cnn", "none", 8, 8, batchnorm="eval")
    with pytest.raises(ValueError, match="Received: head_init='he'"):
        encoders.build_encoder("small_cnn", "none", 8, 8, head_init="he")


@pytest.mark.parametrize("backbone, fan_in", [("small_cnn", 128), ("mobilenet_v2", 1280)])
def test_torch_head_init_is_uniform_in_one_over_sqrt_fan_in(backbone, fan_in):
    """Kernel (fan_in x 512) and bias (512) uniform on [-b, b], b = 1/sqrt(fan_in).

    Bounds: every value inside, and the largest |value| within 20 b / n of b
    (|value| is uniform on [0, b]: a larger gap has probability e^-20). Moments: mean 0 and variance
    b^2 / 3, within 5 standard errors (kernel) / 6 (bias: 512 values).
    Shape: Kolmogorov-Smirnov against U(-b, b), p > 1e-3.
    """
    encoder = _encoder(backbone, "release", embedding_dim=512, head_init="torch")
    head = encoder.get_layer("embedding")
    bound = 1.0 / math.sqrt(fan_in)
    assert head.kernel.shape == (fan_in, 512)
    for values, k in ((head.kernel.numpy().ravel(), 5.0), (head.bias.numpy(), 6.0)):
        n = values.size
        assert np.all(np.abs(values) <= bound) and np.abs(values).max() > bound * (1 - 20 / n)
        sd = bound / math.sqrt(3)
        assert abs(values.mean()) < k * sd / math.sqrt(n)
        # Var(x^2) of U(-b, b) is 4 b^4 / 45.
        assert abs(values.var() - sd**2) < k * math.sqrt(4 * bound**4 / 45 / n)
        assert scipy.stats.kstest(values, "uniform", args=(-bound, 2 * bound)).pvalue > 1e-3


def test_glorot_head_init_stays_the_default():
    head = _encoder("small_cnn", "release", embedding_dim=512).get_layer("embedding")
    assert np.all(head.bias.numpy() == 0.0)
    limit = math.sqrt(6 / (128 + 512))
    assert np.abs(head.kernel.numpy()).max() <= limit and np.abs(head.kernel.numpy()).max() > 0.9 * limit


@pytest.mark.parametrize("module", [batchnorm_lib, encoders])
def test_docstring_examples_run(module):
    import doctest

    import keras_mdr

    result = doctest.testmod(module, extraglobs={"keras_mdr": keras_mdr, "np": np},
                             optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
