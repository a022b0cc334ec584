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


def test_loss_family_arms_differ_only_by_mdr():
    for name in quality.FAMILIES:
        plain, with_mdr = quality.ARMS[name], quality.ARMS[f"{name}_mdr"]
        assert (name + "_mdr", name) in set(quality.PAIRS)
        config = dict(CONFIG, mdr_weight=0.2)
        losses = []
        for arm in (plain, with_mdr):
            arm_, weight = quality.arm_of({"arm": f"{name}_mdr" if arm.mdr else name}, config)
            model = quality.build_model(config, arm_, weight, seed=0, num_classes=3)
            assert isinstance(model.loss, quality.keras_mdr.MDRLoss)
            losses.append(model.loss)
        assert [loss.mdr_weight for loss in losses] == [0.0, 0.2]
        assert type(losses[0].base_loss) is type(losses[1].base_loss)
        assert quality.FAMILIES[name][0] in plain.label
    assert not set(quality.FAMILIES) & set(quality.DEFAULT_ARMS)
