"""Forward + backward time of every loss beside its peers, measured in one run.

Usage:
    python benchmarks/loss_speed.py                      # the full table
    python benchmarks/loss_speed.py --rounds=15 --batch_sizes=512 --lanes=ours,tfa
    python benchmarks/loss_speed.py --memory             # also peak memory

What runs, all on the same batch (B embeddings of dimension d, 4 images per
class, N(0, 1) float32 from `numpy.random.default_rng(0)`), margin 0.2 for the
triplet losses, forward + backward (gradient with respect to the embeddings
and to the loss's own variables):
- ours (`--lanes=ours`): keras_mdr's losses under `tf.function`, each also
  inside MDR (base loss + MDR term + statistics update, one shared distance
  matrix), in this process (TF 2.21 / Keras 3);
- `port`: TensorFlow Addons 0.23's semi-hard algorithm ported op for op (its
  [B^2, B] masks, O(B^3) time and memory), in this process;
- `tfa`: real TensorFlow Addons 0.23 (`tfa.losses.TripletSemiHardLoss`,
  `TripletHardLoss`) under `tf.function`, in a subprocess of `.venv-tfa`
  (TF 2.15), see `benchmarks/loss_speed_worker.py`;
- `pml`: pytorch-metric-learning 2.9 (torch CPU) for the losses both libraries
  have, in a subprocess of `.venv-torch`.

Timing: the processes stay alive; every round times every variant once, in
an order shuffled per round (seeded), so that load changes on a shared
machine hit all variants alike. One sample is the mean of `reps` calls, with
`reps` chosen at warm-up so that a sample lasts at least --min_sample_ms. A
loss and the same loss inside MDR are timed as a pair, their calls alternated
one by one, so that the with/without-MDR ratio compares calls made under the
same load.
Each comparison (TFA / ours, PML / ours, with MDR / without) is a per-round
ratio: we report its median and the 95% order-statistic interval over the
rounds (`benchmarks/stats.py`). Each sample also records the process CPU
time per call (all threads of the process that ran it), whose ratios
(`cpu_ratios`) a shared machine's load disturbs less than wall-clock time
(it does not count the time a variant waits for a core). Peak memory (--memory) is VmHWM of a fresh
process running one step, above the same process's peak after its imports.

Writes benchmarks/results/loss_speed.json (see benchmarks/provenance.py);
`benchmarks/render.py` turns it into the tables of the docs.
"""

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import loss_speed_worker  # noqa: E402
import provenance  # noqa: E402
import stats  # noqa: E402
from keras_mdr import distances as distances_lib  # noqa: E402

REPO = provenance.REPO
LANE_PYTHON = {
    "tfa": os.path.join(REPO, ".venv-tfa", "bin", "python"),
    "pml": os.path.join(REPO, ".venv-torch", "bin", "python"),
}
MARGIN = 0.2


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


# ----------------------------------------------------------------------------
# Our variants (this process)

# keras_mdr loss classes of the families PML also has: name -> (class name,
# keyword arguments beyond the defaults, which are the papers').
FAMILIES = {
    "contrastive": ("ContrastiveLoss", {}),
    "margin": ("MarginLoss", {}),
    "multi_similarity": ("MultiSimilarityLoss", {}),
    "proxy_anchor": ("ProxyAnchorLoss", {"num_classes": None, "embedding_size": None}),
    "supcon": ("SupConLoss", {}),
    "ntxent": ("NTXentLoss", {}),
    "arcface": ("ArcFaceLoss", {"num_classes": None, "embedding_size": None}),
}
TRIPLETS = ("semihard", "hard", "distance_weighted")


def batch(batch_size, dim, seed=0):
    labels, embeddings = loss_speed_worker.batch_arrays(batch_size, dim, seed)
    return tf.constant(labels), tf.constant(embeddings)


def available_families():
    import keras_mdr.losses

    return [name for name, (cls, _) in FAMILIES.items() if hasattr(keras_mdr.losses, cls)]


def _family_loss(name, batch_size, dim):
    import keras_mdr.losses

    cls, extra = FAMILIES[name]
    kwargs = {}
    for key in extra:
        kwargs[key] = batch_size // loss_speed_worker.IMAGES_PER_CLASS if key == "num_classes" else dim
    return getattr(keras_mdr.losses, cls)(**kwargs)


def our_loss(name, batch_size, dim):
    """(callable(labels, embeddings) -> scalar, extra variables to differentiate)."""
    import keras_mdr

    base, _, mdr = name.partition("+")
    if base in TRIPLETS and not mdr:
        return {
            "semihard": lambda: keras_mdr.TripletSemiHardLoss(margin=MARGIN),
            "hard": lambda: keras_mdr.TripletHardLoss(margin=MARGIN),
            "distance_weighted": lambda: keras_mdr.DistanceWeightedTripletLoss(margin=MARGIN, seed=0),
        }[base](), []
    if base in TRIPLETS:
        loss = keras_mdr.MDRTripletLoss(base_loss=base, margin=MARGIN, seed=0)
    else:
        loss = _family_loss(base, batch_size, dim)
        if mdr:
            loss = keras_mdr.MDRLoss(base_loss=loss)
    if not loss.stateful:
        return loss, []
    # A stateful loss (MDR's levels, proxies, centres, beta) gets the state
    # Layer a model would own; its variables are differentiated too.
    state = loss.build_state()

    def call_with_state(y, e):
        return loss.batch_objective(y, e, state=state, step=0, training=True)["loss"]

    return call_with_state, list(state.trainable_variables)


def make_step(loss, extra, jit_compile=False):

    @tf.function(jit_compile=jit_compile)
    def step(labels, embeddings):
        with tf.GradientTape() as tape:
            tape.watch(embeddings)
            value = loss(labels, embeddings)
        return value, tape.gradient(value, [embeddings] + extra)

    return step


class LocalVariant:
    """One of our variants (or the port), timed in this process."""

    def __init__(self, key, batch_size, dim):
        lane, _, name = key.partition(":")
        if lane == "port":
            fn, extra = (lambda y, e: tfa_semihard_port(y, e, MARGIN)), []
        else:
            fn, extra = our_loss(name, batch_size, dim)
        self.step = make_step(fn, extra)
        self.labels, self.embeddings = batch(batch_size, dim)
        self.run()
        self.run()

    def run(self):
        value, grads = self.step(self.labels, self.embeddings)
        return value.numpy(), [g.numpy() for g in grads]

    def time(self, reps):
        """(wall ms, process CPU ms) per call, means over `reps` calls."""
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(reps):
            self.run()
        return (1e3 * (time.perf_counter() - start) / reps,
                1e3 * (time.process_time() - cpu) / reps)


class Worker:
    """A peer library's long-lived timing process (benchmarks/loss_speed_worker.py)."""

    def __init__(self, lane):
        python = LANE_PYTHON[lane]
        if not os.path.exists(python):
            raise SystemExit(
                f"The {lane} lane needs {python} (tools/make_{'tfa' if lane == 'tfa' else 'torch'}"
                "_venv.sh, or a symlink to an existing environment)."
            )
        self.process = subprocess.Popen(
            [python, os.path.join(REPO, "benchmarks", "loss_speed_worker.py"), lane],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            # OpenMP threads that busy-wait after each op would steal the
            # cores from the next variant timed in another process.
            env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"),
        )
        self.versions = self.ask(op="hello")["versions"]

    def ask(self, **request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"{request}: {reply['error']}")
        return reply

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


class RemoteVariant:
    def __init__(self, worker, key, batch_size, dim):
        self.worker, self.name, self.batch_size = worker, key.partition(":")[2], batch_size
        worker.ask(op="setup", variant=self.name, batch=batch_size, dim=dim, margin=MARGIN)

    def time(self, reps):
        """(wall ms, process CPU ms) per call in the worker, means over `reps` calls."""
        reply = self.worker.ask(op="time", variant=self.name, batch=self.batch_size, reps=reps)
        return reply["ms"], reply["cpu_ms"]


# ----------------------------------------------------------------------------
# The plan: which variants at which batch size, and the ratios reported


def variants_for(batch_size, lanes, families, args):
    keys = []
    if "ours" in lanes:
        keys += [f"ours:{t}" for t in TRIPLETS] + [f"ours:{t}+mdr" for t in TRIPLETS]
        keys += [f"ours:{f}" for f in families]
        if args.family_mdr:
            keys += [f"ours:{f}+mdr" for f in families]
    if "port" in lanes and batch_size <= args.tfa_max_batch:
        keys.append("port:semihard")
    if "tfa" in lanes:
        if batch_size <= args.tfa_max_batch:
            keys.append("tfa:semihard")
        keys.append("tfa:hard")
    if "pml" in lanes:
        # PML's NT-Xent holds a (positive pairs) x (negative pairs) mask:
        # 400 M entries at B = 512 with 4 images a class, over a minute a step.
        keys += [f"pml:{f}" for f in families
                 if not (f == "ntxent" and batch_size > args.pml_ntxent_max_batch)]
    return keys


def comparisons(keys):
    """(name, numerator key, denominator key) for every pair present."""
    present = set(keys)
    pairs = [
        ("tfa:semihard", "ours:semihard"), ("tfa:hard", "ours:hard"),
        ("port:semihard", "ours:semihard"), ("tfa:semihard", "port:semihard"),
    ]
    pairs += [(f"ours:{t}+mdr", f"ours:{t}") for t in TRIPLETS]
    pairs += [(f"ours:{f}+mdr", f"ours:{f}") for f in FAMILIES]
    pairs += [(f"pml:{f}", f"ours:{f}") for f in FAMILIES]
    return [(f"{a} / {b}", a, b) for a, b in pairs if a in present and b in present]


def calibrate(variant, min_sample_ms):
    first, _ = variant.time(1)
    return max(1, math.ceil(min_sample_ms / max(first, 1e-3)))


def time_pair(first, second, reps):
    """Mean ms per call of two local variants, their calls alternated one by one.

    Alternating call by call puts the two under the same load to within a
    call, which is what a with/without-MDR ratio needs on a shared machine.
    """
    wall, cpu = [0.0, 0.0], [0.0, 0.0]
    for _ in range(reps):
        for i, variant in enumerate((first, second)):
            start, cpu_start = time.perf_counter(), time.process_time()
            variant.run()
            wall[i] += time.perf_counter() - start
            cpu[i] += time.process_time() - cpu_start
    return [(1e3 * w / reps, 1e3 * c / reps) for w, c in zip(wall, cpu)]


def timing_units(keys, built):
    """Keys grouped for timing: (base, base+mdr) pairs of local variants, others alone."""
    units, paired = [], set()
    for key in keys:
        partner = key + "+mdr"
        if partner in built and isinstance(built[key], LocalVariant):
            units.append((key, partner))
            paired.update((key, partner))
    units += [(key,) for key in keys if key not in paired]
    return units


def time_batch(batch_size, keys, workers, args, rng):
    """{key: [ms per round]} with rounds interleaved in a shuffled order."""
    built = {}
    for key in keys:
        lane = key.partition(":")[0]
        if lane in workers:
            built[key] = RemoteVariant(workers[lane], key, batch_size, args.dim)
        else:
            built[key] = LocalVariant(key, batch_size, args.dim)
    reps = {key: calibrate(v, args.min_sample_ms) for key, v in built.items()}
    units = timing_units(keys, built)
    samples = {key: [] for key in keys}
    cpu_samples = {key: [] for key in keys}
    for round_index in range(args.rounds):
        for i in rng.permutation(len(units)):
            unit = units[i]
            if len(unit) == 2:
                times = time_pair(built[unit[0]], built[unit[1]], max(reps[k] for k in unit))
            else:
                times = [built[unit[0]].time(reps[unit[0]])]
            for key, (ms, cpu_ms) in zip(unit, times):
                samples[key].append(ms)
                cpu_samples[key].append(cpu_ms)
        print(f"  B={batch_size} round {round_index + 1}/{args.rounds}", flush=True)
    return samples, cpu_samples, reps


def summarise(samples, keys):
    times = {key: stats.median_ci(samples[key]) for key in keys}
    ratios = {
        name: stats.paired_ratio(samples[a], samples[b]) for name, a, b in comparisons(keys)
    }
    return times, ratios


# ----------------------------------------------------------------------------
# Peak memory: one step in a fresh process


def _child_peak(key, batch_size, dim):
    """Runs in a fresh process of this environment: prints base and peak MiB."""
    base = loss_speed_worker.vm_hwm_mib()
    LocalVariant(key, batch_size, dim)
    print(json.dumps({"base_mib": base, "peak_mib": loss_speed_worker.vm_hwm_mib()}))


def peak_memory(key, batch_size, dim):
    lane = key.partition(":")[0]
    if lane in LANE_PYTHON:
        worker = Worker(lane)
        try:
            reply = worker.ask(op="peak_rss", variant=key.partition(":")[2], batch=batch_size,
                               dim=dim, margin=MARGIN)
        except RuntimeError as error:
            return {"error": str(error)}
        finally:
            worker.close()
    else:
        # Import TensorFlow first, so the base is the peak after imports.
        code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
                f"import tensorflow, keras_mdr, loss_speed; "
                f"loss_speed._child_peak({key!r}, {batch_size}, {dim})")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=REPO))
        if out.returncode != 0:
            return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
        reply = json.loads(out.stdout.strip().splitlines()[-1])
    return {"added_mib": reply["peak_mib"] - reply["base_mib"], "peak_mib": reply["peak_mib"]}


# ----------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_sizes", default="128,256,512,1024")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--lanes", default="ours,port,tfa,pml")
    parser.add_argument("--families", default=None,
                        help="comma list of the non-triplet families (default: all keras_mdr has)")
    parser.add_argument("--family_mdr", action="store_true",
                        help="also time each non-triplet family inside keras_mdr.losses.MDRLoss")
    parser.add_argument("--tfa_max_batch", type=int, default=512,
                        help="TFA's semi-hard (and the port) above this B: skipped, O(B^3) memory "
                             "(about 7 GB at 512, out of memory at 1024 on 16 GB)")
    parser.add_argument("--pml_ntxent_max_batch", type=int, default=128,
                        help="PML's NT-Xent above this B: skipped (O(B^3) mask, > 1 min a step at 512)")
    parser.add_argument("--min_sample_ms", type=float, default=100.0)
    parser.add_argument("--memory", action="store_true", help="also measure peak memory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-round orders")
    parser.add_argument("--output", default=None, help="default benchmarks/results/loss_speed.json")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    recorder = provenance.Recorder()
    lanes = args.lanes.split(",")
    families = available_families() if args.families is None else [
        f for f in args.families.split(",") if f]
    workers = {lane: Worker(lane) for lane in ("tfa", "pml") if lane in lanes}
    versions = provenance.tf_versions()
    for lane, worker in workers.items():
        versions[lane] = worker.versions
    print(json.dumps(versions), flush=True)
    rng = np.random.default_rng(args.seed)
    results = {"dim": args.dim, "rounds": args.rounds, "margin": MARGIN,
               "images_per_class": loss_speed_worker.IMAGES_PER_CLASS,
               "families": families, "batches": {}}
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        keys = variants_for(batch_size, lanes, families, args)
        if "pml" in lanes and batch_size not in (128, 512, 1024):
            keys = [k for k in keys if not k.startswith("pml:")]
        samples, cpu_samples, reps = time_batch(batch_size, keys, workers, args, rng)
        times, ratios = summarise(samples, keys)
        cpu_times, cpu_ratios = summarise(cpu_samples, keys)
        entry = {"samples_ms": samples, "reps": reps, "times_ms": times, "ratios": ratios,
                 "cpu_samples_ms": cpu_samples, "cpu_times_ms": cpu_times,
                 "cpu_ratios": cpu_ratios}
        if args.memory:
            entry["memory"] = {key: peak_memory(key, batch_size, args.dim) for key in keys}
        results["batches"][str(batch_size)] = entry
        for name, r in ratios.items():
            print(f"B={batch_size} {name}: {r['median']:.3f} [{r['low']}, {r['high']}]", flush=True)
    for worker in workers.values():
        worker.close()
    path = recorder.write("loss_speed", results, versions=versions, path=args.output)
    print("wrote", path)


if __name__ == "__main__":
    main()
