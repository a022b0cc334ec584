"""Does dividing an inner-product loss's input by MDR's scale matter? (digits)

    python benchmarks/scale_base.py --seeds=3 --epochs=30

For SupCon and Multi-Similarity on unit-norm embeddings, trains the same MLP
on digits classes 0-4 with the loss alone, with `MDRLoss(scale_base=False)`
(the default for these losses: the base loss sees the unit embeddings) and
with `MDRLoss(scale_base=True)` (it sees `E / s`), and prints Recall@1 on
the unseen classes 5-9 per seed, with the paired difference
`scale_base=False - True`. Writes benchmarks/results/scale_base.json; the
BUILD_NOTES section is rendered from it (benchmarks/render.py).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import provenance  # noqa: E402


def run(loss_name, variant, seed, epochs):
    import keras

    import keras_mdr
    from keras_mdr.data.datasets import load_digits

    splits = load_digits()
    keras.utils.set_random_seed(seed)
    encoder = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0), keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dense(32),
        keras.layers.UnitNormalization()])
    base = {"supcon": lambda: keras_mdr.SupConLoss(),
            "multi_similarity": lambda: keras_mdr.MultiSimilarityLoss()}[loss_name]()
    loss = base if variant == "bare" else keras_mdr.MDRLoss(
        base, mdr_weight=0.2, scale_base=(variant == "mdr_scaled"))
    model = keras_mdr.MDRModel(encoder)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    train = splits.train
    model.fit(train.images.astype("float32"), train.labels, batch_size=100, epochs=epochs,
              shuffle=True, verbose=0)
    test = splits.test
    embeddings = encoder.predict(test.images.astype("float32"), verbose=0)
    recall = keras_mdr.evaluation.recall_at_k(embeddings, test.labels, ks=(1,))
    return float(recall[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    recorder = provenance.Recorder()
    results = {}
    for loss_name in ("supcon", "multi_similarity"):
        for variant in ("bare", "mdr_unscaled", "mdr_scaled"):
            results[f"{loss_name}/{variant}"] = [
                run(loss_name, variant, seed, args.epochs) for seed in range(args.seeds)]
            print(loss_name, variant, np.round(results[f"{loss_name}/{variant}"], 4), flush=True)
        diff = np.subtract(results[f"{loss_name}/mdr_unscaled"], results[f"{loss_name}/mdr_scaled"])
        print(f"{loss_name}: scale_base False - True, Recall@1 per seed {np.round(diff, 4)}, "
              f"mean {diff.mean():+.4f}", flush=True)
    payload = {"seeds": args.seeds, "epochs": args.epochs, "recall_at_1": results}
    print("wrote", recorder.write("scale_base", payload, versions=provenance.tf_versions()))


if __name__ == "__main__":
    main()
