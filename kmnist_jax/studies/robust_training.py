r"""The robust-training study: method x dataset x seed, one training run each, every
model measured by the same evaluators, summarised with paired differences to ``none``.

The config is a training config (kmnist_jax.config.base()) plus a ``study`` block:

* ``methods``: the row labels, in order, ``'none'`` (plain training) first among
  them being the baseline of every paired difference;
* ``overrides``: per label, the training-config fields it changes (nested groups,
  e.g. ``{'adversarial': {'method': 'pgd', 'steps': 5}}`` or ``{'augment':
  'noise(std=0.25)'}``); every label but ``none`` needs one (entries of labels not
  in ``methods`` are allowed: ``methods`` picks a subset);
* ``train_eps``: per dataset, the L-inf radius adversarial training uses (every run
  whose ``adversarial.method`` is not ``none``);
* ``epsilons``: per dataset, the attack evaluators' grid (0 first: clean);
* ``datasets``, ``seeds``, ``baseline_config`` (the mCE reference runs, e.g.
  ``'{dataset}_logreg'``, as in the augmentation study).

Each (dataset, method, seed) is one ``train`` run of :mod:`kmnist_jax.studies.plan`
(cached under its full resolved config; resumed when interrupted). The ``evals`` block
is the evaluators every run gets: the ``attack`` evaluator (the ensemble) gives the
robust accuracy at each epsilon and per class, ``corruption`` the mCE against the
baseline, ``smoothing`` the certified L2 accuracy.

Every evaluator reads the run's best checkpoint (``EVAL_STEP``: the most robust epoch
by the training's PGD check). Rows per (dataset, method): clean accuracy of that
checkpoint (the corruption evaluator's clean test images), robust accuracy at each
epsilon (the first attack of the first attack evaluator), mCE, relative mCE, certified
accuracy at the smoothing radii and the average certified radius, per-class robust accuracy at the
training epsilon, training throughput and wall-clock, and catastrophic-overfitting
collapses; every metric as mean ± std over seeds and as a paired difference to
``none`` (same seed) with the studies' significance rule
(:func:`kmnist_jax.metrics.paired`, rendered by :mod:`kmnist_jax.reports.study_tables`).
"""

from __future__ import annotations

import numpy as np

from kmnist_jax import config as config_lib
from kmnist_jax import data as data_lib
from kmnist_jax import metrics
from kmnist_jax.errors import UserError
from kmnist_jax.reports import study_tables as tables
from kmnist_jax.studies import plan as plan_lib

STUDY = "study"
BASE = "none"
# Every evaluator reads the run's "best" checkpoint: with the adversarial block's check
# (check_every_epoch) the epoch most robust to its PGD check (robust early stopping; a
# fast-FGSM collapse keeps the model from before it), else the most accurate one.
EVAL_STEP = "best"
TABLE_COLUMNS = ("dataset", "method", "seeds", "train_eps", "clean_acc_mean",
                 "clean_acc_std", "clean_acc_delta_mean", "clean_acc_delta_std",
                 "robust_acc_mean", "robust_acc_std", "robust_acc_delta_mean",
                 "robust_acc_delta_std", "robust_acc_significant", "robust_acc_t_test",
                 "attack", "mce_mean", "mce_std", "mce_delta_mean", "mce_delta_std",
                 "certified_acc_mean", "certified_acc_std", "certified_radius",
                 "acr_mean", "acr_std", "train_img_per_s", "train_minutes_mean",
                 "collapses")


# ---- Plan -------------------------------------------------------------------------------

def _merge(cfg, overrides: dict, where: str) -> None:
  """Sets `overrides` (nested dicts) on the ConfigDict `cfg`; an unknown field is one
  UserError line naming the valid ones."""
  for k, v in overrides.items():
    if k not in cfg:
      raise UserError(f"{where}.{k}: unknown training-config field; valid fields: "
                      f"{', '.join(sorted(cfg.keys()))}")
    if isinstance(v, dict) and hasattr(cfg[k], "keys"):
      _merge(cfg[k], v, f"{where}.{k}")
    else:
      cfg[k] = tuple(v) if isinstance(v, list) else v


def _per_dataset(st: dict, field: str, datasets) -> dict:
  got = st.get(field) or {}
  missing = [d for d in datasets if d not in got]
  if missing:
    raise UserError(f"config.study.{field} has no entry for dataset {missing[0]!r}; give "
                    f"one per dataset of config.study.datasets ({', '.join(datasets)})")
  return {d: got[d] for d in datasets}


def _check_epsilons(eps, dataset: str) -> tuple:
  try:
    out = tuple(float(e) for e in eps)
  except (TypeError, ValueError):
    raise UserError(f"config.study.epsilons.{dataset}={eps!r} must be a list of numbers "
                    "in [0, 1], e.g. (0, 0.1, 0.2, 0.3)") from None
  if not out or any(not 0.0 <= e <= 1.0 for e in out) or list(out) != sorted(set(out)):
    raise UserError(f"config.study.epsilons.{dataset}={eps!r} must be increasing "
                    "numbers in [0, 1], e.g. (0, 0.1, 0.2, 0.3)")
  return out


def plan(cfg, workdir: str = "") -> plan_lib.Plan:
  """Every run's resolved config, validated; one UserError line for a bad method,
  override, dataset, epsilon, evaluator or training setting before anything loads."""
  # Deferred: the training loop imports JAX; only its config resolver is needed here.
  from kmnist_jax import train

  if STUDY not in cfg:
    raise UserError("the study config has no 'study' block; start from "
                    "experiments/configs/studies/robust_training.py")
  st = config_lib.to_dict(cfg)[STUDY]
  methods = list(st.get("methods") or ())
  if BASE not in methods:
    raise UserError(f"config.study.methods must include {BASE!r} (the baseline that "
                    f"paired differences are measured against), got {tuple(methods)}")
  if len(set(methods)) != len(methods):
    raise UserError(f"config.study.methods names a method twice: {tuple(methods)}")
  overrides = st.get("overrides") or {}
  bare = [m for m in methods if m != BASE and not overrides.get(m)]
  if bare:
    raise UserError(f"config.study.methods: {bare[0]!r} has no entry in config.study."
                    f"overrides (it would train the base config again); entries: "
                    f"{', '.join(sorted(overrides)) or 'none'}")
  if not st.get("seeds"):
    raise UserError("config.study.seeds is empty; give at least one seed")
  datasets = list(st.get("datasets") or ())
  if not datasets:
    raise UserError("config.study.datasets is empty; e.g. ('mnist', 'kmnist')")
  for ds in datasets:
    if ds not in data_lib.DATASETS:
      raise UserError(f"config.study.datasets: unknown dataset {ds!r}; valid choices: "
                      f"{', '.join(sorted(data_lib.DATASETS))}")
  train_eps = _per_dataset(st, "train_eps", datasets)
  epsilons = {d: _check_epsilons(e, d)
              for d, e in _per_dataset(st, "epsilons", datasets).items()}
  evals = plan_lib.evals_dict(cfg)
  base = plan_lib.training_config(cfg)
  runs = plan_lib.baseline_runs(cfg[STUDY], base, evals)
  names = {r.info["dataset"]: r.name for r in runs}
  for seed in st["seeds"]:             # seeds outermost: every cell gets a value early
    for ds in datasets:
      for m in methods:
        tcfg = config_lib.from_dict(config_lib.to_dict(base))
        _merge(tcfg, overrides.get(m) or {}, f"config.study.overrides.{m}")
        tcfg.dataset, tcfg.seed = ds, int(seed)
        if tcfg.adversarial.method != "none":
          tcfg.adversarial.eps = train_eps[ds]
        try:
          config_lib.validate(tcfg)
        except UserError as e:
          raise UserError(f"run {ds}/{m}/seed {seed}: {e}") from None
        after = (names[ds],) if ds in names else ()
        run_evals = plan_lib.with_baseline(_with_epsilons(evals, epsilons[ds]), ds, after)
        runs.append(plan_lib.Run(
            name=f"{ds}-{m}-s{seed}", kind="train", config=train.resolved_config(tcfg),
            seed=int(seed), evals=run_evals, after=after,
            info={"dataset": ds, "label": m, "method": tcfg.adversarial.method,
                  "train_eps": (float(tcfg.adversarial.eps)
                                if tcfg.adversarial.method != "none" else None)}))
  options = {"methods": methods, "overrides": overrides, "datasets": datasets,
             "seeds": [int(s) for s in st["seeds"]], "train_eps": train_eps,
             "epsilons": {d: list(e) for d, e in epsilons.items()},
             "eval_types": {n: e.get("type", n) for n, e in evals.items()},
             "model": base.model, "num_epochs": base.num_epochs,
             "train_limit": base.train_limit, "eval_step": EVAL_STEP}
  return plan_lib.Plan("robust_training_study", workdir or "workdirs/robust_training",
                       runs, options)


def _train_s(rec: dict) -> float:
  """Seconds of training: train_s (every epoch, across resumptions); older records:
  elapsed_s (the last training call's wall-clock)."""
  res = rec.get("results") or {}
  return float(res.get("train_s") or res.get("elapsed_s") or 0.0)


def _clean(rec: dict, types: dict):
  """(accuracy, per-class accuracy) of the evaluated checkpoint on clean test images:
  the corruption evaluator's clean column, else the attack's eps 0, else (no
  evaluator) the run's own test set result of its last epoch."""
  c = _first(rec, types, "corruption")
  if c.get("clean_accuracy") is not None:
    pc = c.get("per_class") or {}
    cols = pc.get("columns") or []
    per = ([row[cols.index("clean")] for row in pc["accuracy"]] if "clean" in cols
           else None)
    return c["clean_accuracy"], per
  _, eps, acc, per_class = _attack(rec, types)
  if eps and eps[0] == 0.0 and acc:
    return acc[0], per_class[0] if per_class else None
  return (rec["results"]["test_accuracy"],
          metrics.per_class(rec["results"]["test_confusion"])["accuracy"])


def _with_epsilons(evals: dict, eps: tuple) -> dict:
  return {n: ({**e, "epsilons": eps} if e.get("type", n) == "attack" else dict(e))
          for n, e in evals.items()}


# ---- Summaries ----------------------------------------------------------------------------

def _first(rec: dict, types: dict, kind: str) -> dict:
  for name, t in types.items():
    if t == kind:
      return plan_lib.eval_record(rec, name)
  return {}


def _attack(rec: dict, types: dict):
  """(attack name, epsilons, accuracy [E], per-class [E][C]) of the first attack of
  the first attack evaluator; Nones without one."""
  r = _first(rec, types, "attack")
  attacks = r.get("attacks") or {}
  if not attacks:
    return None, None, None, None
  name = next(iter(attacks))
  a = attacks[name]
  return name, list(r.get("epsilons") or []), a.get("accuracy"), a.get("per_class")


def _smoothing(rec: dict, types: dict):
  """(sigma, radii, certified accuracy [R], ACR) of the first sigma of the first
  smoothing evaluator; Nones without one."""
  r = _first(rec, types, "smoothing")
  res = r.get("results") or []
  if not res:
    return None, None, None, None
  return (res[0].get("sigma"), list(r.get("radii") or []),
          res[0].get("certified_accuracy"), res[0].get("average_certified_radius"))


def _at(eps_list, values, eps):
  if not values or eps is None:
    return None
  j = int(np.argmin(np.abs(np.subtract(eps_list, eps))))
  return values[j] if abs(eps_list[j] - eps) < 1e-9 else None


def _metric_fns(types: dict, epsilons, radii, train_eps, cert_radius) -> dict:
  fns = {
      "clean_acc": lambda r: _clean(r, types)[0],
      "robust_acc": lambda r: _at(*_attack(r, types)[1:3], train_eps),
      "mce": lambda r: _first(r, types, "corruption").get("mce"),
      "rel_mce": lambda r: _first(r, types, "corruption").get("relative_mce"),
      "certified_acc": lambda r: _at(*_smoothing(r, types)[1:3], cert_radius),
      "acr": lambda r: _smoothing(r, types)[3],
      "train_minutes": lambda r: _train_s(r) / 60.0,
  }
  for e in epsilons:
    if e > 0:
      fns[f"robust@{e:g}"] = lambda r, e=e: _at(*_attack(r, types)[1:3], e)
  for rad in radii:
    fns[f"cert@{rad:g}"] = lambda r, rad=rad: _at(*_smoothing(r, types)[1:3], rad)
  return fns


def summarize(records, plan: plan_lib.Plan) -> dict:
  """Rows per (dataset, method): mean ± std over seeds and paired differences to
  'none' of every metric; per-class robust accuracy at the training epsilon."""
  opt = plan.options
  types = opt.get("eval_types", {})
  got: dict = {}
  for run, rec in zip(plan.runs, records):
    if rec is not None and run.info.get("role") != "baseline":
      got[(run.info["dataset"], run.info["label"], run.seed)] = (run, rec)
  rows = []
  for ds in opt["datasets"]:
    info = data_lib.get_info(ds)
    eps_ds = opt["epsilons"][ds]
    t_eps = float(opt["train_eps"][ds])
    base = {s: got[(ds, BASE, s)][1] for s in opt["seeds"] if (ds, BASE, s) in got}
    any_rec = next((rec for (d, _, _), (_, rec) in got.items() if d == ds), None)
    sigma, radii, _, _ = _smoothing(any_rec or {}, types)
    radii = radii or []
    cert_radius = next((r for r in radii if r >= 0.5), radii[-1] if radii else None)
    attack = _attack(any_rec or {}, types)[0]
    fns = _metric_fns(types, eps_ds, radii, t_eps, cert_radius)
    for m in opt["methods"]:
      recs = {s: got[(ds, m, s)][1] for s in opt["seeds"] if (ds, m, s) in got}
      run0 = next((got[(ds, m, s)][0] for s in opt["seeds"] if (ds, m, s) in got), None)
      row = {"dataset": ds, "method": m, "seeds": len(recs), "seed_list": sorted(recs),
             "missing_seeds": [s for s in opt["seeds"] if s not in recs],
             "adversarial": run0.info.get("method") if run0 else None,
             "train_eps": run0.info.get("train_eps") if run0 else None,
             "headline_eps": t_eps, "epsilons": eps_ds, "attack": attack,
             "sigma": sigma, "radii": radii, "certified_radius": cert_radius,
             "class_names": list(info.class_names)}
      for name, fn in fns.items():
        vals = {s: fn(r) for s, r in recs.items()}
        vals = {s: v for s, v in vals.items() if v is not None}
        row.update({f"{name}_{k}": v
                    for k, v in metrics.seed_mean_std(list(vals.values())).items()})
        if m != BASE:
          bvals = {s: fn(r) for s, r in base.items()}
          pairs = [(vals[s], bvals[s]) for s in sorted(vals) if bvals.get(s) is not None]
          d = metrics.paired(*zip(*pairs)) if pairs else metrics.paired([], [])
          row.update({f"{name}_delta_{k}": v for k, v in d.items()})
      if recs:
        ips = [r["results"].get("train_img_per_s") for r in recs.values()]
        row["train_img_per_s"] = float(np.median(ips)) if all(ips) else None
        row["collapses"] = sum(1 for r in recs.values()
                               if r["results"].get("adv_collapse_epoch") is not None)
        pcs = [_at(_attack(r, types)[1], _attack(r, types)[3], t_eps)
               for r in recs.values()]
        pcs = [np.asarray([np.nan if v is None else v for v in p], np.float64)
               for p in pcs if p is not None]
        row["per_class_robust"] = _class_mean(pcs) if pcs else None
        clean = [_clean(r, types)[1] for r in recs.values()]
        row["per_class_clean"] = np.mean(np.nan_to_num(
            np.asarray(clean, np.float64)), 0).tolist()
      rows.append(row)
  return {"study": plan.study, "options": opt, "rows": rows,
          "runs_train_s": sum(_train_s(r) for r in records if r),
          "runs_eval_s": sum((r or {}).get("eval_s") or 0.0 for r in records),
          "missing": [r.name for r, rec in zip(plan.runs, records) if rec is None]}


def _class_mean(per_seed) -> list:
  """Mean over seeds per class, skipping NaN (a seed's class without test images);
  None for a class no seed has images of."""
  a = np.asarray(per_seed, np.float64)
  n = (~np.isnan(a)).sum(0)
  total = np.nansum(a, 0)
  return [None if k == 0 else float(t / k) for t, k in zip(total, n)]


# ---- Report -----------------------------------------------------------------------------

def _words(rows) -> dict:
  r0 = rows[0] if rows else {}
  return {"clean_acc": ("clean accuracy", 1),
          "robust_acc": (f"robust accuracy ({r0.get('attack') or 'attack'}, "
                         f"eps {r0.get('headline_eps')})", 1),
          "mce": ("mCE", -1),
          "certified_acc": (f"certified accuracy (sigma {r0.get('sigma')}, L2 radius "
                            f"{r0.get('certified_radius')})", 1)}


def table_rows(summary: dict) -> list[dict]:
  """The headline table (table.csv): accuracies as fractions, mCE in %."""
  out = []
  for r in summary["rows"]:
    row = {c: r.get(c) for c in TABLE_COLUMNS}
    row["robust_acc_significant"] = r.get("robust_acc_delta_significant")
    row["robust_acc_t_test"] = r.get("robust_acc_delta_t_test")
    for c in ("mce_mean", "mce_std", "mce_delta_mean", "mce_delta_std"):
      row[c] = None if row[c] is None else 100 * row[c]
    out.append(row)
  return out


def dataset_table(rows) -> str:
  """Markdown: one line per method of one dataset."""
  r0 = rows[0]
  eps = [e for e in r0["epsilons"] if e > 0]
  head = " | ".join(f"ε={e:g}" for e in eps)
  md = [f"| method | seeds | clean % | Δ clean | {head} | Δ robust (ε={r0['headline_eps']:g})"
        f" | mCE % | Δ mCE | certified % (L2 {r0.get('certified_radius')}) | ACR | "
        "train img/s | train min |",
        "|---|---|---|---|" + "---|" * len(eps) + "---|---|---|---|---|---|---|"]
  for r in rows:
    cells = [tables.pm(r.get(f"robust@{e:g}_mean"), r.get(f"robust@{e:g}_std"), digits=1)
             for e in eps]
    ips = r.get("train_img_per_s")
    mark = f" ({r['collapses']} collapsed)" if r.get("collapses") else ""
    md.append(
        f"| `{r['method']}`{mark} | {r['seeds']} | "
        f"{tables.pm(r.get('clean_acc_mean'), r.get('clean_acc_std')) or 'not run'} | "
        f"{tables.delta(r, 'clean_acc')} | " + " | ".join(cells) + " | "
        f"{tables.delta(r, 'robust_acc', digits=1)} | "
        f"{tables.pm(r.get('mce_mean'), r.get('mce_std'), digits=1)} | "
        f"{tables.delta(r, 'mce', digits=1)} | "
        f"{tables.pm(r.get('certified_acc_mean'), r.get('certified_acc_std'), digits=1)} | "
        f"{tables.pm(r.get('acr_mean'), r.get('acr_std'), scale=1.0, digits=3)} | "
        f"{'' if ips is None else f'{ips:.0f}'} | "
        f"{tables.pm(r.get('train_minutes_mean'), None, scale=1.0, digits=1)} |")
  return "\n".join(md)


def render(summary: dict, report) -> None:
  from kmnist_jax import plots
  from kmnist_jax.plots import robustness as rplots
  opt = summary["options"]
  report.title = report.title or "Robust-training study"
  report.metrics["robust_training_study"] = summary
  report.table("table", table_rows(summary), columns=list(TABLE_COLUMNS), show=False)
  ov = "; ".join(f"`{m}`: {opt['overrides'].get(m) or 'the base config'}"
                 for m in opt["methods"])
  report.section("Setup", (
      f"Methods {ov}. Training eps per dataset {opt['train_eps']}; model "
      f"{opt['model']}, {opt['num_epochs']} epochs on {opt['train_limit'] or 'all'} "
      f"training images; seeds {opt['seeds']}; summed over the runs, training "
      f"{summary.get('runs_train_s', 0.0) / 60:.1f} min and evaluation "
      f"{summary.get('runs_eval_s', 0.0) / 60:.1f} min of wall-clock. Every evaluator "
      f"reads the run's {opt.get('eval_step', 'latest')} checkpoint (best: the epoch "
      "most robust to the training's PGD check); clean accuracy is on the corruption "
      "evaluator's clean test images. Accuracy in %, mean ± std over seeds; "
      "Δ: paired difference to `none` (same seed, pp); * marks a significant one "
      "(>= 2 seeds and |mean| > std of the differences, the studies' lenient rule: "
      "p ~ 0.22 with 3 seeds), ** one that a paired t-test also confirms at 5%."))
  for ds in opt["datasets"]:
    rows = [r for r in summary["rows"] if r["dataset"] == ds]
    done = [r for r in rows if r["seeds"]]
    if not done:
      report.section(ds, "No finished run yet.")
      continue
    r0 = done[0]
    md = [f"Robust accuracy: {r0['attack']} on the attack evaluator's test images, at "
          "each L-inf eps; certified: randomized smoothing (sigma "
          f"{r0.get('sigma')}).", "", dataset_table(rows), "",
          tables.significance(done, _words(done), label="method", noun="method")]
    report.section(ds, "\n".join(md))
    info = data_lib.get_info(ds)
    labels = plots.class_labels(info.class_names, getattr(info, "class_glyphs", None))
    pts = [{"name": r["method"], "clean": r["clean_acc_mean"],
            "clean_std": r.get("clean_acc_std"), "robust": r.get("robust_acc_mean"),
            "robust_std": r.get("robust_acc_std"), "minutes": r.get("train_minutes_mean")}
           for r in done if r.get("robust_acc_mean") is not None]
    if pts:
      rplots.clean_vs_robust(
          pts, report.figure(f"clean_vs_robust_{ds}"),
          title=f"{ds}: clean vs {r0['attack']} accuracy at eps {r0['headline_eps']:g} "
                "(mean ± std over seeds; label: training minutes)")
    curves = [{"name": r["method"], "attack": r0["attack"] or "attack",
               "epsilons": r["epsilons"],
               "accuracy": [r["clean_acc_mean"]] + [r.get(f"robust@{e:g}_mean") or 0.0
                                                    for e in r["epsilons"] if e > 0]}
              for r in done if r0["attack"]]
    if curves:
      rplots.accuracy_vs_epsilon(curves, report.figure(f"robust_vs_eps_{ds}"),
                                 title=f"{ds}: accuracy (%) under {r0['attack']} per "
                                       "training method (mean over seeds)")
    series = [{"name": r["method"],
               "accuracy": [0.0 if v is None else v for v in r["per_class_robust"]]}
              for r in done if r.get("per_class_robust") is not None]
    if series:
      rplots.robust_per_class(series, labels, report.figure(f"per_class_robust_{ds}"),
                              title=f"{ds}: per-class accuracy (%) under {r0['attack']} "
                                    f"at eps {r0['headline_eps']:g} (mean over seeds)")
    cert = [{"name": r["method"], "sigma": r["sigma"], "radii": r["radii"],
             "accuracy": [r.get(f"cert@{x:g}_mean") or 0.0 for x in r["radii"]]}
            for r in done if r.get("sigma") is not None and r["radii"]]
    if cert:
      rplots.certified_accuracy_vs_radius(
          cert, report.figure(f"certified_{ds}"),
          title=f"{ds}: certified accuracy of the smoothed models (mean over seeds)")
  if summary["missing"]:
    report.section("Missing runs", "Re-run the same command to finish: "
                   + ", ".join(summary["missing"]))
