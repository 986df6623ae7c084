"""Checkpoints x evaluators -> records -> summaries (across seeds) -> report folders.

    from kmnist_jax.studies import evaluate
    recs = evaluate.evaluate("workdirs/kmnist_cnn", {"classification":
                                                     {"type": "classification"}})
    evaluate.run(["workdirs/mnist_cnn", "workdirs/kmnist_cnn"], evals, out="report/")

:func:`evaluate` runs every evaluator of ``evals`` (``config.evals``, see
:mod:`kmnist_jax.evaluators`) on one checkpoint and returns ``{name: record}`` (what the
study runner caches). :func:`run` restores several workdirs and checks every setting
before any work, runs each evaluator on each (:func:`evaluate_many`; evaluators that
compare checkpoints with each other, ``cka``, get all of them at once: ``run_many``)
and writes the report (:func:`write`): one folder, replaced whole: report.md,
metrics.json (every record and summary, with io.run_meta()), each table as .md / .csv
/ .json, the figures, all rendered by the evaluators' reports (:mod:`kmnist_jax.reports`).

What shapes the output, for any preset:

* ``by``, what one column of the report is: ``setting`` (runs that differ only in their
  seed are one, as mean ± std, named '<model> on <dataset>'), ``workdir`` (each run,
  named by its folder) or ``dataset`` (one checkpoint per dataset, named by it);
* ``datasets``: datasets also evaluated without a model, a column each, by the
  evaluators that can (``run_data``; e.g. embeddings of the raw pixels);
* ``side_by_side``: the columns side by side only (each evaluator's ``render_many``,
  even for one column, given ``options[<evaluator type>]`` as keywords) and the runs
  as a list; by default a runs table and each setting's own sections;
* ``each``: also a report of every run alone, into ``each`` (``{workdir}`` in it is the
  run's workdir), titled and filled by its evaluator's report;
* ``keep``: sub-folders of an existing ``out`` (a cache) carried into the new one;
  ``out=None``: no combined report (``each`` only).

experiments/analyze.py, embed.py and robustness.py are the classification, embed and
robustness presets with such options (the folders those scripts always wrote).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

from kmnist_jax import config as config_lib
from kmnist_jax import data as data_lib
from kmnist_jax import evaluators, io, reports
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.reports import Report

BY = ("setting", "workdir", "dataset")
WORKDIR = "{workdir}"  # in `each`: the run's workdir


def evaluate(workdir: str, evals, *, step="best", data_dir=None,
             checkpoint: evaluators.Checkpoint | None = None) -> dict[str, dict]:
  """``{name: record}`` of every evaluator in `evals` on `workdir`'s checkpoint at
  `step` (best | latest | N; a ``checkpoints/<step>`` folder fixes the step)."""
  entries = evaluators.from_config(evals)
  ckpt = checkpoint or evaluators.restore(workdir, step)
  return {name: module.run(ckpt, data_dir=data_dir, **kw) for name, module, kw in entries}


def _entries(evals) -> list[tuple[str, object, dict]]:
  entries = evaluators.from_config(evals)
  if not entries:
    raise UserError("no evaluators: the config's evals is empty; valid types: "
                    + ", ".join(sorted(evaluators.REGISTRY)))
  return entries


def _renderer(module):
  return getattr(reports, evaluators.type_name(module))


def _logged(log, where: str, name: str, module, rec: dict) -> dict:
  """`rec`, after logging its renderer's one-line headline (where it has one)."""
  renderer = _renderer(module)
  if hasattr(renderer, "headline"):
    log(f"{where} {name}: {renderer.headline(rec)}")
  return rec


def evaluate_many(checkpoints: Sequence[evaluators.Checkpoint], evals, *, data_dir=None,
                  datasets: Sequence[str] = (),
                  log: Callable[[str], None] = print) -> list[dict]:
  """One entry per checkpoint: {'workdir', 'step', 'name', 'config', 'records': {eval
  name: record}}; then one per dataset of `datasets` that none of them was trained on,
  without a model ('workdir' None; the records of the evaluators with ``run_data``).
  Evaluators with ``run_many`` see every checkpoint at once (their record is stored
  under each checkpoint's run, the same)."""
  entries = _entries(evals)
  runs = []
  for ckpt in checkpoints:
    recs, where = {}, f"{ckpt.workdir} (step {ckpt.step})"
    for name, module, kw in entries:
      if hasattr(module, "run_many"):
        continue
      log(f"{where}: {name}")
      recs[name] = _logged(log, where, name, module,
                           module.run(ckpt, data_dir=data_dir, **kw))
    runs.append({"workdir": ckpt.workdir, "step": int(ckpt.step), "name": ckpt.name,
                 "config": config_lib.to_dict(ckpt.config), "records": recs})
  trained = {r["config"]["dataset"] for r in runs}
  for ds in (d for d in datasets if d not in trained):
    recs, where = {}, f"{ds} (no model)"
    for name, module, kw in entries:
      if hasattr(module, "run_data"):
        log(f"{where}: {name}")
        recs[name] = _logged(log, where, name, module,
                             module.run_data(data_dir=data_dir, **{**kw, "dataset": ds}))
    runs.append({"workdir": None, "step": None, "name": ds,
                 "config": {"model": None, "dataset": ds}, "records": recs})
  for name, module, kw in entries:
    if hasattr(module, "run_many") and checkpoints:
      log(f"{name}: {len(checkpoints)} checkpoints")
      rec = module.run_many(list(checkpoints), data_dir=data_dir, **kw)
      for r in runs[:len(checkpoints)]:
        r["records"][name] = rec
  return runs


# ---- Columns ---------------------------------------------------------------------------

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
      name = f"{base} ({os.path.basename(members[0]['workdir'] or '')})"
    if len(members) > 1:
      name += f" ({len(members)} seeds)"
    out.append((name, members))
  return out


def _run_name(run: dict) -> str:
  """'<model> on <dataset>': the dataset its records were evaluated on where they
  name one, else the one it was trained on; a dataset without a model: its name."""
  c = run["config"]
  seen = {r.get("dataset") for r in run["records"].values()
          if isinstance(r, Mapping) and r.get("dataset")}
  ds = seen.pop() if len(seen) == 1 else c["dataset"]
  return f"{c['model']} on {ds}" if c.get("model") else ds


def _evaluated_on(run: dict) -> list:
  """What each record of `run` was evaluated on (records made with other data than
  their run's config says, e.g. a KMNIST model on MNIST, are another setting)."""
  return [[n, *(r.get(k) for k in ("dataset", "split", "limit"))]
          for n, r in sorted(run["records"].items()) if isinstance(r, Mapping)]


def folder_names(workdirs: Sequence[str]) -> list[str]:
  """The workdirs' folder names, made unique with -<index>."""
  base = [os.path.basename(os.path.normpath(w)) or w for w in workdirs]
  return [b if base.count(b) == 1 else f"{b}-{i}" for i, b in enumerate(base)]


def group_runs(runs: Sequence[dict], by: str = "setting",
               datasets: Sequence[str] = ()) -> list[tuple[str, list[dict]]]:
  """[(column name, runs)] (see the module's ``by``); by dataset, `datasets`' order
  first."""
  if by == "workdir":
    return [(n, [r]) for n, r in zip(folder_names([r["workdir"] or r["name"]
                                                   for r in runs]), runs)]
  if by == "dataset":
    cols: dict[str, list[dict]] = {}
    for r in runs:
      cols.setdefault(r["config"]["dataset"], []).append(r)
    order = [d for d in dict.fromkeys([*datasets, *cols]) if d in cols]
    return [(d, cols[d]) for d in order]
  if by != "setting":
    raise unknown("grouping (by)", by, BY)
  return group(runs, lambda r: setting_key(r["config"], _evaluated_on(r)), _run_name)


def summarize_runs(groups: Sequence[tuple[str, list[dict]]], evals
                   ) -> dict[str, list[tuple[str, dict]]]:
  """{eval name: [(column name, summary)]} over the columns of :func:`group_runs`
  (columns without a record of an evaluator left out)."""
  out = {}
  for name, module, _ in _entries(evals):
    if hasattr(module, "run_many"):
      first = next((r["records"][name] for _, members in groups for r in members
                    if name in r["records"]), None)
      out[name] = [] if first is None else [("all checkpoints", module.summarize([first]))]
      continue
    out[name] = [(g, module.summarize([r["records"][name] for r in members
                                       if name in r["records"]]))
                 for g, members in groups if any(name in r["records"] for r in members)]
  return out


# ---- The reports -----------------------------------------------------------------------

# The report's order of evaluator types (others after them, in the config's order).
_ORDER = {t: i for i, t in enumerate(("classification", "embedding", "cka", "corruption",
                                      "attack"))}


def _run_line(run: dict) -> str:
  if not run["workdir"]:
    return "no model"
  return f"`{run['workdir']}` step {run['step']}, seed {run['config'].get('seed')}"


def render(report: Report, runs: Sequence[dict], groups, summaries: dict, evals, *,
           cjk_font="auto", side_by_side: bool = False,
           options: Mapping[str, Mapping] | None = None) -> None:
  """The runs (a table; `side_by_side`: a list), then each evaluator's tables and
  figures, into `report`."""
  report.section("Runs")
  if side_by_side:
    report.text("\n".join(f"- {g}: {_run_line(r)}" for g, members in groups
                          for r in members) + "\n")
  else:
    report.table("runs", [{"workdir": r["workdir"], "model": r["config"]["model"],
                           "dataset": r["config"]["dataset"],
                           "seed": r["config"].get("seed"), "step": r["step"]}
                          for r in runs])
  entries = sorted(_entries(evals), key=lambda e: _ORDER.get(
      evaluators.type_name(e[1]), len(_ORDER)))
  types = [evaluators.type_name(m) for _, m, _ in entries]
  for name, module, _ in entries:
    named = summaries[name]
    if not named:
      continue
    kind = evaluators.type_name(module)
    shared = types.count(kind) > 1
    report.section(name if not shared else f"{name} ({kind})")
    if shared:  # two entries of one type: their files need distinct names
      named = [(f"{name} {g}", s) for g, s in named]
    renderer = _renderer(module)
    if hasattr(renderer, "render_many") and (side_by_side or len(named) > 1):
      renderer.render_many(named, report, cjk_font=cjk_font,
                           **dict((options or {}).get(kind, {})))
    else:
      for g, s in named:
        renderer.render(s, report, name=g, cjk_font=cjk_font)
  report.metrics["runs"] = list(runs)
  report.metrics["summaries"] = {n: dict(v) for n, v in summaries.items()}


def write_run(run: dict, evals, out: str, *, title: str = "Evaluation", cjk_font="auto",
              log: Callable[[str], None] = print) -> str:
  """The report of one run alone into `out`, replaced whole. With one evaluator: that
  evaluator's report of the record (titled by its ``title()`` where it has one) and the
  record itself as metrics.json; with several, a section each and the run as
  metrics.json. Returns the report.md path."""
  entries = [(n, m) for n, m, _ in _entries(evals) if n in run["records"]]
  types = [evaluators.type_name(m) for _, m in entries]
  only = entries[0] if len(entries) == 1 else None
  sums = {n: m.summarize([run["records"][n]]) for n, m in entries}
  if only and hasattr(_renderer(only[1]), "title"):
    heading = _renderer(only[1]).title(sums[only[0]])
  else:
    heading = f"{title}: {run['name']}"
  with io.atomic_dir(out) as tmp:
    rep = Report(tmp, title=heading)
    shown = {}
    for name, module in entries:
      if not only:
        rep.section(name)
      shared = types.count(evaluators.type_name(module)) > 1
      shown = _renderer(module).render(sums[name], rep, name=name if shared else None,
                                       cjk_font=cjk_font) or {}
    if only:
      rep.metrics.update(run["records"][only[0]])
      if "font" in shown:
        rep.metrics["labels_drawn_with_font"] = shown["font"]
    else:
      rep.metrics.update(run)
    path = rep.write()
  path = os.path.join(os.path.abspath(out), os.path.basename(path))
  log(f"report: {path}")
  return path


def write(runs: Sequence[dict], evals, *, out: str | None, title: str = "Evaluation",
          cjk_font="auto", by: str = "setting", datasets: Sequence[str] = (),
          side_by_side: bool = False, options: Mapping[str, Mapping] | None = None,
          keep: Sequence[str] = (), log: Callable[[str], None] = print) -> dict:
  """The reports of runs already evaluated (:func:`evaluate_many`'s entries): each
  run's own where it names one ('out', see :func:`run`'s `each`), then the combined
  report in `out` (None: none). Returns {'runs', 'groups': [{'name', 'workdirs',
  'runs': indices into runs}], 'summaries', 'out'}."""
  groups = group_runs(runs, by, datasets)
  summaries = summarize_runs(groups, evals)
  for r in runs:
    if r.get("out"):
      write_run(r, evals, r["out"], title=title, cjk_font=cjk_font, log=log)
  index = {id(r): i for i, r in enumerate(runs)}
  result = {"runs": list(runs), "summaries": summaries, "out": None,
            "groups": [{"name": g, "workdirs": [r["workdir"] for r in members],
                        "runs": [index[id(r)] for r in members]}
                       for g, members in groups]}
  if out:
    out = os.path.abspath(out)
    with io.atomic_dir(out) as tmp:
      rep = Report(tmp, title=title)
      render(rep, runs, groups, summaries, evals, cjk_font=cjk_font,
             side_by_side=side_by_side, options=options)
      rep.write()
      for sub in keep:  # e.g. a cache built inside the old folder
        if os.path.isdir(os.path.join(out, sub)):
          os.rename(os.path.join(out, sub), os.path.join(tmp, sub))
    log(f"report: {os.path.join(out, 'report.md')}")
    result["out"] = out
  return result


def run(workdirs: Sequence[str], evals, *, out: str | None = "", step="best",
        data_dir=None, title: str = "Evaluation", preset: str = "", cjk_font="auto",
        by: str = "setting", datasets: Sequence[str] = (), side_by_side: bool = False,
        each: str = "", options: Mapping[str, Mapping] | None = None,
        keep: Sequence[str] = (), log: Callable[[str], None] = print) -> dict:
  """Evaluates every workdir (and `datasets` without a model) with `evals`, summarises
  and writes the report folder `out` (default ``<first workdir>/evaluation/<preset or
  'evaluation'>``; None: none) and, with `each`, every run's own (see the module's
  docstring for `by`, `side_by_side`, `options`, `keep`). Every setting, checkpoint and
  output folder is checked before any evaluation. Returns :func:`write`'s dict (each
  run with its own report folder as 'out')."""
  workdirs = [w for w in workdirs if w]
  datasets = list(dict.fromkeys(d.strip() for d in datasets if d and d.strip()))
  if not workdirs and not datasets:
    raise UserError("--workdirs is empty; give one or more training workdirs")
  if by not in BY:
    raise unknown("grouping (by)", by, BY)
  for d in datasets:
    data_lib.get_info(d)
  _entries(evals)
  step = evaluators.parse_step(step)
  if each and WORKDIR not in each and len(workdirs) > 1:
    raise UserError(f"{each} is one report folder for {len(workdirs)} workdirs; give "
                    f"a folder with {WORKDIR} in it (each run's own)")
  if out == "":
    if not workdirs:
      raise UserError("--out is required when no workdir is given")
    out = default_out(workdirs, preset)
  outs = [each.replace(WORKDIR, evaluators.resolve_workdir(w, step)[0])
          for w in workdirs] if each else []
  for o in ([out] if out else []) + outs:
    check_writable(o)
  ckpts = [evaluators.restore(w, step) for w in workdirs]  # all restorable: then work
  if by == "dataset":
    seen: dict[str, evaluators.Checkpoint] = {}
    for ck in ckpts:
      d = ck.config.dataset
      if d in seen:
        raise UserError(f"two checkpoints trained on {d}: {seen[d].workdir} and "
                        f"{ck.workdir}; give one workdir per dataset")
      seen[d] = ck
  for _, module, kw in evaluators.from_config(evals):
    if hasattr(module, "check_checkpoints"):
      module.check_checkpoints(ckpts, **kw)
  runs = evaluate_many(ckpts, evals, data_dir=data_dir, datasets=datasets, log=log)
  for r, o in zip(runs, outs):
    r["out"] = os.path.abspath(o)
  return write(runs, evals, out=out, title=title, cjk_font=cjk_font, by=by,
               datasets=datasets, side_by_side=side_by_side, options=options, keep=keep,
               log=log)


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


def run_config(workdirs: Sequence[str], config, *, step="best", out: str | None = "",
               dataset: str = "", split: str = "", data_dir=None, preset: str = "",
               log: Callable[[str], None] = print, **layout) -> dict:
  """:func:`run` with a preset config (``config.evals``, optional ``config.cjk_font``
  and ``config.title``; a ConfigDict or a plain dict), `dataset` / `split` set in the
  evaluators that have them; `layout`: :func:`run`'s by, datasets, side_by_side, each,
  options, keep."""
  if "evals" not in config:
    raise UserError("the --config file has no config.evals (see "
                    "experiments/configs/evals/*.py)")
  evals = with_overrides(config["evals"], dataset=dataset, split=split)
  return run(workdirs, evals, out=out, step=step, data_dir=data_dir, preset=preset,
             title=config.get("title") or f"Evaluation: {preset or 'evaluators'}",
             cjk_font=font(config.get("cjk_font", "auto")), log=log, **layout)


def font(value):
  """A cjk_font setting: None for 'none' (no hiragana labels), else the value."""
  return None if value is None or str(value).lower() == "none" else value


def check_writable(out: str, flag: str = "--out") -> None:
  """UserError unless the folder `out` can be created (before any work is done)."""
  if os.path.isfile(out):
    raise UserError(f"cannot write {out}: it is a file; give {flag} a folder")
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
