"""Float64 NumPy references of the losses and of MDR, written from the paper and the authors' release.

Brute force on purpose: no Gram trick, no sorting, explicit masks, so they
share no code (and no shortcut) with the TensorFlow implementation.
"""

import numpy as np


def distances(embeddings, metric="euclidean"):
    e = np.asarray(embeddings, np.float64)
    if metric == "cosine":
        u = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        d = np.maximum(1.0 - u @ u.T, 0.0)
    else:
        d = np.sum((e[:, None, :] - e[None, :, :]) ** 2, axis=-1)
        if metric == "euclidean":
            d = np.sqrt(d)
    np.fill_diagonal(d, 0.0)
    return d


def well_separated(embeddings, tol=1e-4):
    """True when no two distances in a row are within `tol` (relative) of each
    other: away from the kinks of the triplet mining rules, where finite
    differences would straddle a switch of the selected negative."""
    d = distances(embeddings)
    scale = d.max() if d.max() > 0 else 1.0
    for row in d:
        gaps = np.diff(np.sort(row))
        if np.any(gaps < tol * scale):
            return False
    return True


def masks(labels):
    labels = np.asarray(labels).reshape(-1)
    same = labels[:, None] == labels[None, :]
    positives = same & ~np.eye(len(labels), dtype=bool)
    return positives, ~same


def semihard(labels, d, margin, weights=None):
    """TFA's rule per (a, p): closest negative strictly farther, else farthest.
    `weights`: one per anchor; the sum of weighted hinges over the pair count."""
    positives, negatives = masks(labels)
    weights = np.ones(len(d)) if weights is None else np.asarray(weights, np.float64)
    total, count = 0.0, 0
    for a, p in zip(*np.nonzero(positives)):
        negs = d[a][negatives[a]]
        if negs.size == 0:
            dn = d[a].min()
        elif np.any(negs > d[a, p]):
            dn = negs[negs > d[a, p]].min()
        else:
            dn = negs.max()
        total += weights[a] * max(margin + d[a, p] - dn, 0.0)
        count += 1
    return total / count if count else 0.0


def semihard_vectorized(labels, d, margin):
    """Same rule as `semihard`, broadcast over [a, p, n] (for finite differences)."""
    positives, negatives = masks(labels)
    big = np.inf
    farther = negatives[:, None, :] & (d[:, None, :] > d[:, :, None])
    outside = np.where(farther, d[:, None, :], big).min(axis=2)
    has_neg = negatives.any(axis=1)
    farthest = np.where(has_neg, np.where(negatives, d, -big).max(axis=1), d.min(axis=1))
    dn = np.where(farther.any(axis=2), outside, farthest[:, None])
    losses = np.maximum(margin + d - dn, 0.0)
    n = positives.sum()
    return float((losses * positives).sum() / n) if n else 0.0


def hard(labels, d, margin, soft=False, weights=None):
    positives, negatives = masks(labels)
    weights = np.ones(len(d)) if weights is None else np.asarray(weights, np.float64)
    hp = np.where(positives.any(1), np.where(positives, d, -np.inf).max(1), d.min(1))
    hn = np.where(negatives.any(1), np.where(negatives, d, np.inf).min(1), d.max(1))
    gap = hp - hn
    if soft:
        return float(np.mean(weights * np.logaddexp(0.0, gap)))
    return float(np.mean(weights * np.maximum(gap + margin, 0.0)))


def distance_weighted_probabilities(labels, embeddings, cutoff=0.5, nonzero_loss_cutoff=1.4):
    """Per-anchor sampling distribution over negatives of the distance-weighted sampler."""
    e = np.asarray(embeddings, np.float64)
    dim = e.shape[1]
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    _, negatives = masks(labels)
    q = np.sqrt(np.sum((u[:, None] - u[None]) ** 2, -1) + np.eye(len(e)))
    q = np.maximum(q, cutoff)
    log_w = (2.0 - dim) * np.log(q) - (dim - 3.0) / 2.0 * np.log(
        np.maximum(1.0 - 0.25 * q**2, 1e-8)
    )
    probs = np.zeros_like(q)
    for a in range(len(e)):
        allowed = negatives[a] & (q[a] < nonzero_loss_cutoff)
        if not allowed.any():
            allowed = negatives[a]
        if not allowed.any():
            continue
        w = np.exp(log_w[a][allowed] - log_w[a][allowed].max())
        probs[a, allowed] = w / w.sum()
    return probs


class MDRReference:
    """MDR per the paper in float64, with its moving statistics."""

    def __init__(self, levels=(-3.0, 0.0, 3.0), momentum=0.9, mdr_weight=0.2,
                 level_weight=0.01, base="semihard", margin=0.2):
        self.levels = np.asarray(levels, np.float64)
        self.momentum = momentum
        self.mdr_weight = mdr_weight
        self.level_weight = level_weight
        self.base = base
        self.margin = margin
        self.mean, self.std, self.initialized = 0.0, 1.0, False

    def _scaled(self, embeddings):
        d = distances(embeddings)
        off = ~np.eye(len(d), dtype=bool)
        s = d[off].mean()
        return d / s

    def statistics(self, embeddings, training):
        """Statistics used for this batch; updates the moving ones if training."""
        dt = self._scaled(embeddings)
        mu_b, sd_b = dt.mean(), dt.std(ddof=1)
        if not training:
            return (self.mean, self.std) if self.initialized else (mu_b, sd_b)
        if self.initialized:
            m = self.momentum
            self.mean, self.std = m * self.mean + (1 - m) * mu_b, m * self.std + (1 - m) * sd_b
        else:
            self.mean, self.std, self.initialized = mu_b, sd_b, True
        return self.mean, self.std

    def terms(self, embeddings, labels, levels, mean, std):
        """Loss terms with the statistics given (held fixed: stop-gradient)."""
        dt = self._scaled(embeddings)
        off = ~np.eye(len(dt), dtype=bool)
        if self.base == "semihard":
            base = semihard_vectorized(labels, dt, self.margin)
        elif self.base == "hard":
            base = hard(labels, dt, self.margin)
        else:
            base = 0.0
        z = (dt - mean) / std
        mdr = np.min(np.abs(z[..., None] - levels), axis=-1)[off].mean()
        level = float(np.sum(levels**2))
        total = base + self.mdr_weight * mdr + self.level_weight * level
        return {"loss": total, "base_loss": base, "mdr_loss": mdr, "level_loss": level}

    def gradients(self, embeddings, labels, mean, std, h=1e-6):
        """Central finite differences of the total w.r.t. embeddings and levels."""
        e = np.asarray(embeddings, np.float64)

        def f(e_, v_):
            return self.terms(e_, labels, v_, mean, std)["loss"]

        grad_e = np.zeros_like(e)
        for idx in np.ndindex(e.shape):
            plus, minus = e.copy(), e.copy()
            plus[idx] += h
            minus[idx] -= h
            grad_e[idx] = (f(plus, self.levels) - f(minus, self.levels)) / (2 * h)
        grad_v = np.zeros_like(self.levels)
        for i in range(len(self.levels)):
            plus, minus = self.levels.copy(), self.levels.copy()
            plus[i] += h
            minus[i] -= h
            grad_v[i] = (f(e, plus) - f(e, minus)) / (2 * h)
        return grad_e, grad_v
