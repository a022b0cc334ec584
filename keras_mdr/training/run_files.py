"""A run directory's bookkeeping: its config, its results, the step it reached.

`config.json` pins a run's settings: the same command resumes it, a command
that changes a setting is refused, except the settings that only say how far
or how loudly to run (`EXTENSIBLE`): raising `--epochs` extends a finished
run. `results.json` is written once before training (with the untrained
encoder's metrics, where measured) and updated at the end, so nothing
measured earlier is dropped by a later invocation.
"""

import json
import os

from keras_mdr.training.presets import ConfigError

# Settings a restart may change: how long, how loudly, where, and what to export.
EXTENSIBLE = ("epochs", "verbose", "output_dir", "export", "max_image_pixels")


def _write_json(path, value):
    """Writes JSON atomically (a kill never leaves half a file)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2, default=float)
    os.replace(tmp, path)


def _read_json(path, default):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


class RunFiles:
    """The paths and JSON files of one run directory.

    Args:
        directory: the run directory (created by `write_config`).
    """

    def __init__(self, directory):
        self.directory = os.path.abspath(directory)

    def path(self, *names):
        return os.path.join(self.directory, *names)

    @property
    def checkpoints(self):
        return self.path("checkpoints")

    def saved_step(self):
        """The optimizer step of `checkpoints/last.keras` (0 when there is none)."""
        return int(_read_json(os.path.join(self.checkpoints, "state.json"), {"step": 0})["step"])

    def write_config(self, config):
        """Creates the run directory with `config.json`, or checks a restart against it."""
        wanted = json.loads(json.dumps(config.to_dict()))
        wanted = {k: v for k, v in wanted.items() if k not in ("verbose", "output_dir")}
        existing = _read_json(self.path("config.json"), None)
        if existing is not None:
            changed = sorted(k for k in wanted if k not in EXTENSIBLE and existing.get(k) != wanted[k])
            if changed:
                raise ConfigError(
                    f"{self.directory} holds a run with another configuration (differs in "
                    f"{changed}): use another --output_dir or the same flags to resume."
                )
            reached = self.saved_step()
            if reached > config.epochs * config.steps_per_epoch:
                raise ConfigError(
                    f"{self.directory} already trained {reached} steps, more than --epochs="
                    f"{config.epochs} x --steps_per_epoch={config.steps_per_epoch}: raise --epochs."
                )
        os.makedirs(self.directory, exist_ok=True)
        _write_json(self.path("config.json"), wanted)

    def read_results(self):
        return _read_json(self.path("results.json"), {})

    def write_results(self, results):
        _write_json(self.path("results.json"), results)


__all__ = ["EXTENSIBLE", "RunFiles"]
