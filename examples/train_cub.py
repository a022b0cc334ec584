"""Train an MDR embedding on CUB-200-2011 (lambda 0.6).

Usage:
    python examples/train_cub.py --data_dir=/path/to/data --output_dir=runs/cub
    python examples/train_cub.py --data_dir=... --strategy=mirrored --mixed_precision=auto --xla

Restarting the same command resumes from the last checkpoint in --output_dir.
Flags and defaults: `python examples/train_cub.py --helpfull`; the presets are
in keras_mdr/training/presets.py. The run directory ends with a Recall@K table,
pictures and a TF Serving SavedModel in export/<version>/.
"""

from absl import app

from keras_mdr.training import cli

cli.define_flags("cub200")


def main(argv):
    del argv
    cli.main("cub200")


if __name__ == "__main__":
    app.run(main)
