"""The MDR release's negative sampler and triplet loss in real PyTorch float32.

Runs in the torch lane (`.venv-torch`, made by `bash tools/make_torch_venv.sh`);
`tests/losses/test_distance_weighted.py` runs it in a subprocess and compares
keras_mdr's `distance_weighted_probabilities(..., sampling="release")` with the
probabilities written here, row by row.

Usage:
    .venv-torch/bin/python tools/torch_sampler_reference.py OUT.npz [--seed 0]

What it computes, written from the rule of the authors' sampler (not copied):
on u = e / max(|e|, 1e-12), q = sqrt(pdist^2 clamped at 1e-12, diagonal 0,
plus the identity), clipped below at 0.5; log w = (2 - d) log q
- ((d - 3) / 2) log(1 - q^2 / 4); w = exp(log w - row max over the WHOLE row);
w is kept only for negatives with q < 1.4; a row summing to exactly 0 becomes
uniform over all negatives; rows are normalised. All in torch float32 on CPU,
which keeps float32 subnormals (no flush to zero).

Then, as the release trains: anchor/positive pairs in `nonzero()` order, one
negative per pair from `torch.multinomial`, and the triplet margin loss
(margin 0.2, PyTorch's distance |a - n + 1e-6|) on the scale-normalised
embeddings e / mean off-diagonal pdist (squared distances clamped at 1e-12).

Cases are a deterministic function of --seed (NumPy's `RandomState([seed,
case])`, frozen across versions), built like training batches: P classes x K
samples, some classes of one sample, one single-class batch, d = 512 and
smaller, with class spreads that put rows in the three regimes the rule has
(normal weights, float32 subnormal weights, and rows that underflow to the
uniform fallback).

Output .npz, per case i: case{i}_embeddings (float32), case{i}_labels (int64),
case{i}_probabilities (float32, torch's), case{i}_weights (float32,
torch's weights before the uniform fallback, subnormals kept), case{i}_regime (int8 per row: 0 a
normal row, 1 a row whose smallest nonzero weight is a float32 subnormal,
2 a row that fell back to uniform, 3 a row with no negative),
case{i}_triplets (int64 (T, 3) anchor, positive, negative), case{i}_loss
(float32 scalar, torch's triplet loss); and num_cases, seed, torch_version.
"""

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F

CUTOFF = 0.5
NONZERO_LOSS_CUTOFF = 1.4
MARGIN = 0.2
# (dim, classes, samples per class, offset, spread): class centres are unit
# Gaussian directions, every sample gets `offset` times a direction shared by
# the batch (so classes are closer than random directions, as after training)
# plus `spread` times its own noise, scaled per sample by a factor in
# [0.5, 1.5] so one batch mixes close and loose positives.
SHAPES = (
    (512, 32, 4, 0.9, 0.7),
    (512, 32, 4, 0.9, 0.9),
    (512, 32, 4, 0.9, 1.1),
    (512, 32, 4, 0.9, 1.4),
    (512, 32, 4, 0.9, 1.8),
    (512, 32, 4, 1.3, 1.1),
    (512, 32, 4, 1.3, 1.4),
    (512, 32, 4, 0.5, 1.1),
    (512, 32, 4, 0.0, 1.4),
    (512, 64, 4, 1.3, 1.4),
    (256, 32, 4, 0.9, 0.9),
    (256, 32, 4, 1.3, 0.9),
    (128, 32, 4, 0.9, 0.7),
    (128, 16, 8, 1.1, 0.5),
    (64, 32, 4, 0.9, 0.8),
    (64, 16, 4, 0.5, 0.4),
    (32, 16, 4, 0.9, 0.8),
    (16, 16, 4, 0.9, 0.8),
    (8, 8, 4, 0.5, 0.6),
    (4, 8, 3, 0.5, 0.6),
    (3, 6, 3, 0.3, 0.5),
    (2, 6, 3, 0.3, 0.5),
)
# SOP / In-Shop-like batches: min(3, n_c) images per class, so classes of one
# and two samples; (dim, batch, offset, spread).
SMALL_CLASS_SHAPES = ((512, 96, 0.9, 1.1), (512, 128, 1.3, 1.4), (128, 64, 0.9, 0.8))


def _batch(rng, dim, sizes, offset, spread):
    shared = rng.standard_normal(dim) / np.sqrt(dim)
    rows, labels = [], []
    for label, size in enumerate(sizes):
        centre = rng.standard_normal(dim) / np.sqrt(dim)
        factor = rng.uniform(0.5, 1.5, size=(size, 1))
        noise = rng.standard_normal((size, dim)) / np.sqrt(dim)
        rows.append(centre + offset * shared + spread * factor * noise)
        labels += [label] * size
    order = rng.permutation(len(labels))
    # Raw embedding scale as a head produces it; the sampler only sees directions.
    embeddings = 3.0 * np.concatenate(rows)[order]
    return embeddings.astype(np.float32), np.asarray(labels, np.int64)[order]


def cases(seed):
    """The deterministic list of (embeddings, labels)."""
    out = []
    for i, (dim, classes, size, offset, spread) in enumerate(SHAPES):
        rng = np.random.RandomState([seed, i])
        out.append(_batch(rng, dim, [size] * classes, offset, spread))
    for j, (dim, batch, offset, spread) in enumerate(SMALL_CLASS_SHAPES):
        rng = np.random.RandomState([seed, 100 + j])
        sizes, total = [], 0
        while total < batch:
            size = min(3, int(rng.randint(1, 6)), batch - total)
            sizes.append(size)
            total += size
        out.append(_batch(rng, dim, sizes, offset, spread))
    rng = np.random.RandomState([seed, 200])
    out.append(_batch(rng, 512, [16], 0.9, 0.5))  # one class: no negative anywhere
    rng = np.random.RandomState([seed, 201])
    embeddings, labels = _batch(rng, 512, [4] * 8, 0.9, 1.1)
    embeddings[1] = embeddings[0]  # a duplicated row: q = 0, clipped to 0.5
    out.append((embeddings, labels))
    return out


def _pdist(e, squared):
    """Pairwise distances as the release computes them (clamp 1e-12, zero diagonal)."""
    squares = e.pow(2).sum(dim=1)
    result = (squares.unsqueeze(1) + squares.unsqueeze(0) - 2 * e @ e.t()).clamp(min=1e-12)
    if not squared:
        result = result.sqrt()
    result = result.clone()
    result[range(len(e)), range(len(e))] = 0
    return result


def release_probabilities(embeddings, labels):
    """Rows of the release's sampling distribution, the raw weights before the
    fallback, and each row's regime."""
    batch, dim = embeddings.shape
    same = labels[:, None] == labels[None, :]
    negatives = ~same
    u = F.normalize(embeddings, p=2, dim=1)
    q = (_pdist(u, squared=True) + torch.eye(batch)).sqrt().clamp(min=CUTOFF)
    log_w = (2.0 - dim) * q.log() - ((dim - 3.0) / 2.0) * (1.0 - 0.25 * (q * q)).log()
    w = (log_w - log_w.max(dim=1, keepdim=True)[0]).exp()
    w = w * (negatives & (q < NONZERO_LOSS_CUTOFF)).float()
    empty = w.sum(dim=1, keepdim=True) == 0
    nonzero_min = torch.where(w > 0, w, torch.full_like(w, float("inf"))).min(dim=1)[0]
    regime = torch.zeros(batch, dtype=torch.int8)
    regime[nonzero_min < torch.finfo(torch.float32).tiny] = 1
    regime[empty[:, 0]] = 2
    regime[~negatives.any(dim=1)] = 3
    fallback = w + (empty & negatives).float()
    probabilities = fallback / fallback.sum(dim=1, keepdim=True)
    # A row without negatives is 0 / 0 here (the release's multinomial would
    # fail on it); keras_mdr's contract is a row of zeros.
    probabilities = torch.where(negatives.any(dim=1, keepdim=True), probabilities, 0.0)
    return probabilities, w, regime


def release_triplet_loss(embeddings, labels, probabilities, generator):
    """The release's training loss on one batch: sampled triplets and their mean hinge."""
    batch = len(labels)
    distances = _pdist(embeddings, squared=False)
    scale = distances[~torch.eye(batch, dtype=torch.bool)].mean()
    scaled = embeddings / scale
    positives = (labels[:, None] == labels[None, :]) & ~torch.eye(batch, dtype=torch.bool)
    has_negative = (labels[:, None] != labels[None, :]).any(dim=1)
    pairs = (positives & has_negative[:, None]).nonzero()
    if len(pairs) == 0:
        return torch.zeros((0, 3), dtype=torch.int64), torch.tensor(0.0)
    anchors, positive = pairs[:, 0], pairs[:, 1]
    negative = torch.multinomial(probabilities[anchors], 1, generator=generator)[:, 0]
    loss = F.triplet_margin_loss(
        scaled[anchors], scaled[positive], scaled[negative], margin=MARGIN, reduction="none"
    ).mean()
    return torch.stack([anchors, positive, negative], dim=1), loss


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # summation order independent of the machine's cores
    generator = torch.Generator().manual_seed(args.seed)
    arrays = {}
    all_cases = cases(args.seed)
    for i, (embeddings, labels) in enumerate(all_cases):
        e, y = torch.from_numpy(embeddings), torch.from_numpy(labels)
        probabilities, weights, regime = release_probabilities(e, y)
        triplets, loss = release_triplet_loss(e, y, probabilities, generator)
        arrays.update({
            f"case{i}_embeddings": embeddings,
            f"case{i}_labels": labels,
            f"case{i}_probabilities": probabilities.numpy(),
            f"case{i}_weights": weights.numpy(),
            f"case{i}_regime": regime.numpy(),
            f"case{i}_triplets": triplets.numpy(),
            f"case{i}_loss": np.float32(loss.item()),
        })
    regimes = np.concatenate([arrays[f"case{i}_regime"] for i in range(len(all_cases))])
    print(
        f"torch_sampler_reference: {len(all_cases)} cases, {regimes.size} rows: "
        f"{np.sum(regimes == 0)} normal, {np.sum(regimes == 1)} subnormal, "
        f"{np.sum(regimes == 2)} uniform fallback, {np.sum(regimes == 3)} without negative"
    )
    np.savez(args.out, num_cases=len(all_cases), seed=args.seed,
             torch_version=torch.__version__, **arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
