"""absl flags shared by the example scripts, with a dataset preset's defaults."""

import sys

from absl import flags
from absl import logging

from keras_mdr.training import presets
from keras_mdr.training import trainer

FLAGS = flags.FLAGS


def _csv_ints(value):
    return tuple(int(v) for v in str(value).split(",") if v.strip())


def define_flags(preset_name):
    """Defines every training flag with the defaults of `preset_name`'s preset."""
    p = presets.preset(preset_name)
    d = flags
    d.DEFINE_string("data_dir", None, "Dataset folder (see keras_mdr.data.load_dataset for layouts).")
    d.DEFINE_string("output_dir", f"runs/{preset_name}", "Run directory: config, logs, checkpoints, pictures, export.")
    d.DEFINE_string("backbone", p["backbone"], "resnet50, inception_v3, efficientnet_b0, mobilenet_v2 or small_cnn.")
    d.DEFINE_string("weights", p["weights"], "imagenet, none, or a path to backbone weights.")
    d.DEFINE_integer("embedding_dim", p["embedding_dim"], "Embedding size.")
    d.DEFINE_integer("image_size", p["image_size"], "Training crop / input size.")
    d.DEFINE_integer("resize_size", p["resize_size"], "Resize before cropping (paper: 256).")
    d.DEFINE_integer("epochs", p["epochs"], "Epochs.")
    d.DEFINE_integer("steps_per_epoch", p["steps_per_epoch"], "Iterations per epoch.")
    d.DEFINE_integer("classes_per_batch", p["classes_per_batch"], "P: classes per batch.")
    d.DEFINE_integer("images_per_class", p["images_per_class"], "K: images per class.")
    d.DEFINE_string("base_loss", p["base_loss"], "distance_weighted, semihard or hard.")
    d.DEFINE_float("margin", p["margin"], "Triplet margin (on scale-normalised embeddings).")
    d.DEFINE_float("mdr_weight", p["mdr_weight"], "lambda, the MDR weight; 0 is the authors' triplet baseline.")
    d.DEFINE_float("level_weight", p["level_weight"], "nu, the weight of sum(levels^2).")
    d.DEFINE_float("learning_rate", p["learning_rate"], "Adam learning rate.")
    d.DEFINE_string("lr_decay_epochs", ",".join(map(str, p["lr_decay_epochs"])), "Epochs at which lr is multiplied by lr_decay_factor.")
    d.DEFINE_float("lr_decay_factor", p["lr_decay_factor"], "Learning-rate decay factor.")
    d.DEFINE_float("weight_decay", p["weight_decay"], "Adam weight decay.")
    d.DEFINE_boolean("freeze_batchnorm", p["freeze_batchnorm"], "Freeze BatchNorm layers (paper).")
    d.DEFINE_string("recall_ks", ",".join(map(str, p["recall_ks"])), "K of Recall@K.")
    d.DEFINE_integer("eval_every", p["eval_every"], "Evaluate retrieval every n epochs.")
    d.DEFINE_float("validation_classes", p["validation_classes"], "Training classes held out for validation (count, or fraction < 1).")
    d.DEFINE_string("strategy", "default", "default, mirrored or multiworker.")
    d.DEFINE_string("mixed_precision", "none", "none, auto (float16 on GPU, bfloat16 on CPU), mixed_float16, mixed_bfloat16.")
    d.DEFINE_boolean("xla", False, "Compile the training step with XLA.")
    d.DEFINE_integer("seed", 0, "Seed of batches, augmentation, sampling and initialisation.")
    d.DEFINE_integer("checkpoint_every", 0, "Also checkpoint every n steps (0: at epoch ends only).")
    d.DEFINE_boolean("export", True, "Export the encoder as a TF Serving SavedModel.")
    d.DEFINE_integer("max_image_pixels", 40_000_000, "Pixel cap of the exported bytes signature.")
    d.DEFINE_integer("verbose", 1, "0: quiet, 1: progress bars and tables.")


def config_from_flags(preset_name):
    names = [f.name for f in trainer.presets.TrainConfig.__dataclass_fields__.values()]
    values = {n: getattr(FLAGS, n) for n in names if n in FLAGS and n != "dataset"}
    values["lr_decay_epochs"] = _csv_ints(values["lr_decay_epochs"])
    values["recall_ks"] = _csv_ints(values["recall_ks"])
    if float(values["validation_classes"]).is_integer():
        values["validation_classes"] = int(values["validation_classes"])
    return presets.TrainConfig(dataset=presets.preset(preset_name)["dataset"], **values)


def main(preset_name):
    """Runs a training from the flags; a configuration error is one line on stderr."""
    # absl's app.run logs INFO by default; keep the console to progress and results.
    logging.set_verbosity(logging.WARNING)
    config = config_from_flags(preset_name)
    try:
        trainer.validate(config)
        return trainer.train(config)
    except trainer.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
