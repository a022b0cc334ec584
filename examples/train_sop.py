"""Train an MDR embedding on Stanford Online Products (lambda 0.1, batch 85 x 3).

Usage:
    python examples/train_sop.py --data_dir=/path/to/data --output_dir=runs/sop
    python examples/train_sop.py --data_dir=... --strategy=mirrored --mixed_precision=auto --xla

Restarting the same command resumes from the last checkpoint in --output_dir.
Flags and defaults: `python examples/train_sop.py --helpfull`; the presets are
in keras_mdr/training/presets.py. The run directory ends with a Recall@K table,
pictures and a TF Serving SavedModel in export/<version>/.
"""

from absl import app

from keras_mdr.training import cli

cli.define_flags("sop")


def main(argv):
    del argv
    cli.main("sop")


if __name__ == "__main__":
    app.run(main)
