"""NMI of k-means clusters."""

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from keras_mdr.evaluation import clustering, nmi


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nmi_is_scikit_learn_on_the_kmeans_clusters(seed):
    """nmi() scores its own k-means clusters with scikit-learn's NMI, labels
    mapped to codes (strings work like integers)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = rng.integers(0, 7, 300)
    clusters = clustering.kmeans_assignments(x, 7, seed=seed)
    want = normalized_mutual_info_score(y, clusters)
    assert nmi(x, y, seed=seed) == want
    assert nmi(x, np.array([f"c{v}" for v in y]), seed=seed) == want


def test_separated_clusters_give_nmi_one_and_noise_gives_low():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 40)
    centres = 50.0 * rng.normal(size=(6, 8))
    x = (centres[labels] + rng.normal(size=(240, 8))).astype(np.float32)
    assert nmi(x, labels, nredo=10) == pytest.approx(1.0)
    noise = rng.normal(size=(240, 8)).astype(np.float32)
    assert nmi(noise, labels) < 0.2
    assert nmi(x, labels, distance="cosine", seed=3, nredo=10) > 0.9


def test_nmi_is_deterministic_given_seed():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.integers(0, 10, 200)
    assert nmi(x, y, seed=5) == nmi(x, y, seed=5)
