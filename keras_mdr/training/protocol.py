"""A run's protocol card, and the paper protocol's reported number.

The *protocol card* lists every setting of a run: its value, where the value
comes from (the preset, a flag or argument that changed it, or
`TrainConfig`'s default), the value of the MDR authors' release for the
dataset (`presets.RELEASE`; none for the small datasets) and whether the two
agree. `train` writes it to `protocol_card.md` and `protocol_card.json` in
the run directory and prints it. Besides the config fields, the card has
rows for what they imply: the form of the weight decay, what is evaluated
when, which number is reported, and the embeddings evaluation ranks.

Under `protocol="paper"` the test split is evaluated before the first epoch
and after every epoch, and the reported number is the release's: the best
test Recall@1 over those evaluations (`paper_summary`), printed beside the
last epoch's and labelled as such. It selects on the test split, so it is an
optimistic estimate; the default protocol selects on validation classes.
"""

import dataclasses
import json
import math
import os

from keras_mdr.training import batchnorm as batchnorm_lib
from keras_mdr.training import presets

PAPER_LABEL = "best test Recall@1 over epochs (paper protocol)"
# Settings that only say where and how loudly to run: on the card, no release value.
_RUN_ONLY = ("data_dir", "output_dir", "verbose", "preset", "export", "max_image_pixels")


def _same(name, value, release):
    if name == "weights":
        return os.path.basename(str(value)) == release
    if isinstance(release, float):
        return isinstance(value, (int, float)) and math.isclose(value, release, rel_tol=1e-9)
    if isinstance(release, tuple):
        return tuple(value) == release
    return value == release


def effective_batchnorm(config):
    """The BatchNorm mode a config trains with: `batchnorm`, else `freeze_batchnorm`'s."""
    if config.batchnorm:
        return batchnorm_lib.batchnorm_mode(config.batchnorm)
    return batchnorm_lib.batchnorm_mode(freeze_batchnorm=config.freeze_batchnorm)


def effective_batch_size(config):
    """Images per training batch: `batch_size`, or P x K when it is 0."""
    return config.batch_size or config.classes_per_batch * config.images_per_class


def _implied(config):
    """{row: (our value, the release's value)} for what the fields imply."""
    paper = config.protocol == "paper"
    every = f"every {config.eval_every} epoch(s)"
    if paper:
        evaluated = f"test split, before the first epoch and {every}"
    elif config.validation_classes:
        evaluated = f"validation split (held-out training classes), {every}; test split at the end"
    else:
        evaluated = f"test split, {every}"
    return {
        "batchnorm (effective)": (effective_batchnorm(config), "release"),
        "batch (effective)": (f"{effective_batch_size(config)} images, {config.batches} batches",
                              None),
        "weight decay form": ("coupled L2 on every trainable variable, levels included"
                              if config.optimizer == "adam_l2" else "decoupled (Keras Adam)",
                              "coupled L2 on every trainable variable, levels included"),
        "evaluated": (evaluated, "test split, before the first epoch and every 1 epoch(s)"),
        "reported": (PAPER_LABEL + ", beside the last epoch's" if paper else
                     "test Recall@K of the last epoch and of the best validation epoch",
                     PAPER_LABEL + ", beside the last epoch's"),
        "evaluation embeddings": ("raw (no L2 normalisation)", "raw (no L2 normalisation)"),
    }


def _source(name, value, config, overridden_by):
    base = presets.PRESETS.get(config.preset, {})
    if name in base:
        if _same(name, value, base[name]) or value == base[name]:
            return f"preset {config.preset}"
        return f"{overridden_by} (preset {config.preset}: {base[name]!r})"
    field = {f.name: f.default for f in dataclasses.fields(presets.TrainConfig)}[name]
    return "default" if value == field else overridden_by


def card_rows(config, overridden_by="argument"):
    """The protocol card of `config`: a list of row dicts.

    Args:
        config: a `TrainConfig`.
        overridden_by: what a value that differs from the preset came from
            ("flag" for the command line, "argument" for Python).

    Returns:
        Rows with "setting", "value", "source" and, for the four benchmarks,
        "release" (the release's value) and "matches" (bool); rows of
        settings without a release value have None in both.
    """
    release = presets.RELEASE.get(config.dataset, {})
    rows = []
    for name, value in config.to_dict().items():
        if name == "preset":
            continue  # the card's title names it
        if name == "classes_per_batch" and config.batches == "release":
            value = f"{value} (unused by release batches)"
        known = release.get(name) if name not in _RUN_ONLY else None
        rows.append(dict(setting=name, value=value, source=_source(name, getattr(config, name),
                                                                    config, overridden_by),
                         release=known, matches=None if known is None else
                         _same(name, getattr(config, name), known)))
    for name, (ours, theirs) in _implied(config).items():
        theirs = theirs if release else None
        rows.append(dict(setting=name, value=ours, source="implied by the settings above",
                         release=theirs, matches=None if theirs is None else ours == theirs))
    return rows


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).replace("|", "/")


def card_markdown(config, rows):
    """The card as a Markdown page: a title, what differs, and the table."""
    differs = [r["setting"] for r in rows if r["matches"] is False]
    lines = [f"# Protocol card: {config.dataset}, protocol {config.protocol!r}"
             f"{f', preset {config.preset}' if config.preset else ''}", ""]
    if config.dataset in presets.RELEASE:
        lines.append(f"Settings that differ from the authors' release: {len(differs)}"
                     f"{': ' + ', '.join(differs) if differs else ''}.")
    else:
        lines.append("The authors' release has no settings for this dataset.")
    lines += ["", "| setting | value | source | release | same as release |",
              "|---|---|---|---|---|"]
    for r in rows:
        same = "-" if r["matches"] is None else ("yes" if r["matches"] else "**no**")
        lines.append(f"| {r['setting']} | {_cell(r['value'])} | {_cell(r['source'])} | "
                     f"{_cell(r['release'])} | {same} |")
    return "\n".join(lines) + "\n"


def write_card(config, directory, overridden_by="argument"):
    """Writes `protocol_card.md` and `protocol_card.json` into `directory`.

    Returns:
        `(markdown, rows)`: the page and `card_rows(config, overridden_by)`.
    """
    rows = card_rows(config, overridden_by)
    text = card_markdown(config, rows)
    card = dict(dataset=config.dataset, protocol=config.protocol, preset=config.preset,
                differs_from_release=[r["setting"] for r in rows if r["matches"] is False],
                rows=rows)
    for name, content in (("protocol_card.md", text),
                          ("protocol_card.json", json.dumps(card, indent=2, default=str))):
        path = os.path.join(directory, name)
        with open(f"{path}.tmp-{os.getpid()}", "w") as f:
            f.write(content)
        os.replace(f"{path}.tmp-{os.getpid()}", path)
    return text, rows


def paper_summary(rows, k=1):
    """The paper protocol's numbers from a run's `metrics.jsonl` rows.

    Args:
        rows: per-epoch dicts with "epoch" (0: before training) and, where
            evaluated, f"test_recall@{k}".
        k: the K of the reported Recall@K (the release reports K = 1).

    Returns:
        dict: "label", f"best_test_recall@{k}" and "best_epoch" (the earliest
        epoch reaching the best), "best_epoch_metrics" (that epoch's test
        metrics, without the "test_" prefix), f"last_test_recall@{k}" and
        "last_epoch", and "evaluated_epochs"; None when no row has the metric.
    """
    key = f"test_recall@{k}"
    scored = [r for r in rows if key in r]
    if not scored:
        return None
    best = max(scored, key=lambda r: (r[key], -r["epoch"]))
    last = max(scored, key=lambda r: r["epoch"])
    return {"label": PAPER_LABEL.replace("Recall@1", f"Recall@{k}"),
            f"best_test_recall@{k}": best[key], "best_epoch": best["epoch"],
            "best_epoch_metrics": {name[len("test_"):]: value for name, value in best.items()
                                   if name.startswith("test_")},
            f"last_test_recall@{k}": last[key], "last_epoch": last["epoch"],
            "evaluated_epochs": [r["epoch"] for r in scored]}


__all__ = ["PAPER_LABEL", "card_markdown", "card_rows", "effective_batch_size",
           "effective_batchnorm", "paper_summary", "write_card"]
