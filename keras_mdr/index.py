"""`EmbeddingIndex`: nearest-neighbour search over a gallery of embeddings.

Exact by default (faiss `IndexFlatL2` / `IndexFlatIP`); approximate on request
(`kind="hnsw"` or `kind="ivf"`) for galleries of millions, with
`recall_against_exact` to measure what the approximation costs.

Labels and ids are kept as plain NumPy arrays of one kind each: integers
(int64), strings (unicode) or, for labels only, floats. Object arrays of
Python strings or ints (what pandas' `.values` gives) are converted on entry,
so `save` writes no pickle and `load` reads with `allow_pickle=False`.
"""

import json
import os
from typing import NamedTuple

import numpy as np

from keras_mdr import distances as distances_lib
from keras_mdr import validation
from keras_mdr.evaluation import embedding as embedding_lib
from keras_mdr.evaluation import inputs as inputs_lib
from keras_mdr.evaluation import knn

KINDS = ("flat", "hnsw", "ivf")
MISSING_ID = -1
MISSING_STRING = ""
_INDEX_FILE = "index.faiss"
_META_FILE = "metadata.npz"
_CONFIG_FILE = "config.json"


class SearchResult(NamedTuple):
    """Top-k neighbours of each query, nearest first.

    A query gets fewer than k neighbours when k exceeds the gallery (or an
    approximate index finds fewer); its row is then padded at the end, and
    `found` says how many entries are real. The padding is unambiguous: id
    `MISSING_ID` (-1; integer ids are >= 0) or `MISSING_STRING` ("" ; string
    ids are non-empty), distance inf, and label -1, "" or NaN by the labels'
    kind (labels may take those values, so read `found` or `valid`).

    Attributes:
        ids: `(Q, k)` ids of the gallery items.
        labels: `(Q, k)` their labels, or None when the index has no labels.
        distances: float32 `(Q, k)` in the index's distance ("euclidean":
            L2, "squared_euclidean", "cosine": `1 - cos`); inf when padded.
        found: int64 `(Q,)`, the number of real neighbours of each query.
    """

    ids: np.ndarray
    labels: np.ndarray | None
    distances: np.ndarray
    found: np.ndarray

    @property
    def valid(self):
        """Bool `(Q, k)`: True where the entry is a real neighbour."""
        return np.arange(self.ids.shape[1])[None, :] < self.found[:, None]


def _column(name, values, n):
    """`values` as a `(n,)` array of int64, unicode or float (no object dtype)."""
    values = np.asarray(values)
    if values.ndim != 1 and values.size == n:
        values = values.reshape(-1)
    if values.shape != (n,):
        raise ValueError(f"Expected {n} {name}. Received: {name}.shape={values.shape}")
    if values.dtype == object:
        kinds = {type(v) for v in values.tolist()}
        if kinds <= {str}:
            return values.astype(str)
        if kinds <= {bytes}:  # tf.string labels, read back from a dataset
            return np.array([v.decode("utf-8") for v in values.tolist()], dtype=str)
        if all(issubclass(t, (int, np.integer)) and not issubclass(t, bool) for t in kinds):
            return values.astype(np.int64)
        raise ValueError(
            f"Expected {name} all of one kind, integers or strings. Received: an "
            f"object array holding {sorted(t.__name__ for t in kinds)}"
        )
    if values.dtype.kind in "iu":
        if values.dtype.kind == "u" and n and values.max() > np.iinfo(np.int64).max:
            raise ValueError(f"Expected {name} below 2**63. Received: {values.max()}")
        return values.astype(np.int64)
    if values.dtype.kind == "S":
        return np.char.decode(values, "utf-8")
    if values.dtype.kind in "Uf":
        return values
    raise ValueError(
        f"Expected {name} of integers or strings. Received: dtype={values.dtype}"
    )


def _check_ids(ids, existing):
    """Raises unless the ids are unique, non-negative / non-empty, and of the index's kind."""
    if ids.dtype.kind == "f":
        raise ValueError(f"Expected integer or string ids. Received: dtype={ids.dtype}")
    if existing.shape[0] and existing.dtype.kind != ids.dtype.kind:
        raise ValueError(
            f"Expected ids of the same kind as the index's ({existing.dtype}). "
            f"Received: dtype={ids.dtype}"
        )
    if ids.dtype.kind == "i" and ids.shape[0] and ids.min() < 0:
        raise ValueError(
            f"Expected ids >= 0 ({MISSING_ID} marks an empty result slot). "
            f"Received: min(ids)={ids.min()}"
        )
    if ids.dtype.kind == "U" and (ids == MISSING_STRING).any():
        raise ValueError("Expected non-empty string ids (\"\" marks an empty result slot).")
    both = np.concatenate([existing, ids]) if existing.shape[0] else ids
    unique, counts = np.unique(both, return_counts=True)
    if (counts > 1).any():
        raise ValueError(
            f"Expected unique ids. Received: {unique[counts > 1][:5].tolist()} more than once"
        )


def _missing_value(dtype):
    return {"i": MISSING_ID, "U": MISSING_STRING}.get(dtype.kind, np.nan)


def _padded(values, safe, missing):
    """`values[safe]`, with the kind's missing value where `missing`."""
    taken = values[safe]
    return np.where(missing, np.asarray(_missing_value(values.dtype), taken.dtype), taken)


class EmbeddingIndex:
    """A searchable gallery of embeddings with ids and labels.

    Args:
        distance: "euclidean" (default), "squared_euclidean" or "cosine".
        kind: "flat" (exact, default), "hnsw" (faiss `IndexHNSWFlat`) or
            "ivf" (faiss `IndexIVFFlat`).
        hnsw_m: HNSW graph degree.
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW search-time beam width (recall/speed trade-off); may
            be changed on a built index, the next `search` uses it.
        nlist: IVF cells; defaults to about `sqrt(N)` (at least 39 points a
            cell, faiss's training minimum).
        nprobe: IVF cells visited per query; may be changed like `ef_search`.
        embed_fn: optional callable `inputs -> embeddings`, used when `search`
            is given images; `from_model` sets it.
        seed: seed of IVF training.

    Example:

    >>> import numpy as np
    >>> from keras_mdr.index import EmbeddingIndex
    >>> gallery = np.random.default_rng(0).normal(size=(100, 8)).astype("float32")
    >>> index = EmbeddingIndex().build(gallery, labels=np.arange(100) % 10)
    >>> result = index.search(gallery[:2], k=3)
    >>> result.ids[:, 0].tolist()
    [0, 1]
    """

    def __init__(
        self,
        distance="euclidean",
        kind="flat",
        *,
        hnsw_m=32,
        ef_construction=200,
        ef_search=128,
        nlist=None,
        nprobe=32,
        embed_fn=None,
        seed=0,
    ):
        self.distance = distances_lib.canonical_distance(distance)
        if kind not in KINDS:
            raise ValueError(f"Expected kind in {KINDS}. Received: kind={kind!r}")
        self.kind = kind
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.nlist = None if nlist is None else int(nlist)
        self.nprobe = int(nprobe)
        self.embed_fn = embed_fn
        self.seed = int(seed)
        self._index = None
        self._ids = np.zeros(0, np.int64)
        self._labels = None

    def get_config(self):
        return {
            "distance": self.distance,
            "kind": self.kind,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "seed": self.seed,
        }

    @property
    def dim(self):
        return None if self._index is None else int(self._index.d)

    def __len__(self):
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def ids(self):
        return self._ids

    @property
    def labels(self):
        return self._labels

    def _prepare(self, x, name="embeddings"):
        x = inputs_lib.as_matrix(name, x)
        return inputs_lib.normalise_rows(x) if self.distance == "cosine" else x

    def _new_index(self, x):
        import faiss

        d = x.shape[1]
        metric = faiss.METRIC_INNER_PRODUCT if self.distance == "cosine" else faiss.METRIC_L2
        if self.kind == "flat":
            return faiss.IndexFlatIP(d) if self.distance == "cosine" else faiss.IndexFlatL2(d)
        if self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, self.hnsw_m, metric)
            index.hnsw.efConstruction = self.ef_construction
            return index
        nlist = self.nlist or max(1, min(x.shape[0] // 39, round(np.sqrt(x.shape[0]))))
        quantizer = faiss.IndexFlatIP(d) if self.distance == "cosine" else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
        index.cp.seed = self.seed
        index.train(x)
        return index

    def _apply_search_params(self):
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = int(self.ef_search)
        elif self.kind == "ivf":
            self._index.nprobe = int(self.nprobe)

    def build(self, embeddings, labels=None, ids=None):
        """Replaces the gallery with `embeddings` (float `(N, dim)`).

        Args:
            embeddings: the gallery.
            labels: optional `(N,)` labels: integers, strings (object arrays
                of `str` included) or floats; returned by `search`.
            ids: optional `(N,)` unique ids, integers >= 0 or non-empty
                strings; defaults to `0..N-1`.

        Returns:
            self.
        """
        x = self._prepare(embeddings)
        previous = (self._index, self._ids, self._labels)
        self._index, self._ids, self._labels = self._new_index(x), np.zeros(0, np.int64), None
        try:
            return self._add(x, labels, ids, first=True)
        except ValueError:
            self._index, self._ids, self._labels = previous
            raise

    def add(self, embeddings, labels=None, ids=None):
        """Adds items to a built index (an IVF index keeps its trained cells).

        Args as in `build`; integer ids default to the largest id so far plus
        1, 2, ... (string ids must be given).
        """
        if self._index is None:
            return self.build(embeddings, labels=labels, ids=ids)
        return self._add(self._prepare(embeddings), labels, ids)

    def _new_ids(self, ids, n):
        if ids is not None:
            ids = _column("ids", ids, n)
        elif self._ids.dtype.kind == "U" and self._ids.shape[0]:
            raise ValueError("Expected ids: this index has string ids, which cannot be numbered.")
        else:
            start = int(self._ids.max()) + 1 if self._ids.shape[0] else 0
            ids = np.arange(start, start + n, dtype=np.int64)
        _check_ids(ids, self._ids)
        return ids

    def _new_labels(self, labels, n, first):
        if not first and (labels is None) != (self._labels is None):
            raise ValueError(
                "Expected labels for every item or for none. Received: labels "
                f"{'missing' if labels is None else 'given'} while the index has "
                f"{'none' if self._labels is None else 'them'}."
            )
        if labels is None:
            return None
        labels = _column("labels", labels, n)
        if first:
            return labels
        if labels.dtype.kind != self._labels.dtype.kind:
            raise ValueError(
                f"Expected labels of the same kind as the index's ({self._labels.dtype}). "
                f"Received: dtype={labels.dtype}"
            )
        return np.concatenate([self._labels, labels])

    def _add(self, x, labels, ids, first=False):
        if x.shape[1] != self._index.d:
            raise ValueError(
                f"Expected embeddings of dimension {self._index.d}. "
                f"Received: shape={x.shape}"
            )
        n = x.shape[0]
        ids = self._new_ids(ids, n)
        new_labels = self._new_labels(labels, n, first)
        self._index.add(x)
        self._labels = new_labels
        self._ids = np.concatenate([self._ids, ids]) if self._ids.shape[0] else ids
        return self

    @classmethod
    def from_model(cls, model, data, *, ids=None, batch_size=256, verbose=1, **kwargs):
        """Embeds a finite dataset of `(images, labels)` with `model` and indexes it.

        The model (its `encoder` when it has one) is kept for image queries.
        Other keyword arguments go to the constructor.
        """
        embed_fn = kwargs.pop("embed_fn", None) or embedding_lib.embedding_function(model)
        embeddings, labels = embedding_lib.embed_dataset(
            embed_fn, data, batch_size=batch_size, verbose=verbose
        )
        return cls(embed_fn=embed_fn, **kwargs).build(embeddings, labels=labels, ids=ids)

    def embed(self, inputs, batch_size=256):
        """Embeddings of `inputs` (images) with the index's `embed_fn`."""
        if self.embed_fn is None:
            raise ValueError(
                "Expected an index built with from_model (or given embed_fn) to "
                "search with images. Received: inputs that are not (Q, dim) "
                "embeddings and no embed_fn."
            )
        parts = [
            np.asarray(inputs_lib.to_numpy(self.embed_fn(inputs[a : a + batch_size])),
                       dtype=np.float32)
            for a in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(parts)

    def _query_embeddings(self, queries):
        """`(Q, dim)` float32 query embeddings, embedding images with `embed_fn`."""
        q = inputs_lib.to_numpy(queries)
        expected = f"queries of shape (num_queries, {self.dim})"
        if q.ndim == 0 or q.shape[0] == 0:
            raise ValueError(f"Expected at least one query: {expected}. Received: shape={q.shape}")
        if q.ndim == 1:
            raise ValueError(
                f"Expected {expected}. Received: one vector of shape {q.shape}; "
                "for a single query pass `queries[None]`, of shape (1, dim)."
            )
        is_embedding = q.ndim == 2 and q.shape[1] == self.dim
        if not is_embedding and self.embed_fn is None:
            raise ValueError(
                f"Expected {expected} (the index's dimension), or images with an index "
                f"built by from_model or given embed_fn. Received: shape={q.shape} "
                "and no embed_fn."
            )
        if not is_embedding:
            q = self.embed(q)
            if q.ndim != 2 or q.shape[1] != self.dim:
                raise ValueError(
                    f"Expected embed_fn to return embeddings of shape (num_queries, "
                    f"{self.dim}). Received: shape={q.shape}"
                )
        return self._prepare(q, "queries")

    def search(self, queries, k=10, *, batch_size=4096):
        """The `k` nearest gallery items of each query.

        Args:
            queries: `(Q, dim)` embeddings, or model inputs (images) when the
                index has an `embed_fn` and the array is not `(Q, dim)`.
            k: neighbours per query; more than the gallery is allowed, the
                rows are then padded (see `SearchResult`).
            batch_size: queries per faiss call (bounds memory).

        Returns:
            A `SearchResult(ids, labels, distances, found)`.
        """
        if self._index is None or len(self) == 0:
            raise ValueError("Expected a built, non-empty index. Call build() first.")
        k = validation.positive_int(k, "k")
        q = self._query_embeddings(queries)
        self._apply_search_params()
        raw = np.empty((q.shape[0], k), np.float32)
        pos = np.empty((q.shape[0], k), np.int64)
        for a in range(0, q.shape[0], batch_size):
            raw[a : a + batch_size], pos[a : a + batch_size] = self._index.search(
                q[a : a + batch_size], k
            )
        return self._result(raw, pos)

    def _result(self, raw, pos):
        """A `SearchResult` from faiss' raw scores and positions (-1: none)."""
        missing = pos < 0
        safe = np.where(missing, 0, pos)
        if self.distance == "cosine":
            distances = 1.0 - raw
        else:
            distances = knn.faiss_to_distance(raw, self.distance)
        return SearchResult(
            ids=_padded(self._ids, safe, missing),
            labels=None if self._labels is None else _padded(self._labels, safe, missing),
            distances=np.where(missing, np.inf, distances).astype(np.float32),
            found=(~missing).sum(axis=1).astype(np.int64),
        )

    def recall_against_exact(self, queries, k=10):
        """Fraction of the exact top-k ids that this index returns (1.0 for "flat").

        Padded slots (k larger than the gallery) count on neither side.
        """
        exact = EmbeddingIndex(distance=self.distance)
        exact._index = knn.flat_index(self._stored_vectors(), self.distance)
        exact._ids = self._ids
        found, truth = self.search(queries, k), exact.search(queries, k)
        hits = sum(
            np.intersect1d(f[:nf], t[:nt]).shape[0]
            for f, nf, t, nt in zip(found.ids, found.found, truth.ids, truth.found)
        )
        return hits / int(truth.found.sum())

    def _stored_vectors(self):
        """The gallery vectors as stored (normalised for cosine)."""
        if self.kind == "ivf":
            self._index.make_direct_map()
        return self._index.reconstruct_n(0, self._index.ntotal)

    def save(self, directory):
        """Writes `index.faiss`, `metadata.npz` (no pickle) and `config.json` into `directory`."""
        import faiss

        if self._index is None:
            raise ValueError("Expected a built index to save. Call build() first.")
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        faiss.write_index(self._index, os.path.join(directory, _INDEX_FILE))
        meta = {"ids": self._ids}
        if self._labels is not None:
            meta["labels"] = self._labels
        np.savez(os.path.join(directory, _META_FILE), **meta)
        with open(os.path.join(directory, _CONFIG_FILE), "w") as f:
            json.dump(self.get_config(), f, indent=2)
        return directory

    @classmethod
    def load(cls, directory, *, model=None, embed_fn=None):
        """Reads an index written by `save`; `model` or `embed_fn` enables image queries."""
        import faiss

        directory = os.fspath(directory)
        with open(os.path.join(directory, _CONFIG_FILE)) as f:
            config = json.load(f)
        if embed_fn is None and model is not None:
            embed_fn = embedding_lib.embedding_function(model)
        index = cls(embed_fn=embed_fn, **config)
        index._index = faiss.read_index(os.path.join(directory, _INDEX_FILE))
        with np.load(os.path.join(directory, _META_FILE), allow_pickle=False) as meta:
            index._ids = meta["ids"]
            index._labels = meta["labels"] if "labels" in meta.files else None
        stored = [len(index), index._ids.shape[0]]
        stored += [] if index._labels is None else [index._labels.shape[0]]
        if len(set(stored)) != 1:
            raise ValueError(
                f"Expected as many ids and labels as vectors in {directory!r} (files "
                f"from one save). Received: {len(index)} vectors, {stored[1]} ids"
                + ("" if index._labels is None else f", {stored[2]} labels")
            )
        return index
