"""NMI of k-means clusters."""

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from keras_mdr.evaluation import clustering, nmi


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nmi_formula_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 7, 300)
    b = rng.integers(0, 5, 300)
    assert clustering.normalized_mutual_information(a, b) == pytest.approx(
        normalized_mutual_info_score(a, b), abs=1e-10
    )


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
