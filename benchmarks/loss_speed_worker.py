"""Times a peer library's losses for `loss_speed.py`, inside the peer's environment.

Run by `benchmarks/loss_speed.py` as a long-lived subprocess with the side
lane's Python (`.venv-tfa`: TensorFlow 2.15 + TensorFlow Addons 0.23;
`.venv-torch`: torch CPU + pytorch-metric-learning 2.9); it does not import
keras_mdr. It reads one JSON request a line on stdin and answers one JSON line
on stdout:

    {"op": "hello"}                                   -> versions
    {"op": "setup", "variant": V, "batch": B, "dim": d, "margin": m}
        builds the forward + backward step of V on the shared batch, runs it
        twice (tracing, warm-up)                      -> {"ok": true}
    {"op": "time", "variant": V, "batch": B, "reps": r}
        runs the step r times                         -> {"ms": mean ms a call}
    {"op": "peak_rss", ...setup fields}               (fresh worker only)
        one step                                      -> {"base_mib", "peak_mib"}

The batch is the one `loss_speed.batch` builds: labels 0,0,0,0,1,1,1,1,...
(4 images per class) and float32 N(0, 1) embeddings from
`numpy.random.default_rng(0)` (PCG64, the same stream in every NumPy >= 1.17).
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

IMAGES_PER_CLASS = 4


def batch_arrays(batch_size, dim, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(batch_size // IMAGES_PER_CLASS), IMAGES_PER_CLASS).astype("int32")
    embeddings = rng.normal(size=(batch_size, dim)).astype("float32")
    return labels, embeddings


def vm_hwm_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# ----------------------------------------------------------------------------
# TensorFlow Addons 0.23


def tfa_versions():
    import tensorflow as tf
    import tensorflow_addons as tfa

    return {"tensorflow": tf.__version__, "tensorflow_addons": tfa.__version__}


def tfa_step(variant, batch_size, dim, margin):
    import tensorflow as tf
    import tensorflow_addons as tfa

    losses = {
        "semihard": lambda: tfa.losses.TripletSemiHardLoss(margin=margin),
        "hard": lambda: tfa.losses.TripletHardLoss(margin=margin),
    }
    loss = losses[variant]()
    labels, embeddings = batch_arrays(batch_size, dim)
    labels, embeddings = tf.constant(labels), tf.constant(embeddings)

    @tf.function
    def step(y, e):
        with tf.GradientTape() as tape:
            tape.watch(e)
            value = loss(y, e)
        return value, tape.gradient(value, e)

    def run():
        value, grad = step(labels, embeddings)
        return value.numpy(), grad.numpy()

    return run


# ----------------------------------------------------------------------------
# pytorch-metric-learning 2.9


def pml_versions():
    import pytorch_metric_learning
    import torch

    return {"torch": torch.__version__, "pytorch_metric_learning": pytorch_metric_learning.__version__,
            "torch_threads": torch.get_num_threads()}


def pml_loss(variant, num_classes, dim, margin):
    """(loss, miner or None) of PML, with the papers' defaults (PML's own)."""
    from pytorch_metric_learning import losses, miners

    table = {
        "contrastive": lambda: (losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0), None),
        "margin": lambda: (losses.MarginLoss(margin=0.2, nu=0.0, beta=1.2, learn_beta=True), None),
        "multi_similarity": lambda: (
            losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5),
            miners.MultiSimilarityMiner(epsilon=0.1),
        ),
        "proxy_anchor": lambda: (
            losses.ProxyAnchorLoss(num_classes, dim, margin=0.1, alpha=32.0), None),
        "supcon": lambda: (losses.SupConLoss(temperature=0.1), None),
        "ntxent": lambda: (losses.NTXentLoss(temperature=0.07), None),
        # PML's margin is in degrees: 28.6 = 0.5 rad, ours.
        "arcface": lambda: (losses.ArcFaceLoss(num_classes, dim, margin=28.6, scale=64.0), None),
        "semihard": lambda: (
            losses.TripletMarginLoss(margin=margin),
            miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard"),
        ),
    }
    return table[variant]()


def pml_step(variant, batch_size, dim, margin):
    import torch

    labels, embeddings = batch_arrays(batch_size, dim)
    loss, miner = pml_loss(variant, batch_size // IMAGES_PER_CLASS, dim, margin)
    labels = torch.from_numpy(labels.astype("int64"))
    source = torch.from_numpy(embeddings)
    parameters = list(loss.parameters())

    def run():
        e = source.clone().requires_grad_(True)
        if miner is None:
            value = loss(e, labels)
        else:
            value = loss(e, labels, miner(e, labels))
        value.backward()
        grads = [e.grad] + [p.grad for p in parameters]
        for p in parameters:
            p.grad = None
        return value.item(), [g.numpy() for g in grads if g is not None]

    return run


LANES = {"tfa": (tfa_versions, tfa_step), "pml": (pml_versions, pml_step)}


def serve(lane):
    versions, make_step = LANES[lane]
    steps = {}
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "hello":
                reply = {"versions": versions()}
            elif op == "setup":
                key = (request["variant"], request["batch"])
                steps[key] = make_step(request["variant"], request["batch"], request["dim"],
                                       request["margin"])
                steps[key]()
                steps[key]()
                reply = {"ok": True}
            elif op == "time":
                run = steps[(request["variant"], request["batch"])]
                start, cpu = time.perf_counter(), time.process_time()
                for _ in range(request["reps"]):
                    run()
                reps = request["reps"]
                reply = {"ms": 1e3 * (time.perf_counter() - start) / reps,
                         "cpu_ms": 1e3 * (time.process_time() - cpu) / reps}
            elif op == "peak_rss":
                base = vm_hwm_mib()
                make_step(request["variant"], request["batch"], request["dim"], request["margin"])()
                reply = {"base_mib": base, "peak_mib": vm_hwm_mib()}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except Exception as error:  # reported to the parent, which records it
            reply = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
