"""Checks every pair, proxy and softmax loss goes through (tests/losses/test_*_loss.py).

Each takes `ours(labels, embeddings, state, sample_weight)` (TensorFlow, any
array inputs) and `reference(labels, embeddings, state, weights)` (the
float64 brute force of `metric_references`).
"""

import numpy as np
import tensorflow as tf

import metric_references as ref


def random_batch(seed, batch=8, dim=4, classes=3, unit=True):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(batch) % classes).astype(np.int64)
    e = rng.normal(size=(batch, dim))
    if unit:
        e /= np.linalg.norm(e, axis=1, keepdims=True)
    return labels, e.astype(np.float32)


def value_and_grads(ours, labels, embeddings, state=None, sample_weight=None):
    e = tf.constant(embeddings, tf.float32)
    s = None if state is None else tf.Variable(np.asarray(state, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(e)
        value = ours(labels, e, s, sample_weight)
    watched = [e] + ([s] if s is not None else [])
    grads = tape.gradient(value, watched)
    grads = [np.zeros(w.shape) if g is None else np.asarray(g, np.float64)
             for g, w in zip(grads, watched)]
    return float(value), grads


def check_against_reference(ours, reference, seeds=3, state_fn=None, **batch):
    """Values, embedding and state gradients, with and without weights, vs float64."""
    for seed in range(seeds):
        labels, e = random_batch(seed, **batch)
        state = None if state_fn is None else state_fn(seed, labels, e)
        weights = np.random.default_rng(100 + seed).uniform(0.0, 2.0, size=len(labels))
        for w in (None, weights):
            value, grads = value_and_grads(ours, labels, e, state, w)
            expected = reference(labels, e.astype(np.float64), state, w)
            np.testing.assert_allclose(value, expected, rtol=2e-5, atol=1e-6)
            g = ref.numeric_grad(lambda x: reference(labels, x, state, w), e.astype(np.float64))
            np.testing.assert_allclose(grads[0], g, rtol=1e-3, atol=1e-4)
            if state is not None:
                gs = ref.numeric_grad(lambda s: reference(labels, e.astype(np.float64), s, w),
                                      np.asarray(state, np.float64))
                np.testing.assert_allclose(grads[1], gs, rtol=1e-3, atol=1e-4)


def check_weights(ours, labels, e, state=None):
    """Weights of 1 change nothing, 2 doubles, 0 gives 0 with a zero gradient."""
    base, _ = value_and_grads(ours, labels, e, state)
    ones, _ = value_and_grads(ours, labels, e, state, np.ones(len(labels)))
    twos, _ = value_and_grads(ours, labels, e, state, np.full(len(labels), 2.0))
    zeros, grads = value_and_grads(ours, labels, e, state, np.zeros(len(labels)))
    assert base > 0
    np.testing.assert_allclose([ones, twos, zeros], [base, 2 * base, 0.0], rtol=1e-6, atol=0)
    assert all(np.all(g == 0) for g in grads)


def check_degenerate_finite(ours, state=None, dim=4):
    """No positive pair, one class, one sample, identical rows: finite, finite gradients."""
    rng = np.random.default_rng(7)
    e = rng.normal(size=(6, dim)).astype(np.float32)
    cases = {
        "no positive pair": (np.arange(6), e),
        "one class": (np.zeros(6, np.int64), e),
        "one sample": (np.zeros(1, np.int64), e[:1]),
        "identical rows": (np.array([0, 0, 1, 1, 2, 2]), np.repeat(e[:1], 6, axis=0)),
        "zero rows": (np.array([0, 0, 1, 1, 2, 2]), np.zeros_like(e)),
    }
    values = {}
    for name, (labels, x) in cases.items():
        value, grads = value_and_grads(ours, labels, x, state)
        assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads), name
        values[name] = value
    return values


def check_large_labels(ours, labels, e, state=None):
    """int64 labels 2^62 apart by one keep their classes (no float32 cast)."""
    big = np.int64(2**62) + labels.astype(np.int64)
    assert value_and_grads(ours, big, e, state)[0] == value_and_grads(ours, labels, e, state)[0]


def check_low_precision(ours, labels, e, state=None, rtol=2e-2):
    """float16 and bfloat16 embeddings give the float32 value of the rounded inputs."""
    for dtype in (tf.float16, tf.bfloat16):
        x = tf.cast(tf.constant(e), dtype)
        value = ours(labels, x, None if state is None else tf.constant(state), None)
        assert value.dtype == tf.float32
        rounded = tf.cast(x, tf.float32).numpy()
        expected = value_and_grads(ours, labels, rounded, state)[0]
        np.testing.assert_allclose(float(value), expected, rtol=1e-6, atol=1e-7)


def check_config_round_trip(loss, labels, e, state=None):
    """Every constructor argument is in get_config; a round trip keeps the value."""
    import inspect

    import keras

    config = loss.get_config()
    params = [p for p in inspect.signature(type(loss).__init__).parameters
              if p not in ("self", "kwargs")]
    missing = [p for p in params if p not in config]
    assert not missing, f"get_config lacks {missing}"
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is type(loss) and again.get_config() == config
    call = (lambda l: l(labels, e, state=state)) if state is not None else (lambda l: l(labels, e))
    assert float(call(again)) == float(call(loss))


def check_no_cubic_tensor(ours, state=None, batch=48, dim=3):
    """No intermediate tensor of the traced loss and gradient holds B^3 entries."""
    labels, e = random_batch(0, batch=batch, dim=dim, classes=4)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = ours(labels, x, None if state is None else tf.constant(state), None)
        return value, tape.gradient(value, x)

    graph = step.get_concrete_function(tf.constant(e)).graph
    largest = max((o.shape.num_elements() or 0) for op in graph.get_operations()
                  for o in op.outputs if o.shape.is_fully_defined())
    assert largest <= 4 * batch * batch, f"a tensor of {largest} entries at B={batch}"
