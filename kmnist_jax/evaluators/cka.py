"""CKA evaluator: linear CKA between the layers of the models being evaluated (and a
random initialisation of the same architecture), on the same images.

  config.evals.cka = dict(
      type="cka",
      dataset="",          # images of this dataset (default: the first checkpoint's)
      examples=1000,       # first N test images
      debiased=False,      # the unbiased HSIC estimator (kmnist_jax/transfer/cka.py)
      random_init=True,    # add a random initialisation of the first model's config
  )

Unlike the other evaluators this one compares checkpoints with each other, so
:func:`run_many` takes all of them (``studies.evaluate`` calls it once with every
workdir and stores the one record under each run): the record holds every pair's
layer x layer matrix. :func:`run` (one checkpoint) compares it with its random
initialisation. Activations come from :func:`kmnist_jax.inference.predict`
(``output='activations'``); CKA from :mod:`kmnist_jax.transfer.cka`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax import inference, io, metrics
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.evaluators.common import load_split
from kmnist_jax.transfer import cka as similarity

DEFAULTS = {"dataset": "", "examples": 1000, "debiased": False, "random_init": True,
            "batch_size": 500}
RANDOM = "random init"


def check_config(**cfg) -> dict:
  bad = sorted(set(cfg) - set(DEFAULTS))
  if bad:
    raise unknown("cka evaluator setting", bad[0], DEFAULTS)
  c = {**DEFAULTS, **cfg}
  if c["dataset"] and c["dataset"] not in data_lib.DATASETS:
    raise unknown("dataset", c["dataset"], data_lib.DATASETS)
  for k, low in (("examples", 4), ("batch_size", 1)):
    v = c[k]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
      raise UserError(f"cka evaluator: {k}={v!r} must be an integer >= {low}")
    c[k] = int(v)
  c["debiased"], c["random_init"] = bool(c["debiased"]), bool(c["random_init"])
  return c


def _names(checkpoints) -> list[str]:
  base = [os.path.basename(os.path.normpath(str(getattr(c, "workdir", None) or
                                                 c.config.model))) for c in checkpoints]
  return [b if base.count(b) == 1 else f"{b}-{i}" for i, b in enumerate(base)]


def _random_init(ckpt):
  from kmnist_jax import train
  return train.init_model(ckpt.config, int(ckpt.model.head.out_features))


def run_many(checkpoints: Sequence, *, data_dir=None, **cfg) -> dict:
  """CKA between every pair of `checkpoints` (and the random init of the first): one
  record {'dataset', 'examples', 'models', 'layers', 'pairs': [{'a', 'b', 'matrix'}]}."""
  c = check_config(**cfg)
  if not checkpoints:
    raise UserError("cka: no checkpoints to compare")
  first = checkpoints[0]
  ds = c["dataset"] or first.config.dataset
  images, _ = load_split(ds, "test", cfg=first.config if not c["dataset"] else None,
                         data_dir=data_dir, limit=c["examples"])
  acts = {}
  for name, ckpt in zip(_names(checkpoints), checkpoints):
    acts[name] = inference.predict(ckpt, images, output="activations",
                                   batch_size=c["batch_size"])
  if c["random_init"]:
    acts[RANDOM] = inference.predict(_random_init(first), images, output="activations",
                                     batch_size=c["batch_size"])
  names = list(acts)
  pairs = [{"a": a, "b": b, "matrix": similarity.cka_matrix(acts[a], acts[b],
                                                            debiased=c["debiased"])}
           for i, a in enumerate(names) for b in names[i + 1:]]
  return io.jsonable({
      "dataset": ds, "examples": int(len(images)), "debiased": c["debiased"],
      "models": names, "layers": {n: list(a) for n, a in acts.items()},
      "workdirs": [getattr(k, "workdir", None) for k in checkpoints],
      "steps": [int(k.step) for k in checkpoints], "pairs": pairs})


def run(restored, *, data_dir=None, **cfg) -> dict:
  """One checkpoint against its random initialisation (``random_init`` forced on)."""
  return run_many([restored], data_dir=data_dir, **{**cfg, "random_init": True})


def summarize(records: Sequence[dict]) -> dict:
  """Mean and std (ddof=1) of each pair's matrix over records with the same pairs
  (e.g. seeds of one model, each against its random init)."""
  if not records:
    raise UserError("cka.summarize: no records")
  r0 = records[0]
  def shapes(r):
    return [(len(r["layers"][p["a"]]), len(r["layers"][p["b"]])) for p in r["pairs"]]

  for r in records[1:]:
    if shapes(r) != shapes(r0):
      raise UserError("cka records compare different layers; summarize one setting at "
                      "a time")
  pairs = []
  for j, p in enumerate(r0["pairs"]):
    mean, std = metrics.mean_std([np.asarray(r["pairs"][j]["matrix"], np.float64)
                                  for r in records])
    pairs.append({"a": p["a"], "b": p["b"], "matrix": mean, "std": std})
  return io.jsonable({**{k: r0[k] for k in ("dataset", "examples", "debiased", "models",
                                            "layers")},
                      "runs": len(records), "pairs": pairs})
