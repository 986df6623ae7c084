r"""Which classes does a trained model confuse, and why: numbers, pictures, a report.

  python experiments/analyze.py --workdirs=workdirs/kmnist_cnn
      [--step=best|latest|N] [--dataset=kmnist|mnist|fashion_mnist|k49]
      [--split=test|validation|train] [--out=DIR] [--interval=wilson|bootstrap]
      [--cjk_font=auto|none|FAMILY|FILE] [--limit=N]

Restores each model and its config from the checkpoint alone (any model, any parallel
mode it was trained with), evaluates it on the chosen dataset / split (default: the
checkpoint's dataset, test split) and writes ``<workdir>/analysis/`` (or --out):

  report.md                  the readable report (tables + the pictures below)
  metrics.json               every number: accuracy, balanced accuracy, NLL, confusion
                             (counts and row-normalised), per-class accuracy with its
                             interval, precision / recall / F1, the most confused pairs
                             (directed and symmetric), ECE with reliability bins,
                             per-class validation error per epoch
  confusion.png              heatmap, class glyphs as labels (hiragana when a CJK font
                             is installed, romanized names otherwise)
  per_class_accuracy.png     bars with their 95% intervals
  confused_pairs.png         the most confident mistakes of the top pairs beside typical
                             examples of both classes
  reliability.png            reliability diagram
  learning_curves.png        loss / accuracy / learning rate from metrics.jsonl
  per_class_error_epochs.png validation error of each class per epoch

The folder is written under a temporary name and renamed into place: an earlier
analysis is replaced whole or not at all. A checkpoint step folder
(``<workdir>/checkpoints/<step>``) may be given instead of a workdir.

Comparison: several workdirs (e.g. MNIST and KMNIST models, or seeds of one config)

  python experiments/analyze.py --workdirs=workdirs/kmnist_s0,workdirs/kmnist_s1,...
      [--compare_out=DIR]

analyse each one as above and write a side-by-side table (runs that differ only in
their seed are grouped as mean +- std per class) to --compare_out (default:
``comparison/`` in the workdirs' common parent folder): comparison.md, comparison.json,
comparison_per_class.png.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import re
import shutil
import sys
import tempfile

import _bootstrap  # noqa: F401  (puts the repo root on sys.path)
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from tqdm.auto import tqdm

from kmnist_jax import config as config_lib
from kmnist_jax import data as data_lib
from kmnist_jax import metrics, models, plots, train
from kmnist_jax.errors import UserError, unknown

FLAGS = flags.FLAGS


def define_flags():
  """The command-line flags (defined only when run as a script, so that other scripts
  can import this module)."""
  flags.DEFINE_list("workdirs", None, "Training workdir(s) (or checkpoint step folders).")
  flags.DEFINE_string("step", "best", "Checkpoint: best (highest validation accuracy), "
                      "latest, or a step number.")
  flags.DEFINE_string("dataset", "",
                      "Dataset to evaluate on (default: the checkpoint's).")
  flags.DEFINE_enum("split", "test", ["test", "validation", "train"],
                    "Split to evaluate on (validation / train: the checkpoint's own "
                    "val_size / val_seed carve).")
  flags.DEFINE_string("out", "",
                      "Output folder (default: <workdir>/analysis); one workdir only.")
  flags.DEFINE_string("compare_out", "", "Comparison folder for several workdirs "
                      "(default: <common parent>/comparison).")
  flags.DEFINE_string("data_dir", "", "Datasets folder (default: the checkpoint's, else "
                      "$KMNIST_JAX_DATA_DIR, else ~/kmnist_jax_data).")
  flags.DEFINE_string("data_source", "",
                      "auto | files | tfds (default: the checkpoint's).")
  flags.DEFINE_integer("limit", 0,
                       "Evaluate the first N examples of the split only (0: all).")
  flags.DEFINE_integer("top_k", 5, "Confused pairs shown with pictures.")
  flags.DEFINE_enum("interval", "wilson", ["wilson", "bootstrap"],
                    "Interval on per-class accuracy.")
  flags.DEFINE_string("cjk_font", "auto", "Font for hiragana labels: auto (find one), "
                      "none "
                      "(romanized names), or a font family / file.")
  flags.DEFINE_integer("batch_size", 1000, "Evaluation batch size.")


STEP_CHOICES = "best, latest or a step number"


# ---- Restore and evaluate --------------------------------------------------------------

def parse_step(step) -> int | str:
  if isinstance(step, int) and not isinstance(step, bool):
    return step
  s = str(step).strip().lower()
  if s in ("best", "latest"):
    return s
  if re.fullmatch(r"\d+", s):
    return int(s)
  raise UserError(f"--step={step!r} is not valid; use {STEP_CHOICES}")


def resolve_workdir(path: str, step) -> tuple[str, int | str]:
  """(workdir, step): accepts a workdir or a ``<workdir>/checkpoints/<step>`` folder."""
  p = os.path.normpath(path)
  if not os.path.exists(p):
    raise UserError(f"workdir {path!r} does not exist (expected a training workdir "
                    "holding checkpoints/, or a checkpoints/<step> folder)")
  head, tail = os.path.split(os.path.abspath(p))
  if tail.isdigit() and os.path.basename(head) == "checkpoints":
    return os.path.dirname(head), int(tail)
  return p, parse_step(step)


def restore(workdir: str, step="best"):
  """train.Restored for `workdir` at `step` ('best', 'latest' or an int)."""
  workdir, step = resolve_workdir(workdir, step)
  return workdir, train.restore_model(workdir, step)


def num_outputs(model) -> int:
  return int(model.head.out_features)


def check_dataset(restored, workdir: str, dataset: str | None):
  """The DatasetInfo to evaluate on; UserError if its classes don't fit the head."""
  name = dataset or restored.config.dataset
  info = data_lib.get_info(name)
  head = num_outputs(restored.model)
  if info.num_classes != head:
    fits = sorted(n for n, i in data_lib.DATASETS.items() if i.num_classes == head)
    raise UserError(
        f"dataset {name!r} has {info.num_classes} classes but the model in {workdir} "
        f"(step {restored.step}, trained on {restored.config.dataset}) has a "
        f"{head}-class head; expected a dataset with {head} classes: {', '.join(fits)}")
  return info


def load_split(dataset: str, split: str, *, cfg=None, data_dir: str = "",
               source: str = "", limit: int = 0, where: str = "the checkpoint"):
  """(images uint8 [N,28,28], labels int64 [N]) of `dataset`'s `split`. With a
  checkpoint's `cfg`, validation / train are its own carve (its val_size / val_seed)
  and its data_dir / data_source are the defaults."""
  get = (lambda k: cfg.get(k)) if cfg is not None else (lambda k: None)
  if split not in ("test", "validation", "train"):
    raise unknown("split", split, ("test", "validation", "train"))
  val_size = int(get("val_size") or 0) if split != "test" else 0
  if split == "validation" and val_size <= 0:
    raise UserError(f"{where} was trained with val_size=0, so it has no "
                    "validation split; use --split=test")
  ds = data_lib.load(dataset, data_dir=data_dir or get("data_dir") or None,
                     source=source or get("data_source") or "auto",
                     val_size=val_size, val_seed=int(get("val_seed") or 0),
                     tfds_dir=get("tfds_dir") or None)
  s = ds.splits[split]
  images, labels = s.images, s.labels.astype(np.int64)
  if limit and limit > 0:
    images, labels = images[:limit], labels[:limit]
  return images, labels


@functools.lru_cache(maxsize=16)
def _compiled_forward(graphdef, method: str, dtype: str):
  """jit(params, rest, uint8 images) -> probabilities or features; one per model."""
  dt = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32

  @jax.jit
  def fn(params, rest, x):
    out, _ = models.apply(graphdef, params, rest, models.preprocess(x, dt), train=False,
                          method=method)
    out = out.astype(jnp.float32)
    return jax.nn.softmax(out, -1) if method == "__call__" else out

  return fn


def forward(model, images: np.ndarray, *, dtype: str = "float32", batch: int = 1000,
            method: str = "__call__", desc: str | None = None) -> np.ndarray:
  """Softmax probabilities [N, C] (method '__call__') or penultimate features [N, D]
  ('features') of `images`, in jit-compiled batches of `batch` (the last one padded)."""
  graphdef, params, rest = models.split(model)
  fn = _compiled_forward(graphdef, method, dtype)
  n = len(images)
  batch = max(1, min(batch, n))
  outs = []
  starts = range(0, n, batch)
  if desc is not None and len(starts) > 10:
    starts = tqdm(starts, desc=desc, unit="batch", leave=False)
  for i in starts:
    x = images[i:i + batch]
    if len(x) < batch:
      x = np.concatenate([x, np.zeros((batch - len(x),) + x.shape[1:], x.dtype)])
    outs.append(np.asarray(fn(params, rest, x))[:min(batch, n - i)])
  return np.concatenate(outs) if outs else np.zeros((0, num_outputs(model)), np.float32)


# ---- Atomic output folders -------------------------------------------------------------

@contextlib.contextmanager
def atomic_dir(out: str):
  """Yields a temporary sibling folder; on success it replaces `out` whole."""
  out = os.path.abspath(out)
  parent, base = os.path.split(out)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
  os.chmod(tmp, 0o755)
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  old = None
  if os.path.lexists(out):
    old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
    os.rename(out, os.path.join(old, base))
  os.rename(tmp, out)
  if old:
    shutil.rmtree(old, ignore_errors=True)


def _write_json(path: str, obj):
  with open(path, "w") as f:
    json.dump(metrics.jsonable(obj), f, indent=1, ensure_ascii=False, allow_nan=False)
    f.write("\n")


# ---- One run ---------------------------------------------------------------------------

def read_history(workdir: str, fallback: list) -> list[dict]:
  """metrics.jsonl (all epochs trained) if readable, else the checkpoint's history."""
  path = os.path.join(workdir, "metrics.jsonl")
  try:
    with open(path) as f:
      recs = [json.loads(line) for line in f if line.strip()]
    if recs:
      return recs
  except (OSError, ValueError):
    pass
  return list(fallback)


def _pct(x, digits=1) -> str:
  return "-" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}%"


def _name(names, glyphs, i) -> str:
  g, n = glyphs[i], names[i]
  return n if g == n else f"{g} ({n})"


def analyze_run(workdir: str, *, step="best", dataset: str = "", split: str = "test",
                out: str = "", data_dir: str = "", data_source: str = "", limit: int = 0,
                top_k: int = 5, interval: str = "wilson", cjk_font: str | None = "auto",
                batch_size: int = 1000, log=print) -> dict:
  """Analyses one checkpoint and writes its folder; returns the run's record (what
  metrics.json holds, plus numpy arrays for the comparison)."""
  requested = str(step)
  workdir, restored = restore(workdir, step)
  cfg = restored.config
  info = check_dataset(restored, workdir, dataset or None)
  trained_info = data_lib.get_info(cfg.dataset)
  images, labels = load_split(info.name, split, cfg=cfg, data_dir=data_dir,
                              source=data_source, limit=limit,
                              where=f"the checkpoint in {workdir}")
  probs = forward(restored.model, images, dtype=cfg.dtype, batch=batch_size,
                  desc=f"evaluating {os.path.basename(workdir)}")
  summary = metrics.summarize(labels, probs, num_classes=info.num_classes,
                              interval=interval, top_k=max(10, top_k))
  history = read_history(workdir, restored.history)
  epochs, confs = metrics.confusions_over_epochs(history)
  epoch_error = metrics.per_class_error(confs) if len(epochs) else np.zeros((0, 0))
  analysed_epoch = next((h["epoch"] for h in restored.history
                         if h.get("step") == restored.step), len(restored.history))

  lab = plots.class_labels(info.class_names, info.class_glyphs, font=cjk_font)
  same_classes = info.class_names == trained_info.class_names
  pred_lab = lab if same_classes else plots.class_labels(
      trained_info.class_names, trained_info.class_glyphs, font=cjk_font)
  epoch_lab = pred_lab

  pcs = summary["per_class"]
  record = {
      "workdir": os.path.abspath(workdir),
      "step": restored.step,
      "step_requested": requested,
      "epoch": analysed_epoch,
      "model": cfg.model,
      "trained_on": cfg.dataset,
      "dataset": info.name,
      "split": split,
      "limit": limit or None,
      "seed": int(cfg.seed),
      "config": config_lib.to_dict(cfg),
      "class_names": list(info.class_names),
      "class_glyphs": list(info.class_glyphs),
      "predicted_class_names": list(trained_info.class_names),
      "labels_drawn_with_font": lab.font,
      "created": datetime.datetime.now().isoformat(timespec="seconds"),
      **summary,
      "epochs": {"epoch": epochs, "val_per_class_error": epoch_error},
  }

  out = out or os.path.join(workdir, "analysis")
  files = {}
  with atomic_dir(out) as tmp:
    p = lambda name: os.path.join(tmp, name)  # noqa: E731
    tag = f"{cfg.model} on {info.name} {split}, step {restored.step}"
    files["confusion"] = plots.confusion_heatmap(
        summary["confusion"], lab, p("confusion.png"), pred_labels=pred_lab,
        title=f"confusion: {tag}")
    files["per_class_accuracy"] = plots.per_class_accuracy(
        pcs["accuracy"], pcs["interval_lo"], pcs["interval_hi"], lab,
        p("per_class_accuracy.png"), overall=summary["accuracy"],
        title=f"per-class accuracy, {int(100 * summary['interval']['confidence'])}% "
              f"{interval} intervals ({tag})")
    rows = []
    for pair in summary["most_confused"][:top_k]:
      t, q = pair["true"], pair["pred"]
      idx = metrics.confident_mistakes(labels, probs, t, q, k=6)
      rows.append({
          "true": t, "pred": q, "count": pair["count"],
          "mistakes": [(images[i], float(probs[i, q])) for i in idx],
          "typical_true": [images[i]
                           for i in metrics.typical_examples(labels, probs, t, 3)],
          "typical_pred": ([images[i]
                            for i in metrics.typical_examples(labels, probs, q, 3)]
                           if same_classes else []),
      })
    files["confused_pairs"] = plots.mistakes_grid(
        rows, lab, p("confused_pairs.png"), pred_labels=pred_lab,
        title=f"top {len(rows)} confused pairs: most confident mistakes (red) beside "
              f"typical examples (green)")
    files["reliability"] = plots.reliability_diagram(
        summary["calibration"], p("reliability.png"),
        title=f"reliability, ECE {_pct(summary['calibration']['ece'], 2)} ({tag})")
    files["learning_curves"] = plots.learning_curves(
        history, p("learning_curves.png"), mark_epoch=analysed_epoch,
        title=f"training of {os.path.basename(os.path.abspath(workdir))} "
              f"({cfg.model} on {cfg.dataset})")
    files["per_class_error_epochs"] = plots.per_class_error_over_epochs(
        epochs, epoch_error, epoch_lab, p("per_class_error_epochs.png"),
        title=f"per-class validation error over epochs ({cfg.dataset})")
    record["files"] = {k: os.path.basename(v) for k, v in files.items()}
    record["files"]["report"] = "report.md"
    _write_json(p("metrics.json"), record)
    with open(p("report.md"), "w") as f:
      f.write(report_md(record, trained_info))
  record["out"] = os.path.abspath(out)
  top = summary["most_confused_symmetric"][:3]
  names, glyphs = info.class_names, info.class_glyphs
  log(f"{workdir} (step {restored.step}): {info.name} {split} accuracy "
      f"{_pct(summary['accuracy'], 2)}, balanced "
      f"{_pct(summary['balanced_accuracy'], 2)}, "
      f"ECE {_pct(summary['calibration']['ece'], 2)}; most confused: "
      + (", ".join(f"{_name(names, glyphs, d['a'])} <-> {_name(names, glyphs, d['b'])} "
                   f"({d['count']})" for d in top) or "none")
      + f"; report: {os.path.join(record['out'], 'report.md')}")
  return record


def report_md(r: dict, trained_info) -> str:
  """The Markdown report of one run's record."""
  names, glyphs = r["class_names"], r["class_glyphs"]
  pnames, pglyphs = trained_info.class_names, trained_info.class_glyphs
  cls = lambda i: _name(names, glyphs, i)       # noqa: E731
  pcls = lambda i: _name(pnames, pglyphs, i)    # noqa: E731
  pc = r["per_class"]
  cal = r["calibration"]
  conf = np.asarray(r["confusion"])
  level = int(round(100 * r["interval"]["confidence"]))
  L = []
  L.append(f"# Confusion analysis: {r['model']} on {r['dataset']} ({r['split']})\n")
  L.append(f"Checkpoint `{r['workdir']}` at step {r['step']} (epoch {r['epoch']}; "
           f"`--step={r['step_requested']}`), a `{r['model']}` trained on "
           f"`{r['trained_on']}` (seed {r['seed']}), evaluated on {r['n']:,} "
           f"`{r['dataset']}` {r['split']} images"
           + (f" (first {r['limit']:,} only)" if r.get("limit") else "") + ".\n")
  if r["dataset"] != r["trained_on"]:
    L.append(f"**Cross-dataset**: rows are {r['dataset']} classes, predictions are the "
             f"model's {r['trained_on']} classes; accuracy compares class indices.\n")
  L.append("| accuracy | balanced accuracy | NLL | ECE | MCE |")
  L.append("|---|---|---|---|---|")
  L.append(f"| {_pct(r['accuracy'], 2)} | {_pct(r['balanced_accuracy'], 2)} | "
           f"{r['nll']:.4f} | {_pct(cal['ece'], 2)} | {_pct(cal['mce'], 1)} |\n")
  sym = r["most_confused_symmetric"][:3]
  if sym:
    acc = np.asarray(pc["accuracy"], float)
    worst = int(np.nanargmin(acc))
    L.append("**In short**: the most confused pairs are "
             + ", ".join(f"{cls(d['a'])} ↔ {cls(d['b'])} ({d['count']} errors)"
                         for d in sym)
             + f"; the hardest class is {cls(worst)} ({_pct(acc[worst])} correct).")
    counts = np.asarray(cal["count"], float)
    if counts.sum() > 0:
      mean_conf = float(np.nansum(np.asarray(cal["confidence"], float) * counts)
                        / counts.sum())
      way = "over" if mean_conf > r["accuracy"] else "under"
      L.append(f"Mean confidence {_pct(mean_conf)} vs accuracy {_pct(r['accuracy'])}: "
               f"{way}-confident on average.\n")

  L.append("## Most confused pairs\n")
  L.append("Either direction (errors a as b plus b as a; rate = errors / images of "
           "both):\n")
  L.append("| # | pair | errors | a as b | b as a | rate |")
  L.append("|---|---|---|---|---|---|")
  for i, d in enumerate(r["most_confused_symmetric"], 1):
    L.append(f"| {i} | {cls(d['a'])} ↔ {cls(d['b'])} | {d['count']} | {d['a_as_b']} | "
             f"{d['b_as_a']} | {_pct(d['rate'], 2)} |")
  L.append("\nDirected (rate = errors / images of the true class):\n")
  L.append("| # | true | predicted as | errors | rate |")
  L.append("|---|---|---|---|---|")
  for i, d in enumerate(r["most_confused"], 1):
    L.append(f"| {i} | {cls(d['true'])} | {pcls(d['pred'])} | {d['count']} | "
             f"{_pct(d['rate'], 2)} |")
  L.append("\nThe most confident mistakes of the top directed pairs (red, with the "
           "probability given to the wrong class) beside typical examples of both "
           "classes (green: correctly classified with the highest probability):\n")
  L.append(f"![confused pairs]({r['files']['confused_pairs']})\n")

  L.append("## Per class\n")
  L.append(f"Accuracy is recall (correct / images of the class), with a {level}% "
           f"{r['interval']['method']} interval.\n")
  L.append(f"| class | images | accuracy [{level}% interval] | precision | recall | F1 | "
           "most often predicted as |")
  L.append("|---|---|---|---|---|---|---|")
  for i in range(len(names)):
    row = conf[i].copy()
    if i < len(row):
      row[i] = 0
    worst = int(np.argmax(row)) if row.sum() else None
    worst_s = f"{pcls(worst)} ({row[worst]})" if worst is not None else "-"
    L.append(f"| {cls(i)} | {pc['support'][i]} | {_pct(pc['accuracy'][i], 2)} "
             f"[{_pct(pc['interval_lo'][i])}, {_pct(pc['interval_hi'][i])}] | "
             f"{_pct(pc['precision'][i], 1)} | {_pct(pc['recall'][i], 1)} | "
             f"{_pct(pc['f1'][i], 1)} | {worst_s} |")
  L.append(f"\n![per-class accuracy]({r['files']['per_class_accuracy']})\n")
  L.append("## Confusion matrix\n")
  L.append("Rows: true class; columns: predicted; colour: fraction of the true class; "
           "numbers: counts.\n")
  L.append(f"![confusion]({r['files']['confusion']})\n")
  L.append("## Calibration\n")
  L.append(f"Expected calibration error {_pct(cal['ece'], 2)} over {cal['num_bins']} "
           f"equal-width confidence bins (maximum gap {_pct(cal['mce'], 1)}).\n")
  L.append(f"![reliability]({r['files']['reliability']})\n")
  L.append("## Training\n")
  L.append(f"![learning curves]({r['files']['learning_curves']})\n")
  ep = np.asarray(r["epochs"]["epoch"])
  err = np.asarray(r["epochs"]["val_per_class_error"])
  if len(ep):
    L.append("Per-class validation error (from the confusion recorded each epoch), "
             "first and last epoch:\n")
    L.append("| class | " + " | ".join(f"epoch {e}" for e in (ep[0], ep[-1])) + " |")
    L.append("|---|---|---|")
    for i in range(err.shape[1]):
      L.append(f"| {pcls(i)} | {_pct(err[0, i])} | {_pct(err[-1, i])} |")
    L.append("")
  else:
    L.append("No per-epoch validation confusion in this run's history (trained with "
             "val_size=0).\n")
  L.append(f"![per-class error over epochs]({r['files']['per_class_error_epochs']})\n")
  L.append("## Files\n")
  L.append("`metrics.json` holds every number above (confusion counts and "
           "row-normalised, per-class scores and intervals, calibration bins, per-epoch "
           "errors). "
           f"Written {r['created']} by `experiments/analyze.py`.\n")
  return "\n".join(L)


# ---- Comparison ------------------------------------------------------------------------

_NOT_GROUPING = {"seed", "data_dir", "data_source", "tfds_dir"}


def group_key(r: dict) -> str:
  c = {k: v for k, v in r["config"].items()
       if k not in _NOT_GROUPING and k not in config_lib.RUNTIME_FIELDS}
  return json.dumps([c, r["dataset"], r["split"], r.get("limit")], sort_keys=True)


def compare(records: list[dict], out: str, *, cjk_font="auto", log=print) -> dict:
  """Side-by-side table of several analysed runs; runs differing only by seed form one
  group (mean +- std per class). Writes comparison.{md,json} and a PNG to `out`."""
  groups: dict[str, list[dict]] = {}
  for r in records:
    groups.setdefault(group_key(r), []).append(r)
  base_names = [f"{g[0]['model']} on {g[0]['dataset']}" for g in groups.values()]
  entries = []
  for (key, runs), base in zip(groups.items(), base_names):
    name = base
    if base_names.count(base) > 1:
      name = f"{base} ({os.path.basename(runs[0]['workdir'])})"
    acc = np.array([np.asarray(r["per_class"]["accuracy"], float) for r in runs])
    mean, std = metrics.mean_std(acc)
    conf = sum(np.asarray(r["confusion"]) for r in runs)

    def ms(key):
      return metrics.mean_std([r[key] if key != "ece" else r["calibration"]["ece"]
                               for r in runs])

    entries.append({
        "name": name + (f" ({len(runs)} seeds)" if len(runs) > 1 else ""),
        "dataset": runs[0]["dataset"], "split": runs[0]["split"],
        "runs": [{"workdir": r["workdir"], "step": r["step"], "seed": r["seed"],
                  "accuracy": r["accuracy"]} for r in runs],
        "per_class_accuracy_mean": mean, "per_class_accuracy_std": std,
        "accuracy": ms("accuracy"), "balanced_accuracy": ms("balanced_accuracy"),
        "ece": ms("ece"),
        "most_confused_symmetric": metrics.most_confused(conf, 5, symmetric=True),
    })

  datasets = list(dict.fromkeys(e["dataset"] for e in entries))
  infos = [data_lib.get_info(d) for d in datasets]
  C = max(i.num_classes for i in infos)

  def cell(m, s, n):
    return _pct(m, 2) + (f" ± {100 * s:.2f}" if n > 1 else "")

  L = ["# Comparison\n"]
  L.append("Per-class accuracy (recall) on each run's evaluation split; runs that differ "
           "only in their seed are one column, mean ± std (sample, ddof=1) over "
           "seeds.\n")
  head = ["#"] + [f"{d} class" for d in datasets] + [e["name"] for e in entries]
  L.append("| " + " | ".join(head) + " |")
  L.append("|" + "---|" * len(head))
  for c in range(C):
    row = [str(c)] + [_name(i.class_names, i.class_glyphs, c) if c < i.num_classes else ""
                      for i in infos]
    for e in entries:
      m, s = e["per_class_accuracy_mean"], e["per_class_accuracy_std"]
      row.append(cell(m[c], s[c], len(e["runs"])) if c < len(m) else "")
    L.append("| " + " | ".join(row) + " |")
  for key, label in (("accuracy", "**accuracy**"),
                     ("balanced_accuracy", "**balanced accuracy**"), ("ece", "**ECE**")):
    row = [label] + [""] * len(datasets)
    row += [cell(*e[key], len(e["runs"])) for e in entries]
    L.append("| " + " | ".join(row) + " |")
  L.append("\nMost confused pairs (either direction, errors summed over the group's "
           "runs):\n")
  for e in entries:
    info = data_lib.get_info(e["dataset"])
    pairs = ", ".join(
        f"{_name(info.class_names, info.class_glyphs, d['a'])} ↔ "
        f"{_name(info.class_names, info.class_glyphs, d['b'])} ({d['count']})"
        for d in e["most_confused_symmetric"])
    L.append(f"- **{e['name']}**: {pairs or 'none'}")
  L.append("\nRuns:\n")
  for e in entries:
    for r in e["runs"]:
      L.append(f"- {e['name']}: `{r['workdir']}` step {r['step']}, seed {r['seed']}, "
               f"accuracy {_pct(r['accuracy'], 2)}")
  L.append("\n![per-class accuracy](comparison_per_class.png)\n")

  if len(infos) == 1:
    lab = plots.class_labels(infos[0].class_names, infos[0].class_glyphs, font=cjk_font)
  else:  # different datasets: one label per class index, e.g. 'o/0'
    texts = ["/".join(i.class_names[c] for i in infos if c < i.num_classes)
             for c in range(C)]
    lab = plots.class_labels(texts, None)
  with atomic_dir(out) as tmp:
    plots.per_class_comparison(
        [{"name": e["name"], "mean": np.pad(e["per_class_accuracy_mean"],
                                            (0, C - len(e["per_class_accuracy_mean"])),
                                            constant_values=np.nan),
          "err": (np.pad(e["per_class_accuracy_std"],
                         (0, C - len(e["per_class_accuracy_std"])))
                  if len(e["runs"]) > 1 else None)} for e in entries],
        lab, os.path.join(tmp, "comparison_per_class.png"),
        title="per-class accuracy" + (
            " (error bars: std over seeds)"
            if any(len(e["runs"]) > 1 for e in entries) else ""))
    _write_json(os.path.join(tmp, "comparison.json"), {"groups": entries})
    with open(os.path.join(tmp, "comparison.md"), "w") as f:
      f.write("\n".join(L))
  log(f"comparison of {len(records)} runs in {len(entries)} groups: "
      f"{os.path.join(os.path.abspath(out), 'comparison.md')}")
  return {"groups": entries, "out": os.path.abspath(out)}


def default_compare_out(workdirs: list[str]) -> str:
  parents = [os.path.dirname(os.path.abspath(w.rstrip("/"))) for w in workdirs]
  return os.path.join(os.path.commonpath(parents), "comparison")


def run(workdirs: list[str], *, out: str = "", compare_out: str = "", log=print,
        **kwargs) -> dict:
  """Analyses every workdir; with several, also writes the comparison."""
  if not workdirs:
    raise UserError("--workdirs is empty; give one or more training workdirs")
  if out and len(workdirs) > 1:
    raise UserError(f"--out names one folder but {len(workdirs)} workdirs were given; "
                    "drop --out (each gets <workdir>/analysis) and use --compare_out")
  parse_step(kwargs.get("step", "best"))
  records = [analyze_run(w, out=out, log=log, **kwargs) for w in workdirs]
  result = {"runs": records}
  if len(records) > 1:
    result["comparison"] = compare(records, compare_out or default_compare_out(workdirs),
                                   cjk_font=kwargs.get("cjk_font", "auto"), log=log)
  return result


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.ERROR)  # Orbax warns about every read-only open
  try:
    run([w for w in FLAGS.workdirs if w], step=FLAGS.step, dataset=FLAGS.dataset,
        split=FLAGS.split, out=FLAGS.out, compare_out=FLAGS.compare_out,
        data_dir=FLAGS.data_dir, data_source=FLAGS.data_source, limit=FLAGS.limit,
        top_k=FLAGS.top_k, interval=FLAGS.interval,
        cjk_font=None if FLAGS.cjk_font.lower() == "none" else FLAGS.cjk_font,
        batch_size=FLAGS.batch_size)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdirs"])
  app.run(main)
