"""Train an MDR embedding on Cars-196 (the paper's main setting: lambda 0.2).

Usage:
    python examples/train_cars.py --data_dir=/path/to/data --output_dir=runs/cars
    python examples/train_cars.py --data_dir=... --strategy=mirrored --mixed_precision=auto --xla

Restarting the same command resumes from the last checkpoint in --output_dir.
Flags and defaults: `python examples/train_cars.py --helpfull`; the presets are
in keras_mdr/training/presets.py. The run directory ends with a Recall@K table,
pictures and a TF Serving SavedModel in export/<version>/.
"""

from absl import app

from keras_mdr.training import cli

cli.define_flags("cars196")


def main(argv):
    del argv
    cli.main("cars196")


if __name__ == "__main__":
    app.run(main)
