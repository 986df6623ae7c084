"""The embedding evaluator's report: the 2-D maps coloured by class, the separability
bars and table, the coordinates as embeddings.npz (:func:`render_many`). Numbers and
coordinates come from the summaries (:func:`kmnist_jax.evaluators.embedding.summarize`).
The plots (matplotlib) are imported by the functions that draw.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax.evaluators import embedding
from kmnist_jax.reports.common import safe


def _rep_title(rep: str, s: dict) -> str:
  if rep == "pixels":
    return "raw pixels"
  if s["runs"] == 1 and s["workdirs"][0]:
    folder = os.path.basename(os.path.normpath(s["workdirs"][0]))
    return f"{s['model']} features ({folder}, step {s['steps'][0]})"
  return f"{s['model']} features ({s['runs']} runs)"


def headline(record: dict) -> str:
  """One line on one record (logged as it is made): kNN accuracy and silhouette in
  each space."""
  return f"{record['dataset']}: " + "; ".join(
      f"{r['representation']} {r['space']} kNN accuracy {r['knn_accuracy']:.3f}, "
      f"silhouette {r['silhouette']:.3f}" for r in record["rows"])


def render_many(named: Sequence[tuple[str, dict]], report, *, cjk_font="auto",
                prefix: str = "") -> dict:
  """One column per (name, summary), one row per (method, representation): the 2-D
  maps coloured by class (`prefix`embeddings.png), the separability bars
  (`prefix`separability.png) and table (`prefix`separability.md/.csv/.json), and the
  maps' coordinates with the labels and subsample indices of each column
  (`prefix`embeddings.npz: ``<method>_<representation>_<name>``, ``labels_<name>``,
  ``indices_<name>``; names made file-name-safe)."""
  from kmnist_jax import plots
  named = list(named)
  methods = list(dict.fromkeys(m for _, s in named for m in s["methods"]))
  reps = list(dict.fromkeys(r["representation"] for _, s in named for r in s["rows"]))
  labs = {}
  for _, s in named:
    info = data_lib.get_info(s["dataset"])
    labs[s["dataset"]] = plots.class_labels(info.class_names, info.class_glyphs,
                                            font=cjk_font)
  panels = []
  for m in methods:
    for rep in reps:
      for nm, s in named:
        xy = s["coords"].get(f"{m}_{rep}")
        if xy is None:
          panels.append(None)
          continue
        sc = next(r for r in s["rows"] if r["method"] == m and r["representation"] == rep)
        panels.append({"title": f"{s['dataset']}: {_rep_title(rep, s)}, "
                                f"{embedding.METHOD_TITLES[m]}\nkNN acc {sc['knn_accuracy']:.3f}, "
                                f"silhouette {sc['silhouette']:.3f}",
                       "xy": np.asarray(xy, np.float32),
                       "labels": np.asarray(s["labels"], np.int64),
                       "class_labels": labs[s["dataset"]]})
  rows = []
  for nm, s in named:
    for r in s["rows"]:
      rows.append({**r, "name": f"{nm} · {r['representation']} · {r['space']}"})
  n = max(s["num_points"] for _, s in named)
  split = named[0][1]["split"]
  k = named[0][1]["knn_k"]
  report.text(f"{n} {split} images per column (random subsample, seed "
              f"{named[0][1]['seed']}); each panel embeds one representation in 2-D, "
              "colours are classes.\n")
  figs = []
  if panels and any(p is not None for p in panels):
    figs.append(plots.embedding_grid(
        panels, report.figure(f"{prefix}embeddings", "embeddings"), cols=len(named),
        title=f"{' vs '.join(nm for nm, _ in named)}: {split} images ({n} per column), "
              "coloured by class"))
  report.section("Separability", f"kNN accuracy: {k}-nearest-neighbour classifier, "
                 "stratified 5-fold cross-validation. Silhouette: mean silhouette "
                 "coefficient of the classes (Euclidean; 1 = tight, well separated "
                 "clusters, 0 = overlapping). Several runs: mean ± std.\n")
  several = any(s["runs"] > 1 for _, s in named)
  fmt = (lambda key: lambda v: "-" if v is None else f"{v:.3f}")  # noqa: E731
  table = [{"setting": nm, "dataset": r["dataset"], "representation": r["representation"],
            "space": r["space"], "knn_accuracy": r["knn_accuracy"],
            "silhouette": r["silhouette"],
            **({"knn_accuracy_std": r["knn_accuracy_std"],
                "silhouette_std": r["silhouette_std"]} if several else {})}
           for nm, s in named for r in s["rows"]]
  cols = {"setting": "setting", "dataset": "dataset", "representation": "representation",
          "space": "space", "knn_accuracy": "kNN accuracy", "silhouette": "silhouette"}
  if several:
    cols.update(knn_accuracy_std="kNN std", silhouette_std="silhouette std")
  report.table(f"{prefix}separability", table, columns=cols,
               formats={c: fmt(c) for c in cols if "knn" in c or "silhouette" in c})
  figs.append(plots.separability_bars(
      rows, report.figure(f"{prefix}separability", "separability"),
      title=f"class separability (kNN k={k}, 5-fold; silhouette, Euclidean)"))
  keys = [safe(nm) for nm, _ in named]
  np.savez_compressed(
      report.path(f"{prefix}embeddings.npz"),
      **{f"{m}_{key}": np.asarray(xy, np.float32) for key, (_, s) in zip(keys, named)
         for m, xy in s["coords"].items()},
      **{f"labels_{key}": np.asarray(s["labels"]) for key, (_, s) in zip(keys, named)},
      **{f"indices_{key}": np.asarray(s["indices"]) for key, (_, s) in zip(keys, named)})
  return {"figures": figs, "rows": rows}


def render(summary: dict, report, *, name: str | None = None, cjk_font="auto") -> dict:
  """:func:`render_many` of one summary."""
  nm = name or summary.get("model") or summary["dataset"]
  prefix = safe(name, keep="") + "_" if name else ""
  return render_many([(nm, summary)], report, cjk_font=cjk_font, prefix=prefix)
