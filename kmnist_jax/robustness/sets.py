"""Corrupted test sets (MNIST-C, KMNIST-C, Fashion-MNIST-C) on disk, verified.

Why files: a robustness evaluation must see exactly the same corrupted bytes every
time, on any machine, and other tools (``tfds.load``, PyTorch) must be able to read
them. :func:`build` applies :mod:`kmnist_jax.robustness.corruptions` to one split of a
dataset and writes::

  <out_dir>/manifest.json                        what, from what, with which seed, sums
  <out_dir>/<corruption>/severity_<s>.npz        images uint8 [N, 28, 28], labels [N]

The manifest records the dataset, split, seed, limit, the SHA-256 fingerprint of the
clean source arrays, the corruption parameters of each severity, and per file its
corruption, severity, example count and SHA-256. :func:`load` checks that sum before
parsing and reads with ``np.load(allow_pickle=False)`` (nothing is unpickled).

Never half-written: a build goes into a temporary folder beside ``out_dir``
(``.<name>.tmp-<pid>``) and is renamed into place only once every file and the
manifest are written (an interrupted build deletes it; one killed outright leaves it,
and the next build deletes it). Re-running a build whose manifest already matches (same
dataset, split, seed, limit, source fingerprint) and holds every requested
(corruption, severity) is a no-op after re-checking the sums. Adding corruptions or
severities to such a build makes a new temporary folder holding the old files
(hard links when possible) plus the new ones, then swaps it in: the old build stays
whole until the rename. A build made with different settings is refused, naming the
differing fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Iterable, Sequence

import numpy as np

from kmnist_jax import config as config_lib
from kmnist_jax import data, io
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.robustness import corruptions

MANIFEST = "manifest.json"
FORMAT = 1
SPLITS = ("train", "test")
# The manifest fields that must match for a build to be reused or extended.
_IDENTITY_FIELDS = ("dataset", "split", "seed", "limit", "source_sha256",
                    "corruptions_version")


def file_name(name: str, severity: int) -> str:
  """Path of one (corruption, severity) file, relative to the build folder."""
  return f"{name}/severity_{severity}.npz"


def sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def source_sha256(images: np.ndarray, labels: np.ndarray) -> str:
  """SHA-256 of the clean arrays (shape, dtype and bytes of both)."""
  h = hashlib.sha256()
  for a in (images, labels):
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def parse_corruptions(spec, *, allow_identity: bool = False) -> tuple[str, ...]:
  """Corruption names from 'all', 'fog,rotate' or a sequence, checked: one-line errors
  naming the valid choices. 'identity' (a copy: the clean images) only with
  `allow_identity` (an evaluator's sanity column; never built into a set)."""
  if isinstance(spec, str):
    spec = corruptions.NAMES if spec.strip() == "all" else [
        s.strip() for s in spec.split(",") if s.strip()]
  names = tuple(spec)
  valid = "all, or a comma-separated list of " + ", ".join(corruptions.NAMES)
  if not names:
    raise UserError(f"no corruptions given (--corruptions is empty); valid choices: "
                    f"{valid}")
  for n in names:
    if n == corruptions.IDENTITY and not allow_identity:
      raise UserError("--corruptions: 'identity' is the clean column (always reported); "
                      f"valid choices: {valid}")
    if n not in corruptions.NAMES and n != corruptions.IDENTITY:
      raise unknown("corruption", n, corruptions.NAMES)
  if len(set(names)) != len(names):
    raise UserError(f"--corruptions={','.join(names)} names one twice")
  return names


def parse_severities(spec) -> tuple[int, ...]:
  """Sorted severities from '1,3,5' or a sequence, checked (one-line errors)."""
  valid = ", ".join(map(str, corruptions.SEVERITIES))
  if isinstance(spec, str):
    spec = config_lib.number_list(
        spec, int, f"--severities={spec!r} must be comma-separated integers; valid "
        f"choices: {valid}")
  sev = tuple(spec)
  if not sev:
    raise UserError(f"no severities given (--severities is empty); valid choices: "
                    f"{valid}")
  for s in sev:
    corruptions.check_severity(s)
  sev = tuple(int(s) for s in sev)
  if len(set(sev)) != len(sev):
    raise UserError(f"--severities={','.join(map(str, sev))} names one twice")
  return tuple(sorted(sev))


def read_manifest(out_dir: str) -> dict:
  """The manifest of a build; one-line UserError when missing or unreadable."""
  path = os.path.join(out_dir, MANIFEST)
  if not os.path.isfile(path):
    raise UserError(f"no corrupted-dataset build in {out_dir} ({MANIFEST} missing); "
                    "make one with experiments/make_corrupted.py --out=" + out_dir)
  try:
    with open(path) as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{path} is not a readable manifest ({type(e).__name__}: {e}); "
                    "delete the folder and rebuild") from None
  missing = [k for k in ("format", "files") + _IDENTITY_FIELDS if k not in manifest]
  if missing or not isinstance(manifest.get("files"), dict):
    raise UserError(f"{path} lacks the fields {', '.join(missing) or 'files'}; delete "
                    "the folder and rebuild")
  if manifest["format"] != FORMAT:
    raise UserError(f"{path} has format {manifest['format']!r}, this code reads "
                    f"format {FORMAT}; rebuild it")
  return manifest


def _read_npz(path: str, expect_sha: str | None, what: str):
  if not os.path.isfile(path):
    raise UserError(f"{what}: file {path} is missing; rebuild the corrupted dataset")
  if expect_sha is not None:
    got = sha256_file(path)
    if got != expect_sha:
      raise UserError(f"{what}: {path} has SHA-256 {got}, the manifest says {expect_sha} "
                      "(corrupt or replaced file); rebuild the corrupted dataset")
  try:
    with np.load(path, allow_pickle=False) as z:
      images, labels = z["images"], z["labels"]
  except Exception as e:  # zipfile / KeyError / ValueError: one line
    raise UserError(f"{what}: {path} is not a readable .npz with images and labels "
                    f"({type(e).__name__}: {e})") from None
  if (images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28)
      or labels.dtype != np.uint8 or labels.shape != images.shape[:1]):
    raise UserError(f"{what}: {path} holds images {images.dtype}{images.shape} and "
                    f"labels {labels.dtype}{labels.shape}; expected uint8 [N,28,28] and "
                    "uint8 [N]")
  return images, labels


def load(out_dir: str, name: str, severity: int) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N,28,28], labels uint8 [N]) of one corruption at one severity,
  after checking the file's SHA-256 against the manifest."""
  corruptions.check(name, severity)
  manifest = read_manifest(out_dir)
  rel = file_name(name, severity)
  entry = manifest["files"].get(rel)
  if entry is None:
    have = sorted(manifest["files"])
    more = ", ..." if len(have) > 6 else ""
    raise UserError(f"the build in {out_dir} has no {name} at severity {severity}; it "
                    f"has {len(have)} files ({', '.join(have[:6])}{more}); "
                    "add it with experiments/make_corrupted.py --corruptions=" + name)
  return _read_npz(os.path.join(out_dir, rel), entry["sha256"],
                   f"{manifest['dataset']} {name} severity {severity}")


def _verify_files(out_dir: str, manifest: dict, rels: Iterable[str]) -> None:
  for rel in rels:
    path = os.path.join(out_dir, rel)
    got = sha256_file(path) if os.path.isfile(path) else "missing"
    if got != manifest["files"][rel]["sha256"]:
      raise UserError(f"{path} does not match its manifest (SHA-256 {got}); delete "
                      f"{out_dir} and rebuild")


def _write_npz(path: str, images: np.ndarray, labels: np.ndarray) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    np.savez_compressed(f, images=images, labels=labels)
  return sha256_file(path)


def _link_or_copy(src: str, dst: str) -> None:
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  try:
    os.link(src, dst)
  except OSError:
    shutil.copy2(src, dst)


def _aside(out_dir: str, kind: str, pid: int | None = None) -> str:
  parent, base = os.path.split(out_dir)
  return os.path.join(parent, f".{base}.{kind}-{os.getpid() if pid is None else pid}")


def build(dataset: str, out_dir: str, *, names: Sequence[str] | str = corruptions.NAMES,
          severities: Sequence[int] | str = corruptions.SEVERITIES, seed: int = 0,
          split: str = "test", data_dir: str | None = None, limit: int | None = None,
          progress: bool = True) -> dict:
  """Writes the corrupted `split` of `dataset` to `out_dir` (see the module
  docstring) and returns the manifest. `limit` keeps the first N examples."""
  data.get_info(dataset)  # UserError for an unknown dataset
  if split not in SPLITS:
    raise unknown("split", split, SPLITS)
  names, severities = parse_corruptions(names), parse_severities(severities)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise UserError(f"seed must be a non-negative int, got {seed!r}")
  if limit is not None and (isinstance(limit, bool)
                            or not isinstance(limit, (int, np.integer)) or limit < 1):
    raise UserError(f"limit must be a positive int or None, got {limit!r}")
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  if os.path.isfile(out_dir):
    raise UserError(f"--out {out_dir} is a file; give a folder (it is created)")

  io.recover_dir(out_dir)
  ds = data.load(dataset, data_dir=data_dir, limit={split: int(limit)} if limit else None)
  images, labels = ds.splits[split].images, ds.splits[split].labels
  ident = {"dataset": dataset, "split": split, "seed": int(seed),
           "limit": int(limit) if limit else None,
           "source_sha256": source_sha256(images, labels),
           "corruptions_version": corruptions.VERSION}
  wanted = [(n, s) for n in names for s in severities]

  old = None
  if os.path.exists(out_dir) and os.listdir(out_dir):
    old = read_manifest(out_dir)  # a non-empty folder must be a build
    differ = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in ident.items() if old.get(k) != v]
    if differ:
      raise UserError(f"{out_dir} holds a build with other settings "
                      f"({'; '.join(differ)}); "
                      "use another --out or delete it")
    for rel, e in old["files"].items():
      if e.get("params") != corruptions.params(e["corruption"], e["severity"]):
        now = corruptions.params(e["corruption"], e["severity"])
        raise UserError(f"{out_dir}: {rel} was made with parameters {e.get('params')}, "
                        f"the code now has {now}; "
                        "use another --out or delete it")
    todo = [(n, s) for n, s in wanted if file_name(n, s) not in old["files"]]
    if not todo:
      _verify_files(out_dir, old, [file_name(n, s) for n, s in wanted])
      return old
    _verify_files(out_dir, old, old["files"])
  else:
    todo = wanted

  os.makedirs(os.path.dirname(out_dir), exist_ok=True)
  tmp = _aside(out_dir, "tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    files = dict(old["files"]) if old else {}
    for rel in files:
      _link_or_copy(os.path.join(out_dir, rel), os.path.join(tmp, rel))
    bar = None
    if progress:
      from tqdm.auto import tqdm
      bar = tqdm(total=len(todo), desc=f"{dataset}-C {split}", unit="file")
    t0 = time.perf_counter()
    for n, s in todo:
      if bar is not None:
        bar.set_postfix_str(f"{n} {s}")
      t1 = time.perf_counter()
      out = corruptions.apply(n, images, s, int(seed))
      seconds = time.perf_counter() - t1
      rel = file_name(n, s)
      files[rel] = {"corruption": n, "severity": s, "count": int(len(out)),
                    "mean_abs_diff": round(float(np.abs(out.astype(np.float32) -
                                                        images).mean() / 255.0), 6),
                    "params": corruptions.params(n, s), "seconds": round(seconds, 2),
                    "sha256": _write_npz(os.path.join(tmp, rel), out, labels)}
      if bar is not None:
        bar.update(1)
    if bar is not None:
      bar.close()
    manifest = {"format": FORMAT, **ident, "count": int(len(labels)),
                "num_classes": data.get_info(dataset).num_classes,
                "class_names": list(data.get_info(dataset).class_names),
                "corruptions": sorted({v["corruption"] for v in files.values()},
                                      key=corruptions.NAMES.index),
                "severities": sorted({v["severity"] for v in files.values()}),
                "build_seconds": round(time.perf_counter() - t0 +
                                       (old or {}).get("build_seconds", 0.0), 1),
                "files": dict(sorted(files.items()))}
    with open(os.path.join(tmp, MANIFEST), "w") as f:
      json.dump(manifest, f, indent=1)
    io.swap_in(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return manifest


# ---- Picture --------------------------------------------------------------------------

def example_indices(labels: np.ndarray, k: int) -> list[int]:
  """The first example of each of the first `k` classes present (distinct classes)."""
  out = []
  for c in np.unique(labels):
    out.append(int(np.flatnonzero(labels == c)[0]))
    if len(out) == k:
      break
  return out


def grid(out_dir: str, path: str, *, examples: int = 3, title: str = "",
         data_dir: str | None = None) -> str:
  """PNG of every corruption (rows) at every severity (column blocks) on the same
  `examples` images of a build, the clean images first; written atomically."""
  from kmnist_jax import plots
  manifest = read_manifest(out_dir)
  names, sevs = manifest["corruptions"], manifest["severities"]
  clean = data.load(manifest["dataset"], data_dir=data_dir,
                    limit={manifest["split"]: manifest["limit"]}
                    if manifest["limit"] else None).splits[manifest["split"]]
  if source_sha256(clean.images, clean.labels) != manifest["source_sha256"]:
    raise UserError(f"the clean {manifest['dataset']} {manifest['split']} data no longer "
                    f"match the build in {out_dir}; rebuild it")
  idx = example_indices(clean.labels, examples)
  # images, their size, the space between them, between blocks
  k, px, sep, gap = len(idx), 28, 2, 10
  width = k * (px + sep) - sep
  block = width + gap
  mosaic = np.ones(((len(names) + 1) * (px + 4), len(sevs) * block - gap))

  def put(r, b, imgs):
    for j, img in enumerate(imgs):
      y, x = r * (px + 4), b * block + j * (px + sep)
      mosaic[y:y + px, x:x + px] = img / 255.0  # raw values: ink white on black

  put(0, len(sevs) // 2, clean.images[idx].astype(np.float64))
  for r, n in enumerate(names, start=1):
    for b, s in enumerate(sevs):
      if file_name(n, s) in manifest["files"]:
        put(r, b, load(out_dir, n, s)[0][idx].astype(np.float64))
  title = title or (f"{manifest['dataset']}-C, {manifest['split']} split, seed "
                    f"{manifest['seed']}: severity 3 is MNIST-C's setting")
  return plots.image_mosaic(
      mosaic, path, title=title,
      xticks=([b * block + width / 2 for b in range(len(sevs))],
              [f"severity {s}" for s in sevs]),
      yticks=([r * (px + 4) + px / 2 for r in range(len(names) + 1)],
              ["clean"] + list(names)))


# ---- A verified suite in memory -------------------------------------------------------

def default_cache_dir() -> str:
  """Where evaluators build corrupted sets when given no folder:
  ``$KMNIST_JAX_CACHE_DIR/corrupted``, else ``~/.cache/kmnist_jax/corrupted``."""
  root = os.environ.get("KMNIST_JAX_CACHE_DIR") or "~/.cache/kmnist_jax"
  return os.path.join(os.path.expanduser(root), "corrupted")


def cache_folder(root: str, dataset: str, seed: int, limit: int | None) -> str:
  """The build folder of (dataset, seed, limit) inside a cache root."""
  return os.path.join(root, f"{dataset}-test-seed{seed}" + (f"-limit{limit}" if limit
                                                             else ""))


class Suite:
  """The first `limit` clean test images of a dataset and their corrupted versions,
  verified: from a prebuilt folder (`prebuilt`, e.g. a full build) or built once into
  ``cache_folder(cache_dir, ...)`` under a lock (side-by-side runs build it once).
  ``get(name, severity)`` returns uint8 [n, 28, 28]; 'identity' is the clean images."""

  def __init__(self, dataset: str, *, names: Sequence[str], severities: Sequence[int],
               limit: int = 0, seed: int = 0, data_dir: str | None = None,
               prebuilt: str | None = None, cache_dir: str | None = None,
               progress: bool = False):
    from kmnist_jax import lock
    self.dataset = dataset
    real = [n for n in names if n != corruptions.IDENTITY]
    if prebuilt:
      folder = os.path.abspath(prebuilt)
      manifest = read_manifest(folder)
      if manifest["dataset"] != dataset:
        raise UserError(f"--corrupted_dir {folder} holds {manifest['dataset']} sets, "
                        f"not {dataset}; give DATASET=DIR for each dataset")
      missing = [f"{n} {v}" for n in real for v in severities
                 if file_name(n, v) not in manifest["files"]]
      if missing:
        more = ", ..." if len(missing) > 4 else ""
        raise UserError(f"--corrupted_dir {folder} lacks {len(missing)} of the requested "
                        f"sets ({', '.join(missing[:4])}{more}); add them with "
                        "experiments/make_corrupted.py or drop --corrupted_dir to build "
                        "them here")
    else:
      root = os.path.abspath(cache_dir or default_cache_dir())
      folder = cache_folder(root, dataset, seed, limit or None)
      os.makedirs(root, exist_ok=True)
      with lock.WorkdirLock(root, wait_s=3600):
        manifest = build(dataset, folder, names=real, severities=severities,
                         seed=seed, split="test", data_dir=data_dir,
                         limit=limit or None, progress=progress) if real else None
    self.folder, self.manifest = folder, manifest
    count = int(manifest["count"]) if manifest else None
    n = min(count, limit) if (count and limit) else (limit or count or 0)
    ds = data.load(dataset, data_dir=data_dir, limit={"test": n} if n else None)
    self.images, labels = ds.splits["test"].images, ds.splits["test"].labels
    self.labels = labels.astype(np.int64)
    self.n = len(self.labels)
    if manifest and self.n == count and source_sha256(self.images, labels) != \
        manifest["source_sha256"]:
      raise UserError(f"the corrupted sets in {folder} were built from other {dataset} "
                      "test images (source SHA-256 differs); rebuild them")

  def get(self, name: str, severity: int) -> np.ndarray:
    if name == corruptions.IDENTITY:
      return corruptions.apply(name, self.images, severity, 0)
    images, labels = load(self.folder, name, severity)
    if len(images) < self.n or not np.array_equal(labels[:self.n], self.labels):
      raise UserError(f"{self.folder}: {name} severity {severity} does not hold the "
                      f"first {self.n} {self.dataset} test examples; rebuild it")
    return images[:self.n]


# ---- What experiments/make_corrupted.py runs ------------------------------------------

def make(*, dataset: str, out: str, names="all", severities="1,2,3,4,5", seed: int = 0,
         split: str = "test", limit: int = 0, data_dir: str = "", tfds: bool = False,
         tfds_dir: str = "", grid_path: str = "", progress: bool = True,
         log=print) -> dict:
  """:func:`build`, then optionally the TFDS configs at the MNIST-C setting of every
  corruption built and a PNG grid; returns the manifest."""
  if dataset not in data.DATASETS:
    raise unknown("dataset", dataset, data.DATASETS)
  if not out:
    raise UserError("--out is empty; give the folder to write the corrupted set to")
  if limit < 0:
    raise UserError(f"--limit must be >= 0 (0: the whole split), got {limit}")
  if tfds:  # before the (long) build: fail fast on a dataset without a builder
    from kmnist_jax.robustness import tfds_builders
    if dataset not in tfds_builders.BUILDERS:
      raise UserError(f"--tfds: no TFDS builder for {dataset!r}; valid choices: "
                      f"{', '.join(sorted(tfds_builders.BUILDERS))}")
  t0 = time.perf_counter()
  manifest = build(dataset, out, names=names, severities=severities, seed=seed,
                   split=split, data_dir=data_dir or None, limit=limit or None,
                   progress=progress)
  size = sum(os.path.getsize(os.path.join(out, f)) for f in manifest["files"])
  log(f"{dataset}-C {split}: {len(manifest['files'])} files, {manifest['count']} images "
      f"each, {size / 1e6:.0f} MB in {out} ({time.perf_counter() - t0:.0f} s; "
      f"seed {seed})")
  if tfds:
    built = [n for n in manifest["corruptions"] if file_name(
        n, corruptions.MNIST_C_SEVERITY[n]) in manifest["files"]]
    done = tfds_builders.prepare(dataset, out, built, tfds_dir=tfds_dir or None,
                                 progress=progress)
    example = done[0] if done else tfds_builders.BUILDERS[dataset]
    log(f"TFDS: prepared {len(done)} configs in {data.default_tfds_dir(tfds_dir or None)}"
        f" (e.g. tfds.load('{example}'))")
  if grid_path:
    grid(out, grid_path, data_dir=data_dir or None)
    log(f"grid: {grid_path}")
  return manifest
