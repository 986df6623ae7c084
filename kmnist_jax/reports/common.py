"""What every evaluator's report shares: mean ± std cells, file-name-safe names."""

from __future__ import annotations

import os

import numpy as np

from kmnist_jax.reports.base import pct


def floats(values) -> np.ndarray:
  """A list from JSON (None for nan) as a float array."""
  return np.asarray([np.nan if v is None else v for v in values], np.float64)


def pm(d, n: int, digits: int = 2) -> str:
  """{'mean', 'std'} as '96.34%' (one run) or '96.34% ± 0.12' (n > 1 runs; std in
  percentage points)."""
  s = pct(d["mean"], digits)
  return s + (f" ± {100 * d['std']:.{digits}f}" if n > 1 and s != "-" else "")


def pm_points(d, digits: int = 1) -> str:
  """{'mean', 'std'} in percent without the sign: '12.3' or '12.3 ± 0.4' (a std of 0
  or None is left out); None -> '-'."""
  if d is None or d.get("mean") is None:
    return "-"
  m = f"{100 * d['mean']:.{digits}f}"
  return m if not d.get("std") else f"{m} ± {100 * d['std']:.{digits}f}"


def safe(name: str, keep: str = "-_.", collapse: bool = False) -> str:
  """`name` for a file name: characters other than letters, digits and `keep` become
  '_' (`collapse`: runs of '_' become one, none at the ends)."""
  s = "".join(ch if ch.isalnum() or ch in keep else "_" for ch in name)
  return "_".join(p for p in s.split("_") if p) if collapse else s


def default_name(summary: dict, fallback: str = "model") -> str:
  """A summary's name in a report: its workdir's folder, else its model."""
  w = summary.get("workdir")
  return os.path.basename(os.path.normpath(w)) if w else summary.get("model") or fallback
