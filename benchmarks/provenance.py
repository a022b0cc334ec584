"""Where a benchmark number comes from: machine, versions, load, commit.

Every benchmark writes one JSON file under `benchmarks/results/` through
`write_result`, which wraps the measurement with a `provenance` record:

    machine      CPU model, logical cores, total memory (GiB), platform
    versions     Python, NumPy, and whatever the benchmark passes (TensorFlow,
                 Keras, keras_mdr, TensorFlow Addons, torch, PML, ...)
    load         the 1/5/15-minute load averages before and after the run
    timestamp    UTC, ISO 8601, when the file was written
    git          commit of the working tree and whether it had uncommitted
                 changes (`dirty`), so a number can be traced to its code
    command      the command line that produced it

The docs' tables are rendered from these files by `benchmarks/render.py`.
"""

import datetime
import json
import os
import platform
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine():
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
    }


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def git_state(repo=REPO):
    """{"commit": short hash, "dirty": bool} of the working tree at `repo`."""
    def git(*args):
        # Not .strip(): the first porcelain line starts with a status column
        # that may be a space (" M path").
        return subprocess.run(
            ["git", "-C", repo, *args], capture_output=True, text=True, timeout=30
        ).stdout.rstrip("\n")

    try:
        commit = git("rev-parse", "--short", "HEAD")
        # Result files themselves do not make a tree dirty.
        changes = [
            line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
            if not line[3:].startswith("benchmarks/results/")
        ]
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit or "unknown", "dirty": bool(changes)}


def base_versions():
    import numpy as np

    return {"python": platform.python_version(), "numpy": np.__version__}


def tf_versions():
    """TensorFlow, Keras and keras_mdr versions (imports them)."""
    import keras
    import tensorflow as tf

    import keras_mdr

    return {"tensorflow": tf.__version__, "keras": keras.__version__,
            "keras_mdr": keras_mdr.__version__}


class Recorder:
    """Records the load before a run; `write` adds the rest and saves the JSON.

    >>> recorder = Recorder()                    # before measuring
    >>> ...                                      # measure
    >>> recorder.write("loss_speed", {...}, versions={"torch": "2.13.0"})
    """

    def __init__(self):
        self.load_before = load_average()
        self.started = datetime.datetime.now(datetime.timezone.utc)

    def provenance(self, versions=None):
        return {
            "machine": machine(),
            "versions": {**base_versions(), **(versions or {})},
            "load_before": self.load_before,
            "load_after": load_average(),
            "started": self.started.isoformat(timespec="seconds"),
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git": git_state(),
            "command": " ".join(["python"] + [os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])
            if sys.argv and sys.argv[0] else "",
        }

    def write(self, name, results, versions=None, path=None):
        """Writes `{"provenance": ..., "results": results}`; returns the path."""
        path = path or os.path.join(RESULTS_DIR, f"{name}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        payload = {"benchmark": name, "provenance": self.provenance(versions), "results": results}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=1, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
        return path


def load(name, path=None):
    with open(path or os.path.join(RESULTS_DIR, f"{name}.json")) as f:
        return json.load(f)
