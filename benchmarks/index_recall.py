"""Recall of the approximate `EmbeddingIndex` kinds against exact search.

Usage:
    python benchmarks/index_recall.py                      # SOP size, 512-d
    python benchmarks/index_recall.py --num-items 200000 --dim 128

The gallery is synthetic (SOP-like classes, as in `eval_speed.py`); 1,000
items are held out as queries. For each kind it reports build time, query
time, Recall@10 against the exact top 10 (the fraction of exact neighbours
found), and Recall@1 in the retrieval sense (nearest neighbour has the
query's label) to show what the approximation costs in the metric.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from eval_speed import sop_like_labels, synthetic_embeddings  # noqa: E402

from keras_mdr.index import EmbeddingIndex  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-items", type=int, default=60502)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=2.0)
    parser.add_argument("--latent-dim", type=int, default=None,
                        help="generate in this many dimensions, then map linearly "
                             "to --dim (trained embeddings have a low intrinsic "
                             "dimension; full-rank noise is the worst case)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    labels = sop_like_labels(args.num_items, round(args.num_items * 11316 / 60502), rng)
    if args.latent_dim:
        z = synthetic_embeddings(labels, args.latent_dim, args.noise, rng)
        mixing = rng.standard_normal((args.latent_dim, args.dim), dtype=np.float32)
        x = z @ mixing
    else:
        x = synthetic_embeddings(labels, args.dim, args.noise, rng)
    q, q_labels = x[: args.queries], labels[: args.queries]
    g, g_labels = x[args.queries :], labels[args.queries :]
    exact = None
    configs = [
        ("flat", {}),
        ("hnsw", dict(hnsw_m=32, ef_construction=200, ef_search=128)),
        ("hnsw", dict(hnsw_m=32, ef_construction=200, ef_search=512)),
        ("ivf", dict(nprobe=32)),
        ("ivf", dict(nprobe=128)),
    ]
    print(f"gallery {g.shape[0]} x {g.shape[1]}, {q.shape[0]} queries, k={args.k}, "
          f"latent dim {args.latent_dim or args.dim}")
    built = {}
    for kind, params in configs:
        key = (kind, params.get("hnsw_m"), params.get("ef_construction"))
        t0 = time.perf_counter()
        if key in built:
            index = built[key]
            index.ef_search = params.get("ef_search", index.ef_search)
            index.nprobe = params.get("nprobe", index.nprobe)
            index._apply_search_params()
            build = 0.0
        else:
            index = EmbeddingIndex(kind=kind, **params).build(g, labels=g_labels)
            build = time.perf_counter() - t0
            built[key] = index
        t0 = time.perf_counter()
        result = index.search(q, k=args.k)
        search = time.perf_counter() - t0
        if exact is None:
            exact = result.ids
        found = np.mean([np.intersect1d(a, b).shape[0] / args.k for a, b in zip(result.ids, exact)])
        r1 = np.mean(result.labels[:, 0] == q_labels)
        name = kind + "".join(f" {k}={v}" for k, v in params.items())
        print(f"{name:45s} build {build:7.1f} s  search {1e3 * search / q.shape[0]:7.3f} ms/query"
              f"  recall@{args.k} vs exact {found:.4f}  Recall@1 {r1:.4f}", flush=True)


if __name__ == "__main__":
    main()
