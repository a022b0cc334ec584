"""absl flags shared by the example scripts, with a dataset preset's defaults.

`--protocol=paper` starts from the dataset's paper preset instead
(`<dataset>_paper`: the authors' release, see `keras_mdr.training.presets`);
flags given on the command line still win, and the run's protocol card says
which settings came from a flag and which differ from the release.

`--help` lists these flags by group with their defaults; absl's own flags
stay under `--helpfull`. A bad value is one `error:` line on stderr (exit
status 2), before any file is written.
"""

import dataclasses
import sys

from absl import app
from absl import flags
from absl import logging

from keras_mdr import validation
from keras_mdr.training import presets
from keras_mdr.training import trainer

FLAGS = flags.FLAGS

# (group, [(kind, name, help)]); defaults come from the preset.
FLAG_GROUPS = (
    ("Protocol", [
        ("string", "protocol",
         "default (select on validation classes) or paper (the release's settings from the "
         "<dataset>_paper preset; best test Recall@1 over epochs reported)."),
    ]),
    ("Data", [
        ("string", "data_dir", "Dataset folder (see keras_mdr.data.load_dataset for layouts)."),
        ("integer", "image_size", "Training crop / input size."),
        ("integer", "resize_size", "Resize before cropping (paper: 256)."),
        ("float", "validation_classes",
         "Training classes held out for validation (count, or fraction < 1)."),
        ("string", "crops", "default, or release (Lanczos resize, torchvision's random resized crop)."),
    ]),
    ("Model", [
        ("string", "backbone",
         "bn_inception, resnet50, inception_v3, efficientnet_b0, mobilenet_v2 or small_cnn."),
        ("string", "weights", "imagenet, none, or a path to backbone weights (bn_inception: a .pth, "
         "its ImageNet file is bn_inception-52deb4733.pth)."),
        ("integer", "embedding_dim", "Embedding size."),
        ("boolean", "freeze_batchnorm", "Freeze BatchNorm layers."),
        ("string", "batchnorm",
         "release (statistics frozen, gamma/beta trained), frozen or train; empty: --freeze_batchnorm."),
        ("string", "head_init", "glorot, or torch (PyTorch Linear's default init)."),
    ]),
    ("Loss and batches", [
        ("string", "base_loss", "distance_weighted, semihard or hard."),
        ("float", "margin", "Triplet margin (on scale-normalised embeddings)."),
        ("float", "mdr_weight", "lambda, the MDR weight; 0 is the authors' triplet baseline."),
        ("float", "level_weight", "nu, the weight of sum(levels^2)."),
        ("integer", "classes_per_batch", "P: classes per batch (at least 2)."),
        ("integer", "images_per_class", "K: images per class (at least 2)."),
        ("string", "sampling", "The distance-weighted sampler: release or textbook."),
        ("string", "batches", "balanced (P x K) or release (batch_size images, at most K per class)."),
        ("integer", "batch_size", "Images per batch with --batches=release (0: P x K)."),
    ]),
    ("Optimisation", [
        ("integer", "epochs", "Epochs; raise it to extend a finished run."),
        ("integer", "steps_per_epoch", "Iterations per epoch."),
        ("string", "optimizer",
         "adam (Keras, decoupled weight decay) or adam_l2 (PyTorch's coupled L2, every variable)."),
        ("float", "learning_rate", "Adam learning rate (> 0)."),
        ("string", "lr_decay_epochs",
         "Comma-separated epochs after which lr is multiplied by lr_decay_factor."),
        ("float", "lr_decay_factor", "Learning-rate decay factor (> 0)."),
        ("float", "weight_decay", "Weight decay of the optimizer."),
    ]),
    ("Evaluation", [
        ("string", "recall_ks", "Comma-separated K of Recall@K (integers >= 1)."),
        ("integer", "eval_every", "Evaluate retrieval every n epochs."),
        ("string", "eval_distance", "euclidean or squared_euclidean (the same ranking)."),
    ]),
)
RUN_FLAGS = ("Run", [
    ("string", "output_dir", "Run directory: config, logs, checkpoints, pictures, export."),
    ("string", "strategy", "default, mirrored or multiworker."),
    ("string", "mixed_precision",
     "none, auto (float16 on GPU, bfloat16 on CPU), mixed_float16, mixed_bfloat16."),
    ("boolean", "xla", "Compile the training step with XLA."),
    ("integer", "seed", "Seed of batches, augmentation, sampling and initialisation."),
    ("integer", "checkpoint_every", "Also checkpoint every n steps (0: at epoch ends only)."),
    ("boolean", "export", "Export the encoder as a TF Serving SavedModel."),
    ("integer", "max_image_pixels", "Pixel cap of the exported bytes signature."),
    ("integer", "verbose",
     "0: quiet; 1: progress bars and tables; 2: also TensorFlow's start-up messages."),
])
RUN_DEFAULTS = dict(strategy="default", mixed_precision="none", xla=False, seed=0,
                    checkpoint_every=0, export=True, max_image_pixels=40_000_000, verbose=1)
LIST_FLAGS = ("lr_decay_epochs", "recall_ks")


def _groups():
    return (*FLAG_GROUPS, RUN_FLAGS)


def _field_defaults():
    return {f.name: f.default for f in dataclasses.fields(presets.TrainConfig)}


def define_flags(preset_name):
    """Defines every training flag with the defaults of `preset_name`'s preset."""
    defaults = {**_field_defaults(), **presets.preset(preset_name), **RUN_DEFAULTS,
                "data_dir": None, "output_dir": f"runs/{preset_name}"}
    for _, group in _groups():
        for kind, name, text in group:
            default = defaults[name]
            if name in LIST_FLAGS:
                default = ",".join(map(str, default))
            getattr(flags, f"DEFINE_{kind}")(name, default, text)


def _as_default(value):
    """A value as absl's `default_as_str` writes it."""
    if isinstance(value, bool):
        return repr(str(value).lower())
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return "None" if value is None else repr(str(value))


def help_text(preset_name, doc="", protocol="default"):
    """The `--help` text: the script's docstring, then our flags by group.

    With `protocol="paper"` the defaults shown are the `<preset_name>_paper`
    preset's, the ones `--protocol=paper` trains with.
    """
    paper = protocol == "paper" and f"{preset_name}_paper" in presets.PRESETS
    shown = f"{preset_name}_paper" if paper else preset_name
    defaults = {**presets.preset(shown), **RUN_DEFAULTS, "data_dir": None,
                "output_dir": f"runs/{shown}"} if paper else {}
    lines = [doc.strip(), "", f"Flags (defaults: the {shown!r} preset; absl's own flags: "
             f"--helpfull{'' if paper else '; --protocol=paper --help: the paper preset'}):"]
    for title, group in _groups():
        lines.append(f"\n  {title}:")
        for _, name, text in group:
            default = _as_default(defaults[name]) if name in defaults else FLAGS[name].default_as_str
            lines.append(f"    --{name}: {text} (default: {default})")
    return "\n".join(lines).lstrip() + "\n"


def parse_flags(argv, preset_name, doc=""):
    """`app.run`'s flags parser: `--help` prints `help_text`, then absl parses."""
    if any(arg in ("-h", "-?", "--help", "--helpshort") for arg in argv[1:]):
        paper = "--protocol=paper" in argv or any(
            a == "--protocol" and b == "paper" for a, b in zip(argv, argv[1:]))
        sys.stdout.write(help_text(preset_name, doc, "paper" if paper else "default"))
        sys.exit(0)
    return app.parse_flags_with_usage(argv)


def _int_list(name, value):
    try:
        return validation.int_list(value, f"--{name}", minimum=None)
    except ValueError as error:
        raise presets.ConfigError(str(error)) from None


def _paper_preset(preset_name):
    name = f"{preset_name}_paper"
    if name not in presets.PRESETS:
        raise presets.ConfigError(
            f"--protocol=paper exists for {', '.join(presets.PAPER_DATASETS)}, not for "
            f"the {preset_name!r} script: use --protocol=default.")
    return name


def config_from_flags(preset_name):
    """The `TrainConfig` the flags describe (a malformed list is a `ConfigError`).

    With `--protocol=paper` the defaults are the `<preset_name>_paper`
    preset's, and only the flags given on the command line replace them.
    """
    names = [f.name for f in dataclasses.fields(presets.TrainConfig)]
    flag_names = [n for n in names if n in FLAGS and n != "dataset"]
    values = {n: getattr(FLAGS, n) for n in flag_names}
    if FLAGS.protocol == "paper":
        preset_name = _paper_preset(preset_name)
        given = {n: values[n] for n in flag_names if FLAGS[n].present}
        values = {**presets.preset(preset_name), **RUN_DEFAULTS,
                  "output_dir": f"runs/{preset_name}", "data_dir": None, **given}
    for name in LIST_FLAGS:
        values[name] = _int_list(name, values[name])
    if float(values["validation_classes"]).is_integer():
        values["validation_classes"] = int(values["validation_classes"])
    values.update(dataset=presets.preset(preset_name)["dataset"], preset=preset_name)
    return presets.TrainConfig(**values)


def main(preset_name):
    """Runs a training from the flags; a configuration error is one line on stderr."""
    # absl's app.run logs INFO by default; keep the console to progress and results.
    logging.set_verbosity(logging.WARNING)
    try:
        config = config_from_flags(preset_name)
        return trainer.train(config, overridden_by="flag")
    except trainer.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
