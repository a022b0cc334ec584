"""BN-Inception in Keras against a PyTorch BN-Inception, through .pth files read without torch.

The torch lane (conftest.py) builds a PyTorch BN-Inception with seeded random
weights and random BatchNorm statistics, saves it in both layouts and key
layouts, and records its eval-mode 1024-d features and 512-d head embeddings
on seeded RGB images in [0, 255] (PyTorch's side reverses the channels and
subtracts (104, 117, 128) itself). Here the .pth files are loaded into the
Keras model, which must give the same outputs.

Norm (parity.py, also for test_release_checkpoint.py): for each image,
||ours - torch||_2 / ||torch||_2 over its feature (or embedding) vector; the
largest over the images must be <= 1e-4. Measured: ~1e-6 (float32 rounding
of two convolution libraries through 70 layers).
"""

import numpy as np
import pytest

import keras
from keras_mdr.backbones import BNInception, CeilModePooling2D, read_state_dict
from keras_mdr.backbones.bn_inception import supported_side
from parity import RTOL, loading_error, relative_error


def test_ceil_mode_pooling_matches_torch(torch_lane):
    """Sizes and values of torch's ceil-mode pools, including the dropped window
    that would start in the padding, average divisors below k * k and k < s."""
    ref = torch_lane.reference
    for i, (mode, case) in enumerate(zip(ref["pool_modes"], ref["pool_cases"])):
        height, width, kernel, stride, padding = (int(v) for v in case)
        layer = CeilModePooling2D(str(mode), kernel, stride, padding)
        ours = keras.ops.convert_to_numpy(layer(ref[f"pool_{i}_input"]))
        expected = ref[f"pool_{i}_output"]
        label = f"{mode} {height}x{width} k{kernel} s{stride} p{padding}"
        assert ours.shape == expected.shape, label
        assert layer.compute_output_shape(ref[f"pool_{i}_input"].shape) == expected.shape, label
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6, err_msg=label)


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_imagenet_layout_features_match_torch(torch_lane, layout):
    model = BNInception(weights=torch_lane.dir / f"imagenet_{layout}.pth")
    features = model.predict_on_batch(torch_lane.reference["images"])
    assert features.shape == (2, 1024)
    error = relative_error(features, torch_lane.reference["features"])
    print(f"\n[BN-Inception parity] imagenet_{layout}: features relative error {error:.2e}")
    assert error <= RTOL


def test_key_and_shape_errors_list_every_problem(torch_lane):
    model = BNInception(input_shape=(64, 64, 3))
    before = [np.array(v) for v in model.weights]
    state = dict(read_state_dict(torch_lane.dir / "imagenet_zip.pth"))
    del state["inception_4a_1x1.bias"], state["conv2_3x3_bn.running_var"]
    state["extra.weight"] = np.zeros(3, "float32")
    state["inception_5b_pool_proj.weight"] = np.zeros((128, 1024, 3, 3), "float32")
    message = loading_error(model, state)
    assert "missing keys (2): conv2_3x3_bn.running_var, inception_4a_1x1.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert ("shape mismatches (1): inception_5b_pool_proj.weight: (128, 1024, 3, 3) in the file, "
            "(128, 1024, 1, 1) expected") in message
    # Nothing was assigned: the error comes before any change.
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, np.array(new))


def test_backbone_alone_refuses_a_head(torch_lane):
    message = loading_error(BNInception(input_shape=(64, 64, 3)), torch_lane.dir / "release_zip.pth")
    assert "unexpected keys (2): linear.bias, linear.weight" in message
    assert "load_release_checkpoint" in message


def test_architecture_and_names(torch_lane):
    model = BNInception()
    assert model.output_shape == (None, 1024)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    # PyTorch's parameters: conv weights and biases, BatchNorm weights and biases.
    state = read_state_dict(torch_lane.dir / "imagenet_zip.pth")
    parameters = sum(v.size for k, v in state.items()
                     if not k.startswith("last_linear.") and not k.endswith(("running_mean", "running_var")))
    assert trainable == parameters
    assert model.get_layer("pool1_3x3_s2").output.shape[1:3] == (56, 56)
    assert model.get_layer("inception_3c_output").output.shape[1:] == (14, 14, 576)
    assert model.get_layer("inception_4e_output").output.shape[1:] == (7, 7, 1056)
    assert model.get_layer("conv1_7x7_s2_bn").epsilon == 1e-5
    sides = [side for side in range(20, 300) if supported_side(side)]
    assert sides[:9] == [31, 32, 33, 34, 35, 36, 37, 38, 63] and 224 in sides and 256 in sides
    for side in (30, 40, 240):  # torch.cat fails on these in PyTorch as well
        with pytest.raises(ValueError, match="32k - 1 to 32k \\+ 6, at least 31"):
            BNInception(input_shape=(side, side, 3))
    assert BNInception(input_shape=(38, 63, 3)).output_shape == (None, 1024)


def test_bfloat16_policy_keeps_outputs_finite():
    """The max pools pad with -inf: no inf or NaN may leak out under mixed precision."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = BNInception(input_shape=(64, 64, 3))
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    assert np.all(np.isfinite(np.asarray(model.predict_on_batch(images), "float32")))
