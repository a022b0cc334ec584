"""Checked NumPy inputs for every evaluation and search function.

One home for what the retrieval metrics, the clustering, the neighbour search
and `keras_mdr.index.EmbeddingIndex` accept: float32 matrices, label vectors,
a separate gallery given whole or not at all, and one distance vocabulary.
Each check raises `ValueError("Expected ... Received: ...")` naming the input.
"""

import numpy as np

def to_numpy(x):
    """A NumPy array from a tensor (any Keras backend), an array or a list."""
    if hasattr(x, "numpy"):
        return x.numpy()
    try:
        import keras

        return keras.ops.convert_to_numpy(x)
    except Exception:  # noqa: BLE001 - plain arrays and lists
        return np.asarray(x)


def normalise_rows(x):
    """Rows of float32 `x` scaled to unit L2 norm; zero rows stay zero (not NaN)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))
    norms[norms == 0] = 1.0
    return x / norms[:, None]


def as_matrix(name, x):
    """A C-contiguous float32 `(num_items, dim)` array of finite real values."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(
            f"Expected {name} to be a non-empty 2-D array (num_items, dim). "
            f"Received: {name}.shape={x.shape}"
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"Expected real {name}. Received: dtype={x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"Expected finite {name}. Received: NaN or inf values.")
    return x


def as_labels(name, labels, n):
    """A `(n,)` label vector; `(n, 1)` is accepted and flattened."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(
            f"Expected {name} of shape ({n},). Received: {name}.shape={labels.shape}"
        )
    return labels


def check_gallery(gallery_embeddings, gallery_labels):
    """Raises unless a separate gallery comes with both embeddings and labels, or neither.

    Returns:
        Whether a separate gallery is given.
    """
    if (gallery_embeddings is None) != (gallery_labels is None):
        raise ValueError(
            "Expected gallery_embeddings and gallery_labels together or neither. "
            f"Received: gallery_embeddings is None={gallery_embeddings is None}, "
            f"gallery_labels is None={gallery_labels is None}"
        )
    return gallery_embeddings is not None


def retrieval_inputs(embeddings, labels, gallery_embeddings=None, gallery_labels=None):
    """Checked retrieval inputs: `(queries, q_labels, gallery, g_labels, self_mode)`.

    Without a separate gallery the queries are the gallery (`self_mode`
    True). Labels come back as int64 codes shared by queries and gallery, so
    any sortable label dtype (strings included) works.
    """
    queries = as_matrix("embeddings", embeddings)
    q_labels = as_labels("labels", labels, queries.shape[0])
    if not check_gallery(gallery_embeddings, gallery_labels):
        if queries.shape[0] < 2:
            raise ValueError(
                "Expected at least 2 embeddings when they are both the queries and "
                "the gallery (a query is never its own neighbour, so one item has "
                f"nothing to retrieve). Received: embeddings.shape={queries.shape}"
            )
        codes = np.unique(q_labels, return_inverse=True)[1].astype(np.int64)
        return queries, codes, queries, codes, True
    gallery = as_matrix("gallery_embeddings", gallery_embeddings)
    if gallery.shape[1] != queries.shape[1]:
        raise ValueError(
            "Expected queries and gallery of the same dimension. Received: "
            f"embeddings.shape={queries.shape}, gallery_embeddings.shape={gallery.shape}"
        )
    g_labels = as_labels("gallery_labels", gallery_labels, gallery.shape[0])
    codes = np.unique(np.concatenate([q_labels, g_labels]), return_inverse=True)[1]
    codes = codes.astype(np.int64)
    return queries, codes[: queries.shape[0]], gallery, codes[queries.shape[0] :], False
