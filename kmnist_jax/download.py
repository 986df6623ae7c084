"""Downloads the publishers' dataset files into ``<data_dir>/<name>/``, MD5-verified.

:func:`fetch` brings the files a dataset's ``files`` source reads (see
:mod:`kmnist_jax.data`) from the publishers' URLs, trying the mirrors they list in
turn. Each file is streamed into a temporary file in the same folder while its MD5 is
computed; only a file with the published size and MD5 is renamed into place, so a
folder never holds a partial or wrong file, whatever happens (a dropped connection,
a wrong page, Ctrl-C). Standard library only (no TensorFlow); progress via tqdm.

Environment:
  ``KMNIST_JAX_DATA_URL``: a base URL used instead of the publishers' (for a local
  mirror, or the tests' loopback server): files are fetched from
  ``<base>/<dataset>/<file>``, the data folder's own layout.
  ``KMNIST_JAX_DOWNLOAD=0``: never download (missing files are an error).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request

from kmnist_jax import io
from kmnist_jax.errors import UserError

URL_ENV = "KMNIST_JAX_DATA_URL"
ENABLE_ENV = "KMNIST_JAX_DOWNLOAD"

# The publishers' URLs, in the order tried (each ends with '/'; the file name follows).
MIRRORS: dict[str, tuple[str, ...]] = {
    # Yann LeCun's page; the copies torchvision and TensorFlow download from.
    "mnist": ("https://yann.lecun.com/exdb/mnist/",
              "https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    # Zalando's README: the S3 site, and the files in the GitHub repository.
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/"
        "fashion/"),
    # CODH (github.com/rois-codh/kmnist, download_data.py).
    "kmnist": ("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
               "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"),
    "k49": ("https://codh.rois.ac.jp/kmnist/dataset/k49/",
            "http://codh.rois.ac.jp/kmnist/dataset/k49/"),
}

_CHUNK = 1 << 20
_TIMEOUT_S = 30


class DownloadError(UserError):
  """No URL gave the published file; nothing was kept."""


def enabled() -> bool:
  return os.environ.get(ENABLE_ENV, "1").strip().lower() not in ("0", "false", "no")


def urls(name: str, filename: str, base_url: str | None = None) -> list[str]:
  """Where `filename` of dataset `name` is fetched from, in order."""
  base = base_url or os.environ.get(URL_ENV)
  if base:
    return [f"{base.rstrip('/')}/{name}/{filename}"]
  return [m + filename for m in MIRRORS[name]]


def _progress_bar(total: int, desc: str, show: bool):
  if not show:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
              leave=False, dynamic_ncols=True, file=sys.stderr)


def _stream(url: str, tmp, md5: str, size: int, desc: str, show: bool) -> None:
  """Copies `url` into the open file `tmp`; raises ValueError/OSError on anything but
  exactly `size` bytes with MD5 `md5`."""
  h = hashlib.md5()
  n = 0
  req = urllib.request.Request(url, headers={"User-Agent": "kmnist-jax"})
  with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as r:
    length = r.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) != size:
      raise ValueError(f"the server offers {int(length)} bytes, expected {size}")
    bar = _progress_bar(size, desc, show)
    try:
      while chunk := r.read(_CHUNK):
        n += len(chunk)
        if n > size:
          raise ValueError(f"more than the expected {size} bytes")
        h.update(chunk)
        tmp.write(chunk)
        if bar is not None:
          bar.update(len(chunk))
    finally:
      if bar is not None:
        bar.close()
  if n != size:
    raise ValueError(f"got {n} bytes, expected {size} (truncated)")
  if h.hexdigest() != md5:
    raise ValueError(f"md5 {h.hexdigest()}, expected {md5}")


def _reason(e: BaseException) -> str:
  if isinstance(e, urllib.error.HTTPError):
    return f"HTTP {e.code} {e.reason}"
  if isinstance(e, urllib.error.URLError):
    return f"{type(e.reason).__name__}: {e.reason}"
  text = " ".join(str(e).split()) or type(e).__name__
  return text if isinstance(e, ValueError) else f"{type(e).__name__}: {text}"


def fetch_file(name: str, filename: str, folder: str, md5: str, size: int, *,
               base_url: str | None = None, progress: bool | None = None) -> str:
  """Downloads one file into `folder` (verified; see the module docstring); returns
  its path. DownloadError (one line, every URL and why it failed) if none gave it."""
  dest = os.path.join(folder, filename)
  show = sys.stderr.isatty() if progress is None else progress
  failures = []
  for url in urls(name, filename, base_url):
    try:
      with io.atomic_path(dest) as tmp_path, open(tmp_path, "wb") as tmp:
        _stream(url, tmp, md5, size, f"{name}/{filename}", show)  # verified, then kept
      return dest
    except (OSError, ValueError, EOFError, http.client.HTTPException) as e:
      failures.append(f"{url}: {_reason(e)}")
  raise DownloadError(
      f"could not download {name}/{filename} into {folder}; nothing was kept: "
      + "; ".join(failures)
      + f" (set ${URL_ENV} to a mirror, or put the file there yourself)")


def fetch(name: str, data_dir: str, files: dict[str, tuple[str, int]], *,
          base_url: str | None = None, progress: bool | None = None,
          log=None) -> list[str]:
  """Downloads the missing `files` ({filename: (md5, size)}) of dataset `name` into
  ``<data_dir>/<name>/``; returns the paths downloaded. Files already there are left
  alone (the loader verifies them)."""
  folder = os.path.join(data_dir, name)
  missing = {f: v for f, v in files.items()
             if not os.path.isfile(os.path.join(folder, f))}
  if not missing:
    return []
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise DownloadError(f"cannot create {folder} to download {name} into "
                        f"({e.strerror}); give a writable --config.data_dir or "
                        "$KMNIST_JAX_DATA_DIR") from None
  if not os.access(folder, os.W_OK):
    raise DownloadError(f"cannot download {name} into {folder}: not writable; give a "
                        "writable --config.data_dir or $KMNIST_JAX_DATA_DIR")
  total = sum(size for _, size in missing.values())
  where = base_url or os.environ.get(URL_ENV) or MIRRORS[name][0]
  (log or (lambda m: print(m, file=sys.stderr, flush=True)))(
      f"Downloading {name} ({len(missing)} files, {total / 1e6:.1f} MB) into {folder} "
      f"from {where} ...")
  return [fetch_file(name, f, folder, md5, size, base_url=base_url, progress=progress)
          for f, (md5, size) in missing.items()]
