"""Verified loading of MNIST, Kuzushiji-MNIST (KMNIST), Fashion-MNIST and Kuzushiji-49.

Every load is verified against the publishers' data (each file's MD5 before it is
parsed, then the decoded arrays' shapes, dtype, label range and content fingerprint)
and comes back in the publisher's order, whichever source read it. The package, one
job per module:

* :mod:`~kmnist_jax.data.registry`: what each dataset is (classes, sizes, citation,
  licence) and where data_dir is.
* :mod:`~kmnist_jax.data.verify`: the published MD5s and content fingerprints, and the
  checks against them.
* :mod:`~kmnist_jax.data.files`: the ``files`` source (layout of ``<data_dir>/<name>/``,
  IDX / .npz decoding, downloading what is missing).
* :mod:`~kmnist_jax.data.tfds_source`: the ``tfds`` source (TFDS builders, their order
  undone).
* :mod:`~kmnist_jax.data.splits`: the returned :class:`Dataset` / :class:`Split` and the
  validation carve.
* :mod:`~kmnist_jax.data.loader`: :func:`load`, which ties them together.

Callers use the names below (``from kmnist_jax import data; data.load(...)``).
"""

from kmnist_jax.data.loader import SOURCES, load
from kmnist_jax.data.registry import (
    DATA_DIR_ENV,
    DATASETS,
    DatasetInfo,
    default_data_dir,
    get_info,
)
from kmnist_jax.data.splits import Dataset, Split, class_counts
from kmnist_jax.data.tfds_source import default_tfds_dir
from kmnist_jax.data.verify import fingerprint

__all__ = [
    "DATASETS", "DATA_DIR_ENV", "SOURCES", "Dataset", "DatasetInfo", "Split",
    "class_counts", "default_data_dir", "default_tfds_dir", "fingerprint", "get_info",
    "load",
]
