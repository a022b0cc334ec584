"""Retrieval evaluation: Recall@K, MAP@R, R-Precision, NMI, exact kNN search.

The protocol is the MDR paper's: Euclidean distance on raw embeddings, the
query never its own neighbour, Recall@K a hit if any of the K nearest shares
the label; MAP@R and R-Precision as in Musgrave et al. (2020). Ties between a
relevant and an irrelevant item at equal distance rank the irrelevant one
first (see `keras_mdr.evaluation.ranking`).
"""

from keras_mdr.evaluation.clustering import kmeans_assignments, nmi
from keras_mdr.evaluation.embedding import embed_dataset, embedding_function
from keras_mdr.evaluation.knn import knn_search
from keras_mdr.evaluation.metrics import (
    map_at_r,
    metrics_from_ranks,
    r_precision,
    rank_summary,
    recall_at_k,
    retrieval_metrics,
)
from keras_mdr.evaluation.ranking import RankSummary

__all__ = [
    "RankSummary",
    "embed_dataset",
    "embedding_function",
    "kmeans_assignments",
    "knn_search",
    "map_at_r",
    "metrics_from_ranks",
    "nmi",
    "r_precision",
    "rank_summary",
    "recall_at_k",
    "retrieval_metrics",
]
