"""The results file: every run's record, resumable, with the provenance of each command.

A new file keeps the layout of the first measurements (`versions`,
`command`, `finished` at the top). A command that adds runs to an existing
file leaves those as they are and appends one `resumed` entry (its command,
versions with the commit, load, start, finish and the keys of its runs), so
every run can be traced to the code that produced it. The file is replaced
atomically after every run: an interruption loses only the run in progress.
"""

import datetime
import json
import os
import platform
import sys

import keras
import numpy as np
import tensorflow as tf

import keras_mdr
from keras_mdr.training.presets import ConfigError

import provenance  # benchmarks/provenance.py


def versions():
    state = provenance.git_state(provenance.REPO)
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "keras_mdr": keras_mdr.__version__,
        "git_commit": state["commit"],
        "git_dirty": state["dirty"],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "gpus": [g.name for g in gpus],
    }


def command():
    return "python benchmarks/quality.py " + " ".join(sys.argv[1:])


def now():
    return datetime.datetime.now().isoformat(timespec="seconds")


def start_session(payload, subsets):
    """The provenance record of this command's runs; None for a new file."""
    old = payload.get("subsets")
    if old is not None and old != subsets:
        raise ConfigError(
            "The data splits differ from those of the runs already in the results file "
            f"(stored {old}, now {subsets}): paired differences would not be paired."
        )
    payload["subsets"] = subsets
    if "versions" not in payload:
        payload["versions"] = versions()
        payload["command"] = command()
        return None
    return {
        "command": command(), "versions": versions(), "load_before": provenance.load_average(),
        "started": now(), "finished": None, "runs": [],
    }


def finish_run(payload, session, key):
    """Records that run `key` finished (in the session, if the file was resumed)."""
    if session is None:
        payload["finished"] = now()
        return
    if not session["runs"]:
        payload.setdefault("resumed", []).append(session)
    session["runs"].append(key)
    session["finished"] = now()


def write_json(path, payload):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def open_results(path, config, report_only):
    if os.path.exists(path):
        with open(path) as f:
            payload = json.load(f)
        if report_only:
            return payload
        old = payload.get("config", {})
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if changed:
            raise ConfigError(
                f"{path} holds runs with another configuration (differs in {changed}): "
                "use another --output_dir, the same flags to resume, or delete the file."
            )
        return payload
    if report_only:
        raise ConfigError(f"--report_only: no results at {path}.")
    return {"config": config, "runs": {}}
