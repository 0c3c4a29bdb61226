"""Real data for glasscnn: data-set loaders, preprocessing and a NumPy batch iterator.

Only NumPy and the standard library are needed; Pillow (optional) is imported when an
image file is read. See docs/data.md for how to get each data set.
"""

from glasscnn.data.datasets import (
    SPECS,
    Dataset,
    fetch,
    load,
    load_cifar10,
    load_fashion_mnist,
    load_mnist,
    locate,
    status,
)
from glasscnn.data.download import download
from glasscnn.data.idx import read_idx
from glasscnn.data.loader import DataLoader
from glasscnn.data.paths import cache_dir, data_dir
from glasscnn.data.transforms import (
    Compose,
    MeanImage,
    Normalizer,
    RandomCrop,
    RandomFlip,
    load_image,
    normalize,
    random_crop,
    random_flip,
    rescale,
    train_val_split,
)

__all__ = [
    "SPECS",
    "Compose",
    "DataLoader",
    "Dataset",
    "MeanImage",
    "Normalizer",
    "RandomCrop",
    "RandomFlip",
    "cache_dir",
    "data_dir",
    "download",
    "fetch",
    "load",
    "load_cifar10",
    "load_fashion_mnist",
    "load_image",
    "load_mnist",
    "locate",
    "normalize",
    "random_crop",
    "random_flip",
    "read_idx",
    "rescale",
    "status",
    "train_val_split",
]
