"""pytorch-metric-learning 2.9's losses on seeded cases: values and gradients.

Runs in the torch lane (`.venv-torch`, made by `bash tools/make_torch_venv.sh`);
`tests/losses/test_pml_parity.py` runs it once per session and compares
keras_mdr's losses with what it writes.

Usage:
    .venv-torch/bin/python tools/pml_reference.py OUT.npz [--seed 0]

PML is configured to compute what our losses define (see each class's
docstring for the differences of its defaults):
- Euclidean losses (contrastive, margin): `LpDistance(normalize_embeddings=False)`,
  so PML does not L2-normalise the embeddings (we never do).
- Inner-product losses (multi-similarity with its miner, SupCon, NT-Xent):
  `DotProductSimilarity(normalize_embeddings=False)`.
- Proxy and centre losses (proxy-anchor, ArcFace): a PML distance that
  L2-normalises only the reference side (the proxies or centres, as our
  losses do), with our proxies / centres copied into PML's parameters.
- Our defaults where they differ from PML's: multi-similarity base 1.0,
  NT-Xent temperature 0.1, ArcFace margin 0.5 rad (given to PML in degrees),
  MarginLoss with a learnt beta.

Cases are a deterministic function of --seed (NumPy's RandomState([seed,
case])): batch sizes 2 to 512, dimensions 2 to 512, classes of one sample,
one class only, duplicated rows, unit rows scaled by 1e-3 to 1e3; in ArcFace's
b8_d4 case two embeddings sit on their centres. NT-Xent's
cases of 256 and 512 rows have two rows per label (SimCLR's batches): PML's
NT-Xent holds a (positive pairs x negative pairs) mask, which with 8 rows per
label at B = 512 has about 9e8 entries.

Output .npz, per case i: case{i}_labels (int64), case{i}_embeddings
(float32), case{i}_state (float32; beta, proxies or centres; absent for
stateless losses), case{i}_value, case{i}_grad (d value / d embeddings),
case{i}_state_grad; and `meta`, a JSON list of {loss, name, params}.
"""

import argparse
import json
import math
import sys

import numpy as np
import torch
from pytorch_metric_learning import distances, losses, miners

# (name, batch, dim, classes, scale, duplicated rows, singletons)
SHAPES = [
    ("b2_d2_two_classes", 2, 2, 2, 1.0, False, False),
    ("b2_d2_one_class", 2, 2, 1, 1.0, False, False),
    ("b8_d4", 8, 4, 4, 1.0, False, False),
    ("b16_d8_singletons", 16, 8, 6, 1.0, False, True),
    ("b8_d8_single_class", 8, 8, 1, 1.0, False, False),
    ("b32_d16_duplicated", 32, 16, 8, 1.0, True, False),
    ("b64_d32_scale1e-3", 64, 32, 8, 1e-3, False, False),
    ("b64_d32_scale1e3", 64, 32, 8, 1e3, False, False),
    ("b128_d64", 128, 64, 16, 1.0, False, False),
    ("b256_d2", 256, 2, 32, 1.0, False, False),
    ("b512_d512", 512, 512, 64, 1.0, False, False),
]
LOSSES = ["contrastive", "margin", "margin_per_class", "multi_similarity", "proxy_anchor",
          "supcon", "ntxent", "arcface"]


class RefNormalizedCosine(distances.CosineSimilarity):
    """Cosine with only the reference side (proxies, centres) L2-normalised."""

    def forward(self, query_emb, ref_emb=None):
        return self.compute_mat(query_emb, self.normalize(ref_emb))


def make_case(rng, batch, dim, classes, scale, duplicated, singletons):
    labels = np.arange(batch) % classes
    if singletons:
        labels[: classes // 2] = classes + np.arange(classes // 2)  # classes of one sample
    labels = rng.permutation(labels)
    x = rng.normal(size=(batch, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if duplicated:
        x[batch // 2:] = x[: batch - batch // 2]
    return labels.astype(np.int64), (scale * x).astype(np.float32)


def pml_loss(kind, num_classes, dim, state):
    dot = distances.DotProductSimilarity(normalize_embeddings=False)
    lp = distances.LpDistance(normalize_embeddings=False)
    if kind == "contrastive":
        return losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0, distance=lp), None, None
    if kind.startswith("margin"):
        loss = losses.MarginLoss(margin=0.2, nu=0.1, beta=1.2, learn_beta=True, distance=lp,
                                 num_classes=num_classes if kind == "margin_per_class" else None)
        loss.beta.data = torch.tensor(state)
        return loss, None, loss.beta
    if kind == "multi_similarity":
        miner = miners.MultiSimilarityMiner(epsilon=0.1, distance=dot)
        return losses.MultiSimilarityLoss(alpha=2, beta=50, base=1.0, distance=dot), miner, None
    if kind == "supcon":
        return losses.SupConLoss(temperature=0.1, distance=dot), None, None
    if kind == "ntxent":
        return losses.NTXentLoss(temperature=0.1, distance=dot), None, None
    if kind == "proxy_anchor":
        loss = losses.ProxyAnchorLoss(num_classes, dim, margin=0.1, alpha=32,
                                      distance=RefNormalizedCosine())
        loss.proxies.data = torch.tensor(state)
        return loss, None, loss.proxies
    if kind == "arcface":
        loss = losses.ArcFaceLoss(num_classes, dim, margin=math.degrees(0.5), scale=64,
                                  distance=RefNormalizedCosine())
        loss.W.data = torch.tensor(state.T.copy())
        return loss, None, loss.W
    raise ValueError(kind)


def initial_state(kind, rng, num_classes, dim):
    if kind == "margin":
        return np.array([1.2], np.float32) + rng.uniform(-0.3, 0.3, size=1).astype(np.float32)
    if kind == "margin_per_class":
        return (1.2 + rng.uniform(-0.3, 0.3, size=num_classes)).astype(np.float32)
    if kind in ("proxy_anchor", "arcface"):
        return rng.normal(size=(num_classes, dim)).astype(np.float32)
    return None


def put_on_centres(embeddings, state, labels):
    """Rows 0.. of `embeddings` exactly on their classes' centres (in place).

    Each centre becomes a standard basis vector and its rows that vector, so
    the normalised cosine is exactly 1.0 on any CPU: PML's acos has an
    infinite slope there (NaN gradient). A normalised random centre gives a
    cosine that rounds to 1 or to just below it depending on the machine's
    float kernels (0.99999994 seen on one machine: a finite 1e-28 gradient).
    """
    basis = np.eye(embeddings.shape[1], dtype=embeddings.dtype)
    for j, label in enumerate(np.unique(labels)):
        state[label] = basis[j]
    embeddings[: len(labels)] = state[labels]


def run_case(kind, labels, embeddings, state):
    num_classes, dim = int(labels.max()) + 3, embeddings.shape[1]
    loss, miner, parameter = pml_loss(kind, num_classes, dim, state)
    e = torch.tensor(embeddings, requires_grad=True)
    y = torch.tensor(labels)
    value = loss(e, y, miner(e, y)) if miner is not None else loss(e, y)
    value.backward()
    grad = e.grad.numpy() if e.grad is not None else np.zeros_like(embeddings)
    state_grad = None
    if parameter is not None:
        g = parameter.grad
        state_grad = np.zeros_like(state) if g is None else g.numpy()
        if kind == "arcface":
            state_grad = state_grad.T.copy()
    return np.float32(value.item()), grad, state_grad


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # the machine is shared; one thread is faster here
    arrays, meta = {}, []
    for k, kind in enumerate(LOSSES):
        for j, shape in enumerate(SHAPES):
            rng = np.random.RandomState([args.seed, k, j])
            if kind == "ntxent" and shape[1] >= 256:
                # PML's NT-Xent builds a (positive pairs x negative pairs) mask:
                # 9e8 entries at B = 512 with 8 per class; SimCLR's two views per label.
                shape = shape[:3] + (shape[1] // 2,) + shape[4:]
            labels, embeddings = make_case(rng, *shape[1:])
            state = initial_state(kind, rng, int(labels.max()) + 3, embeddings.shape[1])
            if kind == "arcface" and shape[0] == "b8_d4":
                put_on_centres(embeddings, state, labels[:2])
            value, grad, state_grad = run_case(kind, labels, embeddings, state)
            i = len(meta)
            arrays.update({f"case{i}_labels": labels, f"case{i}_embeddings": embeddings,
                           f"case{i}_value": value, f"case{i}_grad": grad})
            if state is not None:
                arrays[f"case{i}_state"] = state
                arrays[f"case{i}_state_grad"] = state_grad
            meta.append({"loss": kind, "name": shape[0]})
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(args.out, **arrays)
    print(f"pml_reference: {len(meta)} cases, torch {torch.__version__}")


if __name__ == "__main__":
    main(sys.argv[1:])
