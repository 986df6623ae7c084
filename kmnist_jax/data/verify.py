"""The checks that make a load count: the data must be the publishers', byte for byte.

Each file's MD5 is checked against the publisher's published sum before the file is
parsed; then the decoded arrays' shapes, dtype, label range and a SHA-256 content
fingerprint against a built-in table (computed once from the publishers' files). That
fingerprint is what makes the TFDS source checkable. Every failure is one ``error:``
line naming the file or split, both values and the fix.

K49 is not in the fingerprint table (no copy was available to compute it): its loads
are verified by the published file MD5s plus shape, dtype, label-range and count
checks.
"""

from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np

from kmnist_jax.data import registry
from kmnist_jax.errors import UserError

# Published (md5, size in bytes) of every file, keyed "<dataset>/<file>".
# MNIST: official sums (as in torchvision). KMNIST: rois-codh's list. Fashion:
# zalandoresearch's list. K49: rois-codh's sums, as in torchvision-style loaders and
# the git-annex keys of github.com/datasets-mila/datasets--kmnist (sizes from there).
MD5 = {
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
# multiset_fingerprint. K49 is absent (see the module docstring).
FINGERPRINTS = {
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


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
  """Order-dependent SHA-256 over shape, image bytes and label bytes."""
  h = hashlib.sha256(f"{images.dtype}{images.shape}{labels.dtype}{labels.shape}".encode())
  h.update(np.ascontiguousarray(images).data)
  h.update(np.ascontiguousarray(labels).data)
  return h.hexdigest()


def multiset_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
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


# In-process cache of file_md5, keyed by (realpath, size, mtime_ns): a changed file
# has a new key, so it is hashed again.
MD5_CACHE: dict[tuple[str, int, int], str] = {}


def file_md5(path: str) -> str:
  """MD5 of ``path``, cached in-process by (realpath, size, mtime_ns)."""
  st = os.stat(path)
  key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
  if key not in MD5_CACHE:
    h = hashlib.md5()
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    MD5_CACHE[key] = h.hexdigest()
  return MD5_CACHE[key]


def check_file(path: str, key: str) -> None:
  """UserError unless ``path`` has the published md5 of ``key`` ('<dataset>/<file>')."""
  expected = MD5.get(key)
  if expected is None:  # no published sum: structural checks only
    return
  want_md5, want_size = expected
  actual = file_md5(path)
  if actual != want_md5:
    size = os.path.getsize(path)
    raise UserError(
        f"{path} is corrupt or not the publisher's file: md5 {actual}, expected "
        f"{want_md5} ({size} bytes, expected {want_size}); re-download it from "
        f"{registry.DOWNLOAD_HINTS[key.split('/')[0]]}")


def check_shapes(name: str, split: str, images: np.ndarray, labels: np.ndarray,
                 where: str) -> None:
  """UserError unless the split is uint8 [N, 28, 28] / [N] with N the published count."""
  n = registry.NUM_EXAMPLES[name][split]
  if images.dtype != np.uint8 or labels.dtype != np.uint8:
    raise UserError(f"{where}: dtypes {images.dtype}/{labels.dtype}, expected "
                    "uint8/uint8; re-download it")
  if images.shape != (n,) + registry.IMAGE_SHAPE or labels.shape != (n,):
    raise UserError(f"{where}: shapes {images.shape}/{labels.shape}, expected "
                    f"{(n,) + registry.IMAGE_SHAPE}/{(n,)} for {name} {split}; "
                    "re-download it")


def check_split(info: registry.DatasetInfo, split: str, images: np.ndarray,
                labels: np.ndarray, where: str, fix: str, ordered: bool = True) -> None:
  """Shapes, dtype, label range and content fingerprint of one decoded split.

  ``ordered=False`` (TFDS order we could not undo) checks the order-independent
  fingerprint instead and warns that the order differs from the files'.
  """
  check_shapes(info.name, split, images, labels, where)
  if labels.max() >= info.num_classes:
    raise UserError(f"{where}: label {labels.max()} outside 0..{info.num_classes - 1}; "
                    f"{fix}")
  expected = FINGERPRINTS.get((info.name, split))
  if expected is None:
    return
  if ordered:
    actual, want = fingerprint(images, labels), expected[0]
  else:
    actual, want = multiset_fingerprint(images, labels), expected[1]
  if actual != want:
    raise UserError(f"{where} does not hold the published data: content fingerprint "
                    f"{actual}, expected {want}; {fix}")
  if not ordered:
    warnings.warn(
        f"{where}: content verified, but TFDS no longer stores examples in the order "
        "this module knows how to undo; returning TFDS order, so validation carving "
        "and `limit` pick different examples than source='files'", stacklevel=3)
