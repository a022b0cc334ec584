"""Reference values of TensorFlow Addons 0.23's triplet losses, for the parity test.

Runs only in the legacy environment (TensorFlow 2.15.1 + TensorFlow Addons 0.23.0,
which cannot be imported on TensorFlow >= 2.16); create it with
`bash tools/make_tfa_venv.sh`. `tests/losses/test_tfa_parity.py` runs this script in a
subprocess and compares `keras_mdr`'s losses with what it writes.

Usage:
    .venv-tfa/bin/python tools/tfa_reference.py OUT.npz [--seed 0] [--jobs N]
        [--inputs-only]

`--inputs-only` writes the cases without running TFA (no TensorFlow import, about
a second): the test computes keras_mdr's side from it while the full run, which
spends ~50 s tracing TFA's tf.functions for ~680 distinct signatures, goes on.

The cases are a deterministic function of `--seed` (each case draws from its own
`np.random.RandomState([seed, case_id])`, a stream NumPy keeps frozen across
versions). For every case the script evaluates, exactly as TFA users call them
(the Loss classes, which run the loss function under `tf.function`):

    tfa.losses.TripletSemiHardLoss(margin, distance_metric)
    tfa.losses.TripletHardLoss(margin, soft=False, distance_metric)
    tfa.losses.TripletHardLoss(margin, soft=True, distance_metric)

and, for the cases marked `grad`, the gradients of those three losses with
respect to the embeddings (`tf.GradientTape` around the Loss call).

The output .npz holds the inputs and the outputs, so that the main environment
never regenerates anything. Cases have different shapes, so the arrays of all
cases are concatenated:
    emb_flat (float32), emb_offsets (int64, n+1): case i's embeddings are
        emb_flat[emb_offsets[i]:emb_offsets[i+1]].reshape(batch[i], dim[i]).
    labels_flat (int32), label_offsets (int64, n+1): labels of case i, always
        stored 1-D; pass them reshaped to (batch, 1) where label_2d[i] is true.
    case_id, kind, metric, margin, scale, batch, dim, label_2d, has_duplicates,
        grad (one entry per case).
    tfa_semihard, tfa_hard, tfa_hard_soft (float32, one per case; NaN and inf
        are kept as TFA returned them).
    grad_semihard_flat, grad_hard_flat, grad_hard_soft_flat (float32): TFA's
        gradients of the grad cases, concatenated in case order with the same
        layout as their embeddings.
    seed, numpy_version; and, unless --inputs-only, tf_version, tfa_version.
"""

import argparse
import os
import sys
import time

import numpy as np

METRICS = ("L2", "squared-L2", "angular")
MARGINS = (0.2, 1.0, 0.5, 0.05, 2.0)
SCALES = (1.0, 1e-3, 10.0, 0.1, 1e3, 1e-2, 100.0)
EMBEDDING_STYLES = ("gaussian", "unit", "uniform")

# Shapes of the case families, (batch, dim[, classes' size K or scale]); each
# entry is run with all three metrics.
# P classes x K samples, in shuffled order (the usual metric-learning batch).
_PK_SHAPES = (
    (4, 2, 2), (8, 3, 2), (9, 5, 3), (12, 8, 4), (16, 16, 4), (24, 7, 3),
    (32, 32, 4), (48, 64, 4), (64, 128, 4), (96, 33, 3), (128, 512, 4),
    (128, 64, 2), (200, 100, 5), (256, 128, 4), (256, 512, 8),
)
# Labels drawn uniformly from fewer classes than samples: uneven classes,
# some of one sample.
_RANDOM_SHAPES = (
    (2, 4), (3, 2), (5, 3), (7, 9), (10, 2), (17, 17), (31, 5), (50, 20),
    (77, 300), (100, 10), (128, 256), (160, 48), (255, 3),
)
# Half of the classes have one sample, the others two to four.
_SINGLETON_SHAPES = ((3, 2), (5, 4), (11, 6), (20, 20), (40, 8), (70, 70), (128, 16))
# Every label distinct: no positive pair (TFA's semi-hard returns NaN).
_ALL_DISTINCT_SHAPES = ((2, 2), (3, 3), (8, 4), (33, 10), (128, 64))
# A single class: no negative at all.
_ONE_CLASS_SHAPES = ((2, 2), (3, 5), (10, 3), (64, 32), (128, 128))
# Rows copied onto other rows, of the same class and of other classes.
_DUPLICATE_SHAPES = ((4, 2), (8, 8), (16, 3), (30, 30), (64, 64), (128, 256), (256, 16))
# Class centres plus small noise: most hinges inactive, as after training.
_CLUSTERED_SHAPES = ((16, 4), (32, 32), (64, 16), (128, 128), (256, 256))
# Large embeddings: the soft hard loss's exp(gap) overflows float32 in TFA.
_OVERFLOW_SHAPES = ((8, 4, 1e2), (32, 16, 1e3), (64, 64, 3e2), (128, 512, 1e3))
# The largest batches: TFA's semi-hard is O(B^3) in time and memory (~1 s and
# several GB at B=512), so only these three.
_B512_SHAPES = ((512, 512, 4),)
# Candidates for the gradient comparison; each is redrawn until every mining
# decision is clear of ties (see _decisions_are_clear).
_GRAD_SHAPES = (
    (4, 2, 2), (6, 3, 3), (8, 4, 2), (8, 16, 4), (12, 5, 3), (16, 8, 4),
    (16, 32, 2), (20, 10, 4), (24, 64, 3), (32, 16, 4), (32, 128, 4),
    (40, 12, 5), (48, 8, 4), (64, 32, 4), (64, 16, 2), (96, 16, 4),
    (128, 32, 4), (128, 64, 8),
)
N_GRAD_CASES = 40
# A decision (which negative, which hardest positive, hinge on or off) counts as
# clear when its float64 competitors are at least this fraction of the batch's
# largest distance away: TFA's float32 distances are within ~1e-7 of it, so a
# clear decision cannot flip between TFA, keras_mdr and float64. Random Gaussian
# batches above B~32 almost never clear this bar (too many near-ties), so the
# larger gradient cases use overlapping class clusters instead.
GRAD_CLEARANCE = 1e-5
_GRAD_CLUSTER_NOISE = 0.8


def _pk_labels(rng, batch, k):
    labels = np.repeat(np.arange(batch // k), k)
    labels = np.concatenate([labels, np.full(batch - labels.size, batch // k)])
    return _relabel(rng, rng.permutation(labels))


def _relabel(rng, labels):
    """Maps class indices to arbitrary distinct non-contiguous ids (< 2**24)."""
    classes = np.unique(labels)
    ids = rng.choice(100000, size=classes.size, replace=False)
    return ids[np.searchsorted(classes, labels)].astype(np.int32)


def _random_labels(rng, batch):
    n_classes = rng.randint(max(1, batch // 6), max(2, batch // 2) + 1)
    return _relabel(rng, rng.randint(0, n_classes, size=batch))


def _singleton_labels(rng, batch):
    labels, cls = [], 0
    while len(labels) < batch:
        size = 1 if cls % 2 == 0 else rng.randint(2, 5)
        labels.extend([cls] * size)
        cls += 1
    return _relabel(rng, rng.permutation(np.array(labels[:batch])))


def _embeddings(rng, batch, dim, style, scale):
    if style == "gaussian":
        emb = rng.standard_normal((batch, dim))
    elif style == "unit":
        emb = rng.standard_normal((batch, dim))
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    elif style == "uniform":
        emb = rng.uniform(-1.0, 1.0, size=(batch, dim))
    else:
        raise ValueError(f"Unknown embedding style {style}")
    return (scale * emb).astype(np.float32)


def _clustered(rng, labels, dim, scale, noise=0.15):
    classes, index = np.unique(labels, return_inverse=True)
    centres = rng.standard_normal((classes.size, dim))
    noise = noise * rng.standard_normal((labels.size, dim))
    return (scale * (centres[index] + noise)).astype(np.float32)


def _duplicate_rows(rng, emb, labels):
    """Copies about a quarter of the rows onto others, within and across classes."""
    emb = emb.copy()
    batch = emb.shape[0]
    for _ in range(max(1, batch // 4)):
        src = rng.randint(batch)
        same = np.flatnonzero((labels == labels[src]) & (np.arange(batch) != src))
        if same.size and rng.rand() < 0.5:
            dst = rng.choice(same)
        else:
            dst = rng.randint(batch)
        emb[dst] = emb[src]
    return emb


def distances64(emb, metric):
    """The metric's distance matrix in float64 (rounding ~1e-16 of the norms)."""
    x = emb.astype(np.float64)
    if metric == "angular":
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        return np.maximum(1.0 - u @ u.T, 0.0)
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    np.fill_diagonal(d2, 0.0)
    return d2 if metric == "squared-L2" else np.sqrt(d2)


def _decisions_are_clear(emb, labels, metric, margin, clearance=GRAD_CLEARANCE):
    """Whether float32 rounding cannot flip any choice TFA's losses make.

    Checks, in float64 with tolerance `clearance * max distance`: for semi-hard,
    per positive pair, whether some negative is farther than the positive, the
    chosen negative against its runner-up, and the hinge against zero; for hard,
    the hardest positive and negative of every anchor against their runners-up,
    and the hinge against zero. Also requires distinct rows, a positive and a
    negative for every anchor, and at least one active hinge in each loss (so
    the gradients are not all zero).
    """
    dist = distances64(emb, metric)
    tol = clearance * dist.max()
    batch = labels.size
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(batch, dtype=bool)
    if dist[off_diag].min() <= tol:
        return False
    semihard_active = hard_active = False

    def unique_extreme(values, largest):
        ordered = np.sort(values)[::-1] if largest else np.sort(values)
        return ordered.size < 2 or abs(ordered[0] - ordered[1]) > tol

    for a in range(batch):
        neg = dist[a, ~same[a]]
        pos = dist[a, same[a] & off_diag[a]]
        if neg.size == 0 or pos.size == 0:
            return False
        if not unique_extreme(neg, largest=False) or not unique_extreme(pos, largest=True):
            return False
        if abs(pos.max() - neg.min() + margin) <= tol:
            return False
        hard_active |= pos.max() - neg.min() + margin > 0
        for d_ap in pos:
            if np.min(np.abs(neg - d_ap)) <= tol:
                return False
            farther = neg[neg > d_ap]
            chosen = farther.min() if farther.size else neg.max()
            if not unique_extreme(farther if farther.size else neg, largest=not farther.size):
                return False
            if abs(margin + d_ap - chosen) <= tol:
                return False
            semihard_active |= margin + d_ap - chosen > 0
    return semihard_active and hard_active


def make_cases(seed):
    """Returns the list of case dicts (inputs and metadata), deterministic in seed."""
    specs = []  # (kind, batch, dim, extra) in order; case_id is the index.
    for b, d, k in _PK_SHAPES:
        specs += [("pk", b, d, k, m) for m in METRICS]
    for b, d in _RANDOM_SHAPES:
        specs += [("random", b, d, None, m) for m in METRICS]
    for b, d in _SINGLETON_SHAPES:
        specs += [("singletons", b, d, None, m) for m in METRICS]
    for b, d in _ALL_DISTINCT_SHAPES:
        specs += [("all_distinct", b, d, None, m) for m in METRICS]
    for b, d in _ONE_CLASS_SHAPES:
        specs += [("one_class", b, d, None, m) for m in METRICS]
    for b, d in _DUPLICATE_SHAPES:
        specs += [("duplicates", b, d, None, m) for m in METRICS]
    for b, d in _CLUSTERED_SHAPES:
        specs += [("clustered", b, d, None, m) for m in METRICS]
    for b, d, s in _OVERFLOW_SHAPES:
        specs += [("overflow", b, d, s, m) for m in METRICS]
    for b, d, k in _B512_SHAPES:
        specs += [("b512", b, d, k, m) for m in METRICS]
    for i in range(N_GRAD_CASES):
        cycle, index = divmod(i, len(_GRAD_SHAPES))
        b, d, k = _GRAD_SHAPES[index]
        # Shift the metric each cycle, so every shape meets more than one metric.
        specs.append(("grad", b, d, k, METRICS[(index + cycle) % len(METRICS)]))

    cases = []
    for case_id, (kind, batch, dim, extra, metric) in enumerate(specs):
        cases.append(_make_case(seed, case_id, kind, batch, dim, extra, metric))
    return cases


def _make_case(seed, case_id, kind, batch, dim, extra, metric):
    margin = MARGINS[case_id % len(MARGINS)]
    scale = SCALES[case_id % len(SCALES)]
    style = EMBEDDING_STYLES[case_id % len(EMBEDDING_STYLES)]
    rng = np.random.RandomState([seed, case_id])
    duplicates = False
    if kind in ("pk", "b512"):
        labels = _pk_labels(rng, batch, extra)
    elif kind in ("random", "overflow"):
        labels = _random_labels(rng, batch)
    elif kind == "singletons":
        labels = _singleton_labels(rng, batch)
    elif kind == "all_distinct":
        labels = _relabel(rng, np.arange(batch))
    elif kind == "one_class":
        labels = np.full(batch, rng.randint(100000), dtype=np.int32)
    elif kind == "duplicates":
        labels = _random_labels(rng, batch)
        duplicates = True
    elif kind == "clustered":
        labels = _pk_labels(rng, batch, 4)
    elif kind == "grad":
        labels = None  # drawn below, with the embeddings, until the case is clear
    else:
        raise ValueError(f"Unknown case kind {kind}")

    if kind == "clustered":
        emb = _clustered(rng, labels, dim, scale)
    elif kind == "overflow":
        scale = extra
        emb = _embeddings(rng, batch, dim, "gaussian", scale)
    elif kind == "grad":
        # Distances of order one, so that margins 0.05..2 leave some hinges
        # active; the point here is the gradient formula, not range.
        scale = (0.5, 1.0, 2.0)[case_id % 3] / np.sqrt(dim)
        for _attempt in range(1000):
            labels = _pk_labels(rng, batch, extra)
            if batch >= 32:
                emb = _clustered(rng, labels, dim, scale, noise=_GRAD_CLUSTER_NOISE)
            else:
                emb = _embeddings(rng, batch, dim, style, scale)
            if _decisions_are_clear(emb, labels, metric, margin):
                break
        else:
            raise RuntimeError(f"No clear gradient case found for case {case_id}")
    else:
        emb = _embeddings(rng, batch, dim, style, scale)
    if duplicates:
        emb = _duplicate_rows(rng, emb, labels)
    distinct_rows = np.unique(emb, axis=0).shape[0]
    return dict(
        case_id=case_id,
        kind=kind,
        metric=metric,
        margin=float(margin),
        scale=float(scale),
        batch=batch,
        dim=dim,
        label_2d=(case_id % 5 == 4),
        has_duplicates=distinct_rows < batch,
        grad=(kind == "grad"),
        labels=labels.astype(np.int32),
        emb=emb,
    )


def _tfa_losses(tfa, case):
    margin, metric = case["margin"], case["metric"]
    return {
        "semihard": tfa.losses.TripletSemiHardLoss(margin=margin, distance_metric=metric),
        "hard": tfa.losses.TripletHardLoss(margin=margin, soft=False, distance_metric=metric),
        "hard_soft": tfa.losses.TripletHardLoss(margin=margin, soft=True, distance_metric=metric),
    }


def input_arrays(cases, seed):
    """The inputs and metadata of all cases, as the .npz stores them."""
    sizes = [c["emb"].size for c in cases]
    arrays = dict(
        emb_flat=np.concatenate([c["emb"].ravel() for c in cases]),
        emb_offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        labels_flat=np.concatenate([c["labels"] for c in cases]),
        label_offsets=np.concatenate([[0], np.cumsum([c["batch"] for c in cases])]).astype(
            np.int64
        ),
        seed=np.int64(seed),
        numpy_version=np.str_(np.__version__),
    )
    for key in ("case_id", "batch", "dim"):
        arrays[key] = np.array([c[key] for c in cases], dtype=np.int64)
    for key in ("margin", "scale"):
        arrays[key] = np.array([c[key] for c in cases], dtype=np.float64)
    for key in ("label_2d", "has_duplicates", "grad"):
        arrays[key] = np.array([c[key] for c in cases], dtype=bool)
    for key in ("kind", "metric"):
        arrays[key] = np.array([c[key] for c in cases], dtype=np.str_)
    return arrays


def _run_tfa(cases):
    """TFA's results for `cases`: per case, its values and (grad cases) gradients."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    warnings.filterwarnings("ignore")  # TFA's end-of-life banner.
    import tensorflow as tf
    import tensorflow_addons as tfa

    # Every case has its own shapes, so TFA's tf.functions retrace on purpose.
    tf.get_logger().setLevel("ERROR")
    results = []
    for case in cases:
        labels = case["labels"].reshape(-1, 1) if case["label_2d"] else case["labels"]
        y_true = tf.constant(labels)
        y_pred = tf.constant(case["emb"])
        values, grads = {}, {}
        for name, loss in _tfa_losses(tfa, case).items():
            if case["grad"]:
                with tf.GradientTape() as tape:
                    tape.watch(y_pred)
                    value = loss(y_true, y_pred)
                grads[name] = tape.gradient(value, y_pred).numpy().ravel()
            else:
                value = loss(y_true, y_pred)
            values[name] = np.float32(value.numpy())
        results.append((values, grads))
    return results, tf.__version__, tfa.__version__


def tfa_arrays(cases, jobs=1):
    """TFA's values (and gradients of the grad cases), as the .npz stores them.

    With jobs > 1 the cases are dealt round-robin to that many spawned worker
    processes: the run is dominated by single-threaded tf.function tracing
    (every case has new shapes), so it scales with cores.
    """
    if jobs > 1:
        import multiprocessing

        shards = [cases[i::jobs] for i in range(jobs)]
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            parts = pool.map(_run_tfa, shards)
        results = [None] * len(cases)
        for i, (part, _, _) in enumerate(parts):
            results[i::jobs] = part
        _, tf_version, tfa_version = parts[0]
    else:
        results, tf_version, tfa_version = _run_tfa(cases)
    arrays = dict(tf_version=np.str_(tf_version), tfa_version=np.str_(tfa_version))
    for name in ("semihard", "hard", "hard_soft"):
        arrays[f"tfa_{name}"] = np.array([v[name] for v, _ in results], dtype=np.float32)
        arrays[f"grad_{name}_flat"] = np.concatenate(
            [g[name] for _, g in results if g] or [np.zeros(0)]
        ).astype(np.float32)
    return arrays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="path of the .npz to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--inputs-only",
        action="store_true",
        help="write only the cases' inputs and metadata (no TensorFlow import, ~1 s)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes running TFA (default 1)"
    )
    args = parser.parse_args(argv)

    start = time.time()
    cases = make_cases(args.seed)
    arrays = input_arrays(cases, args.seed)
    what = "inputs only"
    if not args.inputs_only:
        arrays.update(tfa_arrays(cases, args.jobs))
        what = f"TF {arrays['tf_version']}, TFA {arrays['tfa_version']}"
    np.savez(args.out, **arrays)
    print(
        f"tfa_reference: {len(cases)} cases ({int(arrays['grad'].sum())} with gradients), "
        f"{what}, seed {args.seed}, {time.time() - start:.1f} s -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
