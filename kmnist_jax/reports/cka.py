"""The CKA evaluator's report: the same-layer CKA table and the heatmap of every pair
(:func:`render`). Numbers come from the summary (:func:`kmnist_jax.evaluators.cka.
summarize`). The plots (matplotlib) are imported by the function that draws.
"""

from __future__ import annotations

import numpy as np

from kmnist_jax.reports.common import safe


def render(summary: dict, report, *, name: str | None = None, cjk_font="auto") -> dict:
  """Heatmaps of every pair (`name`_cka.png) and the same-layer CKA table."""
  from kmnist_jax import plots
  del cjk_font
  s = summary
  pre = safe(name, keep="") + "_" if name else ""
  est = "debiased" if s["debiased"] else "biased"
  report.text(f"Linear CKA ({est} HSIC estimator) between layers, on the first "
              f"{s['examples']} {s['dataset']} test images"
              + (f"; mean over {s['runs']} runs" if s["runs"] > 1 else "") + ".\n")
  rows = []
  for p in s["pairs"]:
    la, lb = s["layers"][p["a"]], s["layers"][p["b"]]
    m = np.asarray(p["matrix"], np.float64)
    for i, layer in enumerate(la):
      if layer in lb:
        rows.append({"a": p["a"], "b": p["b"], "layer": layer,
                     "cka": float(m[i, lb.index(layer)])})
  report.table(f"{pre}cka", rows, columns={"a": "model a", "b": "model b",
                                           "layer": "layer", "cka": "CKA (same layer)"},
               formats={"cka": lambda v: "-" if v is None else f"{v:.3f}"})
  fig = plots.cka_heatmaps(
      [{"title": f"{p['a']} vs {p['b']}", "matrix": np.asarray(p["matrix"], float),
        "rows": s["layers"][p["a"]], "cols": s["layers"][p["b"]], "ylabel": p["a"],
        "xlabel": p["b"]} for p in s["pairs"]],
      report.figure(f"{pre}cka", "linear CKA"),
      title=f"linear CKA between layers, {s['examples']} {s['dataset']} test images")
  return {"figures": [fig]}
