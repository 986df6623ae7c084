"""Smoothing evaluator: randomized-smoothing certificates (Cohen et al. 2019) of a
checkpoint: certified accuracy against the L2 radius, average certified radius,
abstention rate, PREDICT's accuracy, per class, for each noise level sigma, on the
first `limit` test images.

  config.evals.smoothing = dict(
      type="smoothing",
      sigmas=(0.25,),                 # or "0.25,0.5,1.0": noise std, pixels in [0, 1]
      n0=100, n=100_000, alpha=0.001, # Cohen et al.'s CERTIFY settings
      radii=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0),   # the table's columns (L2)
      limit=100,                      # first N test images (0: all)
      seed=0, batch_size=1000,        # the noise's key; inputs per forward pass
  )

The procedures and the noise convention (added to pixels in [0, 1], not clipped) are
:mod:`kmnist_jax.robustness.smoothing`'s. **Cost:** ``n0 + n`` forward passes per
image and sigma: 100,100 with the paper's settings, so the default `limit` is small;
a smaller `n` (the preset: experiments/configs/evals/smoothing.py) is cheaper and
certifies smaller radii (the largest is ``sigma * Phi^-1(alpha^(1/n))``).

PREDICT is applied to CERTIFY's n estimation copies (its own test on the same draws:
each procedure keeps its guarantee; they are not independent of each other). The
record also holds the base classifier's accuracy on the noisy copies
(``noisy_accuracy``) and the accuracy of the plain majority vote over them
(``majority_accuracy``, the smoothed classifier without a test), and per image the
prediction (-1: abstained) and radius, so other radii can be read off later.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax import io, metrics
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.evaluators import common
from kmnist_jax.robustness import smoothing as sm

DEFAULTS = {"dataset": "", "sigmas": sm.DEFAULT_SIGMAS, "n0": sm.DEFAULT_N0,
            "n": sm.DEFAULT_N, "alpha": sm.DEFAULT_ALPHA, "radii": sm.DEFAULT_RADII,
            "limit": 100, "seed": 0, "batch_size": 1000, "progress": False}

SCALARS = ("average_certified_radius", "abstention_rate", "predict_accuracy",
           "predict_abstention_rate", "noisy_accuracy", "majority_accuracy")
PER_CLASS = ("certified_accuracy", "average_certified_radius", "abstention_rate",
             "predict_accuracy", "noisy_accuracy")


def check_config(**cfg) -> dict:
  """Settings with defaults filled in, every value checked before anything loads."""
  bad = sorted(set(cfg) - set(DEFAULTS))
  if bad:
    raise unknown("smoothing evaluator setting", bad[0], DEFAULTS)
  c = {**DEFAULTS, **cfg}
  try:
    c["sigmas"] = sm.check_sigmas(c["sigmas"])
    c["n0"], c["n"] = sm.check_samples(c["n0"], c["n"])
    c["alpha"] = sm.check_alpha(c["alpha"])
    c["radii"] = sm.check_radii(c["radii"])
  except UserError as e:
    raise UserError(f"smoothing evaluator: {e}") from None
  for k in ("limit", "seed", "batch_size"):
    v = c[k]
    low = 1 if k == "batch_size" else 0
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
      raise UserError(f"smoothing evaluator: {k}={v!r} must be a "
                      + ("positive integer" if k == "batch_size"
                         else "non-negative integer (limit 0: all)"))
  if c["dataset"] and c["dataset"] not in data_lib.DATASETS:
    raise unknown("dataset", c["dataset"], data_lib.DATASETS)
  return c


def run(restored, *, data_dir=None, **cfg) -> dict:
  """The record of one checkpoint: per sigma (list ``results``, in the order of
  ``sigmas``) certified accuracy [R] at ``radii``, the scalars of :data:`SCALARS`,
  per-class arrays (``per_class``: certified_accuracy [R][C], the others [C], count
  [C]) and per image ``prediction`` (-1: abstained) and ``radius`` (the images'
  ``labels`` beside them)."""
  c = check_config(**cfg)
  ds = c["dataset"] or restored.config.dataset
  info = common.check_dataset(restored, ds)
  split = data_lib.load(ds, data_dir=data_dir or None,
                        limit={"test": c["limit"]} if c["limit"] else None).splits["test"]
  labels = split.labels.astype(np.int64)
  x = sm.pixels(split.images)
  fn, params, num_classes = sm.model_logits(restored)
  key = jax.random.key(c["seed"])
  results = []
  for i, sigma in enumerate(c["sigmas"]):
    res = sm.certify(fn, params, x, sigma=sigma, key=jax.random.fold_in(key, i),
                     num_classes=num_classes, n0=c["n0"], n=c["n"], alpha=c["alpha"],
                     batch_size=c["batch_size"], progress=c["progress"],
                     desc=f"sigma {sigma:g}")
    predicted = sm.predict_counts(res["counts"], alpha=c["alpha"])
    results.append({"sigma": sigma,
                    **sm.summary(res, labels, radii=c["radii"],
                                 num_classes=info.num_classes, predicted=predicted),
                    "max_radius": sm.max_radius(sigma, c["n"], c["alpha"]),
                    "prediction": res["prediction"],
                    "radius": res["radius"]})
  rec = {"dataset": ds, "n_images": int(len(labels)), "sigmas": list(c["sigmas"]),
         "radii": list(c["radii"]), "n0": c["n0"], "n": c["n"], "alpha": c["alpha"],
         "seed": c["seed"], "step": int(restored.step), "model": restored.config.model,
         "workdir": getattr(restored, "workdir", None), "labels": labels,
         "results": results}
  return io.jsonable(rec)


# ---- Across seeds ----------------------------------------------------------------------

def _ms(values) -> dict:
  v = np.asarray([np.nan if x is None else x for x in values], np.float64)
  mean, std = metrics.mean_std(v)
  return {"mean": mean.tolist() if mean.ndim else float(mean),
          "std": std.tolist() if std.ndim else float(std)}


def curve(records: Sequence[dict], k: int) -> dict:
  """The exact certified-accuracy curve of sigma number `k`, mean over `records`:
  ``{'radii', 'accuracy'}`` at 0, at every certified radius and just past the largest
  certifiable one (the accuracy at r counts radii >= r, so it is constant on each
  interval (radii[i], radii[i+1]] at the value of its right end)."""
  res = [r["results"][k] for r in records]
  pts = {0.0, 1.01 * res[0]["max_radius"]}
  for x in res:
    pts.update(float(v) for v in x["radius"] if v > 0)
  grid = sorted(pts)
  acc = np.mean([sm.certified_accuracy(np.asarray(x["prediction"]), np.asarray(
      x["radius"]), np.asarray(r["labels"]), grid) for r, x in zip(records, res)], 0)
  return {"radii": grid, "accuracy": acc.tolist()}


def summarize(records: Sequence[dict]) -> dict:
  """Mean and std (ddof=1) across seeds of every number, per sigma; the per-seed
  certified accuracy and average certified radius kept; the certified-accuracy curve
  (``results[k]['curve']``, :func:`curve`) for the figure."""
  r0 = common.same_setting(records, ("dataset", "n_images", "sigmas", "radii", "n0",
                                     "n", "alpha"), "smoothing")
  out = {"runs": len(records), **{k: r0.get(k) for k in (
      "dataset", "n_images", "sigmas", "radii", "n0", "n", "alpha", "model", "workdir")},
         "results": []}
  for k, sigma in enumerate(r0["sigmas"]):
    rs = [r["results"][k] for r in records]
    s = {"sigma": sigma, "max_radius": rs[0]["max_radius"],
         "certified_accuracy": _ms([x["certified_accuracy"] for x in rs]),
         **{name: _ms([x.get(name) for x in rs]) for name in SCALARS},
         "per_class": {name: _ms([x["per_class"].get(name) for x in rs])
                       for name in PER_CLASS},
         "per_seed": {"certified_accuracy": [x["certified_accuracy"] for x in rs],
                      "average_certified_radius": [x["average_certified_radius"]
                                                   for x in rs]},
         "curve": curve(records, k)}
    out["results"].append(s)
  return io.jsonable(out)
