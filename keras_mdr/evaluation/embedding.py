"""Embedding a finite dataset with a model, with a progress bar."""

import numpy as np

from keras_mdr.evaluation import inputs as inputs_lib


def embedding_function(model):
    """The function `images -> float32 embeddings` used for a model.

    `model.encoder` when the model has one (as `keras_mdr.MDRModel` does),
    else the model itself; Keras models run through `predict_on_batch` (a
    compiled inference step), other callables are called with
    `training=False`.
    """
    import keras

    target = getattr(model, "encoder", None)
    if target is None or not callable(target):
        target = model
    if not callable(target):
        raise ValueError(
            f"Expected a Keras model or a callable. Received: model={model!r}"
        )
    if isinstance(target, keras.Model):
        return target.predict_on_batch
    if isinstance(target, keras.layers.Layer):
        return lambda x: target(x, training=False)
    return target


def _split_batch(batch):
    if isinstance(batch, dict):
        raise ValueError(
            "Expected batches of (inputs, labels) tuples. Received: a dict; map "
            "the dataset to (inputs, labels) first."
        )
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError(
            "Expected batches of (inputs, labels) or (inputs, labels, weights). "
            f"Received: a batch of type {type(batch).__name__}"
        )
    return batch[0], batch[1]


def iterate_batches(data, batch_size=256):
    """Yields `(inputs, labels)` batches from a dataset or a pair of arrays.

    Args:
        data: a finite `tf.data.Dataset` (or any iterable) of batched
            `(inputs, labels[, weights])`, or a tuple `(inputs, labels)` of
            arrays, then cut into batches of `batch_size`.
    """
    if isinstance(data, tuple) and len(data) == 2 and not hasattr(data, "element_spec"):
        inputs, labels = data
        n = len(labels)
        for a in range(0, n, batch_size):
            yield inputs[a : a + batch_size], labels[a : a + batch_size]
        return
    for batch in data:
        yield _split_batch(batch)


def num_batches(data, batch_size=256):
    """The number of batches, or None when unknown (infinite or unknown cardinality)."""
    if isinstance(data, tuple) and len(data) == 2:
        return -(-len(data[1]) // batch_size)
    cardinality = getattr(data, "cardinality", None)
    if cardinality is not None:
        try:
            value = int(cardinality())
        except Exception:  # noqa: BLE001 - not a tf.data.Dataset after all
            return None
        return value if value >= 0 else None
    try:
        return len(data)
    except TypeError:
        return None


def embed_dataset(embed_fn, data, *, batch_size=256, verbose=1):
    """Embeds every batch of `data`.

    Args:
        embed_fn: callable `inputs -> (batch, dim)` embeddings.
        data: see `iterate_batches`. Must be finite (an infinite dataset,
            e.g. one with `.repeat()`, raises).
        batch_size: for array inputs.
        verbose: 1 shows a Keras progress bar.

    Returns:
        `(embeddings, labels)`, float32 `(N, dim)` and `(N,)`.
    """
    import keras

    total = num_batches(data, batch_size)
    cardinality = getattr(data, "cardinality", None)
    if cardinality is not None and total is None:
        try:
            import tensorflow as tf

            if int(cardinality()) == int(tf.data.INFINITE_CARDINALITY):
                raise ValueError(
                    "Expected a finite dataset. Received: a dataset of infinite "
                    "cardinality (drop the .repeat())."
                )
        except ImportError:  # pragma: no cover
            pass
    bar = keras.utils.Progbar(total, unit_name="batch") if verbose else None
    embeddings, labels = [], []
    for step, (inputs, y) in enumerate(iterate_batches(data, batch_size)):
        e = np.asarray(inputs_lib.to_numpy(embed_fn(inputs)), dtype=np.float32)
        y = np.asarray(inputs_lib.to_numpy(y)).reshape(-1)
        if e.ndim != 2 or e.shape[0] != y.shape[0]:
            raise ValueError(
                "Expected the model to return (batch, dim) embeddings, one per "
                f"label. Received: embeddings.shape={e.shape}, labels.shape={y.shape}"
            )
        embeddings.append(e)
        labels.append(y)
        if bar is not None:
            bar.update(step + 1)
    if not embeddings:
        raise ValueError("Expected a non-empty dataset. Received: no batch.")
    return np.concatenate(embeddings), np.concatenate(labels)


def gather_inputs(data, positions, *, batch_size=256):
    """Reads `data` once (no model call), keeping the inputs at `positions`.

    Returns:
        `(kept, labels)`: the inputs at the sorted unique `positions`, as a
        dict `{position: input}`, and every label in reading order (to check
        that the data came in the same order as before).
    """
    want = np.unique(np.asarray(positions, np.int64))
    kept, labels = {}, []
    seen = 0
    for inputs, y in iterate_batches(data, batch_size):
        y = np.asarray(inputs_lib.to_numpy(y)).reshape(-1)
        lo, hi = np.searchsorted(want, [seen, seen + y.shape[0]])
        if hi > lo:
            batch_inputs = inputs_lib.to_numpy(inputs)
            for i in want[lo:hi]:
                kept[int(i)] = np.asarray(batch_inputs[i - seen])
        seen += y.shape[0]
        labels.append(y)
    return kept, np.concatenate(labels)
