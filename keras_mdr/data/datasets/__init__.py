"""One loader per benchmark, each returning `keras_mdr.data.DatasetSplits`.

Use them through `keras_mdr.data.load_dataset(name, ...)`, which also carves
the validation split and checks the image files.
"""

from keras_mdr.data.datasets.cars196 import load_cars196
from keras_mdr.data.datasets.cub200 import load_cub200
from keras_mdr.data.datasets.digits import load_digits
from keras_mdr.data.datasets.fashion_mnist import load_fashion_mnist
from keras_mdr.data.datasets.image_folder import load_image_folder
from keras_mdr.data.datasets.inshop import load_inshop
from keras_mdr.data.datasets.sop import load_sop

__all__ = [
    "load_cars196",
    "load_cub200",
    "load_digits",
    "load_fashion_mnist",
    "load_image_folder",
    "load_inshop",
    "load_sop",
]
