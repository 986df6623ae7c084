"""The classification evaluator's report: headline table, confused pairs, per class,
confusion, calibration, training (:func:`render`); several settings side by side
(:func:`render_many`). Every number comes from the summary
(:func:`kmnist_jax.evaluators.classification.summarize`); nothing is computed here.
The plots (matplotlib) are imported by the functions that draw.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax.evaluators import classification
from kmnist_jax.reports.base import pct
from kmnist_jax.reports.common import floats, pm, safe


def _name(names, glyphs, i) -> str:
  g, n = glyphs[i], names[i]
  return n if g == n else f"{g} ({n})"


def _labels(s, cjk_font):
  from kmnist_jax import plots
  lab = plots.class_labels(s["class_names"], s["class_glyphs"], font=cjk_font)
  same = s["class_names"] == s["predicted_class_names"]
  pred = lab if same else plots.class_labels(
      s["predicted_class_names"], s["predicted_class_glyphs"], font=cjk_font)
  return lab, pred, same


def _in_short(s, cls) -> str:
  sym = s["most_confused_symmetric"][:3]
  if not sym:
    return ""
  acc = floats(s["per_class"]["accuracy"]["mean"])
  worst = int(np.nanargmin(acc))
  text = ("**In short**: the most confused pairs are "
          + ", ".join(f"{cls(d['a'])} ↔ {cls(d['b'])} ({d['count']} errors)"
                      for d in sym)
          + f"; the hardest class is {cls(worst)} ({pct(acc[worst], 1)} correct).")
  cal = s["calibration"]
  counts = np.asarray(cal["count"], float)
  if counts.sum() > 0:
    conf = floats(cal["confidence"])
    mean_conf = float(np.nansum(conf * counts) / counts.sum())
    acc_all = s["accuracy"]["mean"]
    way = "over" if mean_conf > acc_all else "under"
    text += (f"\nMean confidence {pct(mean_conf, 1)} vs accuracy {pct(acc_all, 1)}: "
             f"{way}-confident on average.")
  return text + "\n"


@dataclasses.dataclass
class _View:
  """What every section of one rendered setting needs."""
  s: dict
  report: object
  pre: str                 # heading prefix ('<name>: ' or '')
  fpre: str                # file prefix ('<name>_' or '')
  lab: object              # plots.Labels of the data's classes
  pred_lab: object         # ... of the model's classes

  @property
  def n(self) -> int:
    return self.s["runs"]

  def cls(self, i) -> str:
    return _name(self.s["class_names"], self.s["class_glyphs"], i)

  def pcls(self, i) -> str:
    return _name(self.s["predicted_class_names"], self.s["predicted_class_glyphs"], i)

  @property
  def tag(self) -> str:
    s = self.s
    return f"{s['model']} on {s['dataset']} {s['split']}" + (
        f", step {s['first']['step']}" if self.n == 1 else f", {self.n} runs")


def title(summary: dict) -> str:
  """The title of a report that holds this one setting alone."""
  return (f"Confusion analysis: {summary['model']} on {summary['dataset']} "
          f"({summary['split']})")


def headline(record: dict) -> str:
  """One line on one record (logged as it is made): accuracy, balanced accuracy, ECE
  and the most confused pairs."""
  names, glyphs = record["class_names"], record["class_glyphs"]
  top = record["most_confused_symmetric"][:3]
  return (f"{record['dataset']} {record['split']} accuracy {pct(record['accuracy'])}, "
          f"balanced {pct(record['balanced_accuracy'])}, ECE "
          f"{pct(record['calibration']['ece'])}; most confused: "
          + (", ".join(f"{_name(names, glyphs, d['a'])} <-> {_name(names, glyphs, d['b'])}"
                       f" ({d['count']})" for d in top) or "none"))


def render(summary: dict, report, *, name: str | None = None, cjk_font="auto") -> dict:
  """The analysis of one setting (one run, or seeds as mean ± std) into `report`:
  headline table, confused pairs (tables + mistakes figure), per class (table +
  figure), confusion matrix, calibration, training. Returns {'figures', 'font'}."""
  lab, pred_lab, _ = _labels(summary, cjk_font)
  v = _View(summary, report, f"{name}: " if name else "",
            f"{safe(name, keep='-.', collapse=True)}_" if name else "", lab, pred_lab)
  if name:
    report.section(name)
  _render_head(v)
  figs = [_render_pairs(v), _render_per_class(v), *_render_confusion(v),
          *_render_training(v)]
  return {"figures": figs, "font": lab.font}


def _render_head(v: _View) -> None:
  s, n, first = v.s, v.n, v.s["first"]
  v.report.text(
      f"`{s['model']}` trained on `{s['trained_on']}`, evaluated on {s['n']:,} "
      f"`{s['dataset']}` {s['split']} images"
      + (f" (first {s['limit']:,} only)" if s.get("limit") else "") + "; "
      + (f"checkpoint `{first['workdir']}` at step {first['step']} (epoch "
         f"{first.get('epoch')}; `--step={first.get('step_requested')}`), seed "
         f"{first['seed']}." if n == 1 else
         f"{n} runs (seeds {', '.join(map(str, s['seeds']))}): mean ± std "
         "(sample, ddof=1).") + "\n")
  if s["dataset"] != s["trained_on"]:
    v.report.text(f"**Cross-dataset**: rows are {s['dataset']} classes, predictions "
                  f"are the model's {s['trained_on']} classes; accuracy compares class "
                  "indices.\n")
  v.report.table(f"{v.fpre}summary", [{
      "accuracy": pm(s["accuracy"], n), "balanced": pm(s["balanced_accuracy"], n),
      "nll": f"{s['nll']['mean']:.4f}" + (f" ± {s['nll']['std']:.4f}" if n > 1 else ""),
      "ece": pm(s["ece"], n), "mce": pm(s["calibration"]["mce"], n, 1)}],
      columns={"accuracy": "accuracy", "balanced": "balanced accuracy", "nll": "NLL",
               "ece": "ECE", "mce": "MCE"})
  v.report.text(_in_short(s, v.cls))


def _render_pairs(v: _View) -> str:
  from kmnist_jax import plots
  s, rep, cls = v.s, v.report, v.cls
  rep.section(f"{v.pre}Most confused pairs",
              "Either direction (errors a as b plus b as a; rate = errors / images "
              "of both)" + (", errors summed over the runs" if v.n > 1 else "") + ":\n")
  rep.table(f"{v.fpre}confused_pairs", [
      {"#": i, "pair": f"{cls(d['a'])} ↔ {cls(d['b'])}", "errors": d["count"],
       "a_as_b": d["a_as_b"], "b_as_a": d["b_as_a"], "rate": pct(d["rate"])}
      for i, d in enumerate(s["most_confused_symmetric"], 1)],
      columns={"#": "#", "pair": "pair", "errors": "errors", "a_as_b": "a as b",
               "b_as_a": "b as a", "rate": "rate"})
  rep.text("Directed (rate = errors / images of the true class):\n")
  rep.table(f"{v.fpre}confused_directed", [
      {"#": i, "true": cls(d["true"]), "pred": v.pcls(d["pred"]), "errors": d["count"],
       "rate": pct(d["rate"])} for i, d in enumerate(s["most_confused"], 1)],
      columns={"#": "#", "true": "true", "pred": "predicted as", "errors": "errors",
               "rate": "rate"})
  first = s["first"]
  rows = [{"true": e["true"], "pred": e["pred"], "count": e["count"],
           "mistakes": list(zip(classification.decode_images(e["mistakes"]), e["mistake_prob"])),
           "typical_true": list(classification.decode_images(e["typical_true"])),
           "typical_pred": list(classification.decode_images(e["typical_pred"]))}
          for e in first.get("examples") or []]
  rep.text("The most confident mistakes of the top directed pairs (with the "
           "probability given to the wrong class) beside typical examples of both "
           "classes (correctly classified with the highest probability)"
           + (f", from `{first['workdir']}`" if v.n > 1 else "") + ":\n")
  return plots.mistakes_grid(
      rows, v.lab, rep.figure(f"{v.fpre}confused_pairs", "confused pairs"),
      pred_labels=v.pred_lab,
      title=f"top {len(rows)} confused pairs: most confident mistakes beside typical "
            "examples")


def _render_per_class(v: _View) -> str:
  from kmnist_jax import plots
  s, n = v.s, v.n
  level = int(round(100 * s["interval"]["confidence"]))
  v.report.section(f"{v.pre}Per class",
                   "Accuracy is recall (correct / images of the class), "
                   + (f"with a {level}% {s['interval']['method']} interval."
                      if n == 1 else "mean ± std over the runs.") + "\n")
  pc, conf = s["per_class"], np.asarray(s["confusion"])
  table = []
  for i in range(len(s["class_names"])):
    row = conf[i].copy()
    if i < len(row):
      row[i] = 0
    worst = int(np.argmax(row)) if row.sum() else None
    acc = {"mean": pc["accuracy"]["mean"][i], "std": pc["accuracy"]["std"][i]}
    table.append({
        "class": v.cls(i), "images": pc["support"][i],
        "accuracy": pm(acc, n) + (f" [{pct(pc['interval_lo'][i], 1)}, "
                                   f"{pct(pc['interval_hi'][i], 1)}]" if n == 1 else ""),
        **{k: pm({"mean": pc[k]["mean"][i], "std": pc[k]["std"][i]}, n, 1)
           for k in ("precision", "recall", "f1")},
        "confused_with": f"{v.pcls(worst)} ({row[worst]})" if worst is not None else "-"})
  v.report.table(f"{v.fpre}per_class", table, columns={
      "class": "class", "images": "images",
      "accuracy": f"accuracy [{level}% interval]" if n == 1 else "accuracy",
      "precision": "precision", "recall": "recall", "f1": "F1",
      "confused_with": "most often predicted as"})
  return plots.per_class_accuracy(
      pc["accuracy"]["mean"], pc["interval_lo"], pc["interval_hi"], v.lab,
      v.report.figure(f"{v.fpre}per_class_accuracy", "per-class accuracy"),
      overall=s["accuracy"]["mean"],
      title="per-class accuracy, "
            + (f"{level}% {s['interval']['method']} intervals" if n == 1 else
               "mean ± std over runs") + f" ({v.tag})")


def _render_confusion(v: _View) -> list[str]:
  from kmnist_jax import plots
  s, n, rep = v.s, v.n, v.report
  rep.section(f"{v.pre}Confusion matrix",
              "Rows: true class; columns: predicted; colour: fraction of the true "
              "class; numbers: counts" + (" (summed over the runs)" if n > 1 else "")
              + ".\n")
  figs = [plots.confusion_heatmap(
      np.asarray(s["confusion"]), v.lab, rep.figure(f"{v.fpre}confusion", "confusion"),
      pred_labels=v.pred_lab, title=f"confusion: {v.tag}")]
  cal = s["calibration"]
  rep.section(f"{v.pre}Calibration",
              f"Expected calibration error {pm(cal['ece'], n)} over "
              f"{cal['num_bins']} equal-width confidence bins (maximum gap "
              f"{pm(cal['mce'], n, 1)})" + ("; the diagram pools the runs' bins"
                                             if n > 1 else "") + ".\n")
  figs.append(plots.reliability_diagram(
      {**cal, "accuracy": floats(cal["accuracy"]), "confidence": floats(
          cal["confidence"]), "ece": cal["ece"]["mean"], "mce": cal["mce"]["mean"]},
      rep.figure(f"{v.fpre}reliability", "reliability"),
      title=f"reliability, ECE {pct(cal['ece']['mean'])} ({v.tag})"))
  return figs


def _render_training(v: _View) -> list[str]:
  from kmnist_jax import plots
  s, pre, fpre, report = v.s, v.pre, v.fpre, v.report
  first = s["first"]
  run = os.path.basename(os.path.normpath(first["workdir"] or "")) or "the run"
  report.section(f"{pre}Training", "" if s["runs"] == 1 else
                 f"Of the first run, `{first['workdir']}`.\n")
  figs = [plots.learning_curves(
      first.get("history") or [], report.figure(f"{fpre}learning_curves",
                                                "learning curves"),
      mark_epoch=first.get("epoch"),
      title=f"training of {run} ({s['model']} on {s['trained_on']})")]
  ep = np.asarray(first["epochs"]["epoch"])
  err = np.asarray(first["epochs"]["val_per_class_error"], dtype=float)
  if len(ep):
    report.text("Per-class validation error (from the confusion recorded each epoch), "
                "first and last epoch:\n")
    report.table(f"{fpre}per_class_error_epochs", [
        {"class": v.pcls(i), "first": pct(err[0, i], 1), "last": pct(err[-1, i], 1)}
        for i in range(err.shape[1])],
        columns={"class": "class", "first": f"epoch {ep[0]}", "last": f"epoch {ep[-1]}"})
  else:
    report.text("No per-epoch validation confusion in this run's history (trained "
                "with val_size=0).\n")
  figs.append(plots.per_class_error_over_epochs(
      ep, err.reshape(len(ep), -1) if len(ep) else np.zeros((0, 0)), v.pred_lab,
      report.figure(f"{fpre}per_class_error_epochs", "per-class error over epochs"),
      title=f"per-class validation error over epochs ({s['trained_on']})"))
  return figs


def render_many(named: Sequence[tuple[str, dict]], report, *, cjk_font="auto",
                details: bool = True, table: str = "comparison") -> dict:
  """Several settings side by side (e.g. MNIST beside KMNIST, seeds as mean ± std):
  the per-class comparison table `table` and its figure, then (`details`) each
  setting's :func:`render`."""
  from kmnist_jax import plots
  named = list(named)
  datasets = list(dict.fromkeys(s["dataset"] for _, s in named))
  infos = [data_lib.get_info(d) for d in datasets]
  C = max(i.num_classes for i in infos)
  heads = {f"class_{d}": f"{d} class" for d in datasets}
  cols = {"#": "#", **heads, **{f"m{j}": nm for j, (nm, _) in enumerate(named)}}
  rows = []
  for c in range(C):
    row = {"#": c, **{f"class_{i.name}": (_name(i.class_names, i.class_glyphs, c)
                                          if c < i.num_classes else "")
                      for i in infos}}
    for j, (_, s) in enumerate(named):
      acc = s["per_class"]["accuracy"]
      row[f"m{j}"] = (pm({"mean": acc["mean"][c], "std": acc["std"][c]}, s["runs"])
                      if c < len(acc["mean"]) else "")
    rows.append(row)
  for key, label in (("accuracy", "**accuracy**"),
                     ("balanced_accuracy", "**balanced accuracy**"), ("ece", "**ECE**")):
    rows.append({"#": label, **{f"class_{d}": "" for d in datasets},
                 **{f"m{j}": pm(s[key], s["runs"])
                                for j, (_, s) in enumerate(named)}})
  report.section("Comparison", "Per-class accuracy (recall) on each setting's "
                 "evaluation split; runs that differ only in their seed are one column, "
                 "mean ± std (sample, ddof=1) over seeds.\n")
  report.table(table, rows, columns=cols)
  pairs = []
  for nm, s in named:
    i = data_lib.get_info(s["dataset"])
    top = ", ".join(f"{_name(i.class_names, i.class_glyphs, d['a'])} ↔ "
                    f"{_name(i.class_names, i.class_glyphs, d['b'])} ({d['count']})"
                    for d in s["most_confused_symmetric"][:5])
    pairs.append(f"- **{nm}**: {top or 'none'}")
  report.text("Most confused pairs (either direction, errors summed over the runs):\n\n"
              + "\n".join(pairs) + "\n")
  if len(infos) == 1:
    lab = plots.class_labels(infos[0].class_names, infos[0].class_glyphs, font=cjk_font)
  else:  # different datasets: one label per class index, e.g. 'o/0'
    lab = plots.class_labels(["/".join(i.class_names[c] for i in infos
                                       if c < i.num_classes) for c in range(C)], None)
  pad = lambda v, fill: np.pad(np.asarray(v, float), (0, C - len(v)),  # noqa: E731
                               constant_values=fill)
  figs = [plots.per_class_comparison(
      [{"name": nm, "mean": pad(floats(s["per_class"]["accuracy"]["mean"]), np.nan),
        "err": pad(s["per_class"]["accuracy"]["std"], 0) if s["runs"] > 1 else None}
       for nm, s in named], lab,
      report.figure(f"{table}_per_class", "per-class accuracy"),
      title="per-class accuracy" + (" (error bars: std over seeds)" if any(
          s["runs"] > 1 for _, s in named) else ""))]
  if details:
    for nm, s in named:
      figs += render(s, report, name=nm, cjk_font=cjk_font)["figures"]
  return {"figures": figs}
