"""The ``files`` source: the publishers' files in ``<data_dir>/<name>/``, verified, decoded.

``data_dir`` is ``--config.data_dir`` if given, else ``$KMNIST_JAX_DATA_DIR``, else
``~/kmnist_jax_data``. Under it, one folder per dataset, holding the files exactly as
their publishers released them::

  <data_dir>/mnist/          train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
                             t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
  <data_dir>/fashion_mnist/  (the same four IDX names)
  <data_dir>/kmnist/         kmnist-{train,test}-{imgs,labels}.npz (preferred) or the
                             four MNIST-format IDX .gz files; optional kmnist_classmap.csv
  <data_dir>/k49/            k49-{train,test}-{imgs,labels}.npz; optional k49_classmap.csv

Every file's MD5 is checked (:mod:`kmnist_jax.data.verify`) before any is parsed. IDX
files are read with ``gzip`` + ``np.frombuffer`` after a header check (magic
2051/2049, 28x28, exact byte length); ``.npz`` files with
``np.load(..., allow_pickle=False)`` (nothing is ever unpickled).

Missing files download themselves (:mod:`kmnist_jax.download`): the preferred layout
(IDX for MNIST/Fashion-MNIST, .npz + classmap for KMNIST/K49) is fetched from the
publishers' URLs into ``<data_dir>/<name>/``, each file verified by its published MD5
before it is kept. ``$KMNIST_JAX_DATA_URL`` points at a mirror instead;
``$KMNIST_JAX_DOWNLOAD=0`` turns downloading off.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zipfile
import zlib

import numpy as np

from kmnist_jax import download
from kmnist_jax.data import registry, verify
from kmnist_jax.errors import UserError

# The four MNIST-format IDX files, per split: (images file, labels file).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _npz_files(prefix: str) -> dict[str, tuple[str, str]]:
  return {s: (f"{prefix}-{s}-imgs.npz", f"{prefix}-{s}-labels.npz")
          for s in ("train", "test")}


# Per dataset, the file layouts we can read, in order of preference:
# (format, {split: (images file, labels file)}).
LAYOUTS = {
    "mnist": (("idx", IDX_FILES),),
    "fashion_mnist": (("idx", IDX_FILES),),
    "kmnist": (("npz", _npz_files("kmnist")), ("idx", IDX_FILES)),
    "k49": (("npz", _npz_files("k49")),),
}

CLASSMAPS = {"kmnist": "kmnist_classmap.csv", "k49": "k49_classmap.csv"}


def one_line(e: BaseException, limit: int = 300) -> str:
  """An exception's message on one line, cut at ``limit`` characters: for the one-line
  ``error:`` messages that quote a library's own error."""
  text = " ".join(str(e).split())
  return text if len(text) <= limit else text[:limit] + "..."


def _read_idx(path: str, kind: str, expect_n: int) -> np.ndarray:
  """Decode a gzipped IDX file after checking its header and exact length."""
  try:
    with gzip.open(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise UserError(f"{path} is not a readable gzip file ({e}); re-download it") from None
  want_magic, ndim = (2051, 3) if kind == "images" else (2049, 1)
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise UserError(f"{path} is truncated: {len(raw)} bytes after gunzip, shorter than "
                    f"the {header}-byte IDX header; re-download it")
  magic = int.from_bytes(raw[:4], "big")
  if magic != want_magic:
    raise UserError(f"{path} is not an IDX {kind} file: magic {magic}, expected "
                    f"{want_magic}; re-download it")
  dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  want_dims = (expect_n,) + (registry.IMAGE_SHAPE if kind == "images" else ())
  if dims != want_dims:
    raise UserError(f"{path} has IDX dims {dims}, expected {want_dims}; re-download it")
  want_len = header + int(np.prod(dims))
  if len(raw) != want_len:
    raise UserError(f"{path} is truncated or has trailing bytes: {len(raw)} bytes after "
                    f"gunzip, expected {want_len} for dims {dims}; re-download it")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def _read_npz(path: str) -> np.ndarray:
  """``arr_0`` of an .npz, never unpickling."""
  try:
    with np.load(path, allow_pickle=False) as z:
      if "arr_0" not in z.files:
        raise UserError(f"{path} has no 'arr_0' array (it has {sorted(z.files)}); "
                        "re-download it")
      return np.ascontiguousarray(z["arr_0"])
  except UserError:
    raise
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
    raise UserError(f"{path} is not a readable .npz file ({type(e).__name__}: "
                    f"{one_line(e)}); re-download it") from None


def _present_layout(name: str, folder: str):
  """(format, files) of the first complete layout in folder, else None."""
  for fmt, files in LAYOUTS[name]:
    if all(os.path.isfile(os.path.join(folder, f)) for pair in files.values() for f in pair):
      return fmt, files
  return None


def any_present(name: str, folder: str) -> bool:
  """Whether ``folder`` holds any file of any of ``name``'s layouts."""
  return any(os.path.isfile(os.path.join(folder, f))
             for _, files in LAYOUTS[name] for pair in files.values() for f in pair)


def missing_error(name: str, data_dir: str, folder: str,
                  tfds_hint: bool = True) -> UserError:
  """The one-line error for ``name``'s files missing from ``folder``: what is needed,
  where data_dir comes from, and where to get the files."""
  layouts = LAYOUTS[name]
  needed = " or ".join(
      ", ".join(f for s in ("train", "test") for f in files[s]) + f" ({fmt})"
      for fmt, files in layouts)
  where = "the directory does not exist" if not os.path.isdir(folder) else "some are missing"
  tfds_hint = (", or use source='tfds' with internet access"
               if tfds_hint and registry.DATASETS[name].tfds_name else "")
  return UserError(
      f"{name} files not found in {folder} ({where}; data_dir {data_dir} comes from "
      f"--config.data_dir or ${registry.DATA_DIR_ENV}, default ~/kmnist_jax_data): need "
      f"{needed}; download them from {registry.DOWNLOAD_HINTS[name]}{tfds_hint}")


def download_missing(name: str, data_dir: str) -> None:
  """Fetches the missing files of ``name``'s preferred layout (and classmap)."""
  _, files = LAYOUTS[name][0]
  wanted = [f for pair in files.values() for f in pair]
  if name in CLASSMAPS:
    wanted.append(CLASSMAPS[name])
  download.fetch(name, data_dir, {f: verify.MD5[f"{name}/{f}"] for f in wanted})


def load(name: str, data_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{split: (images, labels)} of ``name`` from ``<data_dir>/<name>/``, downloading the
  files when none of a layout is complete (and downloading is on); every file's MD5 is
  checked before any is parsed."""
  folder = os.path.join(data_dir, name)
  found = _present_layout(name, folder)
  if found is None and download.enabled():
    download_missing(name, data_dir)
    found = _present_layout(name, folder)
  if found is None:
    err = missing_error(name, data_dir, folder)
    raise UserError(f"{err} (downloading is off: ${download.ENABLE_ENV}=0)"
                    if not download.enabled() else str(err))
  fmt, files = found
  # Verify every file before parsing any of them.
  for pair in files.values():
    for f in pair:
      verify.check_file(os.path.join(folder, f), f"{name}/{f}")
  out = {}
  for split, (img_file, lab_file) in files.items():
    n = registry.NUM_EXAMPLES[name][split]
    img_path, lab_path = os.path.join(folder, img_file), os.path.join(folder, lab_file)
    if fmt == "idx":
      images, labels = _read_idx(img_path, "images", n), _read_idx(lab_path, "labels", n)
    else:
      images, labels = _read_npz(img_path), _read_npz(lab_path)
      verify.check_shapes(name, split, images, labels, where=f"{img_path} / {lab_path}")
    out[split] = (images, labels)
  return out


def check_classmap(info: registry.DatasetInfo, data_dir: str) -> None:
  """Verify <data_dir>/<name>/<name>_classmap.csv, when present, against the table."""
  fname = CLASSMAPS.get(info.name)
  if fname is None:
    return
  path = os.path.join(data_dir, info.name, fname)
  if not os.path.isfile(path):
    return
  verify.check_file(path, f"{info.name}/{fname}")
  with open(path, "rb") as f:
    rows = list(csv.reader(io.StringIO(f.read().decode("utf-8"))))
  glyphs = tuple(r[2] for r in rows[1:] if len(r) >= 3)
  if rows[:1] != [["index", "codepoint", "char"]] or glyphs != info.class_glyphs:
    raise UserError(f"{path} does not list the expected classes "
                    f"{''.join(info.class_glyphs)}; re-download it")
