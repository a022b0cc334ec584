"""TensorBoard's embedding projector: held-out embeddings, their labels and images.

`write_projector(directory, embeddings, labels, images)` writes what the
projector plugin reads from a TensorBoard run directory:

- `projector_config.pbtxt`: the plugin's configuration;
- `embeddings.tsv`: one embedding a line, tab-separated;
- `metadata.tsv`: one label a line, in the same order (one column, so no
  header row, as the plugin expects);
- `sprite.png`: the images as thumbnails in a square grid, row by row in
  the same order.

`ProjectorExport` is a callback that does it at the end of `fit` for a
seeded sample of a held-out dataset. Open with
`tensorboard --logdir <log_dir>` and pick the "Projector" tab.
"""

import math
import os

import keras
import numpy as np

from keras_mdr import visualization
from keras_mdr.evaluation import embedding as embedding_lib
from keras_mdr.evaluation import inputs as inputs_lib

CONFIG_FILE = "projector_config.pbtxt"
EMBEDDINGS_FILE = "embeddings.tsv"
METADATA_FILE = "metadata.tsv"
SPRITE_FILE = "sprite.png"
# The projector refuses sprites larger than 8192 x 8192 pixels.
MAX_SPRITE_SIDE = 8192


def sprite(images, thumbnail=None):
    """The images as one uint8 RGB grid image, `ceil(sqrt(N))` thumbnails a side.

    Args:
        images: N images (`(H, W[, C])`, uint8 or float, as the retrieval
            grid takes them).
        thumbnail: side of each (square) thumbnail in pixels; defaults to the
            image size, shrunk so that the sprite fits in `MAX_SPRITE_SIDE`.

    Returns:
        `(sprite, thumbnail)`: uint8 `(side * t, side * t, 3)` and the `t` used.
    """
    from PIL import Image

    count = len(images)
    side = max(1, math.ceil(math.sqrt(count)))
    first = np.asarray(images[0])
    t = int(thumbnail or min(max(first.shape[:2]), MAX_SPRITE_SIDE // side))
    if t < 1 or side * t > MAX_SPRITE_SIDE:
        raise ValueError(
            f"Expected a sprite of at most {MAX_SPRITE_SIDE} pixels a side. Received: "
            f"{count} images of thumbnail={t} ({side * t} pixels)"
        )
    grid = np.zeros((side * t, side * t, 3), np.uint8)
    for i, image in enumerate(images):
        pixels = np.rint(255.0 * visualization.display_pixels(image)).astype(np.uint8)
        cell = Image.fromarray(pixels).convert("RGB").resize((t, t), Image.BILINEAR)
        row, column = divmod(i, side)
        grid[row * t : (row + 1) * t, column * t : (column + 1) * t] = np.asarray(cell)
    return grid, t


def _text(label):
    """A label as one line of text (tf.string labels arrive as bytes)."""
    return label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)


def write_projector(directory, embeddings, labels, images=None, *, tensor_name="embeddings"):
    """Writes the projector files (see the module docstring) into `directory`.

    Args:
        directory: a TensorBoard run directory (created if needed).
        embeddings: float `(N, dim)`.
        labels: `(N,)` labels, written as text.
        images: optional N images for the sprite.
        tensor_name: the name the projector shows.

    Returns:
        The path of `projector_config.pbtxt`.
    """
    from PIL import Image
    from tensorboard.plugins import projector

    embeddings = inputs_lib.as_matrix("embeddings", embeddings)
    labels = inputs_lib.as_labels("labels", labels, embeddings.shape[0])
    os.makedirs(directory, exist_ok=True)
    np.savetxt(os.path.join(directory, EMBEDDINGS_FILE), embeddings, delimiter="\t", fmt="%.7g")
    with open(os.path.join(directory, METADATA_FILE), "w") as f:
        f.writelines(f"{' '.join(_text(label).split())}\n" for label in labels.tolist())
    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = tensor_name
    entry.tensor_path = EMBEDDINGS_FILE
    entry.metadata_path = METADATA_FILE
    if images is not None:
        if len(images) != embeddings.shape[0]:
            raise ValueError(
                f"Expected one image per embedding ({embeddings.shape[0]}). "
                f"Received: {len(images)} images"
            )
        grid, t = sprite(images)
        Image.fromarray(grid).save(os.path.join(directory, SPRITE_FILE))
        entry.sprite.image_path = SPRITE_FILE
        entry.sprite.single_image_dim.extend([t, t])
    projector.visualize_embeddings(directory, config)
    return os.path.join(directory, CONFIG_FILE)


class ProjectorExport(keras.callbacks.Callback):
    """At the end of `fit`, writes a held-out sample to TensorBoard's projector.

    Args:
        data: a finite, unshuffled `tf.data.Dataset` of batched
            `(images, labels)`, or a tuple of arrays (e.g. the test split).
        log_dir: the TensorBoard directory; the files go to its `projector`
            run.
        embed_fn: `images -> embeddings`; defaults to the model's `encoder`
            if it has one, else the model.
        max_items: items drawn (seeded) from `data`; all when fewer.
        seed: seed of the draw.
        batch_size: for array inputs and for embedding.
    """

    def __init__(self, data, log_dir, embed_fn=None, *, max_items=1000, seed=0, batch_size=256):
        super().__init__()
        self.data = data
        self.directory = os.path.join(os.fspath(log_dir), "projector")
        self.embed_fn = embed_fn
        self.max_items = int(max_items)
        self.seed = int(seed)
        self.batch_size = int(batch_size)

    def on_train_end(self, logs=None):
        images, labels = sample_items(self.data, self.max_items, seed=self.seed,
                                      batch_size=self.batch_size)
        fn = self.embed_fn or embedding_lib.embedding_function(self.model)
        embeddings = np.concatenate([
            np.asarray(inputs_lib.to_numpy(fn(np.stack(images[a : a + self.batch_size]))),
                       np.float32)
            for a in range(0, len(images), self.batch_size)
        ])
        write_projector(self.directory, embeddings, labels, images,
                        tensor_name="held-out embeddings")


def sample_items(data, max_items, *, seed=0, batch_size=256):
    """A uniform sample of at most `max_items` `(input, label)` items, in one pass.

    Each item gets a seeded random key and the smallest keys are kept, so the
    sample is uniform without replacement whatever the (unknown) size.

    Returns:
        `(inputs, labels)`: a list of inputs and their `(n,)` labels, in
        reading order.
    """
    rng = np.random.default_rng(seed)
    keys, inputs, labels = np.zeros(0), [], []
    for batch_inputs, y in embedding_lib.iterate_batches(data, batch_size):
        y = np.asarray(inputs_lib.to_numpy(y)).reshape(-1)
        keys = np.concatenate([keys, rng.random(y.shape[0])])
        inputs += list(inputs_lib.to_numpy(batch_inputs))
        labels.append(y)
        if keys.shape[0] > max_items:
            keep = np.sort(np.argsort(keys, kind="stable")[:max_items])
            labels = [np.concatenate(labels)[keep]]
            keys, inputs = keys[keep], [inputs[i] for i in keep]
    if not inputs:
        raise ValueError("Expected a non-empty dataset. Received: no batch.")
    return inputs, np.concatenate(labels)
