"""Verified loading of MNIST, Kuzushiji-MNIST (KMNIST), Fashion-MNIST and Kuzushiji-49.

Every load is verified: each file's MD5 against the publisher's published sum
(before the file is parsed), then the decoded arrays' shapes, dtype, label range
and a SHA-256 content fingerprint against a built-in table (computed once from
the publishers' files). That fingerprint is what makes the TFDS path checkable.

Data layout (``source='files'``)
--------------------------------
``data_dir`` is ``--config.data_dir`` if given, else ``$KMNIST_JAX_DATA_DIR``,
else ``~/kmnist_jax_data``. Under it, one folder per dataset, holding the files
exactly as their publishers released them::

  <data_dir>/mnist/          train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
                             t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
  <data_dir>/fashion_mnist/  (the same four IDX names)
  <data_dir>/kmnist/         kmnist-{train,test}-{imgs,labels}.npz (preferred) or the
                             four MNIST-format IDX .gz files; optional kmnist_classmap.csv
  <data_dir>/k49/            k49-{train,test}-{imgs,labels}.npz; optional k49_classmap.csv

IDX files are read with ``gzip`` + ``np.frombuffer`` after a header check (magic
2051/2049, 28x28, exact byte length); ``.npz`` files with
``np.load(..., allow_pickle=False)`` (nothing is ever unpickled).

Missing files download themselves (:mod:`kmnist_jax.download`): the ``files``
source fetches the preferred layout (IDX for MNIST/Fashion-MNIST, .npz + classmap for
KMNIST/K49) from the publishers' URLs into ``<data_dir>/<name>/``, each file verified
by its published MD5 before it is kept. ``$KMNIST_JAX_DATA_URL`` points at a mirror
instead; ``$KMNIST_JAX_DOWNLOAD=0`` turns downloading off.

``source='tfds'`` builds the TFDS builder (mnist, kmnist, fashion_mnist; K49 has
none) into ``tfds_dir`` (default: TFDS' own, ``$TFDS_DATA_DIR`` or
``~/tensorflow_datasets``; never inside data_dir, which may be read-only), using ``<data_dir>/<name>`` as TFDS'
``manual_dir``: TFDS picks up the IDX .gz files there by name (and checks their
SHA-256 against its own table), so it builds offline (about 15-25 s per dataset
on 2 cores). Without them it downloads; when the download host cannot be
reached we say so at once instead of waiting out TFDS' retries (minutes).
``source='auto'`` uses the files (downloading them when missing); TFDS only when
downloading is off or fails and tensorflow-datasets is installed.

TFDS order. The TFDS writer stores examples sorted by ``md5(split_name +
str(index))`` of their generator index (tfds/core/hashing.py, shuffle.py), not in
file order. :func:`load` undoes that permutation so both sources return the same
arrays in the publisher's order (so validation carving and ``limit`` pick the
same examples), and then checks the order-dependent fingerprint. Should a future
TFDS change its key hashing, the order-independent fingerprint (sorted
per-example SHA-256s) still verifies the content; the arrays are then returned
in TFDS order with a warning.

TFDS pitfall avoided here: TFDS names extracted downloads after the file name
only (``downloads/extracted/GZIP.t10k-images-idx3-ubyte.gz``), so building mnist
after kmnist (or vice versa) in one shared download dir silently reuses the
other dataset's images. We give each dataset its own download dir
(``<tfds_dir>/downloads/<name>``); a dataset built elsewhere that way fails the
fingerprint check.

K49 is not in the fingerprint table (no copy was available to compute it): its
loads are verified by the published file MD5s plus shape, dtype, label-range and
count checks (232,365 train / 38,547 test). K49's test set is imbalanced
(``balanced=False``): report balanced accuracy.

Validation: ``val_size`` examples are carved from train with
``jax.random.permutation(jax.random.key(val_seed), n_train)`` (threefry, on CPU):
validation = perm[:val_size] in permutation order, the rest of train keeps its
original order.

Licences and citations
----------------------
* MNIST: Y. LeCun, C. Cortes, C. J. C. Burges. No licence text in the original;
  commonly redistributed as CC BY-SA 3.0. Cite LeCun, Bottou, Bengio, Haffner,
  "Gradient-based learning applied to document recognition", Proc. IEEE 86(11), 1998.
* KMNIST and K49: CC BY-SA 4.0. "KMNIST Dataset" (created by CODH), adapted from
  "Kuzushiji Dataset" (created by NIJL and others), doi:10.20676/00000341. Cite
  T. Clanuwat, M. Bober-Irizar, A. Kitamoto, A. Lamb, K. Yamamoto, D. Ha,
  "Deep Learning for Classical Japanese Literature", 2018, arXiv:1812.01718.
  https://github.com/rois-codh/kmnist
* Fashion-MNIST: MIT, Copyright 2017 Zalando SE. Cite H. Xiao, K. Rasul,
  R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
  Learning Algorithms", 2017, arXiv:1708.07747.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import importlib.util
import io
import os
import socket
import urllib.parse
import warnings
import zipfile
import zlib

import numpy as np

from kmnist_jax import download
from kmnist_jax.errors import UserError, unknown

DATA_DIR_ENV = "KMNIST_JAX_DATA_DIR"
SOURCES = ("auto", "files", "tfds")

_IMAGE_SHAPE = (28, 28)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about one dataset."""
  name: str
  num_classes: int
  class_names: tuple[str, ...]   # ASCII
  class_glyphs: tuple[str, ...]  # what to draw (hiragana for KMNIST/K49)
  balanced: bool                 # False: report balanced accuracy
  citation: str
  license: str
  tfds_name: str | None


_KMNIST_CITATION = (
    "T. Clanuwat, M. Bober-Irizar, A. Kitamoto, A. Lamb, K. Yamamoto, D. Ha, "
    "\"Deep Learning for Classical Japanese Literature\", 2018, arXiv:1812.01718. "
    "\"KMNIST Dataset\" (created by CODH), adapted from \"Kuzushiji Dataset\" "
    "(created by NIJL and others), doi:10.20676/00000341.")

_KMNIST_GLYPHS = ("お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を")
_KMNIST_NAMES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")

# K49 classes in k49_classmap.csv order. The CSV these generate
# ("index,codepoint,char" rows) is 697 bytes with md5 f7d0d0391f68bdf0fe4cf160ceb85753,
# the published size and sum, so this table is the publisher's, byte for byte.
_K49_GLYPHS = tuple("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほ"
                    "まみむめもやゆよらりるれろわゐゑをんゝ")
_K49_NAMES = (
    "a", "i", "u", "e", "o", "ka", "ki", "ku", "ke", "ko",
    "sa", "shi", "su", "se", "so", "ta", "chi", "tsu", "te", "to",
    "na", "ni", "nu", "ne", "no", "ha", "hi", "fu", "he", "ho",
    "ma", "mi", "mu", "me", "mo", "ya", "yu", "yo",
    "ra", "ri", "ru", "re", "ro", "wa", "wi", "we", "wo", "n",
    "odoriji")  # ゝ, the hiragana iteration mark

_FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_DIGITS = tuple(str(i) for i in range(10))

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist", num_classes=10, class_names=_DIGITS, class_glyphs=_DIGITS,
        balanced=True,  # approximately: 892..1135 test images per class
        citation=("Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, \"Gradient-based "
                  "learning applied to document recognition\", Proc. IEEE 86(11), 1998."),
        license=("no licence text in the original distribution; commonly "
                 "redistributed as CC BY-SA 3.0"),
        tfds_name="mnist"),
    "kmnist": DatasetInfo(
        name="kmnist", num_classes=10, class_names=_KMNIST_NAMES,
        class_glyphs=_KMNIST_GLYPHS, balanced=True, citation=_KMNIST_CITATION,
        license="CC BY-SA 4.0", tfds_name="kmnist"),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist", num_classes=10, class_names=_FASHION_NAMES,
        class_glyphs=_FASHION_NAMES, balanced=True,
        citation=("H. Xiao, K. Rasul, R. Vollgraf, \"Fashion-MNIST: a Novel Image "
                  "Dataset for Benchmarking Machine Learning Algorithms\", 2017, "
                  "arXiv:1708.07747."),
        license="MIT (Copyright 2017 Zalando SE)", tfds_name="fashion_mnist"),
    "k49": DatasetInfo(
        name="k49", num_classes=49, class_names=_K49_NAMES, class_glyphs=_K49_GLYPHS,
        balanced=False, citation=_KMNIST_CITATION, license="CC BY-SA 4.0",
        tfds_name=None),
}

_NUM_EXAMPLES = {
    "mnist": {"train": 60000, "test": 10000},
    "kmnist": {"train": 60000, "test": 10000},
    "fashion_mnist": {"train": 60000, "test": 10000},
    "k49": {"train": 232365, "test": 38547},
}

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _npz_files(prefix: str) -> dict[str, tuple[str, str]]:
  return {s: (f"{prefix}-{s}-imgs.npz", f"{prefix}-{s}-labels.npz")
          for s in ("train", "test")}


# Per dataset, the file layouts we can read, in order of preference:
# (format, {split: (images file, labels file)}).
_LAYOUTS = {
    "mnist": (("idx", _IDX_FILES),),
    "fashion_mnist": (("idx", _IDX_FILES),),
    "kmnist": (("npz", _npz_files("kmnist")), ("idx", _IDX_FILES)),
    "k49": (("npz", _npz_files("k49")),),
}

_CLASSMAPS = {"kmnist": "kmnist_classmap.csv", "k49": "k49_classmap.csv"}

_DOWNLOAD_HINTS = {
    "mnist": ("http://yann.lecun.com/exdb/mnist/ (mirror "
              "https://storage.googleapis.com/cvdf-datasets/mnist/)"),
    "kmnist": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/ (see http://codh.rois.ac.jp/kmnist/ "
               "and github.com/rois-codh/kmnist download_data.py)"),
    "k49": ("http://codh.rois.ac.jp/kmnist/dataset/k49/ (see http://codh.rois.ac.jp/kmnist/ "
            "and github.com/rois-codh/kmnist download_data.py)"),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
                      "(see github.com/zalandoresearch/fashion-mnist)"),
}

# Published (md5, size in bytes) of every file, keyed "<dataset>/<file>".
# MNIST: official sums (as in torchvision). KMNIST: rois-codh's list. Fashion:
# zalandoresearch's list. K49: rois-codh's sums, as in torchvision-style loaders and
# the git-annex keys of github.com/datasets-mila/datasets--kmnist (sizes from there).
_MD5 = {
    "mnist/train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
    "mnist/train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28881),
    "mnist/t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1648877),
    "mnist/t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4542),
    "fashion_mnist/train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
    "fashion_mnist/train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", 29515),
    "fashion_mnist/t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", 4422102),
    "fashion_mnist/t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", 5148),
    "kmnist/kmnist-train-imgs.npz": ("a183fbc01ed9a345513b145673d3d0bb", 18384171),
    "kmnist/kmnist-train-labels.npz": ("b0e1d240e8afec72b50437fc3bc5908a", 29700),
    "kmnist/kmnist-test-imgs.npz": ("dace6de62ca8b90843cc45366337d02e", 3079479),
    "kmnist/kmnist-test-labels.npz": ("3ae489a79983d0fe386152684e3b5412", 5304),
    "kmnist/train-images-idx3-ubyte.gz": ("bdb82020997e1d708af4cf47b453dcf7", 18165135),
    "kmnist/train-labels-idx1-ubyte.gz": ("e144d726b3acfaa3e44228e80efcd344", 29497),
    "kmnist/t10k-images-idx3-ubyte.gz": ("5c965bf0a639b31b8f53240b1b52f4d7", 3041136),
    "kmnist/t10k-labels-idx1-ubyte.gz": ("7320c461ea6c1c855c0b718fb2a4b134", 5120),
    "kmnist/kmnist_classmap.csv": ("899202f6e8dc29a321ac210a03d0f2f1", 151),
    "k49/k49-train-imgs.npz": ("7ac088b20481cf51dcd01ceaab89d821", 66117696),
    "k49/k49-train-labels.npz": ("44a8e1b893f81e63ff38d73cad420f7a", 164485),
    "k49/k49-test-imgs.npz": ("d352e201d846ce6b94f42c990966f374", 10971201),
    "k49/k49-test-labels.npz": ("4da6f7a62e67a832d5eb1bd85c5ee448", 27450),
    "k49/k49_classmap.csv": ("f7d0d0391f68bdf0fe4cf160ceb85753", 697),
}

# Content fingerprints of the decoded arrays, per (dataset, split), computed from
# the publishers' files: (ordered, multiset); see fingerprint and
# _multiset_fingerprint. K49 is absent (no copy was available to compute them);
# its loads are verified by the file md5s plus shape, dtype, label-range and count
# checks.
_FINGERPRINTS = {
    ("mnist", "train"): (
        "1db65fb60c72a2f8ae5c29dd169acb7f9f6d426fb0c179a44fb65f71f8422b80",
        "5abba4d137f8ab64439814cdab82aad217a0cb17b08baf6b8e7616a63b0940bc"),
    ("mnist", "test"): (
        "4f8277dbfabb4206f80cd2e5f73739d12adec2410555a74f8a84ff896c356e02",
        "a46fdec1b9f88dd401816e754282470c869bdb7f084382acfae3a39a3142434f"),
    ("kmnist", "train"): (
        "8813f1d1b89668b07438cc646ded1ae59d872786eba446c2dbb24aae02092115",
        "27d0d81297110aa72592fb234b9134964ae5cd4ab2409c88e9638d4e71560938"),
    ("kmnist", "test"): (
        "cbca968c257c5836d0bc99d7872d6604dd6611edbd08a71d7ae4a3bbcc3532c4",
        "3c24b0d5d8f59f566daec474f1d2ebc2e595778b24c36dc21f99301a0ec714a7"),
    ("fashion_mnist", "train"): (
        "40ef4a4720ca4932e4378e9c48902eba94d44fc06107e7f7f583328a8b90a599",
        "f4f77554e8513eb2214a99721ce71e92258ee2a9b17ccfe3967ddc8a64add3f6"),
    ("fashion_mnist", "test"): (
        "c77525c43797372e1243b8ec52b616bbe656dd36e55b48e9f865402d68a8e578",
        "1eff3fc19be1e5f5879f3533786f4993b764de28fc8961075a1a3b43a1c8984b"),
}


def get_info(name: str) -> DatasetInfo:
  """The :class:`DatasetInfo` of ``name``; UserError listing the valid names."""
  if not isinstance(name, str) or name not in DATASETS:
    raise unknown("dataset", name, DATASETS)
  return DATASETS[name]


def default_data_dir() -> str:
  """``$KMNIST_JAX_DATA_DIR`` if set (and non-empty), else ``~/kmnist_jax_data``."""
  return os.path.expanduser(os.environ.get(DATA_DIR_ENV) or "~/kmnist_jax_data")


def default_tfds_dir(tfds_dir: str | None = None) -> str:
  """`tfds_dir` if given, else TFDS' default ($TFDS_DATA_DIR or ~/tensorflow_datasets)."""
  return os.path.expanduser(tfds_dir or os.environ.get("TFDS_DATA_DIR")
                            or "~/tensorflow_datasets")


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8 [N, 28, 28], C-contiguous
  labels: np.ndarray  # uint8 [N]


@dataclasses.dataclass(frozen=True)
class Dataset:
  info: DatasetInfo
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


# ----------------------------------------------------------------------------
# Fingerprints.


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
  """Order-dependent SHA-256 over shape, image bytes and label bytes."""
  h = hashlib.sha256(f"{images.dtype}{images.shape}{labels.dtype}{labels.shape}".encode())
  h.update(np.ascontiguousarray(images).data)
  h.update(np.ascontiguousarray(labels).data)
  return h.hexdigest()


def _multiset_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
  """Order-independent: SHA-256 of the sorted per-example SHA-256(label, image)."""
  n = len(labels)
  rows = np.concatenate([labels.reshape(n, 1), images.reshape(n, -1)], axis=1)
  width = rows.shape[1]
  buf = memoryview(np.ascontiguousarray(rows, dtype=np.uint8).tobytes())
  digests = sorted(hashlib.sha256(buf[i * width:(i + 1) * width]).digest()
                   for i in range(n))
  h = hashlib.sha256(f"{images.dtype}{images.shape}{labels.dtype}{labels.shape}".encode())
  for d in digests:
    h.update(d)
  return h.hexdigest()


# ----------------------------------------------------------------------------
# Files.

_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def _file_md5(path: str) -> str:
  """MD5 of ``path``, cached in-process by (realpath, size, mtime_ns)."""
  st = os.stat(path)
  key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
  if key not in _MD5_CACHE:
    h = hashlib.md5()
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    _MD5_CACHE[key] = h.hexdigest()
  return _MD5_CACHE[key]


def _verify_md5(path: str, key: str) -> None:
  """UserError unless ``path`` has the published md5 of ``key`` ('<dataset>/<file>')."""
  expected = _MD5.get(key)
  if expected is None:  # no published sum: structural checks only
    return
  want_md5, want_size = expected
  actual = _file_md5(path)
  if actual != want_md5:
    size = os.path.getsize(path)
    raise UserError(
        f"{path} is corrupt or not the publisher's file: md5 {actual}, expected "
        f"{want_md5} ({size} bytes, expected {want_size}); re-download it from "
        f"{_DOWNLOAD_HINTS[key.split('/')[0]]}")


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
  want_dims = (expect_n,) + (_IMAGE_SHAPE if kind == "images" else ())
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
                    f"{_one_line(e)}); re-download it") from None


def _present_layout(name: str, folder: str):
  """(format, files) of the first complete layout in folder, else None."""
  for fmt, files in _LAYOUTS[name]:
    if all(os.path.isfile(os.path.join(folder, f)) for pair in files.values() for f in pair):
      return fmt, files
  return None


def _any_file_present(name: str, folder: str) -> bool:
  return any(os.path.isfile(os.path.join(folder, f))
             for _, files in _LAYOUTS[name] for pair in files.values() for f in pair)


def _missing_files_error(name: str, data_dir: str, folder: str,
                         tfds_hint: bool = True) -> UserError:
  layouts = _LAYOUTS[name]
  needed = " or ".join(
      ", ".join(f for s in ("train", "test") for f in files[s]) + f" ({fmt})"
      for fmt, files in layouts)
  where = "the directory does not exist" if not os.path.isdir(folder) else "some are missing"
  tfds_hint = (", or use source='tfds' with internet access"
               if tfds_hint and DATASETS[name].tfds_name else "")
  return UserError(
      f"{name} files not found in {folder} ({where}; data_dir {data_dir} comes from "
      f"--config.data_dir or ${DATA_DIR_ENV}, default ~/kmnist_jax_data): need {needed}; "
      f"download them from {_DOWNLOAD_HINTS[name]}{tfds_hint}")


def _download_files(name: str, data_dir: str) -> None:
  """Fetches the missing files of ``name``'s preferred layout (and classmap)."""
  _, files = _LAYOUTS[name][0]
  wanted = [f for pair in files.values() for f in pair]
  if name in _CLASSMAPS:
    wanted.append(_CLASSMAPS[name])
  download.fetch(name, data_dir, {f: _MD5[f"{name}/{f}"] for f in wanted})


def _load_files(name: str, data_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  folder = os.path.join(data_dir, name)
  found = _present_layout(name, folder)
  if found is None and download.enabled():
    _download_files(name, data_dir)
    found = _present_layout(name, folder)
  if found is None:
    err = _missing_files_error(name, data_dir, folder)
    raise UserError(f"{err} (downloading is off: ${download.ENABLE_ENV}=0)"
                    if not download.enabled() else str(err))
  fmt, files = found
  # Verify every file before parsing any of them.
  for pair in files.values():
    for f in pair:
      _verify_md5(os.path.join(folder, f), f"{name}/{f}")
  out = {}
  for split, (img_file, lab_file) in files.items():
    n = _NUM_EXAMPLES[name][split]
    img_path, lab_path = os.path.join(folder, img_file), os.path.join(folder, lab_file)
    if fmt == "idx":
      images, labels = _read_idx(img_path, "images", n), _read_idx(lab_path, "labels", n)
    else:
      images, labels = _read_npz(img_path), _read_npz(lab_path)
      _check_shapes(name, split, images, labels, where=f"{img_path} / {lab_path}")
    out[split] = (images, labels)
  return out


def _check_classmap(info: DatasetInfo, data_dir: str) -> None:
  """Verify <data_dir>/<name>/<name>_classmap.csv, when present, against the table."""
  fname = _CLASSMAPS.get(info.name)
  if fname is None:
    return
  path = os.path.join(data_dir, info.name, fname)
  if not os.path.isfile(path):
    return
  _verify_md5(path, f"{info.name}/{fname}")
  with open(path, "rb") as f:
    rows = list(csv.reader(io.StringIO(f.read().decode("utf-8"))))
  glyphs = tuple(r[2] for r in rows[1:] if len(r) >= 3)
  if rows[:1] != [["index", "codepoint", "char"]] or glyphs != info.class_glyphs:
    raise UserError(f"{path} does not list the expected classes "
                    f"{''.join(info.class_glyphs)}; re-download it")


# ----------------------------------------------------------------------------
# TFDS.


def _tfds_file_order(split: str, n: int) -> np.ndarray:
  """``order`` such that tfds_array[j] == file_array[order[j]].

  TFDS' writer sorts examples by ``int(md5(salt + str(key)))`` with salt = split
  name; the mnist-family builders use the file index as key.
  """
  salt = split.encode()
  hashes = [int.from_bytes(hashlib.md5(salt + str(i).encode()).digest(), "big")
            for i in range(n)]
  return np.array(sorted(range(n), key=hashes.__getitem__), dtype=np.int64)


def _unreachable(url: str, timeout: float = 5.0) -> str | None:
  """Why ``url``'s host cannot be reached (DNS + TCP connect), or None.

  Skipped (None) behind a proxy, where only the proxy knows.
  """
  if any(os.environ.get(v) for v in ("http_proxy", "https_proxy", "all_proxy",
                                     "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")):
    return None
  u = urllib.parse.urlparse(url)
  if not u.hostname:
    return None
  port = u.port or (443 if u.scheme == "https" else 80)
  try:
    socket.create_connection((u.hostname, port), timeout=timeout).close()
  except OSError as e:
    return f"{u.hostname}:{port} cannot be reached ({type(e).__name__}: {_one_line(e)})"
  return None


def _load_tfds(info: DatasetInfo, data_dir: str, tfds_dir: str | None):
  if info.tfds_name is None:
    raise UserError(f"{info.name} has no TFDS builder; use source='files' with the files "
                    f"in {os.path.join(data_dir, info.name)} (from "
                    f"{_DOWNLOAD_HINTS[info.name]})")
  try:
    import tensorflow_datasets as tfds  # slow import: only here
  except ImportError as e:
    raise UserError(f"source='tfds' needs tensorflow-datasets ({e}); pip install "
                    "tensorflow-datasets, or use source='files'") from None
  tfds_dir = default_tfds_dir(tfds_dir)
  manual_dir = os.path.join(data_dir, info.name)
  have_manual = all(os.path.isfile(os.path.join(manual_dir, f))
                    for pair in _IDX_FILES.values() for f in pair)
  out = {}
  try:
    builder = tfds.builder(info.tfds_name, data_dir=tfds_dir)
    if not builder.is_prepared():
      url = getattr(type(builder), "URL", None)
      why = None if have_manual or not url else _unreachable(url)
      if why:  # Fail now, not after TFDS' minutes of download retries.
        raise UserError(
            f"TFDS must download {info.tfds_name} (no IDX files in {manual_dir}, no "
            f"prepared copy in {tfds_dir}) but {why}; put the IDX .gz files in "
            f"{manual_dir} (from {_DOWNLOAD_HINTS[info.name]}) or connect to the internet")
      builder.download_and_prepare(
          # Per-dataset download dir: TFDS names extracted files by file name only,
          # so mnist and kmnist would otherwise share extracted/GZIP.*-ubyte.gz.
          download_dir=os.path.join(tfds_dir, "downloads", info.tfds_name),
          download_config=tfds.download.DownloadConfig(
              manual_dir=manual_dir, try_download_gcs=not have_manual))
    for split in ("train", "test"):
      arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
      out[split] = (np.asarray(arrays["image"]), np.asarray(arrays["label"]))
  except UserError:
    raise
  except Exception as e:  # TFDS/TF raise many types; report the cause on one line.
    raise UserError(
        f"TFDS could not build/read {info.tfds_name} in {tfds_dir} (manual_dir "
        f"{manual_dir}, IDX files there: {'yes' if have_manual else 'no'}): "
        f"{type(e).__name__}: {_one_line(e)}; put the IDX .gz files in {manual_dir} "
        f"(from {_DOWNLOAD_HINTS[info.name]}), give a writable tfds_dir, or connect "
        "to the internet") from None

  result = {}
  for split, (images, labels) in out.items():
    where = f"TFDS {info.tfds_name} {split} in {tfds_dir}"
    if images.ndim == 4 and images.shape[-1] == 1:
      images = images[..., 0]
    labels = labels.reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
      raise UserError(f"{where}: labels span {labels.min()}..{labels.max()}, outside "
                      f"0..{info.num_classes - 1}; delete {tfds_dir} and rebuild")
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    _check_shapes(info.name, split, images, labels, where=where)
    order = _tfds_file_order(split, len(labels))
    restored_images = np.empty_like(images)
    restored_labels = np.empty_like(labels)
    restored_images[order] = images
    restored_labels[order] = labels
    expected = _FINGERPRINTS.get((info.name, split))
    if expected is None or fingerprint(restored_images, restored_labels) == expected[0]:
      result[split] = (restored_images, restored_labels, True)
    else:  # not the order we know how to undo (or not the data): load() decides
      result[split] = (images, labels, False)
  return result


# ----------------------------------------------------------------------------
# Checks, carving, load().


def _one_line(e: BaseException, limit: int = 300) -> str:
  text = " ".join(str(e).split())
  return text if len(text) <= limit else text[:limit] + "..."


def _check_shapes(name: str, split: str, images: np.ndarray, labels: np.ndarray,
                  where: str) -> None:
  n = _NUM_EXAMPLES[name][split]
  if images.dtype != np.uint8 or labels.dtype != np.uint8:
    raise UserError(f"{where}: dtypes {images.dtype}/{labels.dtype}, expected "
                    "uint8/uint8; re-download it")
  if images.shape != (n,) + _IMAGE_SHAPE or labels.shape != (n,):
    raise UserError(f"{where}: shapes {images.shape}/{labels.shape}, expected "
                    f"{(n,) + _IMAGE_SHAPE}/{(n,)} for {name} {split}; re-download it")


def _verify_split(info: DatasetInfo, split: str, images: np.ndarray,
                  labels: np.ndarray, where: str, fix: str, ordered: bool = True) -> None:
  """Shapes, dtype, label range and content fingerprint of one decoded split.

  ``ordered=False`` (TFDS order we could not undo) checks the order-independent
  fingerprint instead and warns that the order differs from the files'.
  """
  _check_shapes(info.name, split, images, labels, where)
  if labels.max() >= info.num_classes:
    raise UserError(f"{where}: label {labels.max()} outside 0..{info.num_classes - 1}; "
                    f"{fix}")
  expected = _FINGERPRINTS.get((info.name, split))
  if expected is None:
    return
  if ordered:
    actual, want = fingerprint(images, labels), expected[0]
  else:
    actual, want = _multiset_fingerprint(images, labels), expected[1]
  if actual != want:
    raise UserError(f"{where} does not hold the published data: content fingerprint "
                    f"{actual}, expected {want}; {fix}")
  if not ordered:
    warnings.warn(
        f"{where}: content verified, but TFDS no longer stores examples in the order "
        "this module knows how to undo; returning TFDS order, so validation carving "
        "and `limit` pick different examples than source='files'", stacklevel=3)


def _carve_validation(images: np.ndarray, labels: np.ndarray, val_size: int,
                      val_seed: int) -> tuple[Split, Split]:
  """(train, validation): validation = perm[:val_size] in perm order, train sorted."""
  import jax  # pylint: disable=g-import-not-at-top
  n = len(labels)
  with jax.default_device(jax.local_devices(backend="cpu")[0]):
    perm = np.asarray(jax.random.permutation(
        jax.random.key(val_seed, impl="threefry2x32"), n))
  val_idx = perm[:val_size]
  train_idx = np.sort(perm[val_size:])
  return (Split(images[train_idx], labels[train_idx]),
          Split(images[val_idx], labels[val_idx]))


def _is_int(x) -> bool:
  return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def load(name: str, *, data_dir: str | None = None, source: str = "auto",
         val_size: int = 0, val_seed: int = 0, tfds_dir: str | None = None,
         limit: dict[str, int] | None = None) -> Dataset:
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
  info = get_info(name)
  if source not in SOURCES:
    raise unknown("data source", source, SOURCES)
  if not _is_int(val_size):
    raise UserError(f"val_size must be an int, got {val_size!r}")
  if not _is_int(val_seed):
    raise UserError(f"val_seed must be an int, got {val_seed!r}")
  n_train = _NUM_EXAMPLES[name]["train"]
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
  data_dir = os.path.expanduser(data_dir if data_dir is not None else default_data_dir())

  folder = os.path.join(data_dir, name)
  if source == "auto":
    use = ("files" if (_any_file_present(name, folder) or info.tfds_name is None
                       or download.enabled()) else "tfds")
  else:
    use = source

  if use == "files" and source == "auto" and not _any_file_present(name, folder):
    try:  # auto: download; TFDS only if that fails and TFDS is installed
      _download_files(name, data_dir)
    except download.DownloadError as e:
      if (info.tfds_name is None
          or importlib.util.find_spec("tensorflow_datasets") is None):
        raise
      warnings.warn(f"{e}; trying TFDS", stacklevel=2)
      use = "tfds"
  _check_classmap(info, data_dir)
  if use == "files":
    arrays = {s: v + (True,) for s, v in _load_files(name, data_dir).items()}
    wheres = {s: f"{name} {s} files in {folder}" for s in arrays}
    fix = "re-download the files"
  else:
    try:
      arrays = _load_tfds(info, data_dir, tfds_dir)
    except UserError as e:
      if source == "auto":
        raise UserError(f"{_missing_files_error(name, data_dir, folder, tfds_hint=False)}; "
                        f"the TFDS fallback failed too: {e}") from None
      raise
    tfds_root = default_tfds_dir(tfds_dir)
    wheres = {s: f"TFDS {name} {s} in {tfds_root}" for s in arrays}
    fix = (f"delete {os.path.join(tfds_root, name)} and rebuild (TFDS builds sharing "
           "one download dir can mix up the mnist/kmnist files)")

  splits = {}
  for split, (images, labels, ordered) in arrays.items():
    _verify_split(info, split, images, labels, wheres[split], fix, ordered)
    splits[split] = Split(images, labels)

  if val_size > 0:
    splits["train"], splits["validation"] = _carve_validation(
        splits["train"].images, splits["train"].labels, val_size, val_seed)

  for split, cap in (limit or {}).items():
    s = splits[split]
    splits[split] = Split(s.images[:cap].copy(), s.labels[:cap].copy())  # frees the rest
  return Dataset(info=info, splits=splits, source=use)
