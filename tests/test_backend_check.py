import os
import subprocess
import sys


def test_other_backend_says_in_one_line_that_tensorflow_is_needed():
    """Planted: the check removed -> Keras' own 'No module named jax' traceback."""
    env = dict(os.environ, KERAS_BACKEND="jax")
    proc = subprocess.run(
        [sys.executable, "-c", "import keras_mdr"], capture_output=True, text=True, env=env,
        timeout=120,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: keras_mdr needs Keras' TensorFlow backend. Received: "
        "KERAS_BACKEND='jax'; set KERAS_BACKEND=tensorflow."
    ), proc.stderr[-2000:]
    assert "jax" not in proc.stderr.replace("'jax'", "")
