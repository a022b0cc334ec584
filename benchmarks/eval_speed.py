"""Speed and memory of the retrieval evaluation at the Stanford Online Products size.

Usage:
    python benchmarks/eval_speed.py            # 60,502 x 512, ~11,316 classes
    python benchmarks/eval_speed.py --faiss    # also time the faiss top-K engine
    python benchmarks/eval_speed.py --num-items 20000 --check

Synthetic embeddings (class centre + Gaussian noise, SOP's class sizes of 2 to
12 images, noise set so that Recall@1 lands near a trained model's) are
evaluated with Recall@{1,10,100,1000}, MAP@R and R-Precision, exactly.

What is reported, and how it is measured:
* seconds: wall clock of `keras_mdr.evaluation.retrieval_metrics`, everything
  included (input checks, the label-sorted gallery copy, all blocks).
* GFLOP/s: the distance GEMM's `2 N^2 d` flops over those seconds (the extra
  work, the appended norm column and the reductions, is not counted).
* peak: float32 matmul throughput of this machine measured in this run, the
  best of NumPy (BLAS) and TensorFlow on 4096 x 4096 x 4096 products, taken
  before and after the evaluation (the machine is shared; the higher counts).
* peak RSS: the process's maximum resident memory (`ru_maxrss`), which
  includes TensorFlow, imported by `keras_mdr`.
* cores obtained: process CPU time over wall time, during the evaluation and
  during the peak measurements. The machine is shared: when other processes
  take a core, both numbers drop, and the ratio is only fair when the two
  phases obtained similar shares.
"""

import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from keras_mdr import evaluation  # noqa: E402
from keras_mdr.evaluation import blocked_ranks  # noqa: E402

SOP_TEST_ITEMS = 60502
SOP_TEST_CLASSES = 11316


def sop_like_labels(num_items, num_classes, rng):
    """Class sizes between 2 and 12 (SOP's range), summing to num_items."""
    if not 2 * num_classes <= num_items <= 12 * num_classes:
        raise ValueError(
            "Expected 2 to 12 items a class. Received: "
            f"num_items={num_items}, num_classes={num_classes}"
        )
    mean_extra = num_items / num_classes - 2
    sizes = 2 + rng.binomial(10, mean_extra / 10, size=num_classes)
    while sizes.sum() != num_items:
        step = 1 if sizes.sum() < num_items else -1
        room = np.nonzero((sizes < 12) if step > 0 else (sizes > 2))[0]
        need = min(abs(num_items - int(sizes.sum())), room.shape[0])
        sizes[rng.choice(room, size=need, replace=False)] += step
    return rng.permutation(np.repeat(np.arange(num_classes), sizes))


def synthetic_embeddings(labels, dim, noise, rng):
    num_classes = int(labels.max()) + 1
    centres = rng.standard_normal((num_classes, dim), dtype=np.float32)
    x = centres[labels]
    x += noise * rng.standard_normal(x.shape, dtype=np.float32)
    return x


def rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def numpy_peak(n=4096, repeats=4):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def tensorflow_peak(n=4096, repeats=4):
    try:
        import tensorflow as tf
    except ImportError:
        return 0.0
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.linalg.matmul(x, y)[:1, :1]))
    matmul(a, b)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b).numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-items", type=int, default=SOP_TEST_ITEMS)
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=2.0,
                        help="noise std relative to the class-centre std")
    parser.add_argument("--block-rows", type=int, default=1024)
    parser.add_argument("--block-cols", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--faiss", action="store_true",
                        help="also time the exact faiss top-K engine (slow)")
    parser.add_argument("--check", action="store_true",
                        help="check the blocked results against faiss")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    num_classes = args.num_classes or round(
        args.num_items * SOP_TEST_CLASSES / SOP_TEST_ITEMS
    )
    rng = np.random.default_rng(args.seed)
    labels = sop_like_labels(args.num_items, num_classes, rng)
    x = synthetic_embeddings(labels, args.dim, args.noise, rng)
    ks = (1, 10, 100, 1000)
    threads = args.threads or blocked_ranks.default_num_threads()
    print(f"data: {x.shape[0]} x {x.shape[1]} float32, {num_classes} classes "
          f"(sizes {np.bincount(labels).min()}-{np.bincount(labels).max()}), "
          f"{threads} threads")

    c0, w0 = cpu_seconds(), time.perf_counter()
    np_peak_before, tf_peak_before = numpy_peak(), tensorflow_peak()
    peak_before = max(np_peak_before, tf_peak_before)
    peak_cores = [(cpu_seconds() - c0) / (time.perf_counter() - w0)]
    rss_before = rss_gib()
    c0, t0 = cpu_seconds(), time.perf_counter()
    result = evaluation.retrieval_metrics(
        x, labels, ks, block_rows=args.block_rows, block_cols=args.block_cols,
        num_threads=threads,
    )
    seconds = time.perf_counter() - t0
    eval_cores = (cpu_seconds() - c0) / seconds
    rss_after = rss_gib()
    c0, w0 = cpu_seconds(), time.perf_counter()
    np_peak_after = numpy_peak()
    tf_peak_after = tensorflow_peak()
    peak_cores.append((cpu_seconds() - c0) / (time.perf_counter() - w0))
    peak = max(peak_before, np_peak_after, tf_peak_after)

    flops = 2.0 * x.shape[0] ** 2 * x.shape[1]
    achieved = flops / seconds / 1e9
    print("metrics:", ", ".join(f"{k}={v:.4f}" for k, v in result.items()))
    print(f"seconds: {seconds:.2f}")
    print(f"achieved: {achieved:.1f} GFLOP/s (2 N^2 d = {flops / 1e12:.2f} TFLOP)")
    print(f"float32 matmul peak (best of NumPy and TensorFlow, before and after): "
          f"{peak:.1f} GFLOP/s (before: NumPy {np_peak_before:.1f}, TF "
          f"{tf_peak_before:.1f}; after: NumPy {np_peak_after:.1f}, TF {tf_peak_after:.1f})")
    print(f"ratio: {achieved / peak:.1%} of peak (target >= 50%)")
    print(f"cores obtained: evaluation {eval_cores:.2f}, peak measurements "
          f"{peak_cores[0]:.2f} before / {peak_cores[1]:.2f} after")
    print(f"peak RSS: {rss_after:.2f} GiB during evaluation "
          f"(before it: {rss_before:.2f} GiB; target < 2 GiB)")

    if args.faiss or args.check:
        t0 = time.perf_counter()
        other = evaluation.retrieval_metrics(x, labels, ks, method="faiss")
        faiss_seconds = time.perf_counter() - t0
        print(f"faiss top-K engine: {faiss_seconds:.2f} s, "
              f"{flops / faiss_seconds / 1e9:.1f} GFLOP/s, peak RSS {rss_gib():.2f} GiB")
        same = all(abs(other[k] - result[k]) < 1e-12 for k in result)
        print("faiss and blocked agree:", same)
        if not same:
            print("faiss:", other)
            sys.exit(1)


if __name__ == "__main__":
    main()
