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
