"""Retrieval on held-out classes during `fit`: metrics, and pictures of them.

* `RetrievalMetrics` embeds a held-out dataset every n epochs and adds
  Recall@K, MAP@R, R-Precision (and NMI) to the epoch logs.
* `RetrievalPictures` reads the metrics callback's results and draws them:
  the Recall@K curves, the distance histogram with the MDR levels, the
  retrieval grid (failed queries first).
* `RetrievalEvaluation` is both in one callback, as earlier versions had it.
"""

import math
import os
from typing import NamedTuple

import keras
import numpy as np

from keras_mdr import distances as distances_lib
from keras_mdr import validation
from keras_mdr import visualization
from keras_mdr.evaluation import embedding as embedding_lib
from keras_mdr.evaluation import knn, metrics
from keras_mdr.losses import mdr as mdr_lib


def _variable_value(obj, name):
    value = getattr(obj, name, None)
    if value is None:
        return None
    try:
        return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)
    except Exception:  # noqa: BLE001 - not a tensor-like attribute
        return None


def mdr_state(model):
    """`(levels, (mean, std))` of a model's MDR regulariser, or `(None, None)`.

    Reads `model.mdr_regularizer.levels`, `.moving_mean` and `.moving_std`
    when present (a `keras_mdr.MDRModel` compiled with an MDR loss); the
    statistics are None until the first training step set them.
    """
    regularizer = getattr(model, "mdr_regularizer", None)
    if regularizer is None:
        return None, None
    levels = _variable_value(regularizer, "levels")
    mean = _variable_value(regularizer, "moving_mean")
    std = _variable_value(regularizer, "moving_std")
    initialized = _variable_value(regularizer, "initialized")
    stats = None
    if mean is not None and std is not None and mean.size == 1 and std.size == 1:
        if initialized is None or float(initialized.reshape(-1)[0]) > 0:
            stats = (float(mean.reshape(-1)[0]), float(std.reshape(-1)[0]))
    return levels, stats


class Evaluation(NamedTuple):
    """One evaluation of `RetrievalMetrics`: the epoch (0-based, None outside
    `fit`), its metrics and the embeddings they were computed from (the
    gallery ones None when the queries are the gallery)."""

    epoch: int | None
    metrics: dict
    queries: np.ndarray
    query_labels: np.ndarray
    gallery: np.ndarray | None
    gallery_labels: np.ndarray | None


class RetrievalMetrics(keras.callbacks.Callback):
    """Evaluates retrieval on a held-out dataset every n epochs, into the logs.

    Embeds `data` (images of classes not seen in training) with the model,
    computes Recall@K, MAP@R and R-Precision (optionally NMI) exactly, and
    adds them to the epoch logs as `{prefix}recall@{k}`, `{prefix}map@r`,
    `{prefix}r_precision` (`{prefix}nmi`), e.g. `val_recall@1`, with
    `{prefix}num_queries` and `{prefix}excluded_queries`. Put this callback
    *before* `ModelCheckpoint`, `EarlyStopping`, `TensorBoard` and
    `RetrievalPictures` in the list so that they see the values; the first two
    need `mode="max"` because Keras cannot tell that a larger recall is better.

    Args:
        data: a finite `tf.data.Dataset` of batched `(images, labels)` (in a
            fixed order: no shuffling), or a tuple of arrays
            `(images, labels)`. The queries, and the gallery unless
            `gallery_data` is given.
        gallery_data: optional separate gallery, same forms (In-Shop).
        ks: the K of Recall@K.
        every_n_epochs: evaluate after every n-th epoch (and not the others:
            their logs lack the keys).
        prefix: prepended to every metric name.
        distance: "euclidean" (default, raw embeddings) or "cosine".
        include_map: also compute MAP@R and R-Precision.
        include_nmi: also compute NMI of k-means (slower: k-means with as
            many clusters as classes).
        embed_fn: callable `inputs -> embeddings`; defaults to the model's
            `encoder` if it has one, else the model itself.
        batch_size: for array inputs.
        seed: seed of the k-means of NMI.
        verbose: 1 shows a progress bar while embedding and prints the
            metrics.

    Attributes:
        history: list of `(epoch, metrics_dict)` of every evaluation.
        last: the latest `Evaluation` (with its embeddings), or None.

    Example:

    >>> import numpy as np, keras, keras_mdr.callbacks
    >>> x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    >>> y = np.repeat(np.arange(16), 4)
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss="mse")
    >>> callback = keras_mdr.callbacks.RetrievalMetrics((x, y), ks=(1, 2), verbose=0)
    >>> history = model.fit(x, x[:, :4], epochs=1, verbose=0, callbacks=[callback])
    >>> sorted(k for k in history.history if k.startswith("val_"))
    ['val_excluded_queries', 'val_map@r', 'val_num_queries', 'val_r_precision', 'val_recall@1', 'val_recall@2']

    Reference:
        Musgrave, Belongie & Lim, "A Metric Learning Reality Check", ECCV 2020
        (MAP@R, R-Precision); Kim & Park, AAAI 2021 (the MDR protocol).
    """

    def __init__(self, data, gallery_data=None, *, ks=(1, 2, 4, 8), every_n_epochs=1,
                 prefix="val_", distance="euclidean", include_map=True, include_nmi=False,
                 embed_fn=None, batch_size=256, seed=0, verbose=1):
        super().__init__()
        if int(every_n_epochs) < 1:
            raise ValueError(
                f"Expected every_n_epochs >= 1. Received: every_n_epochs={every_n_epochs}"
            )
        self.data = data
        self.gallery_data = gallery_data
        self.ks = tuple(validation.positive_int(k, "ks") for k in ks)
        if not self.ks:
            raise ValueError("Expected at least one K in `ks`. Received: ks=()")
        self.every_n_epochs = int(every_n_epochs)
        self.prefix = str(prefix)
        self.distance = distances_lib.canonical_distance(distance)
        self.include_map = bool(include_map)
        self.include_nmi = bool(include_nmi)
        self.embed_fn = embed_fn
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.verbose = int(verbose)
        self.history = []
        self.last = None

    def _embed(self, data):
        fn = self.embed_fn or embedding_lib.embedding_function(self.model)
        if self.verbose:
            print()  # keep the embedding bar off the line of fit's own bar
        return embedding_lib.embed_dataset(
            fn, data, batch_size=self.batch_size, verbose=self.verbose
        )

    def evaluate(self, epoch=None):
        """Embeds the data and returns the metrics (names without prefix)."""
        queries, q_labels = self._embed(self.data)
        gallery = g_labels = None
        if self.gallery_data is not None:
            gallery, g_labels = self._embed(self.gallery_data)
        summary = metrics.rank_summary(
            queries, q_labels, gallery_embeddings=gallery, gallery_labels=g_labels,
            distance=self.distance,
        )
        ranks = metrics.metrics_from_ranks(summary, self.ks)
        result = {f"recall@{k}": ranks[f"recall@{k}"] for k in self.ks}
        if self.include_map:
            result["map@r"] = ranks["map@r"]
            result["r_precision"] = ranks["r_precision"]
        result["num_queries"] = ranks["num_queries"]
        result["excluded_queries"] = ranks["excluded_queries"]
        if self.include_nmi:
            from keras_mdr.evaluation import clustering

            result["nmi"] = clustering.nmi(
                queries if gallery is None else np.concatenate([queries, gallery]),
                q_labels if gallery is None else np.concatenate([q_labels, g_labels]),
                distance=self.distance, seed=self.seed,
            )
        self.last = Evaluation(epoch, result, queries, q_labels, gallery, g_labels)
        return result

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        result = self.evaluate(epoch)
        self.history.append((epoch, result))
        if logs is not None:
            for name, value in result.items():
                logs[self.prefix + name] = value
        if self.verbose:
            text = " - ".join(f"{self.prefix}{k}: {v:.4f}" for k, v in result.items())
            print(f"Retrieval evaluation, epoch {epoch + 1}: {text}")


def _grid_picks(failed, count, rng):
    """`count` query positions, failed ones for up to half the rows (more when
    successes run short), the rest successes; each group drawn with `rng`."""
    failures, successes = np.flatnonzero(failed), np.flatnonzero(~failed)
    n_fail = min(failures.size, max(math.ceil(count / 2), count - successes.size))
    n_ok = min(successes.size, count - n_fail)
    return np.sort(np.concatenate([
        rng.choice(failures, size=n_fail, replace=False),
        rng.choice(successes, size=n_ok, replace=False),
    ])).astype(np.int64)


class RetrievalPictures(keras.callbacks.Callback):
    """Draws what a `RetrievalMetrics` callback measured, as PNG files.

    Put it after the metrics callback in the list. In `log_dir`:
    `distances_epoch_{E}.png` (the histogram of MDR-normalised distances of
    the evaluated embeddings with the model's levels and moving statistics,
    read from `model.mdr_regularizer` when it exists) after each evaluated
    epoch or only at the end; at the end of training `recall_at_k.png` (one
    curve per evaluated epoch) and `retrieval_grid.png` (queries and their
    nearest neighbours, failed queries first).

    Args:
        metrics: the `RetrievalMetrics` callback whose results are drawn.
        log_dir: directory for the pictures; None writes none at the end of
            training (`plot_retrieval_grid` still works).
        plot_distances: "epoch" (each evaluation), "end" or None.
        grid_queries: number of queries in the retrieval grid (0: no grid).
        grid_k: neighbours per query in the grid.
        seed: seed of the grid's query choice and the histogram subsample.
    """

    def __init__(self, metrics, log_dir, *, plot_distances="epoch", grid_queries=8, grid_k=5,
                 seed=0):
        super().__init__()
        if plot_distances not in (None, "epoch", "end"):
            raise ValueError(
                "Expected plot_distances to be 'epoch', 'end' or None. "
                f"Received: plot_distances={plot_distances!r}"
            )
        if not isinstance(metrics, RetrievalMetrics):
            raise TypeError(f"Expected a RetrievalMetrics callback. Received: {type(metrics)}")
        self.metrics = metrics
        self.log_dir = log_dir
        self.plot_distances = plot_distances
        self.grid_queries = validation.non_negative_int(grid_queries, "grid_queries")
        self.grid_k = validation.positive_int(grid_k, "grid_k")
        self.seed = int(seed)

    def on_epoch_end(self, epoch, logs=None):
        last = self.metrics.last
        evaluated = last is not None and last.epoch == epoch
        if evaluated and self.log_dir is not None and self.plot_distances == "epoch":
            self.plot_distance_histogram(epoch)

    def plot_distance_histogram(self, epoch):
        """Writes `distances_epoch_{epoch + 1}.png` of the last evaluation."""
        last = self._last()
        levels, stats = mdr_state(self.model)
        title = f"MDR-normalised distances, epoch {epoch + 1}"
        if levels is None:
            title += " (no MDR levels found: default levels shown)"
        return visualization.plot_distance_histogram(
            last.queries,
            os.path.join(self.log_dir, f"distances_epoch_{epoch + 1:03d}.png"),
            labels=last.query_labels,
            levels=mdr_lib.DEFAULT_LEVELS if levels is None else levels,
            mean_std=stats,
            seed=self.seed,
            title=title,
        )

    def on_train_end(self, logs=None):
        history = self.metrics.history
        if self.log_dir is None or not history:
            return
        curves = {
            f"epoch {epoch + 1}": {k: r[f"recall@{k}"] for k in self.metrics.ks}
            for epoch, r in history
        }
        visualization.plot_recall_curves(
            curves, os.path.join(self.log_dir, "recall_at_k.png")
        )
        if self.plot_distances == "end":
            self.plot_distance_histogram(history[-1][0])
        if self.grid_queries > 0:
            self.plot_retrieval_grid(os.path.join(self.log_dir, "retrieval_grid.png"))

    def _last(self):
        if self.metrics.last is None:
            raise ValueError("Expected an evaluation before the pictures. Call evaluate() first.")
        return self.metrics.last

    def grid_neighbours(self):
        """The grid's rows from the last evaluation, failed queries preferred.

        Returns:
            `(picks, neighbours, distances, neighbour_labels)`: the query
            positions (failed ones, whose nearest neighbour has another
            label, for up to half the rows, more when successes run short),
            and for each its `grid_k` nearest gallery positions, distances
            and labels.
        """
        last = self._last()
        self_mode = last.gallery is None
        gallery = last.queries if self_mode else last.gallery
        g_labels = last.query_labels if self_mode else last.gallery_labels
        exclude = np.arange(last.queries.shape[0]) if self_mode else None
        top, _ = knn.knn_search(last.queries, gallery, k=1, distance=self.metrics.distance,
                                exclude_indices=exclude)
        failed = g_labels[top[:, 0]] != last.query_labels
        picks = _grid_picks(failed, min(self.grid_queries, last.queries.shape[0]),
                            np.random.default_rng(self.seed))
        k = min(self.grid_k, gallery.shape[0] - (1 if self_mode else 0))
        neighbours, distances = knn.knn_search(
            last.queries[picks], gallery, k=k, distance=self.metrics.distance,
            exclude_indices=picks if self_mode else None,
        )
        return picks, neighbours, distances, g_labels[neighbours]

    def plot_retrieval_grid(self, path):
        """Writes the retrieval grid of the last evaluation to `path`.

        Picks `grid_queries` queries (seeded; failed ones, whose nearest
        neighbour has another label, for up to half the rows), finds their
        `grid_k` nearest gallery items by exact faiss search on the last
        embeddings, then reads the data once more keeping only those images.
        """
        last = self._last()
        picks, neighbours, distances, neighbour_labels = self.grid_neighbours()
        data, gallery_data = self.metrics.data, self.metrics.gallery_data
        batch_size = self.metrics.batch_size
        if gallery_data is None:
            images, labels_again = embedding_lib.gather_inputs(
                data, np.concatenate([picks, neighbours.reshape(-1)]), batch_size=batch_size)
            gallery_images = images
        else:
            images, labels_again = embedding_lib.gather_inputs(data, picks, batch_size=batch_size)
            gallery_images, _ = embedding_lib.gather_inputs(
                gallery_data, neighbours.reshape(-1), batch_size=batch_size)
        if not np.array_equal(labels_again, last.query_labels):
            raise ValueError(
                "Expected the evaluation data in the same order on every pass "
                "(a shuffled dataset cannot be pictured). Received: labels in a "
                "different order."
            )
        return visualization.plot_retrieval_grid(
            [images[int(i)] for i in picks], last.query_labels[picks],
            [[gallery_images[int(j)] for j in row] for row in neighbours], neighbour_labels,
            path, neighbor_distances=distances,
        )


class RetrievalEvaluation(RetrievalMetrics):
    """`RetrievalMetrics` and `RetrievalPictures` in one callback.

    Takes the arguments of `RetrievalMetrics`, and `log_dir`,
    `plot_distances` (default None), `grid_queries` (default 0) and `grid_k`
    of `RetrievalPictures`, which it runs after its own evaluation
    (`self.pictures`). Earlier versions had only this callback; new code may
    list the two callbacks instead.

    Example:

    >>> import numpy as np
    >>> from keras_mdr.callbacks import RetrievalEvaluation, RetrievalPictures
    >>> data = (np.zeros((8, 4), "float32"), np.arange(8) // 2)
    >>> callback = RetrievalEvaluation(data, log_dir="pictures", grid_queries=4)
    >>> isinstance(callback.pictures, RetrievalPictures), callback.pictures.grid_queries
    (True, 4)
    """

    def __init__(self, data, gallery_data=None, *, log_dir=None, plot_distances=None,
                 grid_queries=0, grid_k=5, **metric_kwargs):
        super().__init__(data, gallery_data, **metric_kwargs)
        self.pictures = RetrievalPictures(
            self, log_dir, plot_distances=plot_distances, grid_queries=grid_queries,
            grid_k=grid_k, seed=self.seed,
        )

    def set_model(self, model):
        super().set_model(model)
        self.pictures.set_model(model)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.pictures.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self.pictures.on_train_end(logs)

    def plot_retrieval_grid(self, path):
        """Writes the retrieval grid of the last evaluation (see `RetrievalPictures`)."""
        return self.pictures.plot_retrieval_grid(path)
