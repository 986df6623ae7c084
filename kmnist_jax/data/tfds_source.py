"""The ``tfds`` source: TensorFlow Datasets' builders, returned in the publisher's order.

The TFDS builder (mnist, kmnist, fashion_mnist; K49 has none) is built into
``tfds_dir`` (default: TFDS' own, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``;
never inside data_dir, which may be read-only), using ``<data_dir>/<name>`` as TFDS'
``manual_dir``: TFDS picks up the IDX .gz files there by name (and checks their
SHA-256 against its own table), so it builds offline. Without them it downloads; when
the download host cannot be reached we say so at once instead of waiting out TFDS'
retries (minutes). tensorflow-datasets is an optional extra, so it is imported only
when this source is used.

TFDS order. The TFDS writer stores examples sorted by ``md5(split_name +
str(index))`` of their generator index (tfds/core/hashing.py, shuffle.py), not in
file order. :func:`load` undoes that permutation so both sources return the same
arrays in the publisher's order (so validation carving and ``limit`` pick the same
examples), and the caller then checks the order-dependent fingerprint. Should a
future TFDS change its key hashing, the order-independent fingerprint (sorted
per-example SHA-256s) still verifies the content; the arrays are then returned in
TFDS order with a warning.

TFDS pitfall avoided here: TFDS names extracted downloads after the file name only
(``downloads/extracted/GZIP.t10k-images-idx3-ubyte.gz``), so building mnist after
kmnist (or vice versa) in one shared download dir silently reuses the other
dataset's images. We give each dataset its own download dir
(``<tfds_dir>/downloads/<name>``); a dataset built elsewhere that way fails the
fingerprint check.
"""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.parse

import numpy as np

from kmnist_jax.data import files, registry, verify
from kmnist_jax.errors import UserError


def default_tfds_dir(tfds_dir: str | None = None) -> str:
  """`tfds_dir` if given, else TFDS' default ($TFDS_DATA_DIR or ~/tensorflow_datasets)."""
  return os.path.expanduser(tfds_dir or os.environ.get("TFDS_DATA_DIR")
                            or "~/tensorflow_datasets")


def file_order(split: str, n: int) -> np.ndarray:
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
    return f"{u.hostname}:{port} cannot be reached ({type(e).__name__}: {files.one_line(e)})"
  return None


def load(info: registry.DatasetInfo, data_dir: str, tfds_dir: str | None):
  """{split: (images, labels, ordered)} from TFDS; ``ordered`` is False when the
  publisher's order could not be restored (the caller then checks the multiset
  fingerprint)."""
  hint = registry.DOWNLOAD_HINTS[info.name]
  if info.tfds_name is None:
    raise UserError(f"{info.name} has no TFDS builder; use source='files' with the files "
                    f"in {os.path.join(data_dir, info.name)} (from {hint})")
  try:
    import tensorflow_datasets as tfds  # optional extra, slow import: only here
  except ImportError as e:
    raise UserError(f"source='tfds' needs tensorflow-datasets ({e}); pip install "
                    "tensorflow-datasets, or use source='files'") from None
  tfds_dir = default_tfds_dir(tfds_dir)
  manual_dir = os.path.join(data_dir, info.name)
  have_manual = all(os.path.isfile(os.path.join(manual_dir, f))
                    for pair in files.IDX_FILES.values() for f in pair)
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
            f"{manual_dir} (from {hint}) or connect to the internet")
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
        f"{type(e).__name__}: {files.one_line(e)}; put the IDX .gz files in {manual_dir} "
        f"(from {hint}), give a writable tfds_dir, or connect "
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
    verify.check_shapes(info.name, split, images, labels, where=where)
    order = file_order(split, len(labels))
    restored_images = np.empty_like(images)
    restored_labels = np.empty_like(labels)
    restored_images[order] = images
    restored_labels[order] = labels
    expected = verify.FINGERPRINTS.get((info.name, split))
    if (expected is None
        or verify.fingerprint(restored_images, restored_labels) == expected[0]):
      result[split] = (restored_images, restored_labels, True)
    else:  # not the order we know how to undo (or not the data): load() decides
      result[split] = (images, labels, False)
  return result
