"""Both exact engines (blocked GEMM, faiss) against a brute-force reference."""

import warnings

import numpy as np
import pytest
from retrieval_reference import reference_metrics

from keras_mdr import evaluation

KS = (1, 2, 4, 16)
ENGINES = {
    "blocked_small_blocks_1_thread": dict(method="blocked", block_rows=7, block_cols=16,
                                          num_threads=1),
    "blocked_2_threads": dict(method="blocked", block_rows=13, block_cols=24, num_threads=2),
    "blocked_defaults": dict(method="blocked"),
    "faiss": dict(method="faiss", block_size=19),
}


def _continuous(seed, n=150, d=6, classes=30, duplicates=25):
    """Gaussian class clusters, plus exact duplicates across classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, d))
    x = (centres[labels] + 0.8 * rng.normal(size=(n, d))).astype(np.float32)
    x[rng.integers(0, n, duplicates)] = x[rng.integers(0, n, duplicates)]
    return x, labels


def _quantised(seed, n=150, d=4, classes=12):
    """Small-integer embeddings: every float32 distance is exact, ties everywhere."""
    rng = np.random.default_rng(seed)
    return rng.integers(-2, 3, (n, d)).astype(np.float32), rng.integers(0, classes, n)


def _check(got, want):
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("data", ["continuous", "quantised"])
@pytest.mark.parametrize("seed", [0, 1])
def test_engines_match_brute_force(engine, data, seed):
    x, y = (_continuous if data == "continuous" else _quantised)(seed)
    want = reference_metrics(x, y, KS)
    _check(evaluation.retrieval_metrics(x, y, KS, **ENGINES[engine]), want)


@pytest.mark.parametrize("quantised", [False, True])
def test_weak_embeddings_match_brute_force(quantised):
    """No class structure: thresholds start loose and are bounded from a block
    of irrelevant items (`_Block.tighten`)."""
    rng = np.random.default_rng(9)
    n = 400
    x = (rng.integers(-2, 3, (n, 5)) if quantised else rng.normal(size=(n, 5))).astype(np.float32)
    y = rng.integers(0, 40, n)
    want = reference_metrics(x, y, (1, 5, 50))
    got = evaluation.retrieval_metrics(x, y, (1, 5, 50), block_rows=64, block_cols=64,
                                       num_threads=2)
    _check(got, want)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_cosine_matches_brute_force(engine):
    x, y = _continuous(2)
    want = reference_metrics(x, y, KS, distance="cosine")
    _check(evaluation.retrieval_metrics(x, y, KS, distance="cosine", **ENGINES[engine]), want)


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("data", ["continuous", "quantised"])
def test_query_vs_gallery_matches_brute_force(engine, data):
    make = _continuous if data == "continuous" else _quantised
    q, qy = make(3, n=60)
    g, gy = make(4, n=140)
    qy[:5] = 999  # labels absent from the gallery: those queries are left out
    want = reference_metrics(q, qy, KS, g, gy)
    assert want["excluded_queries"] >= 5
    with pytest.warns(UserWarning, match=f"{want['excluded_queries']} of 60 queries"):
        got = evaluation.retrieval_metrics(
            q, qy, KS, gallery_embeddings=g, gallery_labels=gy, **ENGINES[engine]
        )
    _check(got, want)


@pytest.mark.parametrize("method", ["blocked", "faiss"])
def test_queries_without_a_relevant_item_are_excluded_and_reported(method):
    """Half the queries' classes are absent from the gallery (issue 12).

    Queries 0, 1 (class 0) each have their match in the gallery at distance
    0.1 and hit at K=1; queries 2, 3 (class 5, absent) have none. Recall@1 is
    1.0 over the 2 counted queries, and the 2 others are reported.
    """
    q = np.array([[0.0], [10.0], [20.0], [30.0]], np.float32)
    qy = np.array([0, 0, 5, 5])
    g = np.array([[0.1], [10.1], [50.0]], np.float32)
    gy = np.array([0, 0, 1])
    kwargs = dict(gallery_embeddings=g, gallery_labels=gy, method=method)
    with pytest.warns(UserWarning, match="2 of 4 queries have no relevant gallery item"):
        result = evaluation.retrieval_metrics(q, qy, (1,), **kwargs)
    assert result["recall@1"] == 1.0
    assert result["num_queries"] == 2 and result["excluded_queries"] == 2
    with pytest.warns(UserWarning, match="absent from the gallery"):
        assert evaluation.recall_at_k(q, qy, (1,), **kwargs) == {1: 1.0}
    with pytest.raises(ValueError, match="no query has one"):
        evaluation.retrieval_metrics(q[2:], qy[2:], (1,), **kwargs)


def test_no_warning_when_every_query_counts():
    x, y = _continuous(0)
    y = np.repeat(np.arange(75), 2)  # every class twice: every query counts
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluation.retrieval_metrics(x, y, (1,))
    assert result["num_queries"] == 150 and result["excluded_queries"] == 0


@pytest.mark.parametrize(
    "embeddings, gallery, match",
    [
        (np.zeros((0, 3)), None, r"non-empty 2-D array.*embeddings.shape=\(0, 3\)"),
        (np.zeros((1, 3)), None, r"at least 2 embeddings.*embeddings.shape=\(1, 3\)"),
        (np.zeros((2, 3)), np.zeros((0, 3)),
         r"non-empty 2-D array.*gallery_embeddings.shape=\(0, 3\)"),
    ],
)
@pytest.mark.parametrize("method", ["blocked", "faiss"])
def test_degenerate_inputs_name_the_problem(method, embeddings, gallery, match):
    labels = np.zeros(embeddings.shape[0])
    kwargs = {} if gallery is None else dict(gallery_embeddings=gallery,
                                              gallery_labels=np.zeros(gallery.shape[0]))
    for fn in (evaluation.retrieval_metrics, evaluation.recall_at_k):
        with pytest.raises(ValueError, match=match):
            fn(embeddings, labels, (1,), method=method, **kwargs)
    with pytest.raises(ValueError, match=match):
        evaluation.map_at_r(embeddings, labels, method=method, **kwargs)


def test_public_functions_agree_with_retrieval_metrics():
    x, y = _continuous(5)
    all_metrics = evaluation.retrieval_metrics(x, y, KS)
    recall = evaluation.recall_at_k(x, y, KS)
    assert recall == {k: all_metrics[f"recall@{k}"] for k in KS}
    assert all_metrics["num_queries"] + all_metrics["excluded_queries"] == x.shape[0]
    assert all(0.0 <= v <= 1.0 for v in recall.values())
    assert evaluation.map_at_r(x, y) == all_metrics["map@r"]
    assert evaluation.r_precision(x, y) == all_metrics["r_precision"]
    assert isinstance(evaluation.map_at_r(x, y), float)


def test_tie_rule_hand_example():
    """1-D points: A=0 and B=1 (class 0), C=-1 (class 1).

    From A, B and C are both at distance 1: the tie puts C (another class)
    first, so A misses at K=1 and hits at K=2. From B, A (1) is nearer than C
    (2): a hit. C is alone in its class and is left out. Recall@1 = 1/2.
    A's first R = 1 positions hold C: AP@R(A) = 0; AP@R(B) = 1; MAP@R = 1/2.
    """
    x = np.array([[0.0], [1.0], [-1.0]], np.float32)
    y = np.array([0, 0, 1])
    for method in ("blocked", "faiss"):
        assert evaluation.recall_at_k(x, y, (1, 2), method=method) == {1: 0.5, 2: 1.0}
        assert evaluation.map_at_r(x, y, method=method) == 0.5


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("method", ["blocked", "faiss"])
def test_collapsed_embeddings_score_zero(method, distance):
    """All embeddings equal: every tie goes against the query."""
    x = np.ones((40, 3), np.float32)
    y = np.repeat(np.arange(10), 4)
    result = evaluation.retrieval_metrics(x, y, (1, 4, 36), method=method, distance=distance)
    assert result["recall@1"] == 0.0 and result["recall@4"] == 0.0
    assert result["recall@36"] == 0.0  # 36 other-class items come first
    assert result["map@r"] == 0.0


def test_duplicates_rank_identically_and_order_does_not_matter():
    x, y = _continuous(6)
    perm = np.random.default_rng(0).permutation(x.shape[0])
    a = evaluation.rank_summary(x, y, block_rows=11, block_cols=16)
    b = evaluation.rank_summary(x[perm], y[perm], block_rows=11, block_cols=16)
    np.testing.assert_array_equal(a.first_relevant[perm], b.first_relevant)
    np.testing.assert_array_equal(a.take(perm).hit_positions, b.hit_positions)


def test_label_dtypes():
    x, y = _continuous(7)
    names = np.array([f"class_{v}" for v in y])
    assert evaluation.retrieval_metrics(x, names, KS) == evaluation.retrieval_metrics(x, y, KS)


def y_max_r(labels):
    return int(np.bincount(labels).max()) - 1


def test_engine_ranks_are_exact_beyond_max_rank():
    x, y = _continuous(8)
    blocked = evaluation.rank_summary(x, y)
    faiss = evaluation.rank_summary(x, y, method="faiss", max_rank=10)
    # The faiss summary goes at least as deep as the largest R (for MAP@R).
    assert blocked.max_rank is None and faiss.max_rank == max(10, y_max_r(y))
    capped = np.minimum(blocked.first_relevant, faiss.max_rank + 1)
    np.testing.assert_array_equal(capped, faiss.first_relevant)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ks=(0,)), "ks"),
        (dict(ks=(1, 2.5)), "ks"),
        (dict(ks=(True,)), "ks"),
        (dict(ks=()), "at least one k"),
        (dict(block_rows=0), "block_rows"),
        (dict(block_rows=2.5), "block_rows"),
        (dict(ks=(150,)), "k <= 149"),
        (dict(distance="manhattan"), "distance"),
        (dict(method="annoy"), "method"),
        (dict(gallery_embeddings=np.zeros((3, 6), np.float32)), "together"),
    ],
)
def test_errors(kwargs, match):
    x, y = _continuous(0)
    ks = kwargs.pop("ks", KS)
    with pytest.raises(ValueError, match=match):
        evaluation.retrieval_metrics(x, y, ks, **kwargs)


def test_input_errors():
    with pytest.raises(ValueError, match="2-D"):
        evaluation.map_at_r(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="labels of shape"):
        evaluation.map_at_r(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        evaluation.map_at_r(np.full((5, 2), np.nan), np.zeros(5))
    with pytest.raises(ValueError, match="same dimension"):
        evaluation.map_at_r(np.zeros((5, 2)), np.zeros(5),
                            gallery_embeddings=np.zeros((5, 3)), gallery_labels=np.zeros(5))
