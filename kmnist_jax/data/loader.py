"""``load()``: checks the arguments, picks the source, verifies every split, then carves
validation and applies ``limit``.

Sources: ``files`` reads (and downloads) the publishers' files
(:mod:`kmnist_jax.data.files`); ``tfds`` builds TensorFlow Datasets' builder
(:mod:`kmnist_jax.data.tfds_source`); ``auto`` uses the files (downloading them when
missing), and TFDS only when downloading is off or fails and tensorflow-datasets is
installed. Whatever the source, every split passes :func:`kmnist_jax.data.verify.check_split`
on the full published split before carving or ``limit`` touch it, and the arrays come
back in the publisher's file order.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import numpy as np

from kmnist_jax import download
from kmnist_jax.data import files, registry, splits, tfds_source, verify
from kmnist_jax.errors import UserError, unknown

SOURCES = ("auto", "files", "tfds")


def _is_int(x) -> bool:
  return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def load(name: str, *, data_dir: str | None = None, source: str = "auto",
         val_size: int = 0, val_seed: int = 0, tfds_dir: str | None = None,
         limit: dict[str, int] | None = None) -> splits.Dataset:
  """Load and verify ``name``; see the module docstring.

  Args:
    name: one of DATASETS.
    data_dir: root holding ``<name>/`` folders; default :func:`default_data_dir`.
    source: 'files' (numpy only), 'tfds', or 'auto' (files when any of the
      dataset's files are in ``<data_dir>/<name>``, else tfds).
    val_size: examples carved out of train into a 'validation' split
      (deterministic from ``val_seed``); 0 for none.
    val_seed: seed of the carve.
    tfds_dir: TFDS data dir (default :func:`default_tfds_dir`).
    limit: optional per-split cap, e.g. {'train': 2000}: the first N examples,
      applied after verification (always of the full splits) and after carving.

  Returns:
    A :class:`Dataset` whose arrays are fresh, writable and C-contiguous, in the
    publisher's file order for both sources.
  """
  info = registry.get_info(name)
  if source not in SOURCES:
    raise unknown("data source", source, SOURCES)
  if not _is_int(val_size):
    raise UserError(f"val_size must be an int, got {val_size!r}")
  if not _is_int(val_seed):
    raise UserError(f"val_seed must be an int, got {val_seed!r}")
  n_train = registry.NUM_EXAMPLES[name]["train"]
  if not 0 <= val_size < n_train:
    raise UserError(f"val_size {val_size} is out of range for {name}: use 0 (no "
                    f"validation split) up to {n_train - 1} (train has {n_train} examples)")
  if limit is not None:
    if not isinstance(limit, dict):
      raise UserError(f"limit must be a dict like {{'train': 2000}}, got {limit!r}")
    valid_splits = ("train", "test") + (("validation",) if val_size > 0 else ())
    for k, v in limit.items():
      if k == "validation" and val_size == 0:
        raise UserError("limit names split 'validation', but val_size is 0 so there is "
                        "none; valid splits: test, train (or set val_size > 0)")
      if k not in valid_splits:
        raise unknown("split in limit", k, valid_splits)
      if not _is_int(v) or v < 1:
        raise UserError(f"limit[{k!r}] must be a positive int, got {v!r}")
  data_dir = os.path.expanduser(
      data_dir if data_dir is not None else registry.default_data_dir())

  folder = os.path.join(data_dir, name)
  if source == "auto":
    use = ("files" if (files.any_present(name, folder) or info.tfds_name is None
                       or download.enabled()) else "tfds")
  else:
    use = source

  if use == "files" and source == "auto" and not files.any_present(name, folder):
    try:  # auto: download; TFDS only if that fails and TFDS is installed
      files.download_missing(name, data_dir)
    except download.DownloadError as e:
      if (info.tfds_name is None
          or importlib.util.find_spec("tensorflow_datasets") is None):
        raise
      warnings.warn(f"{e}; trying TFDS", stacklevel=2)
      use = "tfds"
  files.check_classmap(info, data_dir)
  if use == "files":
    arrays = {s: v + (True,) for s, v in files.load(name, data_dir).items()}
    wheres = {s: f"{name} {s} files in {folder}" for s in arrays}
    fix = "re-download the files"
  else:
    try:
      arrays = tfds_source.load(info, data_dir, tfds_dir)
    except UserError as e:
      if source == "auto":
        raise UserError(
            f"{files.missing_error(name, data_dir, folder, tfds_hint=False)}; "
            f"the TFDS fallback failed too: {e}") from None
      raise
    tfds_root = tfds_source.default_tfds_dir(tfds_dir)
    wheres = {s: f"TFDS {name} {s} in {tfds_root}" for s in arrays}
    fix = (f"delete {os.path.join(tfds_root, name)} and rebuild (TFDS builds sharing "
           "one download dir can mix up the mnist/kmnist files)")

  out = {}
  for split, (images, labels, ordered) in arrays.items():
    verify.check_split(info, split, images, labels, wheres[split], fix, ordered)
    out[split] = splits.Split(images, labels)

  if val_size > 0:
    out["train"], out["validation"] = splits.carve_validation(
        out["train"].images, out["train"].labels, val_size, val_seed)

  for split, cap in (limit or {}).items():
    s = out[split]
    out[split] = splits.Split(s.images[:cap].copy(), s.labels[:cap].copy())  # frees the rest
  return splits.Dataset(info=info, splits=out, source=use)
