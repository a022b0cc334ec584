"""Train an MDR embedding on Cars-196 (the paper's main setting: lambda 0.2).

Usage:
    python examples/train_cars.py --data_dir=/path/to/data --output_dir=runs/cars
    python examples/train_cars.py --data_dir=... --strategy=mirrored --mixed_precision=auto --xla
    python examples/train_cars.py --protocol=paper --weights=/path/to/bn_inception-52deb4733.pth --data_dir=...

--protocol=paper trains with the authors' release settings (docs/paper_protocol.md) and
reports the best test Recall@1 over epochs beside the last epoch's. Every run writes and
prints its protocol card (protocol_card.md).
Restarting the same command resumes from the last checkpoint in --output_dir.
Flags, grouped, with their defaults: `python examples/train_cars.py --help` (absl's
own: --helpfull); the presets are in keras_mdr/training/presets.py. --verbose=2
also shows TensorFlow's start-up messages. The run directory ends with a Recall@K table,
pictures and a TF Serving SavedModel in export/<version>/.
"""

import quiet_start  # noqa: F401  (first: TensorFlow start-up messages off)
from absl import app

from keras_mdr.training import cli

cli.define_flags("cars196")


def main(argv):
    del argv
    cli.main("cars196")


if __name__ == "__main__":
    app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, "cars196", __doc__))
