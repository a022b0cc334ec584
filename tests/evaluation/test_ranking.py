"""The metric maths on hand-made rankings (no search involved)."""

import numpy as np
import pytest

from keras_mdr.evaluation import ranking


def _summary():
    """Two queries, rankings given as relevance flags by position.

    Query 0: relevance [0, 1, 0, 1, 1], R = 3. Nearest relevant at position 2.
      The first R = 3 positions hold one relevant item, at position 2:
      AP@R = (1/3) * (1/2) = 1/6, R-Precision = 1/3.
    Query 1: relevance [1, 1, 0, 0, 0], R = 2. Both relevant items in the
      first 2: AP@R = (1/2) * (1/1 + 2/2) = 1, R-Precision = 1.
    Recall@1 = (0 + 1) / 2 = 0.5; Recall@2 = 1.
    MAP@R = (1/6 + 1) / 2 = 7/12; mean R-Precision = (1/3 + 1) / 2 = 2/3.
    """
    relevance = np.array([[0, 1, 0, 1, 1], [1, 1, 0, 0, 0]], bool)
    return ranking.summary_from_relevance(relevance, [3, 2])


def test_hand_derived_values():
    s = _summary()
    assert ranking.recall_at_k_from_ranks(s, [1, 2, 5]) == {1: 0.5, 2: 1.0, 5: 1.0}
    assert ranking.map_at_r_from_ranks(s) == pytest.approx(7 / 12)
    assert ranking.r_precision_from_ranks(s) == pytest.approx(2 / 3)
    np.testing.assert_allclose(ranking.average_precision_at_r_per_query(s), [1 / 6, 1.0])
    assert s.first_relevant.tolist() == [2, 1]
    assert s.hit_positions.tolist() == [2, 1, 2]


def test_queries_without_relevant_items_are_left_out():
    relevance = np.array([[0, 1, 0], [0, 0, 0]], bool)
    s = ranking.summary_from_relevance(relevance, [1, 0])
    assert ranking.recall_at_k_from_ranks(s, [1, 2]) == {1: 0.0, 2: 1.0}
    assert ranking.map_at_r_from_ranks(s) == 0.0
    assert np.isnan(ranking.r_precision_per_query(s)[1])
    with pytest.raises(ValueError, match="no query has one"):
        ranking.map_at_r_from_ranks(ranking.summary_from_relevance(relevance, [0, 0]))


def test_take_and_concatenate_round_trip():
    s = _summary()
    both = ranking.concatenate([s, s.take([1, 0])])
    assert both.num_queries == 4
    back = both.take([0, 1])
    assert back.hit_positions.tolist() == s.hit_positions.tolist()
    assert both.take([2]).hit_positions.tolist() == [1, 2]
    assert both.take([3]).first_relevant.tolist() == [2]


def test_truncated_summary_refuses_deeper_k():
    relevance = np.zeros((1, 3), bool)
    s = ranking.summary_from_relevance(relevance, [2], max_rank=3)
    assert s.first_relevant.tolist() == [4]
    assert ranking.recall_at_k_from_ranks(s, [3]) == {3: 0.0}
    with pytest.raises(ValueError, match="depth"):
        ranking.recall_at_k_from_ranks(s, [4])


@pytest.mark.parametrize("ks", [[0], [1.5], [], [True]])
def test_bad_ks(ks):
    with pytest.raises(ValueError, match="ks"):
        ranking.recall_at_k_from_ranks(_summary(), ks)
