"""Checkpoints that a killed run resumes from, and the fit calls that resume.

`ResumeCheckpoint` saves the whole model (weights, MDR levels and statistics,
optimizer moments and step) atomically every n steps and at each epoch end.
`fit_resumably` restarts from the saved step: the interrupted epoch is
finished with the batches it had left, then whole epochs follow. Batches are a
function of (seed, batch number), augmentations of (seed, image position) and
the triplet sampler of (seed, optimizer step), so the steps lost by a kill are
replayed on the same data and the run ends with the variables of a run never
interrupted.
"""

import json
import os
import time

import keras


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves the whole model atomically every n steps and at each epoch end.

    Args:
        directory: where `last.keras` and `state.json` (its step) go.
        every_n_steps: also save after every n-th optimizer step (0: only at
            epoch ends).
    """

    def __init__(self, directory, every_n_steps=0):
        super().__init__()
        self.directory = directory
        self.every_n_steps = int(every_n_steps)
        os.makedirs(directory, exist_ok=True)

    @property
    def path(self):
        return os.path.join(self.directory, "last.keras")

    def save(self):
        step = int(self.model.optimizer.iterations)
        tmp = os.path.join(self.directory, f".tmp-{os.getpid()}.keras")
        self.model.save(tmp)
        os.replace(tmp, self.path)
        # state.json is written after last.keras: a kill between the two leaves
        # a checkpoint one save ahead of its step, which restore() reads from
        # the optimizer itself, so the step on file is only informative.
        state = os.path.join(self.directory, "state.json")
        with open(state + ".tmp", "w") as f:
            json.dump({"step": step, "time": time.time()}, f)
        os.replace(state + ".tmp", state)

    def restore(self, model):
        """Loads `last.keras` into `model` if it exists; returns the step reached."""
        if not os.path.exists(self.path):
            return 0
        model.load_weights(self.path)
        return int(model.optimizer.iterations)

    def on_train_batch_end(self, batch, logs=None):
        if self.every_n_steps and int(self.model.optimizer.iterations) % self.every_n_steps == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.save()


def fit_resumably(model, make_dataset, callbacks, *, start_step, epochs, steps_per_epoch, verbose):
    """Runs the epochs left after `start_step` optimizer steps.

    Args:
        model: the compiled model, restored to `start_step`.
        make_dataset: `first_batch -> tf.data.Dataset` of training batches
            starting at that batch number.
        callbacks: the `fit` callbacks.
        start_step: optimizer steps already taken.
        epochs, steps_per_epoch: the run's length.
        verbose: `fit`'s verbosity.
    """
    epoch, offset = divmod(start_step, steps_per_epoch)
    if offset and start_step < epochs * steps_per_epoch:
        # Finish the interrupted epoch, then the rest with whole epochs.
        model.fit(make_dataset(start_step), initial_epoch=epoch, epochs=epoch + 1,
                  steps_per_epoch=steps_per_epoch - offset, callbacks=callbacks,
                  verbose=verbose, shuffle=False)
        epoch += 1
    if epoch < epochs:
        model.fit(make_dataset(epoch * steps_per_epoch), initial_epoch=epoch, epochs=epochs,
                  steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=verbose,
                  shuffle=False)


__all__ = ["ResumeCheckpoint", "fit_resumably"]
