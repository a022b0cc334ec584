"""One run: an (arm, seed) trained, its epoch chosen on validation, then tested."""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_mdr import callbacks as callbacks_lib
from keras_mdr import data as data_lib
from keras_mdr import evaluation
from keras_mdr import visualization

from quality_bench import arms as arms_lib


def retrieval(embeddings, labels, ks):
    """Recall@K, MAP@R and R-Precision, exactly.

    The exact faiss engine (searched to the depth of the largest R): a few
    large classes (Fashion-MNIST: R about 2,000 in the 10,000-image test
    subset) are the blocked engine's slow case (18 s against 1 s for 5,000
    images on the 2-core machine); both give the same numbers.
    """
    # A tiny split cannot give Recall@K for K past its size: leave those out.
    ks = [k for k in ks if k < len(labels)] or [1]
    metrics = evaluation.retrieval_metrics(embeddings, labels, ks, method="faiss")
    return {k: float(v) for k, v in metrics.items()}


def split_metrics(fn, data, ks):
    """The metrics of a model on `data`; None if its embeddings are not finite."""
    embeddings, labels = evaluation.embed_dataset(fn, data, verbose=0)
    if not np.all(np.isfinite(embeddings)):
        return None
    return retrieval(embeddings, labels, ks)


class EpochSelector(keras.callbacks.Callback):
    """Validates every n epochs and keeps the weights of the best validation Recall@1.

    Also validates after the last epoch, whatever n.
    """

    def __init__(self, embed_fn, data, ks, every, describe, verbose):
        super().__init__()
        self.embed_fn = embed_fn
        self.data = data
        self.ks = tuple(ks)
        self.every = every
        self.describe = describe
        self.verbose = verbose
        self.history = []
        self.best = None
        self.best_score = None
        self.best_epoch = None
        self.best_row = None
        self.best_weights = None
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.params["epochs"]:
            return
        metrics = split_metrics(self.embed_fn, self.data, self.ks)
        if metrics is None:  # diverged: TerminateOnNaN stops the run
            return
        row = {"epoch": epoch + 1, **{f"val_{k}": v for k, v in metrics.items()}}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.history.append(row)
        r1 = metrics["recall@1"]
        # Ties (a saturated validation Recall@1, e.g. 100% on digits) go to
        # the higher validation MAP@R, then to the earlier epoch.
        score = (r1, metrics["map@r"])
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.best, self.best_epoch, self.best_row = r1, epoch + 1, metrics
            # Copies, so that later steps cannot alias them; the non-trainable
            # weights (BatchNorm and MDR statistics) are included.
            self.best_weights = [np.array(w, copy=True) for w in self.model.get_weights()]
        if self.verbose:
            print(
                f"  {self.describe} epoch {epoch + 1:3d}/{self.params['epochs']} "
                f"loss {float((logs or {}).get('loss', float('nan'))):.4f} "
                f"val R@1 {100 * r1:6.2f} (best {100 * self.best:6.2f} @ {self.best_epoch}) "
                f"{time.time() - self.start:6.1f}s",
                flush=True,
            )


def mdr_state_record(model):
    levels, stats = callbacks_lib.mdr_state(model)
    return {
        "levels": None if levels is None else [float(v) for v in np.reshape(levels, -1)],
        "moving_mean": None if stats is None else stats[0],
        "moving_std": None if stats is None else stats[1],
    }


def draw_histograms(fn, model, arm, data, out_dir, stem, levels_init):
    """The distance histograms of one model, on the test and the training classes."""
    levels, stats = callbacks_lib.mdr_state(model)
    paths = {}
    for split, dataset, where in (("test", data.test, "unseen test classes"),
                                  ("train", data.train_eval, "training classes")):
        embeddings, labels = evaluation.embed_dataset(fn, dataset, verbose=0)
        if arm.mdr:
            marks = levels
            title = f"{arm.label}: {where}, learned levels"
        else:
            marks = levels_init
            title = f"{arm.label}: {where}, levels untrained (initial values shown)"
        if stats is None:
            title += ", sample statistics"
        path = os.path.join(out_dir, f"distances_{stem}_{split}.png")
        visualization.plot_distance_histogram(
            embeddings, path, labels=labels, levels=marks, mean_std=stats, seed=0, title=title,
        )
        paths[split] = os.path.relpath(path, out_dir)
    return paths


def _train(config, data, key, model, seed, verbose):
    """Fits the model; returns (embedding function, EpochSelector)."""
    size = config["image_size"]
    embed_fn = tf.function(
        lambda x: model(x, training=False),
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
    )
    train_data = data_lib.balanced_dataset(
        data.splits.train, config["classes_per_batch"], config["images_per_class"],
        transform=data.train_transform, seed=seed,
    )
    selector = EpochSelector(
        embed_fn, data.val, config["recall_ks"], config["eval_every"],
        f"{key:<28s}", verbose,
    )
    model.fit(
        train_data, epochs=config["epochs"], steps_per_epoch=config["steps_per_epoch"],
        callbacks=[selector, keras.callbacks.TerminateOnNaN()], verbose=0, shuffle=False,
    )
    return embed_fn, selector


def run_one(config, data, key, group, seed, spec, out_dir, draw, verbose):
    """Trains and evaluates one (arm, seed); returns its JSON record."""
    keras.backend.clear_session()
    if config["mixed_precision"] != "none":
        keras.mixed_precision.set_global_policy(config["mixed_precision"])
    keras.utils.set_random_seed(seed)
    arm, mdr_weight = arms_lib.arm_of(spec, config)
    start, cpu_start = time.time(), time.process_time()
    num_classes = int(max(data.splits.train.classes)) + 1
    model = arms_lib.build_model(config, arm, mdr_weight, seed, num_classes)
    embed_fn, selector = _train(config, data, key, model, seed, verbose)
    train_s = time.time() - start
    ks = config["recall_ks"]
    # TerminateOnNaN is the only callback that stops training early.
    nan = bool(model.stop_training)
    last_epoch = selector.history[-1]["epoch"] if selector.history else 0
    test_start = time.time()
    test_last = split_metrics(embed_fn, data.test, ks)
    state_last = mdr_state_record(model)
    test_best = None
    if selector.best_weights is not None:
        model.set_weights(selector.best_weights)
        test_best = split_metrics(embed_fn, data.test, ks)
    test_s = time.time() - test_start
    record = {
        "key": key, "group": group, "seed": seed, "label": arm.label,
        "base_loss": arm.base_loss, "sampling": arm.sampling, "l2norm": arm.l2norm,
        "mdr_weight": mdr_weight,
        # The loss families keep their classes' own margins.
        "margin": None if arm.family else (config["l2_margin"] if arm.l2norm else config["margin"]),
        "best_epoch": selector.best_epoch, "last_epoch": last_epoch,
        "val_best": selector.best_row,
        "test_best": test_best, "test_last": test_last,
        "mdr_state_last": state_last, "history": selector.history,
        "nan": nan,
    }
    if draw and test_best is not None:
        record["histograms"] = draw_histograms(
            embed_fn, model, arm, data, out_dir, group.replace("=", ""), config["levels"],
        )
    record["wall_s"] = round(time.time() - start, 2)
    record["train_and_validate_s"] = round(train_s, 2)
    record["test_s"] = round(test_s, 2)
    record["cpu_s"] = round(time.process_time() - cpu_start, 2)
    keras.mixed_precision.set_global_policy("float32")
    return record
