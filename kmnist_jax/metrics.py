"""Classification metrics: pure functions of labels, predictions and probabilities.

Computation only (numpy in, numpy / plain dicts out); :mod:`kmnist_jax.plots` draws
them and :mod:`kmnist_jax.evaluators` (classification, embedding) wire both to
checkpoints.

Conventions
-----------
* ``confusion[i, j]`` counts examples of true class ``i`` predicted as ``j`` (rows:
  truth, as in scikit-learn).
* A quantity with an empty denominator (a class with no examples, or never
  predicted) is ``nan`` for accuracy / recall and ``0`` for precision and F1 (what
  scikit-learn returns with ``zero_division=0``). :func:`jsonable` turns nan into
  ``None`` for JSON.
* Intervals are two-sided at ``confidence`` (default 0.95).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kmnist_jax.errors import UserError
from kmnist_jax.io import jsonable  # noqa: F401  (re-exported: metrics.jsonable)

__all__ = [
    "confusion_matrix", "normalize_rows", "per_class", "balanced_accuracy",
    "most_confused", "wilson_interval", "bootstrap_interval", "calibration",
    "negative_log_likelihood", "confident_mistakes", "typical_examples",
    "confusions_over_epochs", "per_class_error", "mean_std", "knn_accuracy",
    "silhouette", "summarize", "jsonable", "seed_mean_std", "paired",
    "significance_mark",
]


# ---- Checks ----------------------------------------------------------------------------

def _labels(x, name: str, num_classes: int | None = None) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 1 or not (np.issubdtype(x.dtype, np.integer) or x.size == 0):
    raise UserError(f"{name} must be a 1-D integer array, got {x.dtype} of shape "
                    f"{list(x.shape)}")
  x = x.astype(np.int64)
  if num_classes is not None and x.size and (x.min() < 0 or x.max() >= num_classes):
    raise UserError(f"{name} span {x.min()}..{x.max()}, outside 0..{num_classes - 1} "
                    f"({num_classes} classes)")
  return x


def _probs(probs, n: int | None = None) -> np.ndarray:
  p = np.asarray(probs, dtype=np.float64)
  if p.ndim != 2:
    raise UserError(f"probs must be [N, C], got shape {list(p.shape)}")
  if n is not None and len(p) != n:
    raise UserError(f"probs has {len(p)} rows but there are {n} labels")
  return p


# ---- Confusion and per-class scores ----------------------------------------------------

def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
  """int64 ``[C, C]``: ``[i, j]`` = examples of class i predicted as j."""
  y = _labels(labels, "labels", num_classes)
  p = _labels(preds, "preds", num_classes)
  if y.shape != p.shape:
    raise UserError(f"labels ({len(y)}) and preds ({len(p)}) differ in length")
  counts = np.bincount(y * num_classes + p, minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes)


def _conf(conf) -> np.ndarray:
  c = np.asarray(conf)
  if c.ndim != 2 or c.shape[0] != c.shape[1]:
    raise UserError(f"a confusion matrix must be square [C, C], got {list(c.shape)}")
  return c


def _div(a, b, empty=np.nan) -> np.ndarray:
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return np.divide(a, b, out=np.full(np.broadcast(a, b).shape, empty), where=b > 0)


def normalize_rows(conf) -> np.ndarray:
  """Row-normalised confusion (each true class's rows sum to 1; empty rows are 0)."""
  c = _conf(conf).astype(np.float64)
  return _div(c, c.sum(1, keepdims=True), empty=0.0)


def per_class(conf) -> dict[str, np.ndarray]:
  """Per-class ``support`` (true examples), ``predicted``, ``correct``, ``accuracy``
  (= ``recall``: correct / support), ``precision`` (correct / predicted) and ``f1``."""
  c = _conf(conf)
  support = c.sum(1)
  predicted = c.sum(0)
  correct = np.diag(c)
  recall = _div(correct, support)
  precision = _div(correct, predicted, empty=0.0)
  r0 = np.nan_to_num(recall)
  f1 = _div(2 * precision * r0, precision + r0, empty=0.0)
  return {"support": support.astype(np.int64), "predicted": predicted.astype(np.int64),
          "correct": correct.astype(np.int64), "accuracy": recall, "recall": recall,
          "precision": precision, "f1": f1}


def balanced_accuracy(conf) -> float:
  """Mean recall over the classes that have examples (scikit-learn's definition)."""
  c = _conf(conf)
  support = c.sum(1)
  present = support > 0
  if not present.any():
    return float("nan")
  return float(np.mean(np.diag(c)[present] / support[present]))


def most_confused(conf, k: int = 5, *, symmetric: bool = False) -> list[dict]:
  """The `k` largest off-diagonal confusions (ties: lower class indices first).

  Directed: ``{'true', 'pred', 'count', 'rate'}`` with rate = count / support(true).
  Symmetric (i < j): ``{'a', 'b', 'count', 'rate', 'a_as_b', 'b_as_a'}`` with count =
  a->b + b->a and rate = count / (support(a) + support(b)). Pairs with count 0 are left
  out.
  """
  c = _conf(conf).astype(np.int64)
  support = c.sum(1)
  C = len(c)
  out = []
  if symmetric:
    for a in range(C):
      for b in range(a + 1, C):
        n = int(c[a, b] + c[b, a])
        if n:
          out.append({"a": a, "b": b, "count": n,
                      "rate": float(_div(n, support[a] + support[b])),
                      "a_as_b": int(c[a, b]), "b_as_a": int(c[b, a])})
    out.sort(key=lambda d: (-d["count"], d["a"], d["b"]))
  else:
    for t in range(C):
      for p in range(C):
        if t != p and c[t, p]:
          out.append({"true": t, "pred": p, "count": int(c[t, p]),
                      "rate": float(_div(c[t, p], support[t]))})
    out.sort(key=lambda d: (-d["count"], d["true"], d["pred"]))
  return out[:k]


# ---- Intervals -------------------------------------------------------------------------

def _z(confidence: float) -> float:
  if not 0 < confidence < 1:
    raise UserError(f"confidence must be in (0, 1), got {confidence}")
  from scipy.stats import norm
  return float(norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes, totals, confidence: float = 0.95
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Wilson score interval for binomial proportions k / n (elementwise).

  ``(lo, hi)``; nan where n == 0. Unlike the normal interval it stays inside [0, 1]
  and is not degenerate at k = 0 or k = n.
  """
  k = np.asarray(successes, np.float64)
  n = np.asarray(totals, np.float64)
  z = _z(confidence)
  p = _div(k, n)
  nn = np.where(n > 0, n, 1.0)
  denom = 1 + z * z / nn
  center = (p + z * z / (2 * nn)) / denom
  half = z / denom * np.sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn))
  lo = np.where(n > 0, np.clip(center - half, 0.0, 1.0), np.nan)
  hi = np.where(n > 0, np.clip(center + half, 0.0, 1.0), np.nan)
  return lo, hi


def bootstrap_interval(successes, totals, confidence: float = 0.95, *,
                       num_samples: int = 2000, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
  """Percentile bootstrap interval of each class's accuracy k / n.

  Resampling a class's n examples with replacement and counting the correct ones is
  exactly a Binomial(n, k / n) draw, so that is what is drawn (stratified bootstrap:
  class sizes fixed). Deterministic from `seed` (``np.random.default_rng``).
  """
  k = np.asarray(successes, np.int64)
  n = np.asarray(totals, np.int64)
  _z(confidence)
  rng = np.random.default_rng(seed)
  p = _div(k, n, empty=0.0)
  draws = rng.binomial(n[None, :], p[None, :], size=(num_samples,) + n.shape)
  acc = draws / np.where(n > 0, n, 1)
  alpha = (1 - confidence) / 2
  lo, hi = np.quantile(acc, [alpha, 1 - alpha], axis=0)
  return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


# ---- Calibration -----------------------------------------------------------------------

def calibration(probs, labels, num_bins: int = 15) -> dict:
  """Top-label calibration with equal-width confidence bins.

  Confidence = max probability; bin b holds confidences in ``(edges[b], edges[b+1]]``
  (the first bin also holds 0). Returns ``ece`` (sum over bins of
  ``count/N * |accuracy - confidence|``), ``mce`` (largest such gap over non-empty
  bins), and per bin: ``edges`` [B+1], ``count``, ``accuracy``, ``confidence`` (nan
  for empty bins).
  """
  y = _labels(labels, "labels")
  p = _probs(probs, len(y))
  if num_bins < 1:
    raise UserError(f"num_bins must be >= 1, got {num_bins}")
  conf = p.max(1)
  correct = (p.argmax(1) == y).astype(np.float64)
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, num_bins - 1)
  count = np.bincount(b, minlength=num_bins)
  acc = _div(np.bincount(b, correct, minlength=num_bins), count)
  mean_conf = _div(np.bincount(b, conf, minlength=num_bins), count)
  gap = np.abs(acc - mean_conf)
  n = max(len(y), 1)
  ece = float(np.nansum(count / n * gap)) if len(y) else float("nan")
  mce = float(np.nanmax(gap)) if count.any() else float("nan")
  return {"ece": ece, "mce": mce, "num_bins": num_bins, "edges": edges,
          "count": count.astype(np.int64), "accuracy": acc, "confidence": mean_conf}


def negative_log_likelihood(probs, labels, eps: float = 1e-12) -> float:
  """Mean -log p(true class)."""
  y = _labels(labels, "labels")
  p = _probs(probs, len(y))
  return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0))))


# ---- Examples to show ------------------------------------------------------------------

def confident_mistakes(labels, probs, true: int, pred: int, k: int = 8) -> np.ndarray:
  """Indices of examples of class `true` predicted as `pred`, most confident first."""
  y = _labels(labels, "labels")
  p = _probs(probs, len(y))
  idx = np.flatnonzero((y == true) & (p.argmax(1) == pred))
  order = np.argsort(-p[idx, pred], kind="stable")
  return idx[order[:k]]


def typical_examples(labels, probs, cls: int, k: int = 4) -> np.ndarray:
  """Indices of correctly classified examples of `cls`, highest p(cls) first."""
  y = _labels(labels, "labels")
  p = _probs(probs, len(y))
  idx = np.flatnonzero((y == cls) & (p.argmax(1) == cls))
  order = np.argsort(-p[idx, cls], kind="stable")
  return idx[order[:k]]


# ---- Over epochs, over runs ------------------------------------------------------------

def confusions_over_epochs(history: Sequence[dict], key: str = "val_confusion"
                           ) -> tuple[np.ndarray, np.ndarray]:
  """``(epochs [E], confusions [E, C, C])`` from metrics.jsonl-style records that
  carry `key` (epochs without it are skipped; empty arrays if none has it)."""
  recs = [h for h in history if h.get(key) is not None]
  if not recs:
    return np.zeros((0,), np.int64), np.zeros((0, 0, 0), np.int64)
  epochs = np.array([int(h["epoch"]) for h in recs], np.int64)
  confs = np.array([np.asarray(h[key]) for h in recs]).round().astype(np.int64)
  return epochs, confs


def per_class_error(confusions) -> np.ndarray:
  """``1 - recall`` per class of a ``[..., C, C]`` stack of confusions (nan if empty)."""
  c = np.asarray(confusions, np.float64)
  return 1.0 - _div(np.diagonal(c, axis1=-2, axis2=-1), c.sum(-1))


def mean_std(values) -> tuple[np.ndarray, np.ndarray]:
  """Mean and sample standard deviation (ddof=1; 0 for a single run) over axis 0."""
  v = np.asarray(values, np.float64)
  mean = v.mean(0)
  std = v.std(0, ddof=1) if len(v) > 1 else np.zeros_like(mean)
  return mean, std


# ---- Statistics over seeds (the studies' tables) ---------------------------------------

def seed_mean_std(values) -> dict:
  """{'mean', 'std'} of the numbers in `values` (None skipped): floats, std the sample
  std (ddof=1), None for fewer than 2 values; both None for no values."""
  v = [float(x) for x in values if x is not None]
  if not v:
    return {"mean": None, "std": None}
  mean, std = mean_std(v)
  return {"mean": float(mean), "std": float(std) if len(v) > 1 else None}


# Two-sided 5% critical values of Student's t by degrees of freedom (n - 1 seeds).
# Beyond 30, the df-30 value (slightly conservative).
T_CRIT_5PCT = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
               2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
               2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def paired(values, base) -> dict:
  """Paired differences values[i] - base[i] (same seed): {'mean', 'std', 'n',
  'significant', 't_test'}. significant = n >= 2 and |mean| > std (the change is
  larger than its spread over seeds: the studies' rule, a lenient one -- with 3 seeds
  it is a paired t of 1.73, p ~ 0.22); t_test = the paired t-test rejects "no
  difference" at 5% two-sided (|mean| > t_crit(n - 1) std / sqrt(n); 3 seeds: |mean|
  > 2.48 std)."""
  d = [float(a) - float(b) for a, b in zip(values, base)]
  out = {**seed_mean_std(d), "n": len(d)}
  n, mean, std = len(d), out["mean"], out["std"]
  out["significant"] = bool(n >= 2 and abs(mean) > std)
  crit = T_CRIT_5PCT[min(n - 1, len(T_CRIT_5PCT)) - 1] if n >= 2 else 0.0
  out["t_test"] = bool(n >= 2 and mean != 0 and
                       (std == 0 or abs(mean) > crit * std / math.sqrt(n)))
  return out


def significance_mark(significant, t_test) -> str:
  """The reports' mark of a paired difference: '**' confirmed by the t-test, '*'
  significant by the screening rule only, '' neither."""
  return ("**" if t_test else "*") if significant else ""


# ---- Separability of a representation --------------------------------------------------

def knn_accuracy(x, labels, *, k: int = 5, folds: int = 5, seed: int = 0) -> float:
  """Cross-validated k-nearest-neighbour accuracy of `labels` from points `x` [N, D]
  (stratified `folds`-fold, shuffled from `seed`)."""
  from sklearn.model_selection import StratifiedKFold, cross_val_score
  from sklearn.neighbors import KNeighborsClassifier
  y = _labels(labels, "labels")
  x = np.asarray(x, np.float64).reshape(len(y), -1)
  folds = min(folds, int(np.bincount(y).max()))
  cv = StratifiedKFold(n_splits=max(folds, 2), shuffle=True, random_state=seed)
  scores = cross_val_score(KNeighborsClassifier(n_neighbors=k), x, y, cv=cv)
  return float(np.mean(scores))


def silhouette(x, labels, *, max_points: int = 10000, seed: int = 0) -> float:
  """Mean silhouette coefficient of the classes in `x` (Euclidean), in [-1, 1]; on a
  deterministic subsample of `max_points` when larger."""
  from sklearn.metrics import silhouette_score
  y = _labels(labels, "labels")
  x = np.asarray(x, np.float64).reshape(len(y), -1)
  if len(y) > max_points:
    keep = np.random.default_rng(seed).choice(len(y), max_points, replace=False)
    x, y = x[keep], y[keep]
  return float(silhouette_score(x, y))


# ---- Everything at once ----------------------------------------------------------------

def summarize(labels, probs, *, num_classes: int | None = None, top_k: int = 10,
              num_bins: int = 15, confidence: float = 0.95, interval: str = "wilson",
              bootstrap_samples: int = 2000, seed: int = 0) -> dict:
  """All the metrics of one evaluation, from labels [N] and probabilities [N, C].

  numpy arrays inside; :func:`jsonable` makes it JSON-ready.
  """
  y = _labels(labels, "labels")
  p = _probs(probs, len(y))
  C = num_classes or p.shape[1]
  if p.shape[1] != C:
    raise UserError(f"probs have {p.shape[1]} columns but num_classes is {C}")
  preds = p.argmax(1)
  conf = confusion_matrix(y, preds, C)
  pc = per_class(conf)
  if interval == "wilson":
    lo, hi = wilson_interval(pc["correct"], pc["support"], confidence)
  elif interval == "bootstrap":
    lo, hi = bootstrap_interval(pc["correct"], pc["support"], confidence,
                                num_samples=bootstrap_samples, seed=seed)
  else:
    raise UserError(f"unknown interval {interval!r}; valid choices: bootstrap, wilson")
  return {
      "n": int(len(y)),
      "num_classes": int(C),
      "accuracy": float(np.trace(conf) / max(len(y), 1)),
      "balanced_accuracy": balanced_accuracy(conf),
      "nll": negative_log_likelihood(p, y),
      "confusion": conf,
      "confusion_normalized": normalize_rows(conf),
      "per_class": {**pc, "interval_lo": lo, "interval_hi": hi},
      "interval": {"method": interval, "confidence": confidence},
      "most_confused": most_confused(conf, top_k),
      "most_confused_symmetric": most_confused(conf, top_k, symmetric=True),
      "calibration": calibration(p, y, num_bins),
  }
