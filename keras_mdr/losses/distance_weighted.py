"""Distance-weighted negative sampling (Wu et al. 2017) in two variants.

Every anchor `a` draws its negatives from a distribution over the batch built
from unit-sphere distances: on `u = e / max(|e|, 1e-12)`,
`q_aj = max(|u_a - u_j|, cutoff)` (squared distances clamped below at
1e-12, `q_aa = 1`) and

    log w_aj = (2 - d) log q_aj - ((d - 3) / 2) log(1 - q_aj^2 / 4),

the inverse of the density of distances between random points of the sphere
in `d` dimensions. Only negatives of `a` closer than `nonzero_loss_cutoff`
keep a weight (farther ones cannot violate a margin of 0.2).

`sampling="release"` is the rule of the MDR authors' PyTorch code, float32
rounding included, because it is what produced the paper's numbers:

1. `w_aj = exp(log w_aj - max_j log w_aj)` where the maximum runs over the
   whole row: the anchor itself and its positives included.
2. Weights outside the anchor's negatives under the cut-off are set to 0.
3. A row whose weights sum to exactly 0 becomes uniform over *all* the
   anchor's negatives (the cut-off no longer applies).
4. Each row is divided by its sum.

In float32 a positive much closer than every negative makes step 1 underflow:
at d = 512 a positive at q = 0.5 has log w = 369.9 and a negative at q = 1
has 73.2, and `exp` of a difference below about -104 is 0, so such a row falls
back to uniform sampling. Between 2^-149 and 2^-126 `exp` returns a float32
*subnormal*; PyTorch keeps them, so those rows keep a few coarse weights
(multiples of 2^-149) instead of falling back. TensorFlow's CPU kernels flush
float32 subnormals to zero, so a plain float32 port would sample a different
distribution in those rows. This module therefore computes in float64 and
rounds every intermediate result to float32 by hand, subnormals included
(`round_to_float32`): each step sees the value PyTorch's float32 sees, up to
the last-bit differences of its `log`, `exp` and matrix product.
Where the rule has no value (points at distance 2 or more in float32, where
`log(1 - q^2 / 4)` is undefined and PyTorch fails to sample), the limit
q -> 2 is used: that entry is the row's maximum with weight 1.

`sampling="textbook"` is Wu et al.'s intent: the maximum runs over the
anchor's negatives under the cut-off only, so the closest allowed negatives
never underflow (at d = 512 this is close to hardest-negative mining); a row
with no negative under the cut-off is uniform over the anchor's negatives.
It shares the arithmetic of the release's rule, so both variants give the
same probabilities with and without XLA (bit for bit in our tests: XLA's
float32 `log` and `exp` differ from TensorFlow's in the last bit, while
float64 results rounded to float32 agree).

Both return a row of zeros for an anchor with no negative at all.

`sample_negatives` draws one negative per (anchor, positive) pair by inverse
CDF on uniforms from a counter-based integer hash of (seed, position): the
same indices with and without XLA, and on a resumed run.

`release_triplet_distances` gives the distance the release's triplet margin
loss uses, PyTorch's `|x_a - x_j + 1e-6|` (the epsilon is added to every
component of the difference), from the shared distance matrix. Plain
Euclidean distances change the loss by up to 2e-4 of its value on batches
whose loss is small (1e-5), and by 1e-5 on a batch with a duplicated sample;
the identity `|x + c 1|^2 = |x|^2 + 2 c sum(x) + d c^2` removes that.
"""

import tensorflow as tf

from keras_mdr import distances as distances_lib

SAMPLINGS = ("release", "textbook")

_MASK32 = 0xFFFFFFFF
_FLOAT32_TINY = 2.0**-126  # smallest normal float32
_FLOAT32_SUBNORMAL_STEP = 2.0**-149  # spacing of float32 below _FLOAT32_TINY


def _mix32(x):
    """lowbias32 integer hash (C. Wellons) on int64 lanes holding 32-bit values."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = tf.bitwise.bitwise_and(x * 0x7FEB352D, _MASK32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = tf.bitwise.bitwise_and(x * 0x846CA68B, _MASK32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def hash_uniform(shape, seed):
    """Uniform [0, 1) float32 values from a counter-based hash of (seed, position).

    TensorFlow's stateless random ops return different numbers when compiled
    with XLA; plain integer arithmetic gives the same bits everywhere, so a
    training step samples the same negatives with and without `jit_compile`,
    and a resumed run (same seed, same step) the same ones again.

    Args:
        shape: 1-D int tensor or list, the output shape.
        seed: int `(2,)` tensor or list; only its low 32 bits per entry count.

    Returns:
        float32 tensor of `shape`, multiples of 2^-24 in [0, 1).
    """
    seed = tf.bitwise.bitwise_and(tf.cast(seed, tf.int64), _MASK32)
    key = _mix32(tf.bitwise.bitwise_xor(_mix32(seed[0] + 0x9E3779B9), seed[1]))
    count = tf.cast(tf.reduce_prod(shape), tf.int64)
    counter = tf.range(count, dtype=tf.int64)
    bits = _mix32(tf.bitwise.bitwise_and(counter * 0x9E3779B1 + key, _MASK32))
    bits = _mix32(tf.bitwise.bitwise_xor(bits, key))
    # 24 high bits: exactly representable in float32.
    uniform = tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) / float(1 << 24)
    return tf.reshape(uniform, shape)


def round_to_float32(x):
    """Rounds float64 values to the nearest float32 value, subnormals included.

    The result stays float64 (a float32 tensor would lose the subnormals on
    TensorFlow's CPU kernels, which flush them to zero). Below 2^-126 float32
    is a fixed grid of multiples of 2^-149: there the value is rounded to that
    grid, half to even, as IEEE float32 arithmetic does.

    Args:
        x: float64 tensor.

    Returns:
        float64 tensor of float32-representable values (inf beyond float32's range).
    """
    normal = tf.cast(tf.cast(x, tf.float32), tf.float64)
    # x / step is exact (a power of two); tf.round rounds half to even.
    subnormal = tf.round(x / _FLOAT32_SUBNORMAL_STEP) * _FLOAT32_SUBNORMAL_STEP
    return tf.where(tf.abs(x) < _FLOAT32_TINY, subnormal, normal)


def _float32(value):
    """A Python float as the float32 PyTorch compares with, in float64."""
    return tf.cast(tf.cast(value, tf.float32), tf.float64)


def _unit_distances(embeddings):
    """`q` before clipping, float32 rounding after every operation (float64 out)."""
    r = round_to_float32
    e = tf.cast(embeddings, tf.float64)
    norms = r(tf.sqrt(r(tf.reduce_sum(r(tf.square(e)), axis=1, keepdims=True))))
    u = r(e / tf.maximum(norms, _float32(1e-12)))
    squared_norms = r(tf.reduce_sum(r(tf.square(u)), axis=1))
    products = r(tf.matmul(u, u, transpose_b=True))
    squared = r(r(squared_norms[:, None] + squared_norms[None, :]) - 2.0 * products)
    squared = tf.maximum(squared, _float32(1e-12))
    eye = tf.eye(tf.shape(e)[0], dtype=tf.float64)
    # Diagonal: squared distance 0, plus the identity, so q_aa = sqrt(1) = 1.
    return r(tf.sqrt(squared * (1.0 - eye) + eye))


def _log_weights(q, dim):
    """`(2 - d) log q - ((d - 3) / 2) log(1 - q^2 / 4)`, float32 rounding at each step.

    Where `1 - q^2 / 4 <= 0` the second logarithm is taken as its limit,
    -inf, and `0 * -inf` (d = 3) as 0.
    """
    r = round_to_float32
    first = r((2.0 - dim) * r(tf.math.log(q)))
    room = r(1.0 - r(0.25 * r(q * q)))
    log_room = tf.where(
        room > 0.0, r(tf.math.log(tf.maximum(room, _FLOAT32_TINY))), -float("inf")
    )
    return r(first - r(tf.math.multiply_no_nan(log_room, (dim - 3.0) / 2.0)))


def _weights(embeddings, negatives, sampling, cutoff, nonzero_loss_cutoff):
    """Unnormalised float64 weights (steps 1 and 2 of either rule)."""
    q = tf.maximum(_unit_distances(embeddings), _float32(cutoff))
    dim = tf.cast(tf.shape(embeddings)[1], tf.float64)
    log_weights = _log_weights(q, dim)
    allowed = tf.logical_and(negatives, q < _float32(nonzero_loss_cutoff))
    if sampling == "textbook":
        log_weights = tf.where(allowed, log_weights, -float("inf"))
    row_max = tf.reduce_max(log_weights, axis=1, keepdims=True)
    # Entries at the row maximum get weight 1 even when it is +inf (q = 2).
    weights = tf.where(
        log_weights == row_max,
        tf.ones_like(log_weights),
        round_to_float32(tf.exp(round_to_float32(log_weights - row_max))),
    )
    return tf.where(allowed, weights, tf.zeros_like(weights))


def distance_weighted_probabilities(
    embeddings, labels, sampling="release", cutoff=0.5, nonzero_loss_cutoff=1.4
):
    """The distribution each anchor's negative is drawn from.

    See the module docstring for the two rules: "release" (the MDR authors'
    code, float32 underflow and subnormals reproduced) and "textbook" (Wu et
    al.: maximum over the allowed negatives only).

    Args:
        embeddings: `(batch, dim)` float tensor, any float dtype; only the
            directions count (it is computed in float32 / float64).
        labels: int `(batch,)` tensor of class ids.
        sampling: "release" or "textbook".
        cutoff: float, lower clip of the unit-sphere distance.
        nonzero_loss_cutoff: float; negatives at this unit-sphere distance or
            more keep no weight (unless the row falls back to uniform).

    Returns:
        float32 `(batch, batch)` tensor: row `a` sums to 1 over `a`'s
        negatives and is 0 elsewhere; a row of an anchor with no negative is
        all 0. No gradient flows through it.

    Example:

    >>> p = keras_mdr.losses.distance_weighted.distance_weighted_probabilities(
    ...     [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], [0, 0, 1])
    >>> [round(float(v), 3) for v in p[0]]
    [0.0, 0.0, 1.0]
    """
    if sampling not in SAMPLINGS:
        raise ValueError(
            f"Expected sampling to be one of {SAMPLINGS}. Received: sampling={sampling!r}"
        )
    embeddings = distances_lib.check_embeddings(embeddings)
    labels = distances_lib.check_labels(labels, embeddings.shape[0])
    embeddings = tf.stop_gradient(embeddings)
    _, negatives = distances_lib.label_masks(labels)
    weights = _weights(embeddings, negatives, sampling, float(cutoff), float(nonzero_loss_cutoff))
    total = tf.reduce_sum(weights, axis=1, keepdims=True)
    weights = tf.where(total > 0.0, weights, tf.cast(negatives, weights.dtype))
    probabilities = tf.math.divide_no_nan(weights, tf.reduce_sum(weights, axis=1, keepdims=True))
    return tf.cast(probabilities, tf.float32)


def sample_negatives(probabilities, seed):
    """Draws one negative per (anchor, positive) pair from each anchor's row.

    Inverse-CDF sampling on `hash_uniform` values: O(B^2) memory, and the same
    indices with or without XLA (TensorFlow's multinomial has no XLA kernel
    and its stateless random numbers change under XLA). Entries of zero
    probability are never drawn.

    Args:
        probabilities: float `(batch, batch)` tensor, rows summing to 1 (or
            all 0), e.g. from `distance_weighted_probabilities`.
        seed: int `(2,)` tensor (e.g. a seed generator's state mixed with
            the optimizer step).

    Returns:
        int32 `(batch, batch)` tensor: entry `(a, p)` is the negative drawn for
        the pair `(a, p)`; every entry of a row is an independent draw. In an
        all-zero row every entry is `a` itself (never a negative), so a
        caller that masks triplets by "has a negative" can gather safely.
    """
    probabilities = tf.cast(tf.convert_to_tensor(probabilities), tf.float32)
    batch = tf.shape(probabilities)[0]
    cdf = tf.cumsum(probabilities, axis=1)
    # (1 - 2^-24) * total rounds below total, so the last entry of positive
    # probability bounds the draw; searchsorted "right" skips zero-width entries.
    uniform = hash_uniform(tf.stack([batch, batch]), seed) * cdf[:, -1:]
    sampled = tf.searchsorted(cdf, uniform, side="right", out_type=tf.int32)
    anchors = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(sampled))
    return tf.where(cdf[:, -1:] > 0.0, tf.minimum(sampled, batch - 1), anchors)


def release_triplet_distances(distances, embeddings, scale=1.0, epsilon=1e-6):
    """PyTorch's triplet distance on `embeddings / scale`, in the units of `distances`.

    `torch.nn.functional.triplet_margin_loss` measures `|x_a - x_j + eps|`
    with `eps` added to every component. With `x = e / scale` and the
    shared Euclidean matrix `D` of `e`, `scale^2 |x_a - x_j + eps|^2 =
    D_aj^2 + 2 eps scale (sum(e_a) - sum(e_j)) + dim (eps scale)^2`, so the
    matrix costs one pass over `D` and the gradient flows through `D`, the
    embeddings and the scale. The diagonal is `sqrt(dim) eps scale`, not 0;
    squares are clamped below at `(eps scale)^2` (float32 rounding).

    Args:
        distances: float32 `(batch, batch)` Euclidean distances of `embeddings`.
        embeddings: float `(batch, dim)` tensor the distances were computed from.
        scale: float32 scalar the loss divides the embeddings by (MDR's mean
            distance; 1 for raw embeddings).
        epsilon: float, PyTorch's default 1e-6.

    Returns:
        float32 `(batch, batch)` tensor `scale * |e_a / scale - e_j / scale + epsilon|`.
    """
    embeddings = distances_lib.check_embeddings(embeddings)
    scale = tf.cast(scale, tf.float32)
    sums = tf.reduce_sum(embeddings, axis=1)
    dim = tf.cast(tf.shape(embeddings)[1], tf.float32)
    shift = epsilon * scale
    squared = tf.square(distances) + 2.0 * shift * (sums[:, None] - sums[None, :])
    # Rounding can take a near-zero square below 0, and sqrt(0) has an infinite
    # slope: clamp at shift^2, far below any distance the loss compares.
    return tf.sqrt(tf.maximum(squared + dim * tf.square(shift), tf.square(shift)))
