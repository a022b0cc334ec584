"""The protocol card: every setting, where it comes from, and the release's value."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from keras_mdr import training
from keras_mdr.training import protocol

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMPLIED = ["batchnorm (effective)", "batch (effective)", "weight decay form", "evaluated",
           "reported", "evaluation embeddings"]


def _by_setting(rows):
    return {row["setting"]: row for row in rows}


def test_card_has_every_setting_its_source_and_the_release_value():
    config = training.TrainConfig.from_preset(
        "cars196_paper", weights="/data/bn_inception-52deb4733.pth", epochs=3, learning_rate=1e-4)
    rows = protocol.card_rows(config)
    fields = [f.name for f in dataclasses.fields(training.TrainConfig) if f.name != "preset"]
    assert [r["setting"] for r in rows] == fields + IMPLIED
    card = _by_setting(rows)
    assert card["epochs"] == dict(setting="epochs", value=3, release=100, matches=False,
                                  source="argument (preset cars196_paper: 100)")
    assert card["learning_rate"]["matches"] is False and card["learning_rate"]["release"] == 5e-5
    assert card["optimizer"] == dict(setting="optimizer", value="adam_l2", release="adam_l2",
                                     matches=True, source="preset cars196_paper")
    assert card["weights"]["matches"] is True  # the release's file, by name, anywhere
    assert card["strategy"]["source"] == "default" and card["strategy"]["release"] is None
    assert card["classes_per_batch"]["value"] == "32 (unused by release batches)"
    assert [r["setting"] for r in rows if r["matches"] is False] == ["epochs", "learning_rate"]
    assert card["reported"]["value"].startswith("best test Recall@1 over epochs (paper protocol)")
    assert card["evaluated"]["value"] == "test split, before the first epoch and every 1 epoch(s)"


def test_default_protocol_card_names_what_differs_from_the_release():
    card = _by_setting(protocol.card_rows(training.TrainConfig.from_preset("sop")))
    differs = {name for name, row in card.items() if row["matches"] is False}
    assert {"protocol", "backbone", "optimizer", "batchnorm", "head_init", "batches", "crops",
            "validation_classes", "weight decay form", "evaluated", "reported"} <= differs
    assert card["weight decay form"]["value"] == "decoupled (Keras Adam)"
    assert card["mdr_weight"]["matches"] is True and card["sampling"]["matches"] is True
    digits = protocol.card_rows(training.TrainConfig.from_preset("digits"))
    assert all(r["release"] is None and r["matches"] is None for r in digits)


def test_card_files_hold_the_rows(tmp_path):
    config = training.TrainConfig.from_preset("inshop_paper", weights="none", batch_size=64)
    text, rows = protocol.write_card(config, str(tmp_path), overridden_by="flag")
    with open(tmp_path / "protocol_card.md") as f:
        assert f.read() == text
    with open(tmp_path / "protocol_card.json") as f:
        card = json.load(f)
    assert card["rows"] == json.loads(json.dumps(rows, default=str))
    assert card["differs_from_release"] == ["weights", "batch_size"]
    assert "Settings that differ from the authors' release: 2: weights, batch_size." in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == len(rows) + 1  # the header and one line per setting
    assert "| batch_size | 64 | flag (preset inshop_paper: 256) | 256 | **no** |" in text


_CLI = """
import json, sys
from absl import flags
from keras_mdr.training import cli, protocol
cli.define_flags("cub200")
out = []
for argv, script in json.loads(sys.argv[1]):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["script", *argv])
    try:
        config = cli.config_from_flags(script)
    except Exception as error:
        out.append({"error": str(error)})
        continue
    out.append({"config": config.to_dict(), "rows": protocol.card_rows(config, "flag")})
out.append({"help": cli.help_text("cub200", "", "paper"), "plain": cli.help_text("cub200")})
print(json.dumps(out))
"""


def _cli(*runs):
    """config_from_flags for each (argv, script preset), in one process (TensorFlow starts once)."""
    proc = subprocess.run([sys.executable, "-c", _CLI, json.dumps(runs)], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_protocol_flag_takes_the_paper_preset_and_names_the_flags():
    paper, default, digits, helps = _cli(
        (["--protocol=paper", "--epochs=7", "--recall_ks=1,2", "--data_dir=/data/cub"], "cub200"),
        (["--epochs=7"], "cub200"),
        (["--protocol=paper"], "digits"),
    )
    config, card = paper["config"], _by_setting(paper["rows"])
    want = training.TrainConfig.from_preset("cub200_paper", epochs=7, recall_ks=[1, 2],
                                            data_dir="/data/cub").to_dict()
    assert config == json.loads(json.dumps(want))
    assert card["epochs"]["source"] == "flag (preset cub200_paper: 100)"
    assert card["recall_ks"]["source"].startswith("flag") and card["recall_ks"]["matches"] is False
    assert card["batches"]["source"] == "preset cub200_paper"
    default = default["config"]
    assert default["protocol"] == "default" and default["preset"] == "cub200"
    assert default["optimizer"] == "adam" and default["epochs"] == 7
    assert "--protocol=paper exists for cub200, cars196, sop, inshop" in digits["error"]
    # --protocol=paper --help shows the defaults that protocol trains with.
    assert "defaults: the 'cub200_paper' preset" in helps["help"]
    for line in ("--optimizer: adam (Keras, decoupled weight decay) or adam_l2 (PyTorch's coupled "
                 "L2, every variable). (default: 'adam_l2')",
                 "(default: '128')", "(default: '40,60,80')", "(default: 'bn_inception')"):
        assert line in helps["help"], line
    assert "(default: 'adam')" in helps["plain"] and "(default: 'adam_l2')" not in helps["plain"]
