"""What a load returns (:class:`Dataset` of :class:`Split` arrays) and how validation is
carved from train.

Validation: ``val_size`` examples are carved from train with
``jax.random.permutation(jax.random.key(val_seed), n_train)`` (threefry, on CPU):
validation = perm[:val_size] in permutation order, the rest of train keeps its
original order. The carve depends on ``val_seed`` only, so every training seed sees
the same validation split.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from kmnist_jax.data import registry
from kmnist_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8 [N, 28, 28], C-contiguous
  labels: np.ndarray  # uint8 [N]


@dataclasses.dataclass(frozen=True)
class Dataset:
  info: registry.DatasetInfo
  splits: dict[str, Split]  # 'train', 'test', and 'validation' when val_size > 0
  source: str               # 'files' or 'tfds'


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Number of examples per class, int64 [num_classes]."""
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise UserError(f"class_counts needs a 1-D integer label array, got "
                    f"{labels.dtype} of shape {labels.shape}")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise UserError(f"class_counts: labels span {labels.min()}..{labels.max()}, "
                    f"outside 0..{num_classes - 1}")
  return np.bincount(labels.astype(np.int64), minlength=num_classes)


def carve_validation(images: np.ndarray, labels: np.ndarray, val_size: int,
                     val_seed: int) -> tuple[Split, Split]:
  """(train, validation): validation = perm[:val_size] in perm order, train sorted."""
  # Deferred: importing kmnist_jax.data stays numpy-only (the benchmarks' parent
  # processes read data_dir and dataset facts without importing JAX); only the carve
  # needs it.
  import jax  # pylint: disable=g-import-not-at-top
  n = len(labels)
  with jax.default_device(jax.local_devices(backend="cpu")[0]):
    perm = np.asarray(jax.random.permutation(
        jax.random.key(val_seed, impl="threefry2x32"), n))
  val_idx = perm[:val_size]
  train_idx = np.sort(perm[val_size:])
  return (Split(images[train_idx], labels[train_idx]),
          Split(images[val_idx], labels[val_idx]))
