"""keras_mdr runs on Keras' TensorFlow backend only: say so before Keras starts.

Checked before `import keras`, because Keras itself fails on import under a
backend whose package is missing (e.g. "No module named 'jax'"), and that
message does not say that keras_mdr needs TensorFlow.
"""

import json
import os


def configured_backend():
    """The backend Keras will load: $KERAS_BACKEND, else keras.json's, else tensorflow."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def require_tensorflow_backend():
    backend = configured_backend()
    if backend != "tensorflow":
        raise ImportError(
            "keras_mdr needs Keras' TensorFlow backend. Received: "
            f"KERAS_BACKEND={backend!r}; set KERAS_BACKEND=tensorflow."
        )
