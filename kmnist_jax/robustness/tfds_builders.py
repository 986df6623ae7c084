"""TFDS builders for the corrupted test sets, in the style of tfds' ``mnist_corrupted``.

Why: other code (and other people) load datasets with ``tfds.load``; these builders
expose what :func:`kmnist_jax.robustness.sets.build` wrote, offline, with the manifest's
SHA-256 checked on every file read.

Builders (import this module to register them)::

  kmnist_corrupted          KMNIST-C
  mnist_corrupted_5sev      MNIST-C at 5 severities (tfds' own ``mnist_corrupted`` is
                            the published one-severity set, downloaded from zenodo)
  fashion_mnist_corrupted   Fashion-MNIST-C

Configs, for each of the 20 corruptions in
:data:`kmnist_jax.robustness.corruptions.NAMES`: ``<corruption>`` is the MNIST-C setting
(severity :data:`~kmnist_jax.robustness.corruptions.MNIST_C_SEVERITY`, 3 for the 15
MNIST-C ones) and
``<corruption>_<s>`` is severity s = 1..5 (so ``shot_noise`` and ``shot_noise_3`` hold
the same images). The one split is the build's (``test``). Features: ``image``
uint8 (28, 28, 1), ``label`` ClassLabel with the dataset's class names, ``index``
the example's position in the build (TFDS stores examples in a hashed order:
sort by ``index`` to get the publisher's order back).

Where the .npz come from (no download): the first of ``$KMNIST_JAX_CORRUPTED_DIR``,
``$KMNIST_JAX_CORRUPTED_DIR/<dataset>``, the TFDS manual dir (``DownloadConfig(
manual_dir=...)``, default ``<tfds data_dir>/downloads/manual``) and
``<manual dir>/<dataset>`` that holds a build of the right dataset. Usage::

  python experiments/make_corrupted.py --dataset=kmnist --out=corrupted/kmnist
  export KMNIST_JAX_CORRUPTED_DIR=corrupted/kmnist
  python -c "import kmnist_jax.robustness.tfds_builders, tensorflow_datasets as tfds; \\
             print(tfds.load('kmnist_corrupted/shot_noise', split='test'))"

A config is prepared (PNG-encoded into TFRecords under the TFDS data dir) on its
first ``tfds.load``; ``make_corrupted.py --tfds`` prepares the ``<corruption>``
configs of a build right away.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from kmnist_jax import data
from kmnist_jax.errors import UserError
from kmnist_jax.robustness import corruptions
from kmnist_jax.robustness import sets as corrupted

DIR_ENV = "KMNIST_JAX_CORRUPTED_DIR"
VERSION = "1.0.0"

_CITATION = """
@article{mu2019mnist,
  title={MNIST-C: A Robustness Benchmark for Computer Vision},
  author={Mu, Norman and Gilmer, Justin},
  journal={arXiv preprint arXiv:1906.02337},
  year={2019}
}"""


class CorruptedConfig(tfds.core.BuilderConfig):
  """One (corruption, severity)."""

  def __init__(self, *, corruption: str, severity: int, **kwargs):
    super().__init__(**kwargs)
    self.corruption = corruption
    self.severity = severity


def config_name(name: str, severity: int | None = None) -> str:
  """``shot_noise`` (the MNIST-C severity) or ``shot_noise_2``."""
  return name if severity is None else f"{name}_{severity}"


def _configs() -> list[CorruptedConfig]:
  out = []
  for name in corruptions.NAMES:
    for sev in (None,) + corruptions.SEVERITIES:
      s = corruptions.MNIST_C_SEVERITY[name] if sev is None else sev
      tag = " (the MNIST-C setting)" if s == corruptions.MNIST_C_SEVERITY[name] else ""
      out.append(CorruptedConfig(
          name=config_name(name, sev), version=tfds.core.Version(VERSION),
          description=(f"{name} at severity {s}{tag}: "
                       f"{corruptions.SPECS[name].definition}; "
                       f"{corruptions.params(name, s)}"),
          corruption=name, severity=s))
  return out


def find_build(dataset: str, manual_dir: str | None) -> str:
  """The folder holding a build of `dataset` (see the module docstring)."""
  tried = []
  for root in (os.environ.get(DIR_ENV), manual_dir):
    if not root:
      continue
    for cand in (root, os.path.join(root, dataset)):
      tried.append(cand)
      if os.path.isfile(os.path.join(cand, corrupted.MANIFEST)):
        if corrupted.read_manifest(cand)["dataset"] == dataset:
          return cand
  raise UserError(
      f"no corrupted {dataset} build found (looked in {', '.join(tried) or 'nothing'}); "
      f"build one with `python experiments/make_corrupted.py --dataset={dataset} "
      f"--out=DIR` and set {DIR_ENV}=DIR (or pass it as the TFDS manual_dir)")


class _CorruptedBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared by the three builders; `DATASET` names the clean dataset."""

  DATASET = ""
  BUILDER_CONFIGS = _configs()
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Build the corrupted set with experiments/make_corrupted.py --out=DIR and set "
      f"{DIR_ENV}=DIR, or pass DIR as the manual_dir.")

  def _info(self) -> tfds.core.DatasetInfo:
    info = data.get_info(self.DATASET)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(f"{self.DATASET} test images under 20 corruptions (the 15 of "
                     "MNIST-C plus gaussian_noise, contrast, pixelate, elastic, "
                     "inverse) at 5 severities, made by kmnist_jax.robustness.sets."
                     "build."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(names=list(info.class_names)),
            "index": tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/google-research/mnist-c",
        citation=_CITATION + "\n" + info.citation,
    )

  def _split_generators(self, dl_manager):
    manual = getattr(dl_manager, "_manual_dir", None)
    root = find_build(self.DATASET, os.fspath(manual) if manual else None)
    split = corrupted.read_manifest(root)["split"]
    return {split: self._generate_examples(root)}

  def _generate_examples(self, root: str):
    cfg = self.builder_config
    images, labels = corrupted.load(root, cfg.corruption, cfg.severity)
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image[:, :, None], "label": int(label), "index": i}


class KmnistCorrupted(_CorruptedBuilder):
  """KMNIST-C: the KMNIST test set under 20 corruptions x 5 severities."""
  name = "kmnist_corrupted"
  DATASET = "kmnist"


class MnistCorrupted5sev(_CorruptedBuilder):
  """MNIST-C at 5 severities, re-generated (tfds' mnist_corrupted is the published
  set)."""
  name = "mnist_corrupted_5sev"
  DATASET = "mnist"


class FashionMnistCorrupted(_CorruptedBuilder):
  """Fashion-MNIST-C: the Fashion-MNIST test set under the same corruptions."""
  name = "fashion_mnist_corrupted"
  DATASET = "fashion_mnist"


BUILDERS = {b.DATASET: b.name for b in (KmnistCorrupted, MnistCorrupted5sev,
                                        FashionMnistCorrupted)}


def prepare(dataset: str, build_dir: str, configs: list[str], tfds_dir: str | None = None,
            progress: bool = True) -> list[str]:
  """download_and_prepare the named configs of `dataset`'s builder from `build_dir`
  into `tfds_dir` (default $TFDS_DATA_DIR or ~/tensorflow_datasets); returns the
  `builder/config` names prepared."""
  if dataset not in BUILDERS:
    raise UserError(f"no TFDS corrupted builder for {dataset!r}; valid choices: "
                    f"{', '.join(sorted(BUILDERS))}")
  tfds_dir = data.default_tfds_dir(tfds_dir)
  done = []
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=len(configs), desc=f"tfds {BUILDERS[dataset]}", unit="config")
  for cfg in configs:
    b = tfds.builder(f"{BUILDERS[dataset]}/{cfg}", data_dir=tfds_dir)
    b.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.path.abspath(build_dir)))
    done.append(f"{BUILDERS[dataset]}/{cfg}")
    if bar is not None:
      bar.update(1)
  if bar is not None:
    bar.close()
  return done
