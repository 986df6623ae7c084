"""The smoothing evaluator's report: certified accuracy at each radius, ACR,
abstention (tables ``smoothing`` and ``smoothing_per_class``) and the certified accuracy
vs radius figure (:func:`render_many`). Numbers come from the summaries
(:func:`kmnist_jax.evaluators.smoothing.summarize`). The plots (matplotlib) are
imported by the functions that draw.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax.reports.base import pct
from kmnist_jax.reports.common import default_name


def _r(r: float) -> str:
  return f"r={r:g}"


def table_rows(named: Sequence[tuple[str, dict]]) -> tuple[list[str], list[list]]:
  """Rows (model, dataset, sigma, images, runs, certified accuracy at each radius,
  ACR, abstention, PREDICT accuracy / abstention, noisy and majority accuracy: means
  over runs, then the std of the certified accuracies and ACR when there are several
  runs)."""
  radii = next((s["radii"] for _, s in named), [])
  several = any(s["runs"] > 1 for _, s in named)
  head = (["model", "dataset", "sigma", "images", "runs"] + [_r(r) for r in radii]
          + ["ACR", "abstained", "PREDICT", "PREDICT abstained", "base under noise",
             "majority"]
          + ([f"std {_r(r)}" for r in radii] + ["std ACR"] if several else []))
  rows = []
  for name, s in named:
    for d in s["results"]:
      rows.append([name, s["dataset"], d["sigma"], s["n_images"], s["runs"]]
                  + list(d["certified_accuracy"]["mean"])
                  + [d[k]["mean"] for k in ("average_certified_radius", "abstention_rate",
                                            "predict_accuracy", "predict_abstention_rate",
                                            "noisy_accuracy", "majority_accuracy")]
                  + (list(d["certified_accuracy"]["std"])
                     + [d["average_certified_radius"]["std"]] if several else []))
  return head, rows


def per_class_rows(named: Sequence[tuple[str, dict]]) -> tuple[list[str], list[list]]:
  """Rows (model, sigma, class, certified accuracy at each radius, ACR, abstention,
  base accuracy under noise), means over runs."""
  radii = next((s["radii"] for _, s in named), [])
  head = (["model", "sigma", "class"] + [_r(r) for r in radii]
          + ["ACR", "abstained", "base under noise"])
  rows = []
  for name, s in named:
    info = data_lib.get_info(s["dataset"])
    for d in s["results"]:
      pc = d["per_class"]
      acc = np.asarray(pc["certified_accuracy"]["mean"], np.float64)  # [R, C]
      for c, cname in enumerate(info.class_names):
        rows.append([name, d["sigma"], cname] + list(acc[:, c])
                    + [pc[k]["mean"][c] for k in ("average_certified_radius",
                                                  "abstention_rate", "noisy_accuracy")])
  return head, rows


def figures(named: Sequence[tuple[str, dict]], report) -> list[str]:
  """certified_accuracy_vs_radius.png: every model and sigma on one axes."""
  from kmnist_jax import plots
  curves = [{"name": f"{name} ({s['dataset']})", "sigma": d["sigma"],
             "radii": d["curve"]["radii"], "accuracy": d["curve"]["accuracy"]}
            for name, s in named for d in s["results"]]
  if not curves:
    return []
  n = {s["n"] for _, s in named}
  imgs = {s["n_images"] for _, s in named}
  return [plots.certified_accuracy_vs_radius(
      curves, report.figure("certified_accuracy_vs_radius"),
      title=f"certified accuracy (%) vs L2 radius (n = {', '.join(map(str, sorted(n)))}"
            f", {', '.join(map(str, sorted(imgs)))} test images)")]


def render_many(named: Sequence[tuple[str, dict]], report, *, cjk_font="auto") -> dict:
  """Tables ``smoothing`` and ``smoothing_per_class`` and :func:`figures` into
  `report`."""
  del cjk_font  # no class glyphs in these tables / figure
  head, rows = table_rows(named)
  if not rows:
    return {"head": head, "rows": rows, "figures": []}
  s = named[0][1]
  radii_cols = [_r(r) for r in s["radii"]]
  fmt = {h: functools.partial(pct, digits=1) for h in head
         if h.startswith(("r=", "std r=")) or h in ("abstained", "PREDICT",
                                                    "PREDICT abstained",
                                                    "base under noise", "majority")}
  fmt.update({h: (lambda v: "-" if v is None else f"{v:.3f}")
              for h in ("ACR", "std ACR")})
  report.section(
      f"Randomized smoothing: certified accuracy (%) at L2 radius r (CERTIFY, n0 = "
      f"{s['n0']}, n = {s['n']}, alpha = {s['alpha']:g})",
      "Certified: CERTIFY returns the true class with a radius >= r (Cohen et al. "
      "2019; Gaussian noise on pixels in [0, 1], not clipped). ACR: average certified "
      "radius (0 when wrong or abstained). PREDICT: its accuracy on the same n draws "
      "(abstained counts as wrong). Base under noise: the base model's accuracy on "
      "the noisy copies; majority: the most frequent class over them "
      "(kmnist_jax/robustness/smoothing.py).")
  report.table("smoothing", [dict(zip(head, r)) for r in rows], columns=head,
               formats=fmt)
  ph, prows = per_class_rows(named)
  pfmt = {h: functools.partial(pct, digits=1)
          for h in radii_cols + ["abstained", "base under noise"]}
  pfmt["ACR"] = lambda v: "-" if v is None else f"{v:.3f}"
  report.section("Randomized smoothing per class (mean over runs)", level=3)
  report.table("smoothing_per_class", [dict(zip(ph, r)) for r in prows], columns=ph,
               formats=pfmt)
  files = figures(named, report)
  return {"head": head, "rows": rows, "figures": files}


def render(summary: dict, report, *, name: str | None = None, cjk_font="auto") -> dict:
  """:func:`render_many` of one summary."""
  return render_many([(name or default_name(summary), summary)], report,
                     cjk_font=cjk_font)
