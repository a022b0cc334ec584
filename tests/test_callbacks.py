"""RetrievalEvaluation inside fit: logs, Keras callbacks reading them, pictures."""

import glob
import importlib.util
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_mdr
from keras_mdr import evaluation
from keras_mdr.callbacks import RetrievalEvaluation, RetrievalMetrics, RetrievalPictures
from keras_mdr.callbacks import mdr_state

DIM_IN = 12


def _data(n=96, classes=24, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    centres = rng.normal(size=(classes, DIM_IN))
    x = centres[labels] + 0.6 * rng.normal(size=(n, DIM_IN))
    return x.astype(np.float32), labels.astype(np.int32)


def _plain_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((DIM_IN,)), keras.layers.Dense(6)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def _fit_plain(callbacks, epochs=3):
    x, y = _data()
    model = _plain_model()
    target = np.zeros((x.shape[0], 6), np.float32)
    return model, model.fit(x, target, epochs=epochs, batch_size=32, verbose=0,
                            callbacks=callbacks)


def test_metrics_land_in_history_and_match_direct_evaluation():
    held_out = _data(seed=1)
    callback = RetrievalEvaluation(held_out, ks=(1, 2, 4), verbose=0)
    model, history = _fit_plain([callback])
    logs = history.history
    for key in ("val_recall@1", "val_recall@2", "val_recall@4", "val_map@r",
                "val_r_precision"):
        assert len(logs[key]) == 3 and all(0.0 <= v <= 1.0 for v in logs[key]), key
    direct = evaluation.retrieval_metrics(model.predict(held_out[0], verbose=0),
                                          held_out[1], (1, 2, 4))
    assert logs["val_recall@1"][-1] == direct["recall@1"]
    assert logs["val_map@r"][-1] == direct["map@r"]
    assert [epoch for epoch, _ in callback.history] == [0, 1, 2]


def test_every_n_epochs():
    callback = RetrievalEvaluation(_data(seed=1), ks=(1,), every_n_epochs=2, verbose=0)
    _fit_plain([callback], epochs=4)
    assert [epoch for epoch, _ in callback.history] == [1, 3]


def test_model_checkpoint_and_early_stopping_read_the_logs(tmp_path):
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best_{epoch}_{val_recall@1:.3f}.keras"),
        monitor="val_recall@1", mode="max", save_best_only=True,
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_map@r", mode="max", patience=0,
                                         min_delta=1.0)  # never "improves" enough
    callback = RetrievalEvaluation(_data(seed=1), ks=(1,), verbose=0)
    _, history = _fit_plain([callback, checkpoint, stop], epochs=5)
    # min_delta = 1 makes every epoch after the first a non-improvement.
    assert len(history.history["loss"]) == 2
    saved = glob.glob(str(tmp_path / "best_1_*.keras"))
    assert len(saved) == 1
    assert f"{history.history['val_recall@1'][0]:.3f}" in os.path.basename(saved[0])


def test_names_survive_tensorboard(tmp_path):
    """Summary tags keep '@' (only the op scope drops it).

    With the `tensorboard` package installed, Keras's own callback is run;
    without it (this venv), the tag is written with core `tf.summary.write`
    the way TensorBoard's scalar summary writes it, and read back.
    """
    if importlib.util.find_spec("tensorboard") is not None:
        board = keras.callbacks.TensorBoard(str(tmp_path))
        _fit_plain([RetrievalEvaluation(_data(seed=1), ks=(1,), verbose=0), board],
                   epochs=1)
        files = glob.glob(str(tmp_path / "validation" / "events*"))
    else:
        writer = tf.summary.create_file_writer(str(tmp_path))
        with writer.as_default():
            with tf.summary.experimental.summary_scope("epoch_recall@1") as (tag, _):
                tf.summary.write(tag, tf.constant(0.5), step=0)
        writer.flush()
        files = glob.glob(str(tmp_path / "events*"))
    tags = set()
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    assert "epoch_recall@1" in tags


def test_progress_bar_and_printout(capsys):
    x, y = _data(seed=1)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    _fit_plain([RetrievalEvaluation(data, ks=(1,), verbose=1)], epochs=1)
    out = capsys.readouterr().out
    assert "6/6" in out  # the embedding progress bar reached its end
    assert "val_recall@1" in out


def test_query_gallery_data_and_custom_embed_fn():
    queries, galleries = _data(n=48, seed=1), _data(n=96, seed=1)
    seen = []

    def embed(x):
        seen.append(len(x))
        return np.asarray(x)[:, :4]

    callback = RetrievalEvaluation(queries, galleries, ks=(1, 5), embed_fn=embed,
                                   batch_size=20, verbose=0)
    _fit_plain([callback], epochs=1)
    want = evaluation.retrieval_metrics(
        queries[0][:, :4], queries[1], (1, 5),
        gallery_embeddings=galleries[0][:, :4], gallery_labels=galleries[1],
    )
    got = callback.history[0][1]
    assert got["recall@1"] == want["recall@1"] and got["map@r"] == want["map@r"]
    assert sum(seen) == 48 + 96


def _assert_png(path):
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 150 and pixels.shape[1] > 250
    assert pixels.std() > 10


def test_mdr_model_pictures_use_learned_levels(tmp_path):
    x, y = _data(n=96, classes=24)
    images = np.tile(x.reshape(96, 3, 4, 1), (1, 4, 4, 3))  # (96, 12, 16, 3) "images"
    keras.utils.set_random_seed(1)
    encoder = keras.Sequential([keras.Input(images.shape[1:]), keras.layers.Flatten(),
                                keras.layers.Dense(8)])
    model = keras_mdr.MDRModel(encoder)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras_mdr.MDRTripletLoss(base_loss="semihard", seed=3))
    held_out = tf.data.Dataset.from_tensor_slices((images, y)).batch(32)
    callback = RetrievalEvaluation(
        held_out, ks=(1, 2), log_dir=str(tmp_path), plot_distances="epoch",
        grid_queries=3, grid_k=4, verbose=0,
    )
    model.fit(images, y, batch_size=32, epochs=2, shuffle=False, verbose=0,
              callbacks=[callback])
    levels, stats = mdr_state(model)
    np.testing.assert_allclose(levels, model.mdr_regularizer.levels.numpy())
    assert stats == (pytest.approx(float(model.mdr_regularizer.moving_mean.numpy())),
                     pytest.approx(float(model.mdr_regularizer.moving_std.numpy())))
    for name in ("recall_at_k.png", "distances_epoch_001.png", "distances_epoch_002.png",
                 "retrieval_grid.png"):
        _assert_png(tmp_path / name)


def test_mdr_state_on_other_models():
    assert mdr_state(_plain_model()) == (None, None)
    model = keras_mdr.MDRModel(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    model.compile(optimizer="adam", loss=keras_mdr.MDRTripletLoss())
    levels, stats = mdr_state(model)
    np.testing.assert_allclose(levels, [-3.0, 0.0, 3.0])
    assert stats is None  # statistics not set before the first training step


def test_shuffled_data_cannot_be_pictured(tmp_path):
    x, y = _data(seed=1)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, seed=None).batch(32)
    callback = RetrievalEvaluation(data, ks=(1,), grid_queries=2, verbose=0)
    _fit_plain([callback], epochs=1)
    with pytest.raises(ValueError, match="same order"):
        callback.plot_retrieval_grid(str(tmp_path / "grid.png"))


def test_argument_errors():
    with pytest.raises(ValueError, match="every_n_epochs"):
        RetrievalEvaluation(_data(), every_n_epochs=0)
    with pytest.raises(ValueError, match="plot_distances"):
        RetrievalEvaluation(_data(), plot_distances="always")
    # Refused when made, not after the first epoch's embedding pass.
    for ks in ((0, 1), (1, 2.5), ()):
        with pytest.raises(ValueError, match="ks"):
            RetrievalMetrics(_data(), ks=ks)
    with pytest.raises(ValueError, match="`grid_k`"):
        RetrievalEvaluation(_data(), grid_queries=2, grid_k=0)
    with pytest.raises(ValueError, match="`grid_queries`"):
        RetrievalPictures(RetrievalMetrics(_data()), None, grid_queries=-1)
    infinite = tf.data.Dataset.from_tensor_slices(_data()).batch(8).repeat()
    with pytest.raises(ValueError, match="finite"):
        _fit_plain([RetrievalEvaluation(infinite, verbose=0)], epochs=1)


def test_metrics_and_pictures_callbacks_apart(tmp_path):
    """issue 13: the pictures callback draws what the metrics callback measured,
    and only after the epochs it evaluated."""
    held_out = _data(seed=1)
    measure = RetrievalMetrics(held_out, ks=(1, 2), every_n_epochs=2, verbose=0)
    draw = RetrievalPictures(measure, str(tmp_path), plot_distances="epoch", grid_queries=0)
    model, history = _fit_plain([measure, draw], epochs=4)
    assert [epoch for epoch, _ in measure.history] == [1, 3]
    assert measure.last.epoch == 3 and measure.last.metrics == measure.history[-1][1]
    assert history.history["val_recall@1"][-1] == measure.last.metrics["recall@1"]
    pictures = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "*.png")))
    assert pictures == ["distances_epoch_002.png", "distances_epoch_004.png",
                        "recall_at_k.png"]
    np.testing.assert_allclose(measure.last.queries, model.predict(held_out[0], verbose=0),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="RetrievalMetrics"):
        RetrievalPictures(object(), None)


def test_grid_prefers_failed_queries():
    """issue 12: the grid showed successes only; failed queries fill up to half the rows."""
    x, y = _data(seed=2)
    noisy = x + 2.0 * np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    measure = RetrievalMetrics((noisy, y), ks=(1,), embed_fn=lambda v: np.asarray(v),
                               verbose=0)
    recall = measure.evaluate()["recall@1"]
    assert 0.1 < recall < 0.9, recall  # both kinds exist
    for rows in (4, 7):
        draw = RetrievalPictures(measure, None, grid_queries=rows, grid_k=3, seed=5)
        picks, neighbours, _, neighbour_labels = draw.grid_neighbours()
        failed = neighbour_labels[:, 0] != y[picks]
        assert picks.shape == (rows,) and len(set(picks.tolist())) == rows
        assert failed.sum() == -(-rows // 2), (rows, failed)
        assert not (neighbours == picks[:, None]).any()  # a query is not its own neighbour
    always_right = RetrievalMetrics((x[:8], np.arange(8) // 4), ks=(1,),
                                    embed_fn=lambda v: np.eye(8, dtype=np.float32)[
                                        np.arange(len(v)) // 4 * 4], verbose=0)
    always_right.evaluate()
    picks, *_ = RetrievalPictures(always_right, None, grid_queries=3).grid_neighbours()
    assert picks.shape == (3,)  # no failures: successes fill every row
