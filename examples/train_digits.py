"""Train an MDR embedding on scikit-learn digits, the embedded default (CPU, a few minutes).

Usage:
    python examples/train_digits.py --output_dir=runs/digits

Restarting the same command resumes from the last checkpoint in --output_dir.
Flags, grouped, with their defaults: `python examples/train_digits.py --help` (absl's
own: --helpfull); the presets are in keras_mdr/training/presets.py. --verbose=2
also shows TensorFlow's start-up messages. The run directory ends with a Recall@K table,
pictures and a TF Serving SavedModel in export/<version>/.
"""

import quiet_start  # noqa: F401  (first: TensorFlow start-up messages off)
from absl import app

from keras_mdr.training import cli

cli.define_flags("digits")


def main(argv):
    del argv
    cli.main("digits")


if __name__ == "__main__":
    app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, "digits", __doc__))
