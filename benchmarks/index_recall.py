"""Recall of the approximate `EmbeddingIndex` kinds against exact search.

Usage:
    python benchmarks/index_recall.py                      # SOP size, 512-d
    python benchmarks/index_recall.py --num-items 200000 --dim 128

The gallery is synthetic (SOP-like classes, as in `eval_speed.py`); 1,000
items are held out as queries. Two kinds of data, in one run: "low-dim"
(classes generated in --latent-dim dimensions with --latent-noise, mapped
linearly to --dim: trained embeddings have a low intrinsic dimension) and
"full-rank" (class centres plus isotropic --dim-d noise of --noise: the worst
case for any approximate index). For each index kind and search setting it
reports build time, query time, recall@k against the exact top k (the fraction
of exact neighbours found), and Recall@1 in the retrieval sense (the nearest
neighbour has the query's label), to show what the approximation costs in the
metric. The JSON goes to benchmarks/results/index_recall.json and the table of
docs/evaluation.md is rendered from it (benchmarks/render.py).
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import provenance  # noqa: E402
from eval_speed import sop_like_labels, synthetic_embeddings  # noqa: E402

from keras_mdr.index import EmbeddingIndex  # noqa: E402

# (kind, build parameters, search parameters); settings sharing build
# parameters reuse one built index.
CONFIGS = [
    ("flat", {}, {}),
    ("hnsw", {"hnsw_m": 32, "ef_construction": 200}, {"ef_search": 128}),
    ("hnsw", {"hnsw_m": 32, "ef_construction": 200}, {"ef_search": 512}),
    ("ivf", {}, {"nprobe": 32}),
    ("ivf", {}, {"nprobe": 128}),
]


def make_data(args, latent_dim, noise, rng):
    labels = sop_like_labels(args.num_items, round(args.num_items * 11316 / 60502), rng)
    if latent_dim:
        z = synthetic_embeddings(labels, latent_dim, noise, rng)
        x = z @ rng.standard_normal((latent_dim, args.dim), dtype=np.float32)
    else:
        x = synthetic_embeddings(labels, args.dim, noise, rng)
    q = slice(0, args.queries)
    g = slice(args.queries, None)
    return x[q], labels[q], x[g], labels[g]


def measure(data, k):
    """One row per config: build and search times, recall vs exact, Recall@1."""
    q, q_labels, g, g_labels = data
    rows, built, exact = [], {}, None
    for kind, build_params, search_params in CONFIGS:
        key = (kind, tuple(sorted(build_params.items())))
        start = time.perf_counter()
        if key not in built:
            built[key] = EmbeddingIndex(kind=kind, **build_params, **search_params).build(
                g, labels=g_labels)
            build_s = time.perf_counter() - start
        else:
            build_s = None
        index = built[key]
        for name, value in search_params.items():
            setattr(index, name, value)
        start = time.perf_counter()
        result = index.search(q, k=k)
        search_ms = 1e3 * (time.perf_counter() - start) / q.shape[0]
        exact = result.ids if exact is None else exact
        recall = float(np.mean([np.intersect1d(a, b).shape[0] / k for a, b in zip(result.ids, exact)]))
        row = {"kind": kind, "build_params": build_params, "search_params": search_params,
               "build_s": None if build_s is None else round(build_s, 2),
               "ms_per_query": round(search_ms, 3), "recall_vs_exact": round(recall, 4),
               "recall_at_1": round(float(np.mean(result.labels[:, 0] == q_labels)), 4)}
        print(row, flush=True)
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-items", type=int, default=60502)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=2.0, help="full-rank data's noise")
    parser.add_argument("--latent-dim", type=int, default=32, help="low-dim data's dimension")
    parser.add_argument("--latent-noise", type=float, default=0.6, help="low-dim data's noise")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    recorder = provenance.Recorder()
    import faiss

    results = {"num_items": args.num_items, "gallery": args.num_items - args.queries,
               "queries": args.queries, "dim": args.dim, "k": args.k, "data": {}}
    for name, latent_dim, noise in (("low_dim", args.latent_dim, args.latent_noise),
                                    ("full_rank", None, args.noise)):
        print(f"== {name}: latent dim {latent_dim or args.dim}, noise {noise}", flush=True)
        data = make_data(args, latent_dim, noise, np.random.default_rng(0))
        results["data"][name] = {"latent_dim": latent_dim or args.dim, "noise": noise,
                                 "rows": measure(data, args.k)}
    versions = {"faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads()}
    print("wrote", recorder.write("index_recall", results, versions=versions))


if __name__ == "__main__":
    main()
