"""The learning-rate schedule against PyTorch's MultiStepLR stepped once per epoch.

The release multiplies the lr by 0.2 after epochs 40, 60 and 80
(`MultiStepLR(milestones=[40, 60, 80], gamma=0.2)`, `scheduler.step()` at each
epoch's end). Ours is a `PiecewiseConstantDecay` over optimizer steps, so the
decay must land on the first step of epoch 41, not one step early or late.
Checked three ways: a NumPy transcription of MultiStepLR's rule, the lr the
optimizer actually applies step by step, and live torch in the torch lane.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch_lane

from keras_mdr import training
from keras_mdr.training import trainer


def _multistep_lr(base, gamma, milestones, epochs, steps_per_epoch):
    """torch's MultiStepLR: epoch e (0-based) runs at base * gamma ** #{m <= e}."""
    epoch = np.arange(epochs * steps_per_epoch) // steps_per_epoch
    return base * gamma ** np.searchsorted(np.asarray(milestones), epoch, side="right")


def _schedule_values(config):
    steps = tf.range(config.epochs * config.steps_per_epoch, dtype=tf.int64)
    return np.asarray(trainer.learning_rate(config)(steps), np.float64)


@pytest.mark.parametrize("name", ["cars196_paper", "sop_paper"])
def test_release_schedule_equals_multisteplr_at_every_iteration(name):
    config = training.TrainConfig.from_preset(name)
    want = _multistep_lr(config.learning_rate, 0.2, (40, 60, 80), 100, 100)
    got = _schedule_values(config)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # The boundaries themselves: last step of epoch 40 and first of epoch 41.
    assert got[3999] == pytest.approx(config.learning_rate, rel=1e-6)
    assert got[4000] == pytest.approx(0.2 * config.learning_rate, rel=1e-6)


def test_the_optimizer_applies_the_epochs_lr():
    # A constant gradient of 1 moves an Adam weight by lr / (1 + eps) per step.
    config = training.TrainConfig.from_preset(
        "cub200_paper", epochs=6, steps_per_epoch=5, lr_decay_epochs=(2, 3, 5), weight_decay=0.0,
        learning_rate=1e-2)
    optimizer = trainer.make_optimizer(config)
    weight = keras.Variable(np.zeros(1, np.float32))
    moves = []
    for _ in range(config.epochs * config.steps_per_epoch):
        before = float(weight.numpy()[0])
        optimizer.apply_gradients([(tf.ones(1), weight)])
        moves.append(before - float(weight.numpy()[0]))
    want = _multistep_lr(1e-2, 0.2, (2, 3, 5), 6, 5)
    np.testing.assert_allclose(moves, want, rtol=1e-4)


def test_schedule_equals_live_torch_multisteplr():
    cases = [("cars196_paper", {}), ("cub200_paper", dict(epochs=7, steps_per_epoch=3,
                                                          lr_decay_epochs=(1, 4, 6)))]
    for name, overrides in cases:
        config = training.TrainConfig.from_preset(name, **overrides)
        out = torch_lane.run_torch_script(
            "torch_multistep_lr.py", config.learning_rate, config.lr_decay_factor, config.epochs,
            config.steps_per_epoch, ",".join(map(str, config.lr_decay_epochs)))
        torch_lrs = np.asarray(json.loads(out))
        assert torch_lrs.shape == (config.epochs * config.steps_per_epoch,)
        np.testing.assert_allclose(_schedule_values(config), torch_lrs, rtol=1e-6)


def test_no_decay_epochs_is_a_constant_rate():
    config = training.TrainConfig.from_preset("cars196_paper", lr_decay_epochs=())
    assert trainer.learning_rate(config) == config.learning_rate
