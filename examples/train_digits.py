"""Train an MDR embedding on scikit-learn digits, the embedded default (CPU, a few minutes).

Usage:
    python examples/train_digits.py --output_dir=runs/digits

Restarting the same command resumes from the last checkpoint in --output_dir.
Flags and defaults: `python examples/train_digits.py --helpfull`; the presets are
in keras_mdr/training/presets.py. The run directory ends with a Recall@K table,
pictures and a TF Serving SavedModel in export/<version>/.
"""

from absl import app

from keras_mdr.training import cli

cli.define_flags("digits")


def main(argv):
    del argv
    cli.main("digits")


if __name__ == "__main__":
    app.run(main)
