r"""Build corrupted test sets (MNIST-C, KMNIST-C, Fashion-MNIST-C) as verified .npz files.

  python experiments/make_corrupted.py --dataset=kmnist --out=corrupted/kmnist
      [--corruptions=all|shot_noise,rotate,...] [--severities=1,2,3,4,5] [--seed=0]
      [--split=test|train] [--limit=N] [--data_dir=DIR]
      [--tfds [--tfds_dir=DIR]] [--grid=results/corruptions_kmnist.png]

Writes ``<out>/<corruption>/severity_<s>.npz`` (images uint8 [N,28,28], labels uint8
[N]) and ``<out>/manifest.json`` (dataset, split, seed, SHA-256 of the clean source
arrays, each file's corruption / severity / parameters / count / SHA-256), built in a
temporary folder beside ``--out`` and renamed into place (kmnist_jax/corrupted.py).
Running it again on a complete build is a no-op; asking for more corruptions or
severities adds them (the old build stays whole until the new one is renamed in).

``--tfds`` then prepares the TFDS configs ``<builder>/<corruption>`` (the MNIST-C
setting) of every corruption built, into ``--tfds_dir`` (default ``$TFDS_DATA_DIR``
or ``~/tensorflow_datasets``); any other config (e.g. ``shot_noise_5``) is prepared by
its first ``tfds.load`` when ``KMNIST_JAX_CORRUPTED_DIR=<out>`` is set
(kmnist_jax/tfds_corrupted.py)::

  import kmnist_jax.robustness.tfds_builders, tensorflow_datasets as tfds
  ds = tfds.load('kmnist_corrupted/shot_noise', split='test')

``--grid=PATH`` draws every corruption at every severity on the same 3 test images.

Measured on the project's 2-core CPU while other jobs ran beside it (load average
6-9), all 20 corruptions x 5 severities of the 10,000 test images (100 files):

  python experiments/make_corrupted.py --dataset=kmnist --out=corrupted/kmnist \
      --grid=results/corruptions_kmnist.png
  -> 244 s build (4 min 4 s; 253 s with start-up and the grid), 329 MB, 0.9 GB peak RSS
  python experiments/make_corrupted.py --dataset=mnist --out=corrupted/mnist \
      --grid=results/corruptions_mnist.png
  -> 228 s build (238 s in all), 226 MB
  python experiments/make_corrupted.py --dataset=kmnist --out=corrupted/kmnist --tfds
  -> 272 s build (heavier load, 9-10) + 102 s to prepare the 20 TFDS configs

Fog is the slowest (79 s of the 272: a 256 x 256 plasma fractal per image), then
motion blur (28 s) and Canny edges (17 s); compressing and hashing the files takes
about 75 s; re-running a finished build takes seconds.
"""

from __future__ import annotations

import os
import sys
import time

import _bootstrap  # noqa: F401  (puts the repo root on sys.path)
from absl import app, flags, logging

from kmnist_jax import data
from kmnist_jax.robustness import sets as corrupted
from kmnist_jax.robustness import corruptions
from kmnist_jax.errors import UserError, unknown

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("dataset", "kmnist", f"One of {', '.join(data.DATASETS)}.")
  flags.DEFINE_string("out", None, "Output folder (created; replaced only whole).")
  flags.DEFINE_string("corruptions", "all",
                      f"all, or a comma-separated list of {', '.join(corruptions.NAMES)}.")
  flags.DEFINE_string("severities", "1,2,3,4,5", "Comma-separated severities in 1..5.")
  flags.DEFINE_integer("seed", 0, "Seed of every random draw.")
  flags.DEFINE_string("split", "test", "test or train.")
  flags.DEFINE_integer("limit", 0, "Keep the first N examples of the split (0: all).")
  flags.DEFINE_string("data_dir", "", "Datasets folder (default: $KMNIST_JAX_DATA_DIR, "
                      "else ~/kmnist_jax_data).")
  flags.DEFINE_bool("tfds", False, "Also prepare the TFDS <corruption> configs.")
  flags.DEFINE_string("tfds_dir", "", "TFDS data dir for --tfds (default: "
                      "$TFDS_DATA_DIR, else ~/tensorflow_datasets).")
  flags.DEFINE_string("grid", "", "Write a PNG grid of the corruptions here.")
  flags.DEFINE_bool("progress", True, "Show progress bars.")


def run(*, dataset: str, out: str, names="all", severities="1,2,3,4,5", seed: int = 0,
        split: str = "test", limit: int = 0, data_dir: str = "", tfds: bool = False,
        tfds_dir: str = "", grid: str = "", progress: bool = True, log=print) -> dict:
  if dataset not in data.DATASETS:
    raise unknown("dataset", dataset, data.DATASETS)
  if not out:
    raise UserError("--out is empty; give the folder to write the corrupted set to")
  if limit < 0:
    raise UserError(f"--limit must be >= 0 (0: the whole split), got {limit}")
  if tfds:  # before the (long) build: fail fast on a dataset without a builder
    from kmnist_jax.robustness import tfds_builders as tfds_corrupted
    if dataset not in tfds_corrupted.BUILDERS:
      raise UserError(f"--tfds: no TFDS builder for {dataset!r}; valid choices: "
                      f"{', '.join(sorted(tfds_corrupted.BUILDERS))}")
  t0 = time.perf_counter()
  manifest = corrupted.build(dataset, out, names=names, severities=severities, seed=seed,
                             split=split, data_dir=data_dir or None, limit=limit or None,
                             progress=progress)
  n_files = len(manifest["files"])
  size = sum(os.path.getsize(os.path.join(out, f)) for f in manifest["files"])
  log(f"{dataset}-C {split}: {n_files} files, {manifest['count']} images each, "
      f"{size / 1e6:.0f} MB in {out} ({time.perf_counter() - t0:.0f} s; seed {seed})")
  if tfds:
    built = [n for n in manifest["corruptions"]
             if corrupted.file_name(n, corruptions.MNIST_C_SEVERITY[n]) in manifest["files"]]
    done = tfds_corrupted.prepare(dataset, out, built, tfds_dir=tfds_dir or None,
                                  progress=progress)
    log(f"TFDS: prepared {len(done)} configs in {data.default_tfds_dir(tfds_dir or None)} "
        f"(e.g. tfds.load('{done[0] if done else tfds_corrupted.BUILDERS[dataset]}'))")
  if grid:
    corrupted.grid(out, grid, data_dir=data_dir or None)
    log(f"grid: {grid}")
  return manifest


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.ERROR)
  try:
    run(dataset=FLAGS.dataset, out=FLAGS.out, names=FLAGS.corruptions,
        severities=FLAGS.severities, seed=FLAGS.seed, split=FLAGS.split,
        limit=FLAGS.limit, data_dir=FLAGS.data_dir, tfds=FLAGS.tfds,
        tfds_dir=FLAGS.tfds_dir, grid=FLAGS.grid, progress=FLAGS.progress)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
