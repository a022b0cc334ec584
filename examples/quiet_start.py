"""Keeps TensorFlow's start-up messages off the console unless `--verbose=2`.

Import this module first in an example script, before anything that imports
TensorFlow. TensorFlow 2.21 writes its oneDNN, CPU-feature and CUDA notices
to the standard error of the process while it is imported, before its own log
level applies, so they are silenced by pointing file descriptor 2 at
/dev/null for the duration of the import; `TF_CPP_MIN_LOG_LEVEL=3` silences
the later ones (such as "failed call to cuInit" on a machine without GPU).
Python exceptions are unaffected: the descriptor is restored first.
"""

import os
import sys


def verbose_level(argv):
    """The value of `--verbose` in `argv` (1 when absent or unreadable)."""
    for i, arg in enumerate(argv):
        value = None
        if arg.startswith("--verbose="):
            value = arg.split("=", 1)[1]
        elif arg == "--verbose" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return 1
    return 1


def import_tensorflow_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


if verbose_level(sys.argv[1:]) < 2:
    import_tensorflow_quietly()
