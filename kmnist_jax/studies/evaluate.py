"""Checkpoints x evaluators -> records -> summaries (across seeds) -> one report folder.

    from kmnist_jax.studies import evaluate
    recs = evaluate.evaluate("workdirs/kmnist_cnn", {"classification":
                                                     {"type": "classification"}})
    evaluate.run(["workdirs/mnist_cnn", "workdirs/kmnist_cnn"], evals, out="report/")

:func:`evaluate` runs every evaluator of ``evals`` (``config.evals``, see
:mod:`kmnist_jax.evaluators`) on one checkpoint and returns ``{name: record}`` (what the
study runner caches). :func:`run` does that for several workdirs, groups the runs that
differ only in their seed (and where their data is read from), summarises each group
per evaluator (mean ± std over seeds) and writes one report folder, replaced whole:
report.md, metrics.json (every record and summary, with io.run_meta()), each table as
.md / .csv / .json, the figures. Several groups (e.g. MNIST and KMNIST models) are
rendered side by side by each evaluator's report (:mod:`kmnist_jax.reports`). Evaluators that compare
checkpoints with each other (``cka``) get all of them at once (``run_many``).

:func:`analyze` and :func:`embed` keep the older scripts' outputs
(``<workdir>/analysis/`` + ``comparison/``; ``workdirs/embeddings/``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import numpy as np

from kmnist_jax import config as config_lib
from kmnist_jax import data as data_lib
from kmnist_jax import evaluators, io, reports
from kmnist_jax.errors import UserError
from kmnist_jax.evaluators import classification, embedding
from kmnist_jax.reports import Report, pct


def evaluate(workdir: str, evals, *, step="best", data_dir=None,
             checkpoint: evaluators.Checkpoint | None = None) -> dict[str, dict]:
  """``{name: record}`` of every evaluator in `evals` on `workdir`'s checkpoint at
  `step` (best | latest | N; a ``checkpoints/<step>`` folder fixes the step)."""
  entries = evaluators.from_config(evals)
  ckpt = checkpoint or evaluators.restore(workdir, step)
  return {name: module.run(ckpt, data_dir=data_dir, **kw) for name, module, kw in entries}


def evaluate_many(workdirs: Sequence[str], evals, *, step="best", data_dir=None,
                  log: Callable[[str], None] = print) -> list[dict]:
  """One entry per workdir: {'workdir', 'step', 'name', 'config', 'records':
  {eval name: record}}. Evaluators with ``run_many`` see every checkpoint at once
  (their record is stored under each run, the same)."""
  if not workdirs:
    raise UserError("--workdirs is empty; give one or more training workdirs")
  entries = evaluators.from_config(evals)
  if not entries:
    raise UserError("no evaluators: the config's evals is empty; valid types: "
                    + ", ".join(sorted(evaluators.REGISTRY)))
  evaluators.parse_step(step)
  ckpts = [evaluators.restore(w, step) for w in workdirs]  # all restorable: then work
  runs = []
  for ckpt in ckpts:
    recs = {}
    for name, module, kw in entries:
      if hasattr(module, "run_many"):
        continue
      log(f"{ckpt.workdir} (step {ckpt.step}): {name}")
      recs[name] = module.run(ckpt, data_dir=data_dir, **kw)
    runs.append({"workdir": ckpt.workdir, "step": int(ckpt.step), "name": ckpt.name,
                 "config": config_lib.to_dict(ckpt.config), "records": recs})
  for name, module, kw in entries:
    if hasattr(module, "run_many"):
      log(f"{name}: {len(ckpts)} checkpoints")
      rec = module.run_many(ckpts, data_dir=data_dir, **kw)
      for r in runs:
        r["records"][name] = rec
  return runs


# ---- Grouping --------------------------------------------------------------------------

def setting_key(config: dict, extra=()) -> str:
  """What two runs must share to be seeds of one setting: every field but the seed
  (runs that differ only in it are summarised as mean ± std) and the fields a workdir
  may be resumed with changed (config.RUNTIME_FIELDS: where the data is read from, how
  progress is shown, how the run executes)."""
  c = {k: v for k, v in config.items()
       if k != "seed" and k not in config_lib.RUNTIME_FIELDS}
  return json.dumps([c, list(extra)], sort_keys=True, default=str)


def group(items: Sequence, key: Callable, base_name: Callable) -> list[tuple[str, list]]:
  """[(name, items)] of `items` grouped by `key(item)`, in first-seen order; names are
  `base_name(first item)`, made unique with the first workdir's folder name, with
  ' (N seeds)' for groups of several."""
  groups: dict[str, list] = {}
  for it in items:
    groups.setdefault(key(it), []).append(it)
  bases = [base_name(g[0]) for g in groups.values()]
  out = []
  for base, members in zip(bases, groups.values()):
    name = base
    if bases.count(base) > 1:
      name = f"{base} ({os.path.basename(members[0]['workdir'])})"
    if len(members) > 1:
      name += f" ({len(members)} seeds)"
    out.append((name, members))
  return out


def _run_name(run: dict) -> str:
  return f"{run['config']['model']} on {run['config']['dataset']}"


def summarize_runs(runs: Sequence[dict], evals) -> dict[str, list[tuple[str, dict]]]:
  """{eval name: [(group name, summary)]} over the groups of `runs`."""
  groups = group(runs, lambda r: setting_key(r["config"]), _run_name)
  out = {}
  for name, module, _ in evaluators.from_config(evals):
    if hasattr(module, "run_many"):
      out[name] = [("all checkpoints", module.summarize([runs[0]["records"][name]]))]
      continue
    out[name] = [(g, module.summarize([r["records"][name] for r in members]))
                 for g, members in groups]
  return out


# ---- The report ------------------------------------------------------------------------

# The report's order of evaluator types (others after them, in the config's order).
_ORDER = {t: i for i, t in enumerate(("classification", "embedding", "cka", "corruption",
                                      "attack"))}


def render(report: Report, runs: Sequence[dict], summaries: dict, evals, *,
           cjk_font="auto") -> None:
  """Runs table, then each evaluator's tables and figures, into `report`."""
  report.section("Runs")
  report.table("runs", [{"workdir": r["workdir"], "model": r["config"]["model"],
                         "dataset": r["config"]["dataset"],
                         "seed": r["config"].get("seed"), "step": r["step"]}
                        for r in runs])
  entries = sorted(evaluators.from_config(evals), key=lambda e: _ORDER.get(
      evaluators.type_name(e[1]), len(_ORDER)))
  types = [evaluators.type_name(m) for _, m, _ in entries]
  for name, module, _ in entries:
    named = summaries[name]
    shared = types.count(evaluators.type_name(module)) > 1
    report.section(name if not shared else f"{name} ({evaluators.type_name(module)})")
    if shared:  # two entries of one type: their files need distinct names
      named = [(f"{name} {g}", s) for g, s in named]
    renderer = reports.RENDERERS[evaluators.type_name(module)]
    if len(named) > 1 and hasattr(renderer, "render_many"):
      renderer.render_many(named, report, cjk_font=cjk_font)
    else:
      for g, s in named:
        renderer.render(s, report, name=g, cjk_font=cjk_font)
  report.metrics["runs"] = list(runs)
  report.metrics["summaries"] = {n: dict(v) for n, v in summaries.items()}


def run(workdirs: Sequence[str], evals, *, out: str = "", step="best", data_dir=None,
        title: str = "Evaluation", preset: str = "", cjk_font="auto",
        log: Callable[[str], None] = print) -> dict:
  """Evaluates every workdir with `evals`, summarises and writes the report folder
  `out` (default ``<first workdir>/evaluation/<preset or 'evaluation'>``)."""
  workdirs = [w for w in workdirs if w]
  if not workdirs:
    raise UserError("--workdirs is empty; give one or more training workdirs")
  out = out or default_out(workdirs, preset)
  check_writable(out)
  runs = evaluate_many(workdirs, evals, step=step, data_dir=data_dir, log=log)
  summaries = summarize_runs(runs, evals)
  with io.atomic_dir(out) as tmp:
    rep = Report(tmp, title=title)
    render(rep, runs, summaries, evals, cjk_font=cjk_font)
    rep.write()
  log(f"report: {os.path.join(os.path.abspath(out), 'report.md')}")
  return {"runs": runs, "summaries": summaries, "out": os.path.abspath(out)}


def with_overrides(evals, *, dataset: str = "", split: str = "") -> dict:
  """`evals` as a plain dict with `dataset` / `split` set in every entry whose
  evaluator has that setting (experiments/evaluate.py's --dataset / --split)."""
  if dataset and dataset not in data_lib.DATASETS:
    raise UserError(f"unknown dataset {dataset!r} (--dataset); valid choices: "
                    + ", ".join(sorted(data_lib.DATASETS)))
  if split and split not in evaluators.SPLITS:
    raise UserError(f"unknown split {split!r} (--split); valid choices: "
                    + ", ".join(evaluators.SPLITS))
  plain = evaluators.plain(evals)
  for name, module, _ in evaluators.from_config(plain):
    for key, value in (("dataset", dataset), ("split", split)):
      if value and key in getattr(module, "DEFAULTS", {}):
        plain[name][key] = value
  return plain


def run_config(workdirs: Sequence[str], config, *, step="best", out: str = "",
               dataset: str = "", split: str = "", data_dir=None, preset: str = "",
               log: Callable[[str], None] = print) -> dict:
  """experiments/evaluate.py: :func:`run` with a preset config (``config.evals``,
  optional ``config.cjk_font`` and ``config.title``)."""
  if "evals" not in config:
    raise UserError("the --config file has no config.evals (see "
                    "experiments/configs/evals/*.py)")
  evals = with_overrides(config.evals, dataset=dataset, split=split)
  return run(workdirs, evals, out=out, step=step, data_dir=data_dir, preset=preset,
             title=config.get("title") or f"Evaluation: {preset or 'evaluators'}",
             cjk_font=font(config.get("cjk_font", "auto")), log=log)


def font(value):
  """A cjk_font setting: None for 'none' (no hiragana labels), else the value."""
  return None if value is None or str(value).lower() == "none" else value


def check_writable(out: str, flag: str = "--out") -> None:
  """UserError unless the folder `out` can be created (before any work is done)."""
  parent = os.path.dirname(os.path.abspath(out))
  while parent and not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not (os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK)):
    raise UserError(f"cannot write {out}: {parent} is not a folder you can write to; "
                    f"give {flag} another folder")


def default_out(workdirs: Sequence[str], preset: str = "") -> str:
  """<first workdir>/evaluation/<preset> (a checkpoints/<step> folder: its workdir)."""
  first, _ = evaluators.resolve_workdir(workdirs[0], "latest")
  return os.path.join(first, "evaluation", preset or "evaluation")


# ---- experiments/analyze.py ------------------------------------------------------------

def _one_line(rec: dict, out: str) -> str:
  names, glyphs = rec["class_names"], rec["class_glyphs"]

  def nm(i):
    return names[i] if glyphs[i] == names[i] else f"{glyphs[i]} ({names[i]})"

  top = rec["most_confused_symmetric"][:3]
  return (f"{rec['workdir']} (step {rec['step']}): {rec['dataset']} {rec['split']} "
          f"accuracy {pct(rec['accuracy'])}, balanced {pct(rec['balanced_accuracy'])}, "
          f"ECE {pct(rec['calibration']['ece'])}; most confused: "
          + (", ".join(f"{nm(d['a'])} <-> {nm(d['b'])} ({d['count']})" for d in top)
             or "none")
          + f"; report: {os.path.join(out, 'report.md')}")


def analyze_one(workdir: str, *, step="best", out: str = "", data_dir=None,
                cjk_font="auto", log=print, **settings) -> dict:
  """The classification analysis of one checkpoint into `out` (default
  ``<workdir>/analysis``): report.md, metrics.json (the record), tables, figures."""
  classification.check_config(**settings)
  ckpt = evaluators.restore(workdir, step)
  rec = classification.run(ckpt, data_dir=data_dir, **settings)
  out = os.path.abspath(out or os.path.join(ckpt.workdir, "analysis"))
  with io.atomic_dir(out) as tmp:
    rep = Report(tmp, title=f"Confusion analysis: {rec['model']} on {rec['dataset']} "
                            f"({rec['split']})")
    shown = reports.classification.render(classification.summarize([rec]), rep,
                                          cjk_font=cjk_font)
    rep.metrics.update({k: v for k, v in rec.items() if k != "examples"})
    rep.metrics["labels_drawn_with_font"] = shown.get("font")
    rep.write()
  log(_one_line(rec, out))
  return {**rec, "out": out}


def analyze(workdirs: Sequence[str], *, out: str = "", compare_out: str = "",
            step="best", data_dir=None, log=print, cjk_font="auto", **settings) -> dict:
  """experiments/analyze.py: each workdir's analysis; with several, a comparison
  (``comparison/`` in their common parent, or `compare_out`)."""
  workdirs = [w for w in workdirs if w]
  if not workdirs:
    raise UserError("--workdirs is empty; give one or more training workdirs")
  if out and len(workdirs) > 1:
    raise UserError(f"--out names one folder but {len(workdirs)} workdirs were given; "
                    "drop --out (each gets <workdir>/analysis) and use --compare_out")
  evaluators.parse_step(step)
  classification.check_config(**settings)
  records = [analyze_one(w, step=step, out=out, data_dir=data_dir, cjk_font=cjk_font,
                         log=log, **settings) for w in workdirs]
  result = {"runs": records}
  if len(records) > 1:
    result["comparison"] = compare(records, compare_out or default_compare_out(workdirs),
                                   cjk_font=cjk_font, log=log)
  return result


def compare(records: Sequence[dict], out: str, *, cjk_font="auto", log=print) -> dict:
  """Side-by-side per-class table of classification records; records differing only
  in their seed form one group (mean ± std). Writes comparison.{md,csv,json},
  comparison_per_class.png, report.md and metrics.json to `out`."""
  groups = group(records, lambda r: setting_key(
      r["config"], (r["dataset"], r["split"], r.get("limit"))),
      lambda r: f"{r['model']} on {r['dataset']}")
  named = [(g, classification.summarize(members)) for g, members in groups]
  with io.atomic_dir(out) as tmp:
    rep = Report(tmp, title=f"Comparison of {len(records)} runs")
    reports.classification.render_many(named, rep, cjk_font=cjk_font, details=False)
    rep.section("Runs")
    rep.text("\n".join(f"- {g}: `{r['workdir']}` step {r['step']}, seed {r['seed']}, "
                       f"accuracy {pct(r['accuracy'])}"
                       for g, members in groups for r in members) + "\n")
    rep.metrics["groups"] = [{"name": g, **s} for g, s in named]
    rep.write()
  out = os.path.abspath(out)
  log(f"comparison of {len(records)} runs in {len(named)} groups: "
      f"{os.path.join(out, 'report.md')}")
  return {"groups": [{"name": g, "runs": members, "summary": s}
                     for (g, members), (_, s) in zip(groups, named)], "out": out}


def default_compare_out(workdirs: Sequence[str]) -> str:
  parents = [os.path.dirname(os.path.abspath(w.rstrip("/"))) for w in workdirs]
  return os.path.join(os.path.commonpath(parents), "comparison")


# ---- experiments/embed.py --------------------------------------------------------------

def embed(*, workdirs=(), datasets=("mnist", "kmnist"), out: str = "workdirs/embeddings",
          step="best", data_dir=None, cjk_font="auto", log=print, **settings) -> dict:
  """experiments/embed.py: one column per dataset (raw pixels, and the penultimate
  features of the checkpoint trained on it, one per dataset), 2-D maps and scores into
  `out`: embeddings.png, separability.png / .md / .csv / .json, embeddings.npz
  (coordinates, labels, subsample indices), report.md, metrics.json."""
  embedding.check_config(**settings)
  datasets = [d.strip() for d in datasets if d.strip()]
  for d in datasets:
    data_lib.get_info(d)
  check_writable(out)
  models = {}
  for w in [w for w in workdirs if w]:
    ckpt = evaluators.restore(w, step)
    d = ckpt.config.dataset
    if d in models:
      raise UserError(f"two checkpoints trained on {d}: {models[d].workdir} and "
                      f"{ckpt.workdir}; give one workdir per dataset")
    models[d] = ckpt
    if d not in datasets:
      datasets.append(d)
  if not datasets:
    raise UserError("--datasets is empty and no --workdirs were given")
  named = []
  for d in datasets:
    rec = (embedding.run(models[d], data_dir=data_dir, log=log, **settings)
           if d in models else
           embedding.pixels_record(d, data_dir=data_dir, log=log, **settings))
    named.append((d, embedding.summarize([rec])))
  with io.atomic_dir(out) as tmp:
    rep = Report(tmp, title=f"Embeddings: {' vs '.join(datasets)}")
    for d, ckpt in models.items():
      rep.text(f"- `{d}` features: penultimate layer of `{ckpt.config.model}` from "
               f"`{ckpt.workdir}` (step {ckpt.step}).")
    shown = reports.embedding.render_many(named, rep, cjk_font=cjk_font)
    np.savez_compressed(
        os.path.join(tmp, "embeddings.npz"),
        **{f"{k}_{d}": np.asarray(xy, np.float32) for d, s in named
           for k, xy in s["coords"].items()},
        **{f"labels_{d}": np.asarray(s["labels"]) for d, s in named},
        **{f"indices_{d}": np.asarray(s["indices"]) for d, s in named})
    rep.metrics["embeddings"] = {d: {k: v for k, v in s.items() if k != "coords"}
                                 for d, s in named}
    rep.write()
  for row in shown["rows"]:
    log(f"{row['name']}: kNN accuracy {row['knn_accuracy']:.3f}, silhouette "
        f"{row['silhouette']:.3f}")
  log(f"embeddings: {os.path.join(os.path.abspath(out), 'report.md')}")
  return {"rows": shown["rows"], "out": os.path.abspath(out)}
