r"""The transfer study: do MNIST features help KMNIST (and the reverse), how much, for
which classes, and with how few labels.

The config is a training config (the source models' architecture and schedule) plus a
``transfer`` block: ``directions`` ('mnist->kmnist', ...), ``modes`` (linear_probe,
finetune, finetune_last; kmnist_jax.transfer.finetune), ``shots`` (examples per class:
numbers or 'all'), ``seeds``, the step budget, batch size, per-part learning rates, the
CKA settings, and ``sources`` (optional DATASET=DIR training workdirs to use instead of
training the sources).

The plan (:func:`plan`), all of it runs of :mod:`kmnist_jax.studies.plan` (this module
registers the kinds ``transfer`` and ``cka``; the rest are ``train`` / ``external``):

1. ``source-<dataset>``: a ``train`` run per source dataset (or an ``external`` run
   for a given workdir: its key is its saved config and checkpoint step);
2. ``<source>_to_<target>-<mode>-k<k>-s<seed>``: a ``transfer`` run built on its source
   (its key includes the source's key: a changed source setting redoes the source and
   every run on it, and nothing else), and ``scratch-<target>-k<k>-s<seed>``, the
   baseline: the same architecture from scratch on the same subset and budget;
3. ``cka``: linear CKA between the layers of the source models and a randomly
   initialised one (built on the sources).

Gains over scratch are paired by seed; significance rule: >= 2 seeds and
``|mean gain| > std`` of the per-seed gains (:func:`kmnist_jax.metrics.paired`).

JAX, Flax, the training loop and the plots are imported inside the functions that need
them: importing this module (every study worker does, for its run kinds) loads none.
"""

from __future__ import annotations

import os

import numpy as np

from kmnist_jax import config as config_lib
from kmnist_jax import data as data_lib
from kmnist_jax import metrics
from kmnist_jax.errors import UserError
from kmnist_jax.studies import plan as plan_lib

BLOCK = "transfer"
TABLE_COLUMNS = ("direction", "mode", "k", "seeds", "acc_mean", "acc_std", "gain_mean",
                 "gain_std", "gain_significant", "gain_t_test")
_DATA_FIELDS = ("data_dir", "data_source", "tfds_dir")
_ARCH_FIELDS = ("model", "model_kwargs", "dtype", "conv_impl", "eval_batch_size")
_OPT_FIELDS = ("momentum", "grad_clip")


# ---- Plan -------------------------------------------------------------------------------

def parse_direction(text: str) -> tuple[str, str]:
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
  out = {}
  for item in filter(None, (s.strip() for s in str(text or "").split(","))):
    name, sep, path = item.partition("=")
    if not sep or not path:
      raise UserError(f"--sources: {item!r} is not DATASET=DIR")
    if name not in data_lib.DATASETS:
      raise UserError(f"--sources: unknown dataset {name!r}; valid choices: "
                      f"{', '.join(sorted(data_lib.DATASETS))}")
    if not os.path.isdir(path):
      raise UserError(f"--sources: source checkpoint {path!r} (for {name}) does not exist")
    out[name] = os.path.abspath(path)
  return out


def with_sources(cfg, text: str):
  """The config with ``transfer.sources`` set from the --sources flag (if given)."""
  if text:
    with cfg.unlocked():
      cfg[BLOCK].sources = text
  return cfg


def source_config(cfg, dataset: str):
  c = plan_lib.training_config(cfg)
  c.dataset = dataset
  return c


def _check_block(cfg, model) -> tuple:
  from kmnist_jax.transfer import finetune as tl
  t = cfg[BLOCK]
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
  for s in list(t.cka_models) + [t.cka_dataset]:
    if s not in data_lib.DATASETS:
      raise UserError(f"config.transfer.cka_models / cka_dataset: unknown dataset {s!r}; "
                      f"valid choices: {', '.join(sorted(data_lib.DATASETS))}")
  return directions, modes, shots


def _check_shots(cfg, targets, shots) -> None:
  """k against the smallest class of each target (loads the labels only once)."""
  from kmnist_jax.transfer import finetune as tl
  numeric = [int(k) for k in shots if k != tl.ALL]
  if not numeric:
    return
  for tg in targets:
    ds = data_lib.load(tg, data_dir=cfg.data_dir or None, source=cfg.data_source,
                       tfds_dir=cfg.tfds_dir or None, limit={"test": 1})
    sizes = np.bincount(ds.splits["train"].labels, minlength=ds.info.num_classes)
    if max(numeric) > sizes.min():
      c = int(np.argmin(sizes))
      raise UserError(f"shots k={max(numeric)} is larger than class {c} of {tg} "
                      f"({int(sizes[c])} training examples); use k <= {int(sizes.min())}"
                      f" or '{tl.ALL}'")


def _external(ds: str, path: str, want: dict) -> plan_lib.Run:
  from kmnist_jax import checkpoint as ckpt_lib
  from kmnist_jax import train
  from kmnist_jax.transfer import finetune as tl
  src = tl.load_source(path)             # refuses a missing checkpoint / no backbone
  if src.dataset != ds:
    raise UserError(f"--sources: {path} holds a model trained on {src.dataset!r}, "
                    f"not {ds!r}")
  got = train.resolved_config(src.config)
  if (got["model"], got["model_kwargs"]) != (want["model"], want["model_kwargs"]):
    raise UserError(f"--sources: {path} holds a {got['model']} {got['model_kwargs']}, "
                    f"the study config a {want['model']} {want['model_kwargs']}: the "
                    "scratch baseline would differ; set --config.model / "
                    "--config.model_kwargs to match")
  step = ckpt_lib.Checkpoints(path, read_only=True).latest_step()
  return plan_lib.Run(name=f"source-{ds}", kind="external",
                    config={"workdir": path, "step": step,
                            "config": config_lib.to_dict(src.config)},
                    info={"role": "source", "dataset": ds})


def plan(cfg, workdir: str = "") -> plan_lib.Plan:
  """Checks every name and number of the config (k against the targets' classes
  too) and returns the plan; nothing trains or is written."""
  from flax import nnx

  from kmnist_jax import train
  from kmnist_jax.transfer import finetune as tl

  if BLOCK not in cfg:
    raise UserError("the study config has no 'transfer' block; start from "
                    "experiments/configs/transfer_reduced.py")
  t = cfg[BLOCK]
  base = plan_lib.training_config(cfg)
  config_lib.validate(base)
  model = nnx.eval_shape(lambda: train.init_model(base, 10))
  tl.check_has_features(model, f"config.model={cfg.model!r}")
  directions, modes, shots = _check_block(cfg, model)
  given = parse_sources(t.get("sources", ""))
  targets = list(dict.fromkeys(tg for _, tg in directions))
  _check_shots(base, targets, shots)
  runs, names = [], {}
  for ds in sorted({s for s, _ in directions} | set(t.cka_models)):
    want = train.resolved_config(source_config(cfg, ds))
    if ds in given:
      runs.append(_external(ds, given[ds], want))
    else:
      runs.append(plan_lib.Run(name=f"source-{ds}", kind="train", config=want,
                             seed=int(base.seed), info={"role": "source", "dataset": ds}))
    names[ds] = runs[-1].name
  resolved = train.resolved_config(base)
  common = {f: resolved[f] for f in _DATA_FIELDS}
  arch = {f: resolved[f] for f in _ARCH_FIELDS}
  opt = {**{f: resolved[f] for f in _OPT_FIELDS},
         **{f: t[f] for f in ("optimizer", "schedule", "weight_decay")}}
  for tg in targets:
    for seed in t.seeds:
      for k in shots:
        steps = int(t.steps_all if (k == tl.ALL and t.steps_all) else t.steps)
        settings = {"target": tg, "shots": k, "seed": int(seed), "steps": steps,
                    "batch_size": int(t.batch_size), "head_lr": float(t.head_lr),
                    "backbone_lr": float(t.backbone_lr), "last_n": int(t.last_n),
                    "test_limit": int(t.test_limit), "opt": opt, **common}
        cells = [(None, tl.SCRATCH)] + [(s, m) for s, tg2 in directions if tg2 == tg
                                        for m in modes]
        for src, mode in cells:
          name = (f"scratch-{tg}" if src is None else f"{src}_to_{tg}-{mode}")
          runs.append(plan_lib.Run(
              name=f"{name}-k{k}-s{seed}", kind="transfer", seed=int(seed),
              config={**settings, "mode": mode, "source": src,
                      **({"arch": arch} if src is None else {})},
              deps=() if src is None else (names[src],),
              info={"role": "run", "target": tg, "source": src, "mode": mode,
                    "shots": k}))
  if t.cka_models:
    runs.append(plan_lib.Run(
        name="cka", kind="cka", deps=tuple(names[m] for m in t.cka_models),
        config={"dataset": t.cka_dataset, "examples": int(t.cka_examples),
                "debiased": bool(t.cka_debiased), "models": list(t.cka_models),
                "random_init": {**train.resolved_config(source_config(cfg, t.cka_dataset)),
                                **common}, **common},
        info={"role": "cka"}))
  options = {"directions": [list(d) for d in directions], "modes": modes, "shots": shots,
             "seeds": [int(s) for s in t.seeds], "gain_shots": t.gain_shots,
             "model": base.model, "model_kwargs": resolved["model_kwargs"],
             "steps": int(t.steps), "steps_all": int(t.steps_all or t.steps),
             "batch_size": int(t.batch_size)}
  return plan_lib.Plan("transfer_study", workdir or "workdirs/transfer_study", runs,
                     options)


# ---- Executing the runs -----------------------------------------------------------------

_CACHE: dict = {}      # per process: target data, trainers, source models


def _cached(key, make):
  if key not in _CACHE:
    _CACHE[key] = make()
  return _CACHE[key]


def _data(c: dict, plan: plan_lib.Plan, dataset: str, test_limit: int):
  data_dir = plan.options.get("data_dir") or c["data_dir"] or None
  limit = {"test": test_limit} if test_limit else None
  return _cached(("data", dataset, data_dir, c["data_source"], test_limit),
                 lambda: data_lib.load(dataset, data_dir=data_dir,
                                       source=c["data_source"],
                                       tfds_dir=c["tfds_dir"] or None, limit=limit))


def _source(plan: plan_lib.Plan, name: str):
  from kmnist_jax.transfer import finetune as tl
  dep = plan.by_name(name)
  wd = dep.config["workdir"] if dep.kind == "external" else dep.workdir
  return _cached(("source", dep.key), lambda: tl.load_source(wd))


def _opt_cfg(c: dict, arch: dict | None = None):
  cfg = config_lib.base()
  for k, v in {**c["opt"], **(arch or {})}.items():
    cfg[k] = tuple(v) if isinstance(v, list) else v
  cfg.learning_rate = c["head_lr"]
  cfg.warmup_epochs = 0.0
  cfg.label_smoothing = 0.0
  return cfg


@plan_lib.run_kind("transfer")
def transfer_run(run: plan_lib.Run, plan: plan_lib.Plan, log) -> dict:
  """kind 'transfer': one (source or scratch, mode, k, seed) cell on its target."""
  from kmnist_jax.transfer import finetune as tl
  c = run.config
  ds = _data(c, plan, c["target"], c["test_limit"])
  tr, te = ds.splits["train"], ds.splits["test"]
  C = ds.info.num_classes
  if c["source"] is None:
    arch_cfg = _opt_cfg(c, c["arch"])
    arch_cfg.seed = c["seed"]
    model = tl.scratch_model(arch_cfg, C, c["seed"])
  else:
    src = _source(plan, run.deps[0])
    model = tl.transfer_model(src.model, src.config, C, c["seed"])
    arch_cfg = _opt_cfg(c, {f: config_lib.to_dict(src.config)[f]
                            for f in ("dtype", "eval_batch_size")})
  tkey = ("trainer", c["target"], c["test_limit"], plan_lib.digest(
      {k: c[k] for k in ("batch_size", "head_lr", "backbone_lr", "last_n", "opt")}),
      arch_cfg.dtype, arch_cfg.eval_batch_size)
  trainer = _cached(tkey, lambda: tl.Trainer(
      tr, te, C, cfg=arch_cfg, steps=c["steps"], batch_size=c["batch_size"],
      head_lr=c["head_lr"], backbone_lr=c["backbone_lr"], last_n=c["last_n"]))
  subset = tl.few_shot_indices(tr.labels, c["shots"], C, c["seed"])
  res, _ = trainer.run(model, c["mode"], subset, c["seed"], c["steps"])
  res["class_counts"] = tl.subset_sizes(tr.labels, subset, C)
  log(f"{run.name}: test accuracy {res['test_accuracy']:.4f} ({res['wall_s']:.1f} s)")
  return res


@plan_lib.run_kind("cka")
def cka_run(run: plan_lib.Run, plan: plan_lib.Plan, log) -> dict:
  """kind 'cka': linear CKA between the layers of the sources and a random init."""
  from kmnist_jax import train
  from kmnist_jax.transfer import cka as similarity
  from kmnist_jax.transfer import finetune as tl
  c = run.config
  ds = _data(c, plan, c["dataset"], c["examples"])
  images = ds.splits["test"].images[:c["examples"]]
  acts = {m: tl.layer_activations(_source(plan, d).model, images)
          for m, d in zip(c["models"], run.deps)}
  acts["random init"] = tl.layer_activations(
      train.init_model(config_lib.from_dict(c["random_init"]), ds.info.num_classes),
      images)
  names = list(acts)
  layers = list(acts[names[0]])
  pairs = [{"a": a, "b": b, "matrix": similarity.cka_matrix(
      acts[a], acts[b], debiased=c["debiased"]).tolist()}
      for i, a in enumerate(names) for b in names[i + 1:]]
  log(f"cka: {len(pairs)} pairs of {len(layers)} layers")
  return {"dataset": c["dataset"], "examples": len(images), "layers": layers,
          "models": names, "debiased": c["debiased"], "pairs": pairs}


# ---- Summaries ----------------------------------------------------------------------------

def summarize(records, plan: plan_lib.Plan) -> dict:
  """Rows (direction x mode x k): accuracy mean +- std over seeds, gain over scratch
  paired by seed (with the significance flag), per-class gains; sources; CKA."""
  opt = plan.options
  res, sources, cka = {}, {}, None
  for run, rec in zip(plan.runs, records):
    if rec is None:
      continue
    role = run.info.get("role")
    if role == "run":
      i = run.info
      res[(i["target"], i["source"], i["mode"], i["shots"], run.seed)] = rec["results"]
    elif role == "source":
      sources[run.info["dataset"]] = {"workdir": run.config.get("workdir", run.workdir),
                                      "test_accuracy": rec["results"].get("test_accuracy")}
    elif role == "cka":
      cka = rec["results"]
  rows = []
  for src, tg in opt["directions"]:
    for mode in ["scratch"] + opt["modes"]:
      for k in opt["shots"]:
        got = {s: res.get((tg, None if mode == "scratch" else src, mode, k, s))
               for s in opt["seeds"]}
        got = {s: r for s, r in got.items() if r is not None}
        acc = metrics.seed_mean_std([got[s]["test_accuracy"] for s in sorted(got)])
        row = {"direction": f"{src}->{tg}", "source": src, "target": tg, "mode": mode,
               "k": k, "seeds": len(got), "seed_list": sorted(got),
               "acc_mean": acc["mean"], "acc_std": acc["std"],
               "test_accuracy": [got[s]["test_accuracy"] for s in sorted(got)]}
        if mode != "scratch":
          base = {s: res.get((tg, None, "scratch", k, s)) for s in got}
          paired_seeds = [s for s in sorted(got) if base[s] is not None]
          g = metrics.paired([got[s]["test_accuracy"] for s in paired_seeds],
                            [base[s]["test_accuracy"] for s in paired_seeds])
          row.update(gain_mean=g["mean"], gain_std=g["std"],
                     gain_significant=g["significant"] if paired_seeds else None,
                     gain_t_test=g["t_test"] if paired_seeds else None)
          if paired_seeds:
            d = np.array([np.subtract(got[s]["per_class_accuracy"],
                                      base[s]["per_class_accuracy"]) for s in paired_seeds])
            row["per_class_gain"] = d.mean(0).tolist()
            row["per_class_gain_std"] = (d.std(0, ddof=1).tolist()
                                         if len(paired_seeds) > 1 else None)
        if got:
          row["per_class_accuracy"] = np.mean(
              [got[s]["per_class_accuracy"] for s in got], 0).tolist()
        rows.append(row)
  names = {tg: list(data_lib.get_info(tg).class_names) for _, tg in opt["directions"]}
  return {"study": plan.study, "options": opt, "rows": rows, "class_names": names,
          "sources": sources, "cka": cka,
          "runs_wall_s": sum((r or {}).get("wall_s") or 0.0 for r in records),
          "missing": [r.name for r, rec in zip(plan.runs, records) if rec is None]}


# ---- Report -----------------------------------------------------------------------------

def _cell(row) -> str:
  if row["acc_mean"] is None:
    return "–"
  s = f"{100 * row['acc_mean']:.1f}"
  if row["acc_std"] is not None:
    s += f" ± {100 * row['acc_std']:.1f}"
  if row.get("gain_mean") is not None:
    mark = metrics.significance_mark(row.get("gain_significant"), row.get("gain_t_test"))
    s += f" ({100 * row['gain_mean']:+.1f}{mark})"
  return s


def render_table(summary: dict) -> str:
  opt = summary["options"]
  lines = []
  modes = ["scratch"] + opt["modes"]
  for src, tg in opt["directions"]:
    d = f"{src}->{tg}"
    lines += [f"**{d}** (target test accuracy %, mean ± std over seeds; in brackets the "
              "gain over scratch in pp, paired by seed; * significant: >= 2 seeds and "
              "|mean gain| > its std; ** a paired t-test also confirms it at 5%)", "",
              "| k | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    for k in opt["shots"]:
      cells = [_cell(next(r for r in summary["rows"] if r["direction"] == d
                          and r["mode"] == m and r["k"] == k)) for m in modes]
      lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("")
  return "\n".join(lines)


def gain_table(summary: dict) -> str:
  k = summary["options"]["gain_shots"]
  lines = []
  for src, tg in summary["options"]["directions"]:
    d = f"{src}->{tg}"
    rows = [r for r in summary["rows"] if r["direction"] == d and r["k"] == k
            and r.get("per_class_gain") is not None]
    if not rows:
      continue
    names = summary["class_names"][tg]
    lines += [f"Per-class gain over scratch, **{d}**, k = {k} (pp, mean ± std over "
              "seeds):", "", "| mode | " + " | ".join(names) + " |",
              "|---" * (len(names) + 1) + "|"]
    for r in rows:
      std = r.get("per_class_gain_std") or [None] * len(names)
      lines.append(f"| {r['mode']} | " + " | ".join(
          f"{100 * g:+.1f}" + (f" ± {100 * s:.1f}" if s is not None else "")
          for g, s in zip(r["per_class_gain"], std)) + " |")
    lines.append("")
  return "\n".join(lines)


def table_rows(summary: dict) -> list[dict]:
  """The headline table (results/transfer_study/<kind>/table.csv): accuracies as fractions."""
  return [{c: r.get(c) for c in TABLE_COLUMNS} for r in summary["rows"]]


def render(summary: dict, report) -> None:
  opt = summary["options"]
  report.title = report.title or "Transfer between MNIST and KMNIST"
  report.metrics["transfer_study"] = summary
  report.table("table", table_rows(summary), columns=list(TABLE_COLUMNS), show=False)
  src = ", ".join(f"{ds} {100 * v['test_accuracy']:.2f}%" for ds, v in
                  summary["sources"].items() if v.get("test_accuracy") is not None)
  report.section("Setup", (
      f"Model {opt['model']} {opt['model_kwargs']} · {opt['steps']} steps of batch "
      f"{opt['batch_size']} per run (k = all: {opt['steps_all']}) · seeds "
      f"{opt['seeds']} · sum of the runs' wall-clock {summary['runs_wall_s'] / 60:.1f} "
      f"min. Source models (test accuracy on their own dataset): {src or '–'}."))
  report.section("Accuracy and gain over scratch", render_table(summary))
  gains = gain_table(summary)
  if gains:
    report.section("Per-class gains", gains)
  draw(summary, report)
  c = summary.get("cka")
  if c:
    lines = [f"Linear CKA{' (debiased)' if c['debiased'] else ''} on {c['examples']} "
             f"{c['dataset']} test images (layers: {', '.join(c['layers'])}):", ""]
    for p in c["pairs"]:
      diag = [f"{lay} {p['matrix'][i][i]:.2f}" for i, lay in enumerate(c["layers"])]
      lines.append(f"- {p['a']} vs {p['b']}: same layer " + ", ".join(diag))
    report.section("CKA", "\n".join(lines))
  if summary["missing"]:
    report.section("Not finished yet", f"{len(summary['missing'])} runs (re-run the "
                   "command): " + ", ".join(summary["missing"][:10])
                   + (" ..." if len(summary["missing"]) > 10 else ""))


def draw(summary: dict, report) -> None:
  from kmnist_jax import plots
  opt = summary["options"]
  panels = []
  for src, tg in opt["directions"]:
    d = f"{src}->{tg}"
    series = []
    for mode in ["scratch"] + opt["modes"]:
      rows = [next(r for r in summary["rows"] if r["direction"] == d and r["mode"] == mode
                   and r["k"] == k) for k in opt["shots"]]
      if any(r["acc_mean"] is None for r in rows):
        continue
      series.append({"name": mode, "mean": [r["acc_mean"] for r in rows],
                     "std": [r["acc_std"] or 0.0 for r in rows]})
    panels.append({"title": d, "shots": opt["shots"], "series": series})
  if any(p["series"] for p in panels):
    plots.accuracy_vs_shots(
        panels, report.figure("accuracy_vs_shots"),
        title="target test accuracy vs labelled examples per class (error bars: std "
              f"over {len(opt['seeds'])} seeds)")
  k = opt["gain_shots"]
  gpanels = []
  for src, tg in opt["directions"]:
    rows = [r for r in summary["rows"] if r["direction"] == f"{src}->{tg}"
            and r["k"] == k and r.get("per_class_gain") is not None]
    if rows:
      info = data_lib.get_info(tg)
      gpanels.append({"title": f"{src}->{tg}, k = {k}",
                      "labels": plots.class_labels(info.class_names, info.class_glyphs),
                      "series": [{"name": r["mode"], "mean": r["per_class_gain"],
                                  "std": r.get("per_class_gain_std")} for r in rows]})
  if gpanels:
    plots.transfer_gain_bars(
        gpanels, report.figure("per_class_gain"),
        title="per-class test accuracy gain over scratch (error bars: std over seeds)")
  c = summary.get("cka")
  if c:
    plots.cka_heatmaps(
        [{"title": f"{p['a']} vs {p['b']}", "matrix": p["matrix"], "rows": c["layers"],
          "cols": c["layers"], "ylabel": p["a"], "xlabel": p["b"]} for p in c["pairs"]],
        report.figure("cka"),
        title=f"linear CKA{' (debiased)' if c['debiased'] else ''} between layers, "
              f"{c['examples']} {c['dataset']} test images")
