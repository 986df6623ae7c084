"""The corruption evaluator's report: the models x corruptions table, E_c / CE_c /
relative CE_c per corruption, the corruption grid, error vs severity and per-class
heatmaps (:func:`render_many`). Numbers come from the summaries
(:func:`kmnist_jax.evaluators.corruption.summarize`). The plots (matplotlib) are
imported by the functions that draw.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax.evaluators import corruption
from kmnist_jax.reports.base import pct
from kmnist_jax.reports.common import default_name, pm_points, safe
from kmnist_jax.robustness import sets


def model_rows(named: Sequence[tuple[str, dict]]) -> tuple[list[str], list[list]]:
  """The models table (the robustness script's table.csv): one row per (name, summary)
  and per baseline, errors as fractions (means over seeds)."""
  names = named[0][1]["corruptions"] if named else []
  head = (["model", "dataset", "clean error"] + list(names)
          + ["mean corruption error", "mCE", "relative mCE"])
  rows, seen = [], set()

  def mean(d):
    return None if d is None else (d["mean"] if isinstance(d, dict) else d)

  for name, s in named:
    rows.append([name, s["dataset"], mean(s["clean_error"])]
                + [mean(s["corruption_errors"][n]) for n in names]
                + [mean(s["mean_corruption_error"]), mean(s.get("mce")),
                   mean(s.get("relative_mce"))])
    b = s.get("baseline")
    if b and b.get("workdir") and b["workdir"] not in seen:
      seen.add(b["workdir"])
      own = corruption.ce_metrics(b["errors"], b["clean_error"], b)  # against itself: 100% each
      rows.append([f"{os.path.basename(os.path.normpath(b['workdir']))} (baseline)",
                   s["dataset"], b["clean_error"]]
                  + [b["corruption_errors"][n] for n in names]
                  + [own["mean_corruption_error"], own["mce"], own["relative_mce"]])
  return head, rows


def figures(named: Sequence[tuple[str, dict]], report, *, cjk_font="auto",
            grid_examples: int = 3) -> list[str]:
  """corruption_grid_<dataset>.png (the same test images under every corruption and
  severity) and error_vs_severity_<dataset>.png per dataset, and
  per_class_corruption_<name>.png per model and baseline (the robustness script's
  names), into `report`."""
  from kmnist_jax import plots
  files, seen = [], set()
  for ds in dict.fromkeys(s["dataset"] for _, s in named):
    built = next((s["corrupted_dir"] for _, s in named if s["dataset"] == ds
                  and s.get("corrupted_dir")
                  and os.path.isfile(os.path.join(s["corrupted_dir"], sets.MANIFEST))),
                 None)
    if built and grid_examples:
      data_dir = next(s.get("data_dir") for _, s in named if s["dataset"] == ds)
      files.append(sets.grid(built, report.figure(f"corruption_grid_{ds}"),
                             examples=grid_examples, data_dir=data_dir))
    series = []
    for name, s in named:
      if s["dataset"] != ds:
        continue
      series.append({"name": name, "clean": s["clean_error"]["mean"],
                     "errors": {n: v["mean"] for n, v in s["errors"].items()}})
      b = s.get("baseline")
      if b and b.get("workdir") and b["workdir"] not in seen:
        seen.add(b["workdir"])
        series.append({"name": f"{os.path.basename(os.path.normpath(b['workdir']))} "
                               "(baseline)", "clean": b["clean_error"],
                       "errors": b["errors"], "_per_class": b["per_class"]})
    sevs = named[0][1]["severities"]
    files.append(plots.error_vs_severity(
        [{k: v for k, v in x.items() if k != "_per_class"} for x in series], sevs,
        report.figure(f"error_vs_severity_{ds}"),
        title=f"{ds}-C: error (%) vs severity"))
    info = data_lib.get_info(ds)
    lab = plots.class_labels(info.class_names, info.class_glyphs, font=cjk_font)
    for x in series:
      pc = x.get("_per_class")
      runs = ""
      if pc is None:
        s = dict(named)[x["name"]]
        pc = {"columns": s["per_class"]["columns"], "accuracy": s["per_class"]["mean"]}
        runs = f", mean of {s['runs']} runs" if s["runs"] > 1 else ""
      acc = np.asarray([[np.nan if v is None else v for v in row]
                        for row in pc["accuracy"]], np.float64)
      files.append(plots.corruption_heatmap(
          acc, lab, pc["columns"],
          report.figure(f"per_class_corruption_{safe(x['name'])}"),
          title=f"{x['name']} on {ds}-C: per-class accuracy (%), severities pooled"
                f"{runs}"))
  return files


def ce_markdown(named: Sequence[tuple[str, dict]]) -> str:
  """Rows corruptions; per model E_c and (with a baseline) CE_c / relative CE_c, %."""
  names = named[0][1]["corruptions"] if named else []
  head = ["corruption"] + [f"{n} E / CE / rel. CE" for n, _ in named]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for c in names:
    cells = [c.replace("_", " ")]
    for _, s in named:
      cell = pm_points(s["corruption_errors"][c])
      if s.get("ce") and c in s["ce"]:
        cell += f" / {pm_points(s['ce'][c], 0)} / {pm_points(s['relative_ce'][c], 0)}"
      cells.append(cell)
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


DEFINITIONS = (
    "Definitions (E: top-1 error; s: severity; b: baseline): E_c = mean_s E_s,c; "
    "CE_c = sum_s E_s,c / sum_s E^b_s,c; mCE = mean_c CE_c; relative CE_c = "
    "sum_s (E_s,c - E_clean) / sum_s (E^b_s,c - E^b_clean); relative mCE = mean_c "
    "relative CE_c (kmnist_jax/robustness/mce.py).")


def headline(record: dict) -> str:
  """One line on one record (logged as it is made)."""
  return (f"{record['model']} on {record['dataset']}-C: clean error "
          f"{100 * record['clean_error']:.2f}%, mean corruption error "
          f"{100 * record['mean_corruption_error']:.2f}%"
          + (f", mCE {100 * record['mce']:.1f}%, relative mCE "
             f"{100 * record['relative_mce']:.1f}%" if record.get("mce") is not None
             else ""))


def render_many(named: Sequence[tuple[str, dict]], report, *, cjk_font="auto",
                table: str = "corruption", grid_examples: int = 3) -> dict:
  """Tables and figures of several (name, summary) pairs into `report`: the table
  `table` (models x corruptions, errors as fractions), the CE section and
  :func:`figures`. Returns {'head', 'rows', 'figures'}."""
  head, rows = model_rows(named)
  report.table(table, [dict(zip(head, r)) for r in rows], columns=head,
               formats={h: functools.partial(pct, digits=1) for h in head[2:]},
               caption="Errors (%), mean over severities (and over runs); mCE and "
                       "relative mCE normalised by the dataset's baseline (100% = the "
                       "baseline), '-' without one.")
  report.section("Corruption errors: E_c (%) / CE_c (%) / relative CE_c (%), mean ± std "
                 "over runs", ce_markdown(named) + "\n" + DEFINITIONS)
  files = figures(named, report, cjk_font=cjk_font, grid_examples=grid_examples)
  return {"head": head, "rows": rows, "figures": files}


def render(summary: dict, report, *, name: str | None = None, cjk_font="auto") -> dict:
  """:func:`render_many` of one summary."""
  return render_many([(name or default_name(summary), summary)], report,
                     cjk_font=cjk_font)
