"""Tests for `keras_mdr.export.export_for_serving` (TF Serving SavedModels).

The exported models are checked in a fresh Python process whose script
imports TensorFlow and NumPy only (never keras or keras_mdr; TensorFlow's own
`import` may load keras internally, which is outside the script's control),
and with the `saved_model_cli` binary of the environment.
"""

import base64
import io
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_mdr.data import image_format
from keras_mdr.data.transforms import eval_transform
from keras_mdr.export import export_for_serving

IMAGE_SIZE = 32
RESIZE_SIZE = 40
MAX_PIXELS = 100 * 100
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
CHILD_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    "TF_CPP_MIN_LOG_LEVEL": "2",
}

# The fresh process: TensorFlow + NumPy only. It replays a list of requests
# against one loaded model, in order, and records outputs or errors.
CHILD_SCRIPT = textwrap.dedent(
    """
    import base64
    import json
    import resource
    import sys

    import numpy as np
    import tensorflow as tf

    spec = json.load(open(sys.argv[1]))
    model = tf.saved_model.load(spec["path"])
    signatures = {name: model.signatures[name] for name in model.signatures}
    results, arrays = {}, {}
    for name, signature, payload in spec["requests"]:
        if signature == "serving_default":
            kwargs = {"images": tf.constant(np.load(payload))}
        else:
            data = [base64.b64decode(item) for item in payload]
            kwargs = {"image_bytes": tf.constant(data, tf.string, shape=[len(data)])}
        try:
            outputs = signatures[signature](**kwargs)
        except tf.errors.InvalidArgumentError as error:
            results[name] = {"ok": False, "message": error.message}
            continue
        arrays[name] = outputs["embeddings"].numpy()
        results[name] = {
            "ok": True,
            "keys": sorted(outputs),
            "dtype": outputs["embeddings"].dtype.name,
        }
    np.savez(spec["arrays"], **arrays)
    json.dump(
        {
            "results": results,
            "signatures": sorted(signatures),
            "keras_mdr_loaded": "keras_mdr" in sys.modules,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        open(spec["report"], "w"),
    )
    """
)


def _run_fresh_tf(workdir, path, requests):
    """Runs `requests` [(name, signature, payload)] in a fresh TF-only process."""
    imports = [line.split() for line in CHILD_SCRIPT.splitlines() if "import " in line]
    modules = [words[1].split(".")[0] for words in imports]
    assert modules and not {"keras", "keras_mdr"} & set(modules), modules
    workdir.mkdir(exist_ok=True)
    script = workdir / "child.py"
    script.write_text(CHILD_SCRIPT)
    spec = {
        "path": str(path),
        "requests": requests,
        "arrays": str(workdir / "arrays.npz"),
        "report": str(workdir / "report.json"),
    }
    (workdir / "spec.json").write_text(json.dumps(spec))
    # -I: isolated mode (no PYTHONPATH, no script-dir or cwd on sys.path).
    process = subprocess.run(
        [sys.executable, "-I", str(script), str(workdir / "spec.json")],
        cwd=workdir,
        env=CHILD_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    report = json.loads((workdir / "report.json").read_text())
    with np.load(workdir / "arrays.npz") as arrays:
        outputs = {name: arrays[name] for name in arrays.files}
    return report, outputs


def _tiny_encoder(image_size=IMAGE_SIZE, channels=3, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((image_size, image_size, channels)),
            keras.layers.Rescaling(1 / 127.5, offset=-1.0),  # the "preprocessing"
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(512),
        ]
    )


def _random_image(height, width, seed, mode="RGB"):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack(
        [255 * x / width, 255 * y / height, 127 + 100 * np.sin(x / 5.0 + y / 7.0)], -1
    )
    pixels = np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if mode == "RGBA":
        alpha = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
        image = Image.merge("RGBA", (*image.split(), alpha))
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def _encode(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _forge_jpeg_size(data, height, width):
    """A JPEG whose SOF0 header claims `height` x `width` (data unchanged)."""
    start = data.index(b"\xff\xc0")  # baseline SOF0: marker, length, precision, H, W
    header = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return data[: start + 5] + header + data[start + 9 :]


def _forge_png_size(data, height, width):
    """A PNG whose IHDR claims `height` x `width` (CRC and data unchanged)."""
    return data[:16] + width.to_bytes(4, "big") + height.to_bytes(4, "big") + data[24:]


def _b64(items):
    return [base64.b64encode(item).decode("ascii") for item in items]


def _expected_bytes_embeddings(encoder, items, channels=3):
    """The Keras model on the same decode (Pillow's, accurate IDCT) / resize /
    centre crop, done in TF here."""
    transform = eval_transform(image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE)
    images = [
        transform(image_format.decode(item, channels=channels), None)
        for item in items
    ]
    return keras.ops.convert_to_numpy(encoder(tf.stack(images), training=False))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    encoder = _tiny_encoder()
    base = tmp_path_factory.mktemp("serving") / "embedder"
    path = export_for_serving(
        encoder, base, image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE, max_pixels=MAX_PIXELS
    )
    return encoder, base, path


def test_layout_and_default_version(exported):
    _, base, path = exported
    assert path == os.path.join(str(base), "1")
    assert sorted(os.listdir(base)) == ["1"]  # no staging folder left behind
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert os.path.isdir(os.path.join(path, "variables"))


def test_fresh_process_outputs_and_bad_requests(exported, tmp_path):
    encoder, _, path = exported
    rng = np.random.default_rng(1)
    float_images = rng.uniform(0, 255, (3, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", float_images)

    jpeg_a = _encode(_random_image(50, 60, seed=2), "JPEG")
    png_b = _encode(_random_image(37, 81, seed=3), "PNG")
    png_gray = _encode(_random_image(45, 45, seed=4, mode="L"), "PNG")
    png_rgba = _encode(_random_image(40, 52, seed=5, mode="RGBA"), "PNG")
    jpeg_at_cap = _encode(_random_image(100, 100, seed=6), "JPEG")  # exactly max_pixels
    jpeg_gray = _encode(_random_image(64, 48, seed=7, mode="L"), "JPEG")
    mixed = [jpeg_a, png_b, png_gray, png_rgba, jpeg_at_cap, jpeg_gray]

    big_jpeg = _encode(_random_image(101, 100, seed=8), "JPEG")  # 10,100 > 10,000
    big_png = _encode(_random_image(100, 101, seed=9), "PNG")
    # Small files whose headers claim 3.6 gigapixels (10.8 GB decoded), and a
    # PNG claiming 2**32 - 1 on each side (its pixel count overflows int64).
    bomb_jpeg = _forge_jpeg_size(jpeg_a, 60000, 60000)
    bomb_png = _forge_png_size(png_b, 60000, 60000)
    bomb_png_max = _forge_png_size(png_b, 2**32 - 1, 2**32 - 1)
    gif = _encode(_random_image(20, 20, seed=10), "GIF")
    requests = [
        ("images", "serving_default", str(tmp_path / "images.npy")),
        ("mixed", "serving_bytes", _b64(mixed)),
        ("not_image", "serving_bytes", _b64([b"this is not an image"])),
        ("after_not_image", "serving_bytes", _b64([jpeg_a])),
        ("empty_bytes", "serving_bytes", _b64([b""])),
        ("gif", "serving_bytes", _b64([gif])),
        ("big_jpeg", "serving_bytes", _b64([big_jpeg])),
        ("big_png", "serving_bytes", _b64([big_png])),
        ("bomb_jpeg", "serving_bytes", _b64([bomb_jpeg])),
        ("bomb_png", "serving_bytes", _b64([bomb_png])),
        ("bomb_png_max", "serving_bytes", _b64([bomb_png_max])),
        ("truncated_png", "serving_bytes", _b64([png_b[: len(png_b) // 2]])),
        ("batch_with_bad", "serving_bytes", _b64([jpeg_a, b"not an image", png_b])),
        ("batch_with_corrupt", "serving_bytes",
         _b64([jpeg_a, png_b[: len(png_b) // 2], png_b, jpeg_a[: len(jpeg_a) // 2]])),
        ("batch_with_bombs", "serving_bytes", _b64([jpeg_a, bomb_jpeg, png_b, bomb_png])),
        ("bad_jpeg_header", "serving_bytes", _b64([png_b, jpeg_a[:40]])),
        ("empty_batch", "serving_bytes", []),
        ("after_all", "serving_bytes", _b64(mixed)),
    ]
    report, outputs = _run_fresh_tf(tmp_path / "child", path, requests)
    results = report["results"]

    assert report["signatures"] == ["serving_bytes", "serving_default"]
    assert not report["keras_mdr_loaded"]
    for name in ("images", "mixed", "after_not_image", "empty_batch", "after_all"):
        assert results[name]["ok"], (name, results[name])
        assert results[name]["keys"] == ["embeddings"]
        assert results[name]["dtype"] == "float32"

    expected_images = keras.ops.convert_to_numpy(encoder(float_images, training=False))
    assert outputs["images"].shape == (3, 512)
    np.testing.assert_allclose(outputs["images"], expected_images, rtol=1e-5, atol=1e-5)

    expected_mixed = _expected_bytes_embeddings(encoder, mixed)
    assert outputs["mixed"].shape == (len(mixed), 512)
    np.testing.assert_allclose(outputs["mixed"], expected_mixed, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["after_all"], expected_mixed, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        outputs["after_not_image"], expected_mixed[:1], rtol=1e-5, atol=1e-5
    )
    assert outputs["empty_batch"].shape == (0, 512)

    def error(name):
        assert not results[name]["ok"], f"{name} should fail"
        return results[name]["message"]

    for name in ("not_image", "empty_bytes", "gif", "batch_with_bad"):
        assert "not a JPEG or PNG image" in error(name), error(name)
    for name in ("big_jpeg", "big_png", "bomb_jpeg", "bomb_png", "bomb_png_max"):
        message = error(name)
        assert "pixel cap" in message and f"max_pixels={MAX_PIXELS}" in message, message
    assert "pixel cap" not in error("truncated_png")
    # issue 12: the message names the bad images' positions in the batch.
    assert "Batch positions (from 0): [1]" in error("batch_with_bad"), error("batch_with_bad")
    corrupt = error("batch_with_corrupt")
    assert "decoder rejects" in corrupt and "Batch positions (from 0): [1 3]" in corrupt, corrupt
    bombs = error("batch_with_bombs")
    assert "pixel cap" in bombs and "Batch positions (from 0): [1 3]" in bombs, bombs
    header = error("bad_jpeg_header")
    assert "header" in header and "Batch positions (from 0): [1]" in header, header
    assert "60000" in error("bomb_jpeg") and "60000" in error("bomb_png")
    # Nothing was decoded at the claimed size (10.8 GB for the bombs).
    assert report["max_rss_mb"] < 3000, report["max_rss_mb"]


def test_saved_model_cli_show_and_run(exported, tmp_path):
    encoder, _, path = exported
    show = subprocess.run(
        [SAVED_MODEL_CLI, "show", "--dir", path, "--all"],
        env=CHILD_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert show.returncode == 0, show.stderr[-2000:]
    text = show.stdout
    for needle in (
        "signature_def['serving_default']",
        "signature_def['serving_bytes']",
        "inputs['images']",
        f"shape: (-1, {IMAGE_SIZE}, {IMAGE_SIZE}, 3)",
        "inputs['image_bytes']",
        "dtype: DT_STRING",
        "outputs['embeddings']",
        "shape: (-1, 512)",
    ):
        assert needle in text, (needle, text)
    assert text.count("outputs['embeddings']") == 2

    # `saved_model_cli run` (in TF 2.21 `--input_exprs` takes Python literals
    # only, so the input goes through a .npy file).
    images = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3))
    np.save(tmp_path / "images.npy", images)
    run = subprocess.run(
        [SAVED_MODEL_CLI, "run", "--dir", path, "--tag_set", "serve"]
        + ["--signature_def", "serving_default"]
        + ["--inputs", f"images={tmp_path / 'images.npy'}", "--outdir", str(tmp_path / "out")],
        env=CHILD_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "embeddings.npy"),
        keras.ops.convert_to_numpy(encoder(images.astype("float32"))),
        rtol=1e-5,
        atol=1e-5,
    )


def test_versions_increment_and_never_overwrite(tmp_path):
    encoder = _tiny_encoder()
    base = tmp_path / "embedder"
    (base / "3").mkdir(parents=True)
    (base / "not_a_version").mkdir()
    (base / "12").write_text("a file, not a version folder")
    kwargs = dict(image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE)

    assert export_for_serving(encoder, base, **kwargs) == str(base / "4")
    assert export_for_serving(encoder, str(base), **kwargs) == str(base / "5")
    assert export_for_serving(encoder, base, version=2, **kwargs) == str(base / "2")
    assert export_for_serving(encoder, base, **kwargs) == str(base / "6")
    for version in ("2", "4", "5", "6"):
        assert (base / version / "saved_model.pb").is_file()

    before = sorted(os.listdir(base))
    stamp = os.stat(base / "5" / "saved_model.pb").st_mtime_ns
    for version in (3, 5):
        with pytest.raises(FileExistsError, match=f"Version {version} already exists"):
            export_for_serving(encoder, base, version=version, **kwargs)
    assert sorted(os.listdir(base)) == before
    assert os.stat(base / "5" / "saved_model.pb").st_mtime_ns == stamp
    assert not os.listdir(base / "3")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image_size=48, resize_size=40), "no larger than `resize_size`"),
        (dict(channels=2), "`channels`"),
        (dict(max_pixels=0), "`max_pixels`"),
        (dict(version=-1), "`version`"),
        (dict(version="3"), "`version`"),
        (dict(image_size=48, resize_size=56), r"input shape"),
    ],
)
def test_bad_arguments_write_nothing(tmp_path, kwargs, match):
    encoder = _tiny_encoder()
    kwargs = {"image_size": IMAGE_SIZE, "resize_size": RESIZE_SIZE, **kwargs}
    with pytest.raises(ValueError, match=match):
        export_for_serving(encoder, tmp_path / "embedder", **kwargs)
    assert not (tmp_path / "embedder").exists()


def test_grayscale_and_mixed_precision_encoders(tmp_path):
    """channels=1, and a float16-output encoder still serves float32."""
    gray = _tiny_encoder(channels=1)
    path = export_for_serving(
        gray, tmp_path / "gray", image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE, channels=1
    )
    items = [
        _encode(_random_image(50, 44, seed=12), "JPEG"),
        _encode(_random_image(36, 70, seed=13, mode="RGBA"), "PNG"),
    ]
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_bytes"](image_bytes=tf.constant(items))["embeddings"]
    np.testing.assert_allclose(
        served.numpy(), _expected_bytes_embeddings(gray, items, channels=1), rtol=1e-5, atol=1e-5
    )

    keras.mixed_precision.set_global_policy("mixed_float16")
    half = _tiny_encoder()
    path = export_for_serving(
        half, tmp_path / "half", image_size=IMAGE_SIZE, resize_size=RESIZE_SIZE
    )
    images = np.random.default_rng(14).uniform(0, 255, (2, IMAGE_SIZE, IMAGE_SIZE, 3))
    images = images.astype("float32")
    assert keras.backend.standardize_dtype(half(images).dtype) == "float16"
    served = tf.saved_model.load(path).signatures["serving_default"](images=images)
    assert served["embeddings"].dtype == tf.float32
    np.testing.assert_allclose(
        served["embeddings"].numpy(),
        keras.ops.convert_to_numpy(half(images)).astype("float32"),
        rtol=1e-5,
        atol=1e-5,
    )


def test_resnet50_encoder_in_fresh_process(tmp_path):
    """A real backbone with its own preprocessing inside (random weights)."""
    keras.utils.set_random_seed(15)
    size = 64
    inputs = keras.Input((size, size, 3))
    features = keras.applications.ResNet50(
        weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3)
    )(keras.applications.resnet50.preprocess_input(inputs))
    encoder = keras.Model(inputs, keras.layers.Dense(512)(features))
    path = export_for_serving(encoder, tmp_path / "resnet", image_size=size, resize_size=72)
    assert path == str(tmp_path / "resnet" / "1")

    images = np.random.default_rng(16).uniform(0, 255, (2, size, size, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    items = [
        _encode(_random_image(90, 120, seed=17), "JPEG"),
        _encode(_random_image(80, 64, seed=18), "PNG"),
    ]
    report, outputs = _run_fresh_tf(
        tmp_path / "child",
        path,
        [
            ("images", "serving_default", str(tmp_path / "images.npy")),
            ("bytes", "serving_bytes", _b64(items)),
        ],
    )
    assert report["results"]["images"]["ok"] and report["results"]["bytes"]["ok"]
    np.testing.assert_allclose(
        outputs["images"],
        keras.ops.convert_to_numpy(encoder(images, training=False)),
        rtol=1e-5,
        atol=1e-5,
    )
    transform = eval_transform(image_size=size, resize_size=72)
    decoded = [image_format.decode(item) for item in items]
    crops = tf.stack([transform(image, None) for image in decoded])
    np.testing.assert_allclose(
        outputs["bytes"],
        keras.ops.convert_to_numpy(encoder(crops, training=False)),
        rtol=1e-5,
        atol=1e-5,
    )
