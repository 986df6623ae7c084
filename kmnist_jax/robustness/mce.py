"""Corruption robustness: predictions on corrupted sets, error tables, CE / mCE.

Why a module of its own: the arithmetic of the ImageNet-C metrics (Hendrycks &
Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations") is easy to get subtly wrong (which errors are summed, which are
averaged, what is subtracted), so it lives here as small pure functions, tested against
a hand-computed example, and the evaluator (kmnist_jax/evaluators/corruption.py) only
orchestrates. No plotting here; predictions come from kmnist_jax.inference.

Definitions (E = top-1 error rate in [0, 1]; f the model, b the baseline; c a
corruption, s = 1..5 its severities; E_clean the error on the uncorrupted test set):

  E_c^f            = mean_s E_{s,c}^f                        (error per corruption)
  mean corr. error = mean_c E_c^f                           (unnormalised)
  CE_c^f           = sum_s E_{s,c}^f / sum_s E_{s,c}^b       (corruption error)
  mCE^f            = mean_c CE_c^f
  relative CE_c^f  = sum_s (E_{s,c}^f - E_clean^f) / sum_s (E_{s,c}^b - E_clean^b)
  relative mCE^f   = mean_c relative CE_c^f

The baseline normalises each corruption's difficulty (AlexNet on ImageNet-C; here
multinomial logistic regression on the same dataset, which plays the same role: a
fixed, simple, reproducible model). mCE < 1 (100%) means fewer errors than the
baseline; relative mCE measures the *degradation* from clean to corrupted, so a model
can have a low mCE (accurate) yet a high relative mCE (brittle). A relative CE is
undefined (NaN) when the baseline's corrupted errors equal its clean error; NaN
entries are left out of the means and counted in the returned record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from kmnist_jax import inference, metrics
from kmnist_jax.errors import UserError

# An error table: corruption name -> errors at each severity (same severities for all).
ErrorTable = Mapping[str, Sequence[float]]


# ---- Predictions -----------------------------------------------------------------------

def evaluate(restored, labels: np.ndarray, get_set: Callable[[str, int], np.ndarray], *,
             names: Sequence[str], severities: Sequence[int], clean: np.ndarray,
             batch_size: int = 1000, progress: bool = True, desc: str = "") -> dict:
  """Predictions of `restored` (a train.Restored or a model) on the clean images and on
  every (corruption, severity), through :func:`kmnist_jax.inference.predict`.

  `get_set(name, severity)` returns the corrupted images (uint8 [N,28,28], the same
  examples in the same order as `clean`, whose labels are `labels`). Returns
  ``{'clean': preds [N], 'corrupted': {name: preds [S, N]}}``.
  """
  labels = np.asarray(labels)
  if len(clean) != len(labels):
    raise UserError(f"{len(clean)} clean images but {len(labels)} labels")
  out = {"clean": inference.predict(restored, clean, batch_size=batch_size),
         "corrupted": {}}
  pairs = [(n, s) for n in names for s in severities]
  it = pairs
  if progress:
    from tqdm.auto import tqdm
    it = tqdm(pairs, desc=desc or "corruptions", unit="set", leave=False)
  preds: dict[str, list] = {n: [] for n in names}
  for n, s in it:
    images = np.asarray(get_set(n, s))
    if len(images) != len(labels):
      raise UserError(f"corrupted set {n} severity {s} has {len(images)} images; the "
                      f"clean set has {len(labels)} (built from another split or limit?)")
    preds[n].append(inference.predict(restored, images, batch_size=batch_size))
  out["corrupted"] = {n: np.stack(p) for n, p in preds.items()}
  return out


# ---- Error tables ----------------------------------------------------------------------

def error_rate(preds, labels) -> float:
  preds, labels = np.asarray(preds), np.asarray(labels)
  return float((preds != labels).mean()) if len(labels) else float("nan")


def error_table(evaluated: dict, labels) -> tuple[float, dict[str, np.ndarray]]:
  """(clean error, {corruption: errors [S] per severity}) from :func:`evaluate`."""
  labels = np.asarray(labels)
  clean = error_rate(evaluated["clean"], labels)
  table = {n: (np.asarray(p) != labels[None]).mean(1)
           for n, p in evaluated["corrupted"].items()}
  return clean, table


def _check_tables(model: ErrorTable, base: ErrorTable | None = None):
  names = list(model)
  if not names:
    raise UserError("empty error table: no corruptions were evaluated")
  lens = {len(np.atleast_1d(model[n])) for n in names}
  if len(lens) != 1:
    raise UserError(f"error table has different numbers of severities per corruption: "
                    f"{ {n: len(np.atleast_1d(model[n])) for n in names} }")
  if base is not None:
    missing = [n for n in names if n not in base]
    if missing:
      raise UserError(f"the baseline has no errors for {', '.join(missing)}; evaluate it "
                      "on the same corruptions")
    for n in names:
      if len(np.atleast_1d(base[n])) != len(np.atleast_1d(model[n])):
        raise UserError(f"{n}: the model has {len(np.atleast_1d(model[n]))} severities, "
                        f"the baseline {len(np.atleast_1d(base[n]))}; use the same ones")
  return names


def corruption_errors(table: ErrorTable) -> dict[str, float]:
  """E_c = mean over severities of the error, per corruption (unnormalised)."""
  _check_tables(table)
  return {n: float(np.mean(v)) for n, v in table.items()}


def mean_corruption_error(table: ErrorTable) -> float:
  """Unnormalised mean error over corruptions (and severities)."""
  return float(np.mean(list(corruption_errors(table).values())))


def ce(errors, base_errors) -> float:
  """CE_c = sum_s E_{s,c} / sum_s E^base_{s,c} (NaN if the baseline makes no error)."""
  e, b = np.asarray(errors, np.float64), np.asarray(base_errors, np.float64)
  den = b.sum()
  return float(e.sum() / den) if den > 0 else float("nan")


def relative_ce(errors, clean_error: float, base_errors,
                base_clean_error: float) -> float:
  """relative CE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean)
  (NaN if the baseline's errors do not change under the corruption)."""
  e, b = np.asarray(errors, np.float64), np.asarray(base_errors, np.float64)
  den = (b - base_clean_error).sum()
  return float((e - clean_error).sum() / den) if den != 0 else float("nan")


def ces(table: ErrorTable, base: ErrorTable) -> dict[str, float]:
  names = _check_tables(table, base)
  return {n: ce(table[n], base[n]) for n in names}


def relative_ces(table: ErrorTable, clean: float, base: ErrorTable,
                 base_clean: float) -> dict[str, float]:
  names = _check_tables(table, base)
  return {n: relative_ce(table[n], clean, base[n], base_clean) for n in names}


def _nanmean(values) -> float:
  v = np.asarray(list(values), np.float64)
  v = v[np.isfinite(v)]
  return float(v.mean()) if len(v) else float("nan")


def mce(table: ErrorTable, base: ErrorTable) -> float:
  """mCE = mean over corruptions of CE_c (undefined CEs left out)."""
  return _nanmean(ces(table, base).values())


def relative_mce(table: ErrorTable, clean: float, base: ErrorTable,
                 base_clean: float) -> float:
  """Relative mCE = mean over corruptions of relative CE_c (undefined ones left out)."""
  return _nanmean(relative_ces(table, clean, base, base_clean).values())


def summary(table: ErrorTable, clean: float, base: ErrorTable | None = None,
            base_clean: float | None = None) -> dict:
  """Every number of one model: clean error, E_c, the unnormalised mean, and (with a
  baseline) CE_c, relative CE_c, mCE and relative mCE."""
  out = {"clean_error": float(clean),
         "errors": {n: [float(x) for x in np.atleast_1d(v)] for n, v in table.items()},
         "corruption_errors": corruption_errors(table),
         "mean_corruption_error": mean_corruption_error(table)}
  if base is not None:
    c = ces(table, base)
    r = relative_ces(table, clean, base, base_clean)
    out.update(ce=c, relative_ce=r, mce=_nanmean(c.values()),
               relative_mce=_nanmean(r.values()),
               undefined={"ce": sorted(k for k, v in c.items() if not np.isfinite(v)),
                          "relative_ce": sorted(k for k, v in r.items()
                                                if not np.isfinite(v))})
  return out


# ---- Per class -------------------------------------------------------------------------

def pooled_per_class(preds, labels, num_classes: int) -> np.ndarray:
  """Accuracy per class [C] of the predictions [N] or [S, N] (pooled over the rows),
  from their summed confusion matrix (NaN for a class absent from `labels`)."""
  preds, labels = np.atleast_2d(preds), np.asarray(labels)
  conf = sum(metrics.confusion_matrix(labels, p, num_classes) for p in preds)
  return metrics.per_class(conf)["accuracy"]


def per_class_accuracy(evaluated: dict, labels, num_classes: int) -> dict:
  """Accuracy per class on clean images and per corruption (pooled over severities).

  Returns ``{'columns': ['clean', name, ...], 'accuracy': [C, 1 + K]}`` (NaN for a
  class absent from `labels`).
  """
  cols = ["clean"] + list(evaluated["corrupted"])
  mat = np.stack([pooled_per_class(evaluated["clean"], labels, num_classes)]
                 + [pooled_per_class(p, labels, num_classes)
                    for p in evaluated["corrupted"].values()], 1)
  return {"columns": cols, "accuracy": mat}
