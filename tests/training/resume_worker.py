"""Subprocess body of tests/training/test_checkpoint.py: one digits run.

    python resume_worker.py RUN_DIR            # train to the end
    python resume_worker.py RUN_DIR STEP       # stop after STEP steps and wait

With STEP the run prints "paused at step STEP" after that optimizer step (its
own checkpoint callbacks have run) and sleeps until the test kills it.
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_mdr import training  # noqa: E402
from keras_mdr.training import trainer  # noqa: E402

# 3 epochs of 5 steps; checkpoints after steps 4, 8, 12 and at the epoch
# ends (5, 10, 15).
EPOCHS, STEPS_PER_EPOCH, CHECKPOINT_EVERY = 3, 5, 4


def config(run_dir):
    return training.TrainConfig.from_preset(
        "digits", output_dir=run_dir, epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH,
        checkpoint_every=CHECKPOINT_EVERY, eval_every=EPOCHS, embedding_dim=32,
        learning_rate=1e-3, verbose=0, export=False, seed=4,
    )


class PauseAt(keras.callbacks.Callback):
    """Announces the step on stdout, then waits to be killed."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.step:
            print(f"paused at step {self.step}", flush=True)
            time.sleep(600)


def main():
    run_dir = sys.argv[1]
    callbacks = [PauseAt(int(sys.argv[2]))] if len(sys.argv) > 2 else []
    trainer.train(config(run_dir), callbacks=callbacks)


if __name__ == "__main__":
    main()
