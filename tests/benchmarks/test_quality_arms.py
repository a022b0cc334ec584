"""The quality benchmark's arms train the loss and sampler they are labelled with."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from quality_bench import arms as quality  # noqa: E402

CONFIG = dict(
    backbone="small_cnn", weights="none", embedding_dim=8, image_size=8, channels=3,
    freeze_batchnorm=False, learning_rate=1e-3, steps_per_epoch=2, epochs=2,
    lr_decay_epochs=[], lr_decay_factor=0.2, weight_decay=0.0, margin=0.2, l2_margin=0.2,
    level_weight=0.01, levels=[-3.0, 0.0, 3.0],
)

# The stored arms were measured before the losses' default sampler changed:
# they must keep naming the textbook rule.
EXPECTED = {
    "triplet": "textbook", "triplet_l2norm": "textbook", "triplet_mdr": "textbook",
    "triplet_release": "release", "triplet_mdr_release": "release",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_distance_weighted_arms_train_their_sampler(name):
    arm = quality.ARMS[name]
    model = quality.build_model(CONFIG, arm, 0.2 if arm.mdr else 0.0, seed=0)
    assert model.loss.sampling == EXPECTED[name]
    assert ("release" in name) == ("release sampler" in arm.label)


def test_release_arms_are_paired_with_their_textbook_and_plain_counterparts():
    pairs = set(quality.PAIRS)
    assert ("triplet_mdr_release", "triplet_release") in pairs
    assert ("triplet_release", "triplet") in pairs
    assert ("triplet_mdr_release", "triplet_mdr") in pairs
