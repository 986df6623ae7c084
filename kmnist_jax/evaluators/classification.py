"""Classification evaluator: accuracy, per-class accuracy with intervals, precision /
recall / F1, confusion, the most confused pairs (directed and symmetric), calibration
(ECE, reliability bins), the most confident mistakes, learning curves.

  config.evals.classification = dict(
      type="classification",
      dataset="",            # default: the checkpoint's own
      split="test",          # test | validation | train (the checkpoint's own carve)
      limit=0,               # first N examples only (0: all)
      interval="wilson",     # wilson | bootstrap, on per-class accuracy
      top_k=5,               # confused pairs shown with pictures
  )

The numbers are :mod:`kmnist_jax.metrics`' (definitions there); predictions come from
:func:`kmnist_jax.inference.predict`. A record also carries the pictures of the most
confident mistakes of its top pairs (base64 uint8, a few KB each) and the training
history, so that :func:`render` needs nothing but the record.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import os
from collections.abc import Sequence

import numpy as np

from kmnist_jax import config as config_lib
from kmnist_jax import data as data_lib
from kmnist_jax import inference, io, metrics
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.evaluators import common
from kmnist_jax.evaluators.common import check_dataset, load_split
from kmnist_jax.report import pct

DEFAULTS = {"dataset": "", "split": "test", "limit": 0, "interval": "wilson",
            "confidence": 0.95, "top_k": 5, "num_bins": 15, "mistakes": 6, "typical": 3,
            "batch_size": 1000, "data_source": "", "progress": False}
INTERVALS = ("wilson", "bootstrap")
# History fields kept in a record (the learning curves); val_confusion is in "epochs".
HISTORY_KEYS = ("epoch", "step", "lr", "train_loss", "train_accuracy", "val_loss",
                "val_accuracy", "test_accuracy", "test_loss_epoch", "elapsed_s")


def _count(c, k, low=0):
  v = c[k]
  if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
    raise UserError(f"classification evaluator: {k}={v!r} must be an integer >= {low}")
  c[k] = int(v)


def check_config(**cfg) -> dict:
  """The settings with defaults filled in, each checked (one-line errors)."""
  bad = sorted(set(cfg) - set(DEFAULTS))
  if bad:
    raise unknown("classification evaluator setting", bad[0], DEFAULTS)
  c = {**DEFAULTS, **cfg}
  if c["dataset"] and c["dataset"] not in data_lib.DATASETS:
    raise unknown("dataset", c["dataset"], data_lib.DATASETS)
  if c["split"] not in ("test", "validation", "train"):
    raise unknown("split", c["split"], ("test", "validation", "train"))
  if c["interval"] not in INTERVALS:
    raise unknown("interval", c["interval"], INTERVALS)
  for k, low in (("limit", 0), ("top_k", 0), ("num_bins", 1), ("mistakes", 1),
                 ("typical", 0), ("batch_size", 1)):
    _count(c, k, low)
  if not 0 < float(c["confidence"]) < 1:
    raise UserError(f"classification evaluator: confidence={c['confidence']!r} must be "
                    "in (0, 1)")
  return c


# ---- One checkpoint --------------------------------------------------------------------

def read_history(workdir: str | None, fallback: Sequence[dict]) -> list[dict]:
  """metrics.jsonl (every epoch trained) if readable, else the checkpoint's history."""
  if workdir:
    try:
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        recs = [json.loads(line) for line in f if line.strip()]
      if recs:
        return recs
    except (OSError, ValueError):
      pass
  return list(fallback)


def encode_images(images) -> dict:
  """uint8 [K, 28, 28] -> {'shape', 'b64'} (compact, JSON-able)."""
  a = np.ascontiguousarray(np.asarray(images, np.uint8))
  return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}


def decode_images(d: dict) -> np.ndarray:
  return np.frombuffer(base64.b64decode(d["b64"]), np.uint8).reshape(d["shape"])


def _examples(images, labels, probs, pairs, c, same_classes: bool) -> list[dict]:
  rows = []
  for pair in pairs[:c["top_k"]]:
    t, q = pair["true"], pair["pred"]
    idx = metrics.confident_mistakes(labels, probs, t, q, k=c["mistakes"])
    tt = metrics.typical_examples(labels, probs, t, c["typical"])
    tq = metrics.typical_examples(labels, probs, q, c["typical"]) if same_classes else []
    rows.append({"true": t, "pred": q, "count": pair["count"],
                 "mistake_index": idx, "mistake_prob": probs[idx, q],
                 "mistakes": encode_images(images[idx]),
                 "typical_true": encode_images(images[tt]),
                 "typical_pred": encode_images(images[np.asarray(tq, np.int64)])})
  return rows


def run(restored, *, data_dir=None, **cfg) -> dict:
  """The record of one restored checkpoint (a :class:`~kmnist_jax.evaluators.Checkpoint`
  gives its workdir: metrics.jsonl history, names in the report)."""
  c = check_config(**cfg)
  workdir = getattr(restored, "workdir", None)
  info = check_dataset(restored, c["dataset"] or None)
  rcfg = restored.config
  trained = data_lib.get_info(rcfg.dataset)
  images, labels = load_split(info.name, c["split"], cfg=rcfg, data_dir=data_dir,
                              source=c["data_source"], limit=c["limit"],
                              where=f"the checkpoint in {workdir or 'memory'}")
  probs = inference.predict(restored, images, output="probs", batch_size=c["batch_size"],
                            progress="evaluating" if c["progress"] else None)
  summary = metrics.summarize(labels, probs, num_classes=info.num_classes,
                              interval=c["interval"], confidence=float(c["confidence"]),
                              top_k=max(10, c["top_k"]), num_bins=c["num_bins"])
  history = read_history(workdir, restored.history)
  epochs, confs = metrics.confusions_over_epochs(history)
  epoch_error = metrics.per_class_error(confs) if len(epochs) else np.zeros((0, 0))
  same = info.class_names == trained.class_names
  record = {
      "workdir": workdir, "step": int(restored.step),
      "step_requested": getattr(restored, "step_requested", str(restored.step)),
      "epoch": next((h["epoch"] for h in restored.history
                     if h.get("step") == restored.step), len(restored.history)),
      "model": rcfg.model, "trained_on": rcfg.dataset, "dataset": info.name,
      "split": c["split"], "limit": c["limit"] or None, "seed": int(rcfg.seed),
      "config": config_lib.to_dict(rcfg),
      "class_names": list(info.class_names), "class_glyphs": list(info.class_glyphs),
      "predicted_class_names": list(trained.class_names),
      "predicted_class_glyphs": list(trained.class_glyphs),
      "created": datetime.datetime.now().isoformat(timespec="seconds"),
      **summary,
      "epochs": {"epoch": epochs, "val_per_class_error": epoch_error},
      "history": [{k: h[k] for k in HISTORY_KEYS if k in h} for h in history],
      "examples": _examples(images, labels, probs, summary["most_confused"], c, same),
  }
  return io.jsonable(record)


# ---- Across seeds ----------------------------------------------------------------------

SCALARS = ("accuracy", "balanced_accuracy", "nll", "ece")
PER_CLASS = ("accuracy", "precision", "recall", "f1")


def _scalar(r, k):
  return r["calibration"]["ece"] if k == "ece" else r[k]


def _ms(values) -> dict:
  v = np.asarray([np.nan if x is None else x for x in values], np.float64)
  mean, std = metrics.mean_std(v)
  return {"mean": mean, "std": std}


def summarize(records: Sequence[dict]) -> dict:
  """Mean and std (ddof=1) over `records` (seeds of one setting) of accuracy, balanced
  accuracy, NLL, ECE and of each per-class score; the confusion and the reliability
  bins summed over the runs (most confused pairs from the summed confusion); the
  pictures and the history are the first run's. With one record, std is 0 and the
  record's own intervals are kept."""
  r0 = common.same_setting(records, ("dataset", "split", "n", "num_classes"),
                           "classification")
  n = len(records)
  conf = sum(np.asarray(r["confusion"], np.int64) for r in records)
  cal = [r["calibration"] for r in records]
  counts = sum(np.asarray(c["count"], np.float64) for c in cal)

  def pooled(key):  # count-weighted mean of a per-bin value over the runs
    num = sum(np.nan_to_num(np.asarray(c[key], np.float64)) * np.asarray(c["count"])
              for c in cal)
    return np.divide(num, counts, out=np.full(len(counts), np.nan), where=counts > 0)

  out = {
      "runs": n, "dataset": r0["dataset"], "split": r0["split"], "n": r0["n"],
      "limit": r0.get("limit"), "num_classes": r0["num_classes"],
      "model": r0["model"], "trained_on": r0["trained_on"],
      "class_names": r0["class_names"], "class_glyphs": r0["class_glyphs"],
      "predicted_class_names": r0["predicted_class_names"],
      "predicted_class_glyphs": r0.get("predicted_class_glyphs",
                                       r0["predicted_class_names"]),
      "interval": r0["interval"],
      "workdirs": [r["workdir"] for r in records], "steps": [r["step"] for r in records],
      "seeds": [r["seed"] for r in records],
      "per_seed": {k: [_scalar(r, k) for r in records] for k in SCALARS},
      "confusion": conf,
      "most_confused": metrics.most_confused(conf, 10),
      "most_confused_symmetric": metrics.most_confused(conf, 10, symmetric=True),
      "calibration": {"num_bins": cal[0]["num_bins"], "edges": cal[0]["edges"],
                      "count": counts.astype(np.int64), "accuracy": pooled("accuracy"),
                      "confidence": pooled("confidence"),
                      "ece": _ms([c["ece"] for c in cal]),
                      "mce": _ms([c["mce"] for c in cal])},
      "first": {k: r0[k] for k in ("workdir", "step", "step_requested", "epoch", "seed",
                                   "examples", "history", "epochs") if k in r0},
  }
  for k in SCALARS:
    out[k] = _ms(out["per_seed"][k])
  pc = {k: _ms([r["per_class"][k] for r in records]) for k in PER_CLASS}
  pc["support"] = np.asarray(r0["per_class"]["support"], np.int64)
  if n == 1:
    pc["interval_lo"] = r0["per_class"]["interval_lo"]
    pc["interval_hi"] = r0["per_class"]["interval_hi"]
  else:  # error bars: mean +- std over the seeds
    m, s = np.asarray(pc["accuracy"]["mean"]), np.asarray(pc["accuracy"]["std"])
    pc["interval_lo"], pc["interval_hi"] = np.clip(m - s, 0, 1), np.clip(m + s, 0, 1)
  out["per_class"] = pc
  return io.jsonable(out)


# ---- Rendering -------------------------------------------------------------------------

def _floats(values) -> np.ndarray:
  """A list from JSON (None for nan) as a float array."""
  return np.asarray([np.nan if v is None else v for v in values], np.float64)


def _name(names, glyphs, i) -> str:
  g, n = glyphs[i], names[i]
  return n if g == n else f"{g} ({n})"


def _pm(d, n, digits=2) -> str:
  s = pct(d["mean"], digits)
  return s + (f" ± {100 * d['std']:.{digits}f}" if n > 1 and s != "-" else "")


def _safe(name: str) -> str:
  s = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in name)
  return "_".join(p for p in s.split("_") if p)


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
  acc = _floats(s["per_class"]["accuracy"]["mean"])
  worst = int(np.nanargmin(acc))
  text = ("**In short**: the most confused pairs are "
          + ", ".join(f"{cls(d['a'])} ↔ {cls(d['b'])} ({d['count']} errors)"
                      for d in sym)
          + f"; the hardest class is {cls(worst)} ({pct(acc[worst], 1)} correct).")
  cal = s["calibration"]
  counts = np.asarray(cal["count"], float)
  if counts.sum() > 0:
    conf = _floats(cal["confidence"])
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


def render(summary: dict, report, *, name: str | None = None, cjk_font="auto") -> dict:
  """The analysis of one setting (one run, or seeds as mean ± std) into `report`:
  headline table, confused pairs (tables + mistakes figure), per class (table +
  figure), confusion matrix, calibration, training. Returns {'figures', 'font'}."""
  lab, pred_lab, _ = _labels(summary, cjk_font)
  v = _View(summary, report, f"{name}: " if name else "",
            f"{_safe(name)}_" if name else "", lab, pred_lab)
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
      "accuracy": _pm(s["accuracy"], n), "balanced": _pm(s["balanced_accuracy"], n),
      "nll": f"{s['nll']['mean']:.4f}" + (f" ± {s['nll']['std']:.4f}" if n > 1 else ""),
      "ece": _pm(s["ece"], n), "mce": _pm(s["calibration"]["mce"], n, 1)}],
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
           "mistakes": list(zip(decode_images(e["mistakes"]), e["mistake_prob"])),
           "typical_true": list(decode_images(e["typical_true"])),
           "typical_pred": list(decode_images(e["typical_pred"]))}
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
        "accuracy": _pm(acc, n) + (f" [{pct(pc['interval_lo'][i], 1)}, "
                                   f"{pct(pc['interval_hi'][i], 1)}]" if n == 1 else ""),
        **{k: _pm({"mean": pc[k]["mean"][i], "std": pc[k]["std"][i]}, n, 1)
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
              f"Expected calibration error {_pm(cal['ece'], n)} over "
              f"{cal['num_bins']} equal-width confidence bins (maximum gap "
              f"{_pm(cal['mce'], n, 1)})" + ("; the diagram pools the runs' bins"
                                             if n > 1 else "") + ".\n")
  figs.append(plots.reliability_diagram(
      {**cal, "accuracy": _floats(cal["accuracy"]), "confidence": _floats(
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
      row[f"m{j}"] = (_pm({"mean": acc["mean"][c], "std": acc["std"][c]}, s["runs"])
                      if c < len(acc["mean"]) else "")
    rows.append(row)
  for key, label in (("accuracy", "**accuracy**"),
                     ("balanced_accuracy", "**balanced accuracy**"), ("ece", "**ECE**")):
    rows.append({"#": label, **{f"class_{d}": "" for d in datasets},
                 **{f"m{j}": _pm(s[key], s["runs"])
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
      [{"name": nm, "mean": pad(_floats(s["per_class"]["accuracy"]["mean"]), np.nan),
        "err": pad(s["per_class"]["accuracy"]["std"], 0) if s["runs"] > 1 else None}
       for nm, s in named], lab,
      report.figure(f"{table}_per_class", "per-class accuracy"),
      title="per-class accuracy" + (" (error bars: std over seeds)" if any(
          s["runs"] > 1 for _, s in named) else ""))]
  if details:
    for nm, s in named:
      figs += render(s, report, name=nm, cjk_font=cjk_font)["figures"]
  return {"figures": figs}
