"""`protocol="paper"`: the presets hold the release's settings and a run uses each of them.

The release's values are written out here from its training protocol (not
read from `presets.RELEASE`), so a wrong preset or a wrong `RELEASE` table
fails. Runs use tiny copies of the benchmarks in their real layouts and a
small backbone; the BN-Inception model is built (not trained) to check it.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mdr import data as data_lib
from keras_mdr import evaluation
from keras_mdr import optimizers
from keras_mdr import training
from keras_mdr.training import batchnorm
from keras_mdr.training import presets
from keras_mdr.training import protocol
from keras_mdr.training import trainer

# The authors' release (its README and training loop), per benchmark.
RELEASE_COMMON = dict(
    protocol="paper", backbone="bn_inception", embedding_dim=512, image_size=224,
    resize_size=256, batchnorm="release", head_init="torch", optimizer="adam_l2",
    weight_decay=1e-5, lr_decay_epochs=(40, 60, 80), lr_decay_factor=0.2, epochs=100,
    steps_per_epoch=100, batches="release", crops="release", base_loss="distance_weighted",
    sampling="release", margin=0.2, level_weight=0.01, eval_every=1, validation_classes=0,
    eval_distance="squared_euclidean",
)
RELEASE_PER_DATASET = {
    "cub200": dict(learning_rate=5e-5, mdr_weight=0.6, batch_size=128, images_per_class=4,
                   recall_ks=(1, 2, 4, 8)),
    "cars196": dict(learning_rate=5e-5, mdr_weight=0.2, batch_size=128, images_per_class=4,
                    recall_ks=(1, 2, 4, 8)),
    "sop": dict(learning_rate=1e-4, mdr_weight=0.1, batch_size=256, images_per_class=3,
                recall_ks=(1, 10, 100, 1000)),
    "inshop": dict(learning_rate=1e-4, mdr_weight=0.1, batch_size=256, images_per_class=3,
                   recall_ks=(1, 10, 20, 30, 40)),
}


def _small(name, data_dir, tmp_path, **overrides):
    """The paper preset on a tiny copy: a small CNN and small images, the rest the release's."""
    values = dict(data_dir=data_dir, output_dir=str(tmp_path / "run"), backbone="small_cnn",
                  weights="none", image_size=24, resize_size=28, batch_size=8,
                  images_per_class=2, epochs=3, steps_per_epoch=2, lr_decay_epochs=(2,),
                  recall_ks=(1, 2), export=False, verbose=1)
    values.update(overrides)
    return training.TrainConfig.from_preset(name, **values)


@pytest.mark.parametrize("dataset", sorted(RELEASE_PER_DATASET))
def test_paper_presets_hold_every_release_setting(dataset):
    release = dict(RELEASE_COMMON, **RELEASE_PER_DATASET[dataset])
    config = training.TrainConfig.from_preset(f"{dataset}_paper")
    for name, value in release.items():
        assert getattr(config, name) == value, name
        assert presets.RELEASE[dataset][name] == value, name  # the card's release column
    assert presets.RELEASE[dataset]["weights"] == "bn_inception-52deb4733.pth"
    # The ImageNet weights come from the release's file: its path must be given.
    with pytest.raises(training.ConfigError, match="bn_inception-52deb4733.pth"):
        trainer.validate(config)


def test_default_presets_keep_our_protocol():
    for dataset in RELEASE_PER_DATASET:
        config = training.TrainConfig.from_preset(dataset)
        assert config.protocol == "default" and config.validation_classes > 0
        assert config.optimizer == "adam" and config.batches == "balanced"


def test_bn_inception_paper_model_has_the_release_pieces():
    config = training.TrainConfig.from_preset("cars196_paper", weights="none", image_size=32,
                                              resize_size=36)
    model = trainer.build_model(config)
    head = model.encoder.get_layer("embedding")
    kernel, bias = (np.asarray(w) for w in head.get_weights())
    assert kernel.shape == (1024, 512)  # BN-Inception's 1024-d features -> 512
    bound = 1 / np.sqrt(1024)  # PyTorch Linear's default init
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.99 * bound
    assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.9 * bound
    norms = [layer for layer in batchnorm.all_layers(model.encoder)
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) > 50
    assert all(isinstance(layer, batchnorm.InferenceBatchNormalization) for layer in norms)
    trainable = {id(v) for v in model.trainable_variables}
    assert all(id(layer.gamma) in trainable and id(layer.beta) in trainable for layer in norms)
    optimizer = model.optimizer
    assert isinstance(optimizer, optimizers.AdamL2)
    assert (optimizer.coupled_weight_decay, optimizer.beta_1, optimizer.beta_2,
            optimizer.epsilon) == (1e-5, 0.9, 0.999, 1e-8)
    loss = model.loss
    assert (loss.base_loss, loss.sampling, loss.margin, loss.mdr_weight, loss.level_weight) == (
        "distance_weighted", "release", 0.2, 0.2, 0.01)


def test_weight_decay_reaches_every_variable_levels_included():
    # With no data gradient, coupled L2 is the whole gradient g = 1e-5 w, and
    # Adam's first step moves w by lr * g / (|g| + eps): about lr towards 0
    # (decoupled decay would move it by lr * 1e-5 * w, 1e5 times less).
    config = training.TrainConfig.from_preset("cub200_paper", backbone="small_cnn",
                                              weights="none", image_size=16, resize_size=20)
    model = trainer.build_model(config)
    variables = model.trainable_variables
    assert any(v.path.endswith("levels") for v in variables)
    before = [np.array(v.numpy()) for v in variables]
    model.optimizer.apply_gradients([(tf.zeros_like(v), v) for v in variables])
    for variable, old in zip(variables, before):
        gradient = 1e-5 * old.astype(np.float64)
        want = old - 5e-5 * gradient / (np.abs(gradient) + 1e-8)
        # float32 rounding: half a spacing of the new value, plus the update's own.
        tolerance = np.spacing(np.abs(old)) + 1e-8
        assert np.all(np.abs(variable.numpy() - want) <= tolerance), variable.path


def test_training_batches_and_crops_are_the_releases(cub_dir, tmp_path):
    config = _small("cub200_paper", cub_dir, tmp_path, batch_size=7)
    data = trainer.load_data(config)
    ours = trainer.training_batches(config, data, replicas=1, first_batch=3)
    theirs = data_lib.release_batches(
        data.splits.train, 7, 2, transform=data_lib.release_train_transform(24, 28),
        seed=config.seed, start_batch=3)
    for (images, labels), (want_images, want_labels) in zip(ours.take(2), theirs.take(2)):
        assert images.shape == (7, 24, 24, 3)
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_array_equal(images, want_images)
        assert np.bincount(labels.numpy()).max() <= 2
    image = tf.io.decode_jpeg(tf.io.read_file(data.splits.test.paths[0]))
    want = data_lib.release_eval_transform(24, 28)(image, None)
    np.testing.assert_array_equal(data.test_transform(image, None), want)


@pytest.mark.parametrize("layout", ["cub200", "inshop"])
def test_paper_run_evaluates_test_every_epoch_and_reports_the_best(
        layout, cub_dir, inshop_dir, tmp_path, capsys):
    config = _small(f"{layout}_paper", cub_dir if layout == "cub200" else inshop_dir, tmp_path)
    results = trainer.train(config)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]  # before the first epoch, then each
    assert all("test_recall@1" in r and "test_recall@2" in r for r in rows)
    assert not [key for r in rows for key in r if key.startswith("val_")]
    recalls = [r["test_recall@1"] for r in rows]
    paper = results["paper_protocol"]
    assert paper["label"] == "best test Recall@1 over epochs (paper protocol)"
    assert paper["best_test_recall@1"] == max(recalls)
    assert paper["best_epoch"] == recalls.index(max(recalls))
    assert paper["last_test_recall@1"] == recalls[-1] and paper["last_epoch"] == 3
    assert results["test"]["recall@1"] == pytest.approx(recalls[-1])
    assert results["test_untrained"]["recall@1"] == recalls[0]
    printed = capsys.readouterr().out
    assert "# Protocol card: " in printed
    assert (f"best test Recall@1 over epochs (paper protocol): {100 * max(recalls):.2f} "
            f"(epoch {paper['best_epoch']}") in printed
    assert f"last epoch's test Recall@1: {100 * recalls[-1]:.2f} (epoch 3)" in printed
    best_row = [line for line in printed.splitlines()
                if line.strip().startswith(f"best (test, epoch {paper['best_epoch']})")]
    assert len(best_row) == 1 and f"{100 * max(recalls):12.2f}" in best_row[0], printed[-1500:]
    assert os.path.exists(tmp_path / "run" / "protocol_card.md")
    # best.keras as the release's best.pth: saved when an epoch beats all earlier ones.
    best_path = tmp_path / "run" / "checkpoints" / "best.keras"
    print(f"\n[paper run, {layout}] test R@1 by epoch: {recalls}")
    assert best_path.exists() == (paper["best_epoch"] > 0)
    if paper["best_epoch"] > 0:
        best = keras.saving.load_model(best_path)
        data = trainer.load_data(config)
        recall = trainer.test_metrics(best.encoder, data, (1, 2), config.eval_distance)["recall@1"]
        assert recall == pytest.approx(max(recalls))
    model = keras.saving.load_model(tmp_path / "run" / "checkpoints" / "last.keras")
    assert isinstance(model.optimizer, optimizers.AdamL2)
    for layer in batchnorm.all_layers(model.encoder):
        if isinstance(layer, keras.layers.BatchNormalization):  # statistics never updated
            np.testing.assert_array_equal(layer.moving_mean.numpy(), 0.0)
            np.testing.assert_array_equal(layer.moving_variance.numpy(), 1.0)


def test_default_protocol_selects_on_validation(cub_dir, tmp_path):
    config = training.TrainConfig.from_preset(
        "cub200", data_dir=cub_dir, output_dir=str(tmp_path / "run"), backbone="small_cnn",
        weights="none", image_size=24, resize_size=28, classes_per_batch=2, images_per_class=2,
        epochs=2, steps_per_epoch=2, eval_every=1, validation_classes=2, recall_ks=(1, 2),
        export=False, verbose=0)
    results = trainer.train(config)
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all("val_recall@1" in r and "test_recall@1" not in r for r in rows)
    assert "paper_protocol" not in results and "test_at_best" in results


def test_reported_numbers_from_logged_rows():
    rows = [{"epoch": 0, "test_recall@1": 0.3}, {"epoch": 1, "loss": 2.0},
            {"epoch": 2, "test_recall@1": 0.6}, {"epoch": 3, "test_recall@1": 0.6},
            {"epoch": 4, "test_recall@1": 0.5}]
    summary = protocol.paper_summary(rows)
    assert (summary["best_test_recall@1"], summary["best_epoch"]) == (0.6, 2)  # the earliest best
    assert (summary["last_test_recall@1"], summary["last_epoch"]) == (0.5, 4)
    assert summary["evaluated_epochs"] == [0, 2, 3, 4]
    assert summary["best_epoch_metrics"] == {"recall@1": 0.6}
    assert protocol.paper_summary([{"epoch": 1, "loss": 1.0}]) is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(validation_classes=2), "--protocol=paper evaluates the test split"),
        (dict(optimizer="sgd"), "Unknown --optimizer='sgd'"),
        (dict(batches="pk"), "Unknown --batches='pk'"),
        (dict(sampling="hardest"), "Unknown --sampling='hardest'"),
        (dict(batches="balanced", batch_size=9), "--batch_size=9 needs --batches=release"),
    ],
)
def test_bad_protocol_settings_fail_fast(overrides, message, cub_dir, tmp_path):
    config = _small("cub200_paper", cub_dir, tmp_path, **overrides)
    with pytest.raises(training.ConfigError, match=message.replace("(", r"\(")):
        trainer.validate(config)


def test_release_batches_need_enough_images(cub_dir, tmp_path):
    config = _small("cub200_paper", cub_dir, tmp_path, batch_size=64)
    with pytest.raises(training.ConfigError, match="--batch_size=64 needs that many"):
        trainer.load_data(config)
    digits = training.TrainConfig.from_preset("digits", crops="release")
    with pytest.raises(training.ConfigError, match="--crops=release"):
        trainer.validate(digits)


def _release_recall(queries, q_labels, gallery, g_labels, ks, self_retrieval):
    """The release's Recall@K: squared distances clamped at 1e-12, the query never its own match."""
    q, g = queries.astype(np.float32), gallery.astype(np.float32)
    squared = (q**2).sum(1)[:, None] + (g**2).sum(1)[None, :] - 2 * q @ g.T
    squared = np.maximum(squared, 1e-12)
    if self_retrieval:
        np.fill_diagonal(squared, np.inf)
    order = np.argsort(squared, axis=1, kind="stable")
    hits = g_labels[order] == q_labels[:, None]
    return {f"recall@{k}": float(hits[:, :k].any(1).mean()) for k in ks}


def test_evaluation_ranks_as_the_releases():
    rng = np.random.default_rng(5)
    embeddings = rng.normal(size=(90, 16)).astype(np.float32) * 7.0  # raw: not normalised
    labels = np.repeat(np.arange(30), 3)
    ks = (1, 2, 4, 8)
    ours = evaluation.retrieval_metrics(embeddings, labels, ks, distance="squared_euclidean")
    want = _release_recall(embeddings, labels, embeddings, labels, ks, self_retrieval=True)
    assert {k: ours[k] for k in want} == pytest.approx(want, abs=1e-12)
    queries, gallery = embeddings[::2], embeddings[1::2]
    ours = evaluation.retrieval_metrics(queries, labels[::2], ks, distance="squared_euclidean",
                                        gallery_embeddings=gallery, gallery_labels=labels[1::2])
    want = _release_recall(queries, labels[::2], gallery, labels[1::2], ks, self_retrieval=False)
    assert {k: ours[k] for k in want} == pytest.approx(want, abs=1e-12)
    assert 0.0 < want["recall@1"] < want["recall@8"] < 1.0  # the check can tell ranks apart


class _Kill(keras.callbacks.Callback):
    """Raises after `at_step` optimizer steps, as a kill mid-epoch would stop the run."""

    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.at_step:
            raise KeyboardInterrupt("simulated kill")


def test_killed_paper_run_resumes_to_the_same_numbers(cub_dir, tmp_path):
    short = dict(epochs=2, lr_decay_epochs=(1,), checkpoint_every=1, verbose=0)
    whole = _small("cub200_paper", cub_dir, tmp_path / "whole", **short)
    killed = _small("cub200_paper", cub_dir, tmp_path / "killed", **short)
    want = trainer.train(whole)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(killed, callbacks=[_Kill(at_step=3)])  # mid epoch 2
    got = trainer.train(killed)

    def rows(config):
        with open(os.path.join(config.output_dir, "metrics.jsonl")) as f:
            return [json.loads(line) for line in f]

    assert [r["epoch"] for r in rows(killed)] == [0, 1, 2]  # epoch 0 evaluated once
    # (The epoch's mean loss is not compared: a resumed epoch averages its remaining steps.)
    for name in ("test_recall@1", "test_recall@2"):
        assert [r.get(name) for r in rows(killed)] == [r.get(name) for r in rows(whole)], name
    assert got["paper_protocol"] == want["paper_protocol"]
    assert got["test_untrained"] == want["test_untrained"]
    models = [keras.saving.load_model(os.path.join(c.output_dir, "checkpoints", "last.keras"))
              for c in (whole, killed)]
    for a, b in zip(models[0].variables + models[0].optimizer.variables,
                    models[1].variables + models[1].optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
