"""Forward + backward time of each loss, with and without MDR, side by side.

Usage:
    python benchmarks/loss_speed.py                 # B = 128..1024, d = 512
    python benchmarks/loss_speed.py --rounds=5 --batch_sizes=128,256

For every batch size it times, interleaved in one process (timings on a shared
machine drift, so only ratios measured together mean anything):
- our semi-hard, hard and distance-weighted triplet losses, and each inside
  `MDRTripletLoss` (base + MDR sharing one distance matrix, statistics updated);
- a direct port of TensorFlow Addons 0.23's semi-hard algorithm (its [B^2, B]
  masks, O(B^3) time and memory), which cannot be imported on TF >= 2.16;
in eager mode, under `tf.function` and under XLA. It prints median ms, the
ratio TFA-port / ours for semi-hard, the ratio (semi-hard + MDR) / semi-hard,
and the peak resident memory of one semi-hard step at B = 512 and 1024 for
ours and the port (each in a fresh subprocess).

Targets (issue 2): ours >= 20x faster than TFA's algorithm at B = 512;
MDR adds <= 15% to the semi-hard step at B = 512 under tf.function.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mdr  # noqa: E402
from keras_mdr import distances as distances_lib  # noqa: E402
from keras_mdr.losses import triplet  # noqa: E402


def tfa_semihard_port(labels, embeddings, margin=1.0):
    """TensorFlow Addons 0.23 `triplet_semihard_loss`, op for op (L2 distance)."""
    labels = tf.reshape(labels, [-1, 1])
    pdist_matrix = distances_lib.pairwise_distance(embeddings)
    adjacency = tf.math.equal(labels, tf.transpose(labels))
    adjacency_not = tf.math.logical_not(adjacency)
    batch_size = tf.size(labels)
    pdist_matrix_tile = tf.tile(pdist_matrix, [batch_size, 1])
    mask = tf.math.logical_and(
        tf.tile(adjacency_not, [batch_size, 1]),
        tf.math.greater(pdist_matrix_tile, tf.reshape(tf.transpose(pdist_matrix), [-1, 1])),
    )
    mask_final = tf.reshape(
        tf.math.greater(tf.math.reduce_sum(tf.cast(mask, tf.float32), 1, keepdims=True), 0.0),
        [batch_size, batch_size],
    )
    mask_final = tf.transpose(mask_final)
    adjacency_not = tf.cast(adjacency_not, tf.float32)
    mask = tf.cast(mask, tf.float32)

    def masked_minimum(data, mask):
        axis_maximums = tf.math.reduce_max(data, 1, keepdims=True)
        return tf.math.reduce_min((data - axis_maximums) * mask, 1, keepdims=True) + axis_maximums

    def masked_maximum(data, mask):
        axis_minimums = tf.math.reduce_min(data, 1, keepdims=True)
        return tf.math.reduce_max((data - axis_minimums) * mask, 1, keepdims=True) + axis_minimums

    negatives_outside = tf.reshape(masked_minimum(pdist_matrix_tile, mask), [batch_size, batch_size])
    negatives_outside = tf.transpose(negatives_outside)
    negatives_inside = tf.tile(masked_maximum(pdist_matrix, adjacency_not), [1, batch_size])
    semi_hard_negatives = tf.where(mask_final, negatives_outside, negatives_inside)
    loss_mat = margin + pdist_matrix - semi_hard_negatives
    mask_positives = tf.cast(adjacency, tf.float32) - tf.linalg.diag(tf.ones([batch_size]))
    num_positives = tf.math.reduce_sum(mask_positives)
    return tf.math.truediv(
        tf.math.reduce_sum(tf.math.maximum(loss_mat * mask_positives, 0.0)), num_positives
    )


def make_losses():
    """name -> (callable(labels, embeddings) -> scalar, extra variables to differentiate)."""
    losses = {
        "semihard": (keras_mdr.TripletSemiHardLoss(margin=0.2), []),
        "hard": (keras_mdr.TripletHardLoss(margin=0.2), []),
        "distance_weighted": (keras_mdr.DistanceWeightedTripletLoss(margin=0.2, seed=0), []),
        "tfa_semihard_port": (lambda y, e: tfa_semihard_port(y, e, 0.2), []),
    }
    for base in ("semihard", "hard", "distance_weighted"):
        mdr = keras_mdr.MDRTripletLoss(base_loss=base, margin=0.2, seed=0)
        regularizer = keras_mdr.MDRRegularizer()

        def call(y, e, mdr=mdr, regularizer=regularizer):
            return mdr.objective(y, e, regularizer, step=0, training=True)["loss"]

        losses[f"{base}+mdr"] = (call, [regularizer.levels])
    return losses


def make_step(loss, extra, mode):
    def step(labels, embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss(labels, embeddings)
        grads = tape.gradient(value, [embeddings] + extra)
        return value, grads

    if mode == "eager":
        return step
    return tf.function(step, jit_compile=(mode == "xla"))


def batch(batch_size, dim, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(batch_size // 4), 4).astype("int32")  # 4 images per class
    embeddings = rng.normal(size=(batch_size, dim)).astype("float32")
    return tf.constant(labels), tf.constant(embeddings)


def time_all(steps, labels, embeddings, rounds):
    """Median ms per step, variants interleaved round by round."""
    for fn in steps.values():  # trace / compile / warm up
        fn(labels, embeddings)
        fn(labels, embeddings)
    samples = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            start = time.perf_counter()
            value, grads = fn(labels, embeddings)
            _ = value.numpy(), [g.numpy() for g in grads]
            samples[name].append(1e3 * (time.perf_counter() - start))
    return {name: float(np.median(v)) for name, v in samples.items()}


def peak_rss_child(which, batch_size, dim):
    """Peak RSS (MiB) of a fresh process running one tf.function semi-hard step."""
    # VmHWM (peak resident set of this address space) restarts at exec;
    # ru_maxrss would carry over the parent's peak into the child.
    code = (
        "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='2';"
        "import sys; sys.path.insert(0, %r);"
        "import loss_speed as b; import tensorflow as tf;"
        "hwm = lambda: int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]);"
        "base = hwm();"
        "y, e = b.batch(%d, %d);"
        "loss = (lambda y, e: b.tfa_semihard_port(y, e, 0.2)) if %r == 'tfa' else b.keras_mdr.TripletSemiHardLoss(0.2);"
        "step = b.make_step(loss, [], 'function'); step(y, e)[0].numpy();"
        "print(base, hwm())"
    ) % (os.path.dirname(os.path.abspath(__file__)), batch_size, dim, which)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return float("nan"), float("nan")
    base, peak = (int(v) / 1024.0 for v in out.stdout.strip().splitlines()[-1].split())
    return peak - base, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_sizes", default="128,256,512,1024")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--modes", default="eager,function,xla")
    parser.add_argument("--tfa_port_max_batch", type=int, default=512,
                        help="skip the O(B^3) port above this batch (B=1024 needs ~11 GB and ~5 s a step)")
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    sizes = [int(b) for b in args.batch_sizes.split(",")]
    modes = args.modes.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"keras_mdr {keras_mdr.__version__}; d={args.dim}, median of {args.rounds} rounds, ms")
    results = {}
    losses = make_losses()
    for batch_size in sizes:
        labels, embeddings = batch(batch_size, args.dim)
        for mode in modes:
            steps = {
                name: make_step(fn, extra, mode)
                for name, (fn, extra) in losses.items()
                if not (name == "tfa_semihard_port" and batch_size > args.tfa_port_max_batch)
            }
            timings = time_all(steps, labels, embeddings, args.rounds)
            results[(batch_size, mode)] = timings
            cells = "  ".join(f"{k}={v:.1f}" for k, v in timings.items())
            ratio_tfa = timings.get("tfa_semihard_port", float("nan")) / timings["semihard"]
            ratio_mdr = timings["semihard+mdr"] / timings["semihard"]
            print(f"B={batch_size:5d} {mode:8s} {cells}")
            print(f"    ratios: tfa_port/ours(semihard)={ratio_tfa:.1f}x  "
                  f"(semihard+mdr)/semihard={ratio_mdr:.3f}  "
                  f"(dw+mdr)/dw={timings['distance_weighted+mdr'] / timings['distance_weighted']:.3f}",
                  flush=True)

    print("\nMarkdown (paste into BUILD_NOTES.md):")
    names = list(losses)
    print("| B | mode | " + " | ".join(names) + " | TFA port / ours | +MDR / semi-hard |")
    print("|---" * (len(names) + 4) + "|")
    for (batch_size, mode), t in results.items():
        cells = " | ".join(f"{t[n]:.1f}" if n in t else "skipped" for n in names)
        port = t.get("tfa_semihard_port")
        print(f"| {batch_size} | {mode} | {cells} | "
              f"{(port / t['semihard']) if port else float('nan'):.1f}x | {t['semihard+mdr'] / t['semihard']:.3f} |")

    memory = {}
    if not args.skip_memory:
        print("\nPeak RSS of one tf.function semi-hard step (fresh process; MiB above the "
              "process's peak after imports, and the absolute peak):")
        for batch_size in (512, 1024):
            for which in ("ours", "tfa"):
                if which == "tfa" and batch_size > args.tfa_port_max_batch:
                    print(f"  B={batch_size} tfa_port: skipped (O(B^3): [B^2, B] masks, ~11 GB)")
                    continue
                added, peak = peak_rss_child(which, batch_size, args.dim)
                memory[(batch_size, which)] = added
                print(f"  B={batch_size} {which}: +{added:.0f} MiB (peak {peak:.0f} MiB)")

    if 512 in sizes and "function" in modes:
        t = results[(512, "function")]
        speedup = t.get("tfa_semihard_port", float("nan")) / t["semihard"]
        overhead = t["semihard+mdr"] / t["semihard"] - 1.0
        print(f"\nTARGET semi-hard vs TFA algorithm at B=512 (tf.function): {speedup:.1f}x "
              f"(target >= 20x): {'PASS' if speedup >= 20 else 'FAIL'}")
        print(f"TARGET MDR overhead on semi-hard at B=512 (tf.function): {100 * overhead:.1f}% "
              f"(target <= 15%): {'PASS' if overhead <= 0.15 else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{b}/{m}": t for (b, m), t in results.items()}
                      | {f"rss/{b}/{w}": v for (b, w), v in memory.items()}, f, indent=1)


if __name__ == "__main__":
    main()
