"""Float64 brute-force NumPy references of the pair, proxy and softmax losses.

Written from the papers' formulas with pytorch-metric-learning's reductions,
loop by loop: no Gram trick, no masked log-sum-exp, no closed form (the
margin loss enumerates its triplets), so they share no shortcut with the
TensorFlow code. `numeric_grad` differentiates any of them centrally.
"""

import math

import numpy as np


def _pairs(labels):
    n = len(labels)
    pos = [(i, j) for i in range(n) for j in range(n) if i != j and labels[i] == labels[j]]
    neg = [(i, j) for i in range(n) for j in range(n) if labels[i] != labels[j]]
    return pos, neg


def _w(weights, n):
    return np.ones(n) if weights is None else np.asarray(weights, np.float64)


def _dist(e, i, j):
    return math.sqrt(float(np.sum((e[i] - e[j]) ** 2)))


def contrastive(labels, e, pos_margin=0.0, neg_margin=1.0, weights=None):
    e, w = np.asarray(e, np.float64), _w(weights, len(labels))
    pos, neg = _pairs(labels)
    total = 0.0
    for pairs, cost in ((pos, lambda d: max(d - pos_margin, 0.0)),
                        (neg, lambda d: max(neg_margin - d, 0.0))):
        costs = [(i, cost(_dist(e, i, j))) for i, j in pairs]
        kept = [(i, c) for i, c in costs if c > 0]
        if kept:
            total += sum(w[i] * c for i, c in kept) / len(kept)
    return total


def margin(labels, e, beta, margin=0.2, nu=0.0, weights=None):
    e, w, beta = np.asarray(e, np.float64), _w(weights, len(labels)), np.asarray(beta, np.float64)
    n = len(labels)
    triplets = [(a, p, q) for a in range(n) for p in range(n) for q in range(n)
                if a != p and labels[a] == labels[p] and labels[q] != labels[a]]
    if not triplets:
        return 0.0
    b = lambda a: beta[0] if beta.size == 1 else beta[labels[a]]
    hp = [max(_dist(e, a, p) - b(a) + margin, 0.0) for a, p, _ in triplets]
    hn = [max(b(a) - _dist(e, a, q) + margin, 0.0) for a, _, q in triplets]
    divisor = sum(x > 0 for x in hp) + sum(x > 0 for x in hn)
    cost = sum(w[a] * (x + y) for (a, _, _), x, y in zip(triplets, hp, hn))
    loss = cost / divisor if divisor else 0.0
    if beta.size == 1:
        return loss + nu * beta[0] * sum(w[a] for a, _, _ in triplets) / len(triplets)
    return loss + (nu * sum(w[a] * b(a) for a, _, _ in triplets) / divisor if divisor else 0.0)


def multi_similarity(labels, e, alpha=2.0, beta=50.0, base=1.0, epsilon=0.1, weights=None):
    e, w = np.asarray(e, np.float64), _w(weights, len(labels))
    n = len(labels)
    s = np.array([[float(np.dot(e[i], e[j])) for j in range(n)] for i in range(n)])
    pos, neg = _pairs(labels)
    if not pos or not neg:
        return 0.0
    total = 0.0
    for i in range(n):
        ps = [j for a, j in pos if a == i]
        ns = [j for a, j in neg if a == i]
        if epsilon is not None and ps and ns:
            hardest_neg, easiest_pos = max(s[i, ns]), min(s[i, ps])
            ps, ns = ([j for j in ps if s[i, j] - epsilon < hardest_neg],
                      [j for j in ns if s[i, j] + epsilon > easiest_pos])
        elif epsilon is not None:
            ps, ns = [], []
        term = 0.0
        if ps:
            term += math.log1p(sum(math.exp(-alpha * (s[i, j] - base)) for j in ps)) / alpha
        if ns:
            term += math.log1p(sum(math.exp(beta * (s[i, j] - base)) for j in ns)) / beta
        total += w[i] * term
    return total / n


def supcon(labels, e, temperature=0.1, weights=None):
    e, w = np.asarray(e, np.float64), _w(weights, len(labels))
    n = len(labels)
    pos, neg = _pairs(labels)
    if not pos or not neg:
        return 0.0
    s = np.array([[float(np.dot(e[i], e[j])) / temperature for j in range(n)] for i in range(n)])
    costs = []
    for i in range(n):
        ps = [j for a, j in pos if a == i]
        if not ps:
            continue
        others = [j for j in range(n) if j != i]
        top = max(s[i, others])
        log_den = top + math.log(sum(math.exp(s[i, j] - top) for j in others))
        costs.append((i, -sum(s[i, j] - log_den for j in ps) / len(ps)))
    kept = [(i, c) for i, c in costs if c > 0]
    return sum(w[i] * c for i, c in kept) / len(kept) if kept else 0.0


def ntxent(labels, e, temperature=0.1, weights=None):
    e, w = np.asarray(e, np.float64), _w(weights, len(labels))
    n = len(labels)
    pos, neg = _pairs(labels)
    if not pos or not neg:
        return 0.0
    s = np.array([[float(np.dot(e[i], e[j])) / temperature for j in range(n)] for i in range(n)])
    total = 0.0
    for a, p in pos:
        terms = [s[a, p]] + [s[a, j] for i, j in neg if i == a]
        top = max(terms)
        total += w[a] * (top + math.log(sum(math.exp(t - top) for t in terms)) - s[a, p])
    return total / len(pos)


def proxy_anchor(labels, e, proxies, margin=0.1, alpha=32.0, weights=None):
    e, w = np.asarray(e, np.float64), _w(weights, len(labels))
    p = np.asarray(proxies, np.float64)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    pos_total, with_pos, neg_total = 0.0, 0, 0.0
    for c in range(len(p)):
        sims = [(i, float(np.dot(e[i], p[c]))) for i in range(len(labels)) if w[i] > 0]
        pos = [w[i] * math.exp(-alpha * (x - margin)) for i, x in sims if labels[i] == c]
        neg = [w[i] * math.exp(alpha * (x + margin)) for i, x in sims if labels[i] != c]
        if pos:
            pos_total += math.log1p(sum(pos))
            with_pos += 1
        if neg:
            neg_total += math.log1p(sum(neg))
    return (pos_total / with_pos if with_pos else 0.0) + neg_total / len(p)


def arcface(labels, e, centres, margin=0.5, scale=64.0, weights=None):
    e, w = np.asarray(e, np.float64), _w(weights, len(labels))
    c = np.asarray(centres, np.float64)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    total = 0.0
    for i, y in enumerate(labels):
        logits = [scale * float(np.dot(e[i], c[k])) for k in range(len(c))]
        theta = math.acos(min(max(float(np.dot(e[i], c[y])), -1.0), 1.0))
        if theta <= math.pi - margin:
            logits[y] = scale * math.cos(theta + margin)
        else:
            logits[y] = scale * (math.cos(theta) - margin * math.sin(margin))
        top = max(logits)
        total += w[i] * (top + math.log(sum(math.exp(x - top) for x in logits)) - logits[y])
    return total / len(labels)


def numeric_grad(fn, x, step=1e-6):
    """Central differences of a float64 scalar function of an array."""
    x = np.array(x, np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += step
        down[idx] -= step
        grad[idx] = (fn(up) - fn(down)) / (2 * step)
    return grad
