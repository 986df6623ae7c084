r"""The transfer study: do MNIST features help KMNIST (and the reverse), how much, for
which classes, and with how few labels.

  python experiments/transfer.py --config experiments/configs/transfer_reduced.py \
      --workdir workdirs/transfer_reduced
      [--sources=mnist=DIR,kmnist=DIR,...] [--config.transfer.seeds=(0,1) ...]

The config is a training config (kmnist_jax.config.base(): the source models'
architecture and schedule) plus a `transfer` block: `directions` ('mnist->kmnist',
...), `modes` (linear_probe, finetune, finetune_last; see kmnist_jax.transfer.finetune),
`shots` (examples per class: numbers or 'all'), `seeds`, the step budget, batch size,
per-part learning rates and the CKA settings.

1. Sources: each source dataset's model is trained with
   ``kmnist_jax.train.train_and_evaluate`` into ``<workdir>/sources/<dataset>``
   (resumed when interrupted, reused when finished), unless --sources names a
   training workdir for it.
2. Runs: for each direction, mode, k and seed the source backbone gets a new head for
   the target's classes and trains on k examples per class of the target's training
   set (sampled from the seed; the same subset for every mode), then is tested on the
   target's test set. The baseline trains the same architecture from scratch on the
   same subset with the same budget (one per target, k and seed). Each run writes
   ``<workdir>/runs/.../seed<s>.json`` atomically; re-running skips finished runs
   whose settings match, so the command can be stopped and re-run at any time.
3. CKA: linear CKA between the layers of the source models and a randomly
   initialised one, on the first `cka_examples` test images of `cka_dataset`.

Writes in --workdir (atomically): table.md / table.csv (target test accuracy mean
and std over seeds, gain over scratch paired by seed), results.json (every number),
accuracy_vs_shots.png, per_class_gain.png (at k = `gain_shots`), cka.png, report.md.
Bad input (an unknown mode, dataset or direction, k larger than a class, a source
checkpoint that does not exist or whose model has no features) stops before any
training with one line on stderr, exit code 2.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import platform
import sys
import time

import _bootstrap  # noqa: F401  (puts the repo root on sys.path)
from absl import app, flags, logging
from ml_collections import config_flags

from kmnist_jax.errors import UserError
from kmnist_jax.io import atomic_write

FLAGS = flags.FLAGS
if __name__ == "__main__":
  config_flags.DEFINE_config_file(
      "config", None, "Study config (experiments/configs/transfer_*.py).",
      lock_config=True)
  flags.DEFINE_string("workdir", None, "Root folder of sources, runs, tables, pictures.")
  flags.DEFINE_string("sources", "", "Use these training workdirs as source models "
                      "instead of training them: DATASET=DIR[,DATASET=DIR...].")
  flags.DEFINE_bool("compilation_cache", True,
                    "Persistent XLA compilation cache in <workdir>/jax_cache.")
  flags.mark_flags_as_required(["config", "workdir"])

BLOCK = "transfer"


# ---- Plan -------------------------------------------------------------------------------

def parse_direction(text: str) -> tuple[str, str]:
  from kmnist_jax import data as data_lib
  parts = [p.strip() for p in str(text).split("->")]
  if len(parts) != 2 or not all(parts):
    raise UserError(f"config.transfer.directions: {text!r} is not SOURCE->TARGET, "
                    "e.g. 'mnist->kmnist'")
  for name in parts:
    if name not in data_lib.DATASETS:
      raise UserError(f"config.transfer.directions: unknown dataset {name!r} in "
                      f"{text!r}; valid choices: {', '.join(sorted(data_lib.DATASETS))}")
  if parts[0] == parts[1]:
    raise UserError(f"config.transfer.directions: {text!r} transfers a dataset to itself")
  return parts[0], parts[1]


def parse_sources(text: str) -> dict[str, str]:
  from kmnist_jax import data as data_lib
  out = {}
  for item in filter(None, (s.strip() for s in text.split(","))):
    name, sep, path = item.partition("=")
    if not sep or not path:
      raise UserError(f"--sources: {item!r} is not DATASET=DIR")
    if name not in data_lib.DATASETS:
      raise UserError(f"--sources: unknown dataset {name!r}; valid choices: "
                      f"{', '.join(sorted(data_lib.DATASETS))}")
    if not os.path.isdir(path):
      raise UserError(f"--sources: source checkpoint {path!r} (for {name}) does not exist")
    out[name] = path
  return out


def plan(cfg) -> dict:
  """Checks every name and number of the config; returns the study's plan."""
  from flax import nnx
  from kmnist_jax import config as config_lib
  from kmnist_jax import data as data_lib
  from kmnist_jax import train
  from kmnist_jax.transfer import finetune as tl

  if BLOCK not in cfg:
    raise UserError("the study config has no 'transfer' block; start from "
                    "experiments/configs/transfer_reduced.py")
  t = cfg[BLOCK]
  src_cfg = source_config(cfg, "mnist")
  config_lib.validate(src_cfg)
  model = nnx.eval_shape(lambda: train.init_model(src_cfg, 10))
  tl.check_has_features(model, f"config.model={cfg.model!r}")
  directions = [parse_direction(d) for d in t.directions]
  if not directions:
    raise UserError("config.transfer.directions is empty; e.g. ('mnist->kmnist',)")
  modes = [tl.check_mode(m, scratch=False) for m in t.modes]
  if not modes:
    raise UserError(f"config.transfer.modes is empty; valid choices: {', '.join(tl.MODES)}")
  shots = [tl.shots_label(k) for k in t.shots]
  if not shots or not list(t.seeds):
    raise UserError("config.transfer.shots and config.transfer.seeds must not be empty")
  for f in ("steps", "batch_size", "head_lr", "backbone_lr", "cka_examples"):
    if not t[f] > 0:
      raise UserError(f"config.transfer.{f}={t[f]!r} must be > 0")
  if t.steps_all < 0 or t.test_limit < 0:
    raise UserError("config.transfer.steps_all and test_limit must be >= 0 (0: default)")
  if "finetune_last" in modes:
    n = tl.num_blocks(model)
    if not 1 <= t.last_n <= n:
      raise UserError(f"config.transfer.last_n={t.last_n}: the {cfg.model} model has "
                      f"{n} backbone blocks; use 1 <= last_n <= {n}")
  if t.gain_shots not in shots:
    raise UserError(f"config.transfer.gain_shots={t.gain_shots!r} must be one of the "
                    f"shots {', '.join(shots)}")
  if t.cka_dataset not in data_lib.DATASETS:
    raise UserError(f"config.transfer.cka_dataset={t.cka_dataset!r}; valid choices: "
                    f"{', '.join(sorted(data_lib.DATASETS))}")
  opt = optimizer_config(cfg)
  config_lib.validate(opt)
  sources = sorted({s for s, _ in directions} | set(t.cka_models))
  for s in t.cka_models:
    if s not in data_lib.DATASETS:
      raise UserError(f"config.transfer.cka_models: unknown dataset {s!r}; valid "
                      f"choices: {', '.join(sorted(data_lib.DATASETS))}")
  targets = list(dict.fromkeys(tg for _, tg in directions))
  runs = []
  for tg in targets:
    for seed in t.seeds:
      for k in shots:
        runs.append(dict(target=tg, source=None, mode=tl.SCRATCH, shots=k, seed=int(seed)))
        for s, tg2 in directions:
          if tg2 == tg:
            for m in modes:
              runs.append(dict(target=tg, source=s, mode=m, shots=k, seed=int(seed)))
  return dict(directions=directions, modes=modes, shots=shots, seeds=list(map(int, t.seeds)),
              sources=sources, targets=targets, runs=runs)


def source_config(cfg, dataset: str):
  """The training config of one source model: the study config without its block."""
  from kmnist_jax import config as config_lib
  d = config_lib.to_dict(cfg)
  d.pop(BLOCK, None)
  c = config_lib.from_dict(d)
  c.dataset = dataset
  return c


def optimizer_config(cfg):
  """The config the transfer optimizers are built from (kmnist_jax.optim names)."""
  t = cfg[BLOCK]
  c = source_config(cfg, "mnist")
  c.optimizer = t.optimizer
  c.schedule = t.schedule
  c.warmup_epochs = 0.0
  c.weight_decay = t.weight_decay
  c.learning_rate = t.head_lr
  c.label_smoothing = 0.0
  return c


def run_path(workdir: str, run: dict) -> str:
  name = (f"scratch_{run['target']}" if run["source"] is None
          else f"{run['source']}_to_{run['target']}")
  mode = "" if run["source"] is None else run["mode"]
  return os.path.join(workdir, "runs", name, mode, f"k{run['shots']}", f"seed{run['seed']}.json")


def run_spec(cfg, run: dict, source_dir: str | None, source_step: int | None) -> dict:
  """Everything that determines a run's result (a finished run with another spec is
  run again)."""
  from kmnist_jax import config as config_lib
  t = config_lib.to_dict(cfg[BLOCK])
  keep = ("steps", "steps_all", "batch_size", "head_lr", "backbone_lr", "last_n",
          "optimizer", "schedule", "weight_decay", "test_limit")
  return {**run, "source_dir": source_dir and os.path.abspath(source_dir),
          "source_step": source_step, "model": cfg.model,
          "model_kwargs": config_lib.to_dict(cfg)["model_kwargs"],
          **{k: t[k] for k in keep}}


# ---- Sources ------------------------------------------------------------------------------

def ensure_sources(cfg, plan_: dict, workdir: str, given: dict, log) -> dict:
  """{dataset: kmnist_jax.transfer.finetune.Source}: given workdirs, or trained ones."""
  from kmnist_jax import train
  from kmnist_jax.transfer import finetune as tl
  out = {}
  # Given sources first: a bad one fails before anything trains.
  for ds in sorted(plan_["sources"], key=lambda d: d not in given):
    if ds in given:
      out[ds] = tl.load_source(given[ds])
      if out[ds].dataset != ds:
        raise UserError(f"--sources: {given[ds]} holds a model trained on "
                        f"{out[ds].dataset!r}, not {ds!r}")
      # The scratch baseline is built from the study config: same architecture needed.
      want = train.resolved_config(source_config(cfg, ds))
      got = train.resolved_config(out[ds].config)
      if (got["model"], got["model_kwargs"]) != (want["model"], want["model_kwargs"]):
        raise UserError(f"--sources: {given[ds]} holds a {got['model']} "
                        f"{got['model_kwargs']}, the study config a {want['model']} "
                        f"{want['model_kwargs']}: the scratch baseline would differ; "
                        "set --config.model / --config.model_kwargs to match")
      continue
    wd = os.path.join(workdir, "sources", ds)
    res_path = os.path.join(wd, "results.json")
    finished = False
    if os.path.exists(res_path):
      with open(res_path) as f:
        finished = json.load(f).get("finished", False)
    if not finished:
      log(f"training the {ds} source model in {wd}")
      t0 = time.time()
      res = train.train_and_evaluate(source_config(cfg, ds), wd, log=lambda *_: None)
      log(f"  {ds} source: test accuracy {res['test_accuracy']:.4f} "
          f"({time.time() - t0:.0f} s)")
    out[ds] = tl.load_source(wd)
  return out


# ---- Summaries ------------------------------------------------------------------------------

def _ms(values):
  import numpy as np
  if not values:
    return None, None
  return (float(np.mean(values)),
          float(np.std(values, ddof=1)) if len(values) > 1 else None)


def summarize(plan_: dict, results: dict, sources: dict, cka: dict | None,
              meta: dict, gain_shots: str) -> dict:
  """Rows for the table (direction x mode x k), per-class gains, CKA, meta."""
  import numpy as np
  from kmnist_jax import data as data_lib

  def get(target, source, mode, k, seed):
    return results.get((target, source, mode, k, seed))

  rows = []
  for src, tg in plan_["directions"]:
    for mode in ["scratch"] + plan_["modes"]:
      for k in plan_["shots"]:
        s_key = None if mode == "scratch" else src
        got = {s: get(tg, s_key, mode, k, s) for s in plan_["seeds"]}
        got = {s: r for s, r in got.items() if r is not None}
        mean, std = _ms([r["test_accuracy"] for r in got.values()])
        row = dict(direction=f"{src}->{tg}", source=src, target=tg, mode=mode, shots=k,
                   seeds=sorted(got), mean=mean, std=std,
                   test_accuracy=[got[s]["test_accuracy"] for s in sorted(got)])
        if mode != "scratch":
          paired = [s for s in sorted(got) if get(tg, None, "scratch", k, s)]
          gains = [got[s]["test_accuracy"] - get(tg, None, "scratch", k, s)["test_accuracy"]
                   for s in paired]
          row["gain_mean"], row["gain_std"] = _ms(gains)
          if paired:
            d = np.array([np.subtract(got[s]["per_class_accuracy"],
                                      get(tg, None, "scratch", k, s)["per_class_accuracy"])
                          for s in paired])
            row["per_class_gain"] = d.mean(0).tolist()
            row["per_class_gain_std"] = d.std(0, ddof=1).tolist() if len(paired) > 1 else None
        if got:
          row["per_class_accuracy"] = np.mean(
              [got[s]["per_class_accuracy"] for s in got], 0).tolist()
        rows.append(row)
  names = {tg: list(data_lib.get_info(tg).class_names) for _, tg in plan_["directions"]}
  return {"meta": meta, "rows": rows, "shots": plan_["shots"], "seeds": plan_["seeds"],
          "modes": plan_["modes"], "directions": [f"{s}->{t}" for s, t in plan_["directions"]],
          "class_names": names, "gain_shots": gain_shots,
          "sources": {ds: {"workdir": s.workdir, "test_accuracy": s.test_accuracy}
                      for ds, s in sources.items()},
          "cka": cka}


def _cell(row) -> str:
  if row["mean"] is None:
    return "–"
  s = f"{100 * row['mean']:.1f}"
  if row["std"] is not None:
    s += f" ± {100 * row['std']:.1f}"
  if row.get("gain_mean") is not None:
    s += f" ({100 * row['gain_mean']:+.1f})"
  return s


def render_table(summary: dict) -> str:
  lines = []
  for d in summary["directions"]:
    modes = ["scratch"] + summary["modes"]
    lines += [f"**{d}** (target test accuracy %, mean ± std over seeds; in brackets the "
              "gain over scratch in pp, paired by seed)", "",
              "| k | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    for k in summary["shots"]:
      cells = [_cell(next(r for r in summary["rows"] if r["direction"] == d
                          and r["mode"] == m and r["shots"] == k)) for m in modes]
      lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines)


def render_csv(summary: dict) -> str:
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(["direction", "mode", "shots", "n_seeds", "test_acc_mean", "test_acc_std",
              "gain_mean", "gain_std"])
  f = lambda x: "" if x is None else f"{x:.6f}"  # noqa: E731
  for r in summary["rows"]:
    w.writerow([r["direction"], r["mode"], r["shots"], len(r["seeds"]), f(r["mean"]),
                f(r["std"]), f(r.get("gain_mean")), f(r.get("gain_std"))])
  return buf.getvalue()


def gain_table(summary: dict) -> str:
  k = summary["gain_shots"]
  lines = []
  for d in summary["directions"]:
    rows = [r for r in summary["rows"] if r["direction"] == d and r["shots"] == k
            and r.get("per_class_gain") is not None]
    if not rows:
      continue
    names = summary["class_names"][rows[0]["target"]]
    lines += [f"Per-class gain over scratch, **{d}**, k = {k} (pp, mean over seeds):", "",
              "| mode | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in rows:
      lines.append(f"| {r['mode']} | " + " | ".join(
          f"{100 * g:+.1f}" for g in r["per_class_gain"]) + " |")
    lines.append("")
  return "\n".join(lines)


def render_report(summary: dict) -> str:
  m = summary["meta"]
  src = ", ".join(f"{ds} {100 * v['test_accuracy']:.2f}%" for ds, v in
                  summary["sources"].items() if v.get("test_accuracy") is not None)
  lines = [
      "# Transfer between MNIST and KMNIST", "",
      f"{m['date']} · {m['device']} ({m['cpu_count']} CPU cores) · jax {m['jax']} · "
      f"config `{m['config_file']}` · model {m['model']} {json.dumps(m['model_kwargs'])} · "
      f"{m['steps']} steps of batch {m['batch_size']} per run (k = all: "
      f"{m['steps_all']}) · seeds {summary['seeds']}"
      + (f" · runs {m['runs_wall_s'] / 60:.1f} min (sum of their wall-clock)"
         if m.get("runs_wall_s") else ""), "",
      f"Command: `{m['command']}`", "",
      f"Source models (test accuracy on their own dataset): {src or '–'}", "",
      render_table(summary), gain_table(summary),
      "![accuracy vs shots](accuracy_vs_shots.png)", "",
      "![per-class gain](per_class_gain.png)", ""]
  if summary.get("cka"):
    c = summary["cka"]
    lines += [f"Linear CKA{' (debiased)' if c['debiased'] else ''} on {c['examples']} "
              f"{c['dataset']} test images "
              f"(layers: {', '.join(c['layers'])}):", ""]
    for p in c["pairs"]:
      diag = [f"{lay} {p['matrix'][i][i]:.2f}" for i, lay in enumerate(c["layers"])]
      lines.append(f"- {p['a']} vs {p['b']}: same layer " + ", ".join(diag))
    lines += ["", "![CKA](cka.png)", ""]
  missing = [f"{r['direction']} {r['mode']} k={r['shots']}" for r in summary["rows"]
             if len(r["seeds"]) < len(summary["seeds"])]
  if missing:
    lines += [f"Not finished yet ({len(missing)} cells; re-run the command): "
              + "; ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""), ""]
  return "\n".join(lines)


# ---- Pictures -------------------------------------------------------------------------------

def draw(summary: dict, workdir: str) -> list[str]:
  from kmnist_jax import data as data_lib
  from kmnist_jax import plots
  out = []
  panels = []
  for d in summary["directions"]:
    series = []
    for mode in ["scratch"] + summary["modes"]:
      rows = [next(r for r in summary["rows"] if r["direction"] == d and r["mode"] == mode
                   and r["shots"] == k) for k in summary["shots"]]
      if any(r["mean"] is None for r in rows):
        continue
      series.append({"name": mode, "mean": [r["mean"] for r in rows],
                     "std": [r["std"] if r["std"] is not None else 0.0 for r in rows]})
    panels.append({"title": d, "shots": summary["shots"], "series": series})
  n = len(summary["seeds"])
  out.append(plots.accuracy_vs_shots(
      panels, os.path.join(workdir, "accuracy_vs_shots.png"),
      title=f"target test accuracy vs labelled examples per class (error bars: std over "
            f"{n} seeds)"))
  k = summary["gain_shots"]
  gpanels = []
  for d in summary["directions"]:
    rows = [r for r in summary["rows"] if r["direction"] == d and r["shots"] == k
            and r.get("per_class_gain") is not None]
    if not rows:
      continue
    info = data_lib.get_info(rows[0]["target"])
    gpanels.append({"title": f"{d}, k = {k}",
                    "labels": plots.class_labels(info.class_names, info.class_glyphs),
                    "series": [{"name": r["mode"], "mean": r["per_class_gain"],
                                "std": r.get("per_class_gain_std")} for r in rows]})
  if gpanels:
    out.append(plots.transfer_gain_bars(
        gpanels, os.path.join(workdir, "per_class_gain.png"),
        title="per-class test accuracy gain over scratch (error bars: std over seeds)"))
  c = summary.get("cka")
  if c:
    out.append(plots.cka_heatmaps(
        [{"title": f"{p['a']} vs {p['b']}", "matrix": p["matrix"], "rows": c["layers"],
          "cols": c["layers"], "ylabel": p["a"], "xlabel": p["b"]} for p in c["pairs"]],
        os.path.join(workdir, "cka.png"),
        title=f"linear CKA{' (debiased)' if c['debiased'] else ''} between layers, "
              f"{c['examples']} {c['dataset']} test images"))
  return out


# ---- CKA ------------------------------------------------------------------------------------

def compute_cka(cfg, sources: dict) -> dict:
  from kmnist_jax import data as data_lib
  from kmnist_jax import train
  from kmnist_jax.transfer import cka as similarity
  from kmnist_jax.transfer import finetune as tl
  t = cfg[BLOCK]
  ds = data_lib.load(t.cka_dataset, data_dir=cfg.data_dir or None, source=cfg.data_source,
                     tfds_dir=cfg.tfds_dir or None, limit={"test": int(t.cka_examples)})
  images = ds.splits["test"].images
  acts = {}
  for name in t.cka_models:
    acts[name] = tl.layer_activations(sources[name].model, images)
  src_cfg = source_config(cfg, t.cka_dataset)
  acts["random init"] = tl.layer_activations(
      train.init_model(src_cfg, ds.info.num_classes), images)
  names = list(acts)
  layers = list(acts[names[0]])
  pairs = []
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      pairs.append({"a": a, "b": b, "matrix": similarity.cka_matrix(
          acts[a], acts[b], debiased=bool(t.cka_debiased)).tolist()})
  return {"dataset": t.cka_dataset, "examples": len(images), "layers": layers,
          "models": names, "debiased": bool(t.cka_debiased), "pairs": pairs}


# ---- The study ------------------------------------------------------------------------------

def _meta(cfg, config_file: str, command: str) -> dict:
  import jax
  dev = jax.devices()[0]
  t = cfg[BLOCK]
  return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
          "device": getattr(dev, "device_kind", dev.platform), "platform": dev.platform,
          "host": platform.node(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
          "command": command, "config_file": config_file, "model": cfg.model,
          "model_kwargs": dict(cfg.model_kwargs.to_dict()), "steps": t.steps,
          "steps_all": t.steps_all or t.steps, "batch_size": t.batch_size}


def write_outputs(summary: dict, workdir: str, pictures: bool) -> None:
  atomic_write(os.path.join(workdir, "results.json"), json.dumps(summary, indent=1))
  atomic_write(os.path.join(workdir, "table.md"), render_table(summary) + "\n"
               + gain_table(summary))
  atomic_write(os.path.join(workdir, "table.csv"), render_csv(summary))
  if pictures:
    draw(summary, workdir)
  atomic_write(os.path.join(workdir, "report.md"), render_report(summary))


def run_study(cfg, workdir: str, *, sources_flag: str = "", log=print, config_file: str = "",
              command: str = "", progress: bool = True) -> dict:
  import numpy as np
  from kmnist_jax import data as data_lib
  from kmnist_jax.transfer import finetune as tl

  t_start = time.time()
  p = plan(cfg)                                  # names and numbers: fail before loading
  given = parse_sources(sources_flag)
  t = cfg[BLOCK]
  os.makedirs(workdir, exist_ok=True)
  # Targets: load once, check k against every class before anything trains.
  targets = {}
  for tg in p["targets"]:
    limit = {"test": int(t.test_limit)} if t.test_limit else None
    ds = data_lib.load(tg, data_dir=cfg.data_dir or None, source=cfg.data_source,
                       tfds_dir=cfg.tfds_dir or None, limit=limit)
    sizes = np.bincount(ds.splits["train"].labels, minlength=ds.info.num_classes)
    for k in p["shots"]:
      if k != tl.ALL and int(k) > sizes.min():
        c = int(np.argmin(sizes))
        raise UserError(f"shots k={k} is larger than class {c} of {tg} "
                        f"({int(sizes[c])} training examples); use k <= {int(sizes.min())}"
                        f" or '{tl.ALL}'")
    targets[tg] = ds
  sources = ensure_sources(cfg, p, workdir, given, log)
  meta = _meta(cfg, config_file, command)
  log(f"{len(p['runs'])} runs ({len(p['directions'])} directions x "
      f"{len(p['modes'])} modes + scratch, {len(p['shots'])} shot levels, "
      f"{len(p['seeds'])} seeds) in {workdir}")

  results = {}
  opt_cfg = optimizer_config(cfg)
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=len(p["runs"]), unit="run", dynamic_ncols=True)
  wall = 0.0
  try:
    for tg, ds in targets.items():
      train_split, test_split = ds.splits["train"], ds.splits["test"]
      C = ds.info.num_classes
      trainer = tl.Trainer(train_split, test_split, C, cfg=opt_cfg, steps=t.steps,
                           batch_size=t.batch_size, head_lr=t.head_lr,
                           backbone_lr=t.backbone_lr, last_n=t.last_n)
      for run in [r for r in p["runs"] if r["target"] == tg]:
        key = (tg, run["source"], run["mode"], run["shots"], run["seed"])
        src = sources[run["source"]] if run["source"] else None
        spec = run_spec(cfg, run, src.workdir if src else None, None)
        path = run_path(workdir, run)
        res = None
        if os.path.exists(path):
          with open(path) as f:
            saved = json.load(f)
          if saved.get("spec") == json.loads(json.dumps(spec)):
            res = saved
        if res is None:
          subset = tl.few_shot_indices(train_split.labels, run["shots"], C, run["seed"])
          steps = t.steps_all if (run["shots"] == tl.ALL and t.steps_all) else t.steps
          if src is None:
            model = tl.scratch_model(source_config(cfg, tg), C, run["seed"])
          else:
            model = tl.transfer_model(src.model, src.config, C, run["seed"])
          res, _ = trainer.run(model, run["mode"], subset, run["seed"], steps)
          res["spec"] = spec
          res["class_counts"] = tl.subset_sizes(train_split.labels, subset, C)
          os.makedirs(os.path.dirname(path), exist_ok=True)
          atomic_write(path, json.dumps(res))
          wall += res["wall_s"]
        results[key] = res
        if bar is not None:
          bar.update(1)
          bar.set_postfix_str(f"{run['source'] or 'scratch'}->{tg} {run['mode']} "
                              f"k={run['shots']} s{run['seed']}: "
                              f"{100 * res['test_accuracy']:.1f}%")
      # A table after each target: partial results are readable while it runs.
      write_outputs(summarize(p, results, sources, None, meta, t.gain_shots), workdir,
                    pictures=False)
  finally:
    if bar is not None:
      bar.close()
  log("CKA between layers ...")
  cka = compute_cka(cfg, sources) if t.cka_models else None
  meta["wall_s"] = time.time() - t_start
  meta["runs_wall_s_this_invocation"] = wall
  meta["runs_wall_s"] = sum(r.get("wall_s") or 0.0 for r in results.values())
  summary = summarize(p, results, sources, cka, meta, t.gain_shots)
  write_outputs(summary, workdir, pictures=True)
  log(render_table(summary))
  log(f"study done in {time.time() - t_start:.0f} s; report in "
      f"{os.path.join(workdir, 'report.md')}")
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  try:
    if FLAGS.compilation_cache:
      _bootstrap.compilation_cache(FLAGS.workdir)
    run_study(FLAGS.config, FLAGS.workdir, sources_flag=FLAGS.sources,
              config_file=config_flags.get_config_filename(FLAGS["config"]),
              command="python " + " ".join(sys.argv))
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  from kmnist_jax import config as config_lib
  try:
    config_lib.check_override_flags(
        [a for a in sys.argv if not a.startswith(f"--config.{BLOCK}.")])
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  app.run(main)
