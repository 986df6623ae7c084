r"""The augmentation study: policy x dataset x seed, one training run each, evaluated
by ``config.evals``, summarised with paired differences to ``none``.

The config is a training config (kmnist_jax.config.base()) plus a ``study`` block
(``policies``: augmentation policy strings, kmnist_jax.augment, ``'none'`` being the
baseline; ``datasets``; ``seeds``; ``grid_examples``; ``measure_costs``,
``cost_batch_size``; ``pgd_eps``: the PGD column's epsilon) and an optional ``evals``
block (kmnist_jax.evaluators: a ``corruption`` and an ``attack`` entry add mCE,
relative mCE and PGD accuracy to the table). Each
(dataset, policy, seed) is one ``train`` run of :mod:`kmnist_jax.studies.plan`
(cached by its full resolved config; resumed when interrupted).

Significance rule (every table): a paired difference (policy minus ``none``, same
seed) is called significant when it was measured on >= 2 seeds and
``|mean| > std`` (the sample standard deviation of the per-seed differences): the
change is larger than its spread over seeds. It is a screening rule, not a test
(with 3 seeds it is a paired t of 1.73, p ~ 0.22); ``*_t_test`` says whether a paired
t-test also rejects "no difference" at 5% (two-sided; 3 seeds: |mean| > 2.48 std)
(:func:`kmnist_jax.metrics.paired`).

The augmentation policies and the training loop (JAX) and the plots (matplotlib) are
imported inside the functions that need them: importing this module loads neither.
"""

from __future__ import annotations

import os

import numpy as np

from kmnist_jax import config as config_lib
from kmnist_jax import data as data_lib
from kmnist_jax import io, metrics
from kmnist_jax.errors import UserError
from kmnist_jax.reports import study_tables as tables
from kmnist_jax.studies import plan as plan_lib

STUDY = "study"
TABLE_COLUMNS = ("dataset", "policy", "seeds", "clean_acc_mean", "clean_acc_std",
                 "mce_mean", "mce_std", "rel_mce_mean", "pgd_acc_mean",
                 "rel_mce_std", "pgd_acc_std", "pgd_eps", "clean_acc_delta_mean",
                 "clean_acc_delta_std", "clean_acc_significant", "mce_delta_mean",
                 "mce_delta_std", "mce_significant", "pgd_acc_delta_mean",
                 "cost_ms_per_batch", "train_img_per_s", "clean_acc_t_test",
                 "mce_t_test", "pgd_acc_delta_std", "pgd_acc_significant",
                 "pgd_acc_t_test", "aa_acc_mean", "aa_acc_std", "aa_acc_delta_mean",
                 "aa_acc_delta_std", "aa_acc_significant", "aa_acc_t_test")


# ---- Plan -------------------------------------------------------------------------------

def parse_policies(policies) -> list[dict]:
  """[{label, policy, canonical}], 'none' required; bad policy -> one UserError line."""
  from kmnist_jax import augment
  out, seen = [], {}
  for policy in policies:
    try:
      parsed = augment.parse(policy)
    except UserError as e:
      raise UserError(f"config.study.policies: {e}") from None
    label = "+".join(n for n, _ in parsed) if parsed else augment.NONE
    seen[label] = seen.get(label, 0) + 1
    if seen[label] > 1:
      label = f"{label}_{seen[label]}"
    out.append({"label": label, "policy": policy,
                "canonical": augment.format_policy(parsed)})
  if augment.NONE not in [p["label"] for p in out]:
    raise UserError("config.study.policies must include 'none' (the baseline that "
                    "paired differences are measured against)")
  return out


def plan(cfg, workdir: str = "") -> plan_lib.Plan:
  """Every run's resolved config, validated; raises one UserError line for a bad
  policy, dataset, evaluator or training setting before anything loads."""
  from kmnist_jax import augment, train

  if STUDY not in cfg:
    raise UserError("the study config has no 'study' block; start from "
                    "experiments/configs/augment_study_reduced.py")
  st = cfg[STUDY]
  if not st.policies:
    raise UserError("config.study.policies is empty; give at least 'none' and one policy")
  if not st.seeds:
    raise UserError("config.study.seeds is empty; give at least one seed")
  if not st.datasets:
    raise UserError("config.study.datasets is empty; e.g. ('mnist', 'kmnist')")
  for ds in st.datasets:
    if ds not in data_lib.DATASETS:
      raise UserError(f"config.study.datasets: unknown dataset {ds!r}; valid choices: "
                      f"{', '.join(sorted(data_lib.DATASETS))}")
  policies = parse_policies(st.policies)
  evals = plan_lib.evals_dict(cfg)
  base = plan_lib.training_config(cfg)
  runs = plan_lib.baseline_runs(cfg[STUDY], base, evals)
  names = {r.info["dataset"]: r.name for r in runs}
  for seed in st.seeds:                # seeds outermost: every cell gets a value early
    for ds in st.datasets:
      for p in policies:
        tcfg = config_lib.from_dict(config_lib.to_dict(base))
        tcfg.dataset = ds
        tcfg.augment = "" if p["label"] == augment.NONE else p["policy"]
        tcfg.seed = int(seed)
        try:
          config_lib.validate(tcfg)
        except UserError as e:
          raise UserError(f"run {ds}/{p['label']}/seed {seed}: {e}") from None
        after = (names[ds],) if ds in names else ()
        runs.append(plan_lib.Run(
            name=f"{ds}-{p['label']}-s{seed}", kind="train",
            config=train.resolved_config(tcfg), seed=int(seed),
            evals=plan_lib.with_baseline(evals, ds, after), after=after,
            info={"dataset": ds, "label": p["label"], "policy": p["policy"]}))
  options = {"policies": policies, "datasets": list(st.datasets),
             "seeds": [int(s) for s in st.seeds],
             "eval_types": {n: e.get("type", n) for n, e in evals.items()},
             "grid_examples": int(st.get("grid_examples", 0)),
             "measure_costs": bool(st.get("measure_costs", False)),
             "cost_batch_size": int(st.get("cost_batch_size", 128)),
             "pgd_eps": float(st.get("pgd_eps", 0.1)),
             "data": {"data_dir": base.data_dir, "data_source": base.data_source,
                      "tfds_dir": base.tfds_dir},
             "model": base.model, "num_epochs": base.num_epochs,
             "train_limit": base.train_limit}
  return plan_lib.Plan("augmentation_study", workdir or "workdirs/augmentation_study",
                     runs, options)


# ---- Summaries ----------------------------------------------------------------------------

def _eval_value(rec: dict, types: dict, kind: str, field: str, eps=None):
  """A number from the first evaluator record of type `kind` (None if absent)."""
  for name, t in types.items():
    if t != kind:
      continue
    r = plan_lib.eval_record(rec, name)
    if kind == "attack":             # kmnist_jax.evaluators.attack's; field: the attack
      acc = ((r.get("attacks") or {}).get(field) or {}).get("accuracy") or []
      eps_list = r.get("epsilons") or []
      if not acc:
        return None, None
      j = (len(acc) - 1 if eps is None or not eps_list
           else int(np.argmin(np.abs(np.subtract(eps_list, eps)))))
      return acc[j], eps_list[j] if eps_list else None
    for f in (field, field.replace("rel_", "relative_")):
      if r.get(f) is not None:
        return r[f], None
  return None, None


def _attack_grid(recs: dict, types: dict) -> list[tuple[str, float]]:
  """(attack, eps > 0) pairs of the first attack evaluator record among `recs`."""
  for rec in recs.values():
    for name, t in types.items():
      r = plan_lib.eval_record(rec, name)
      if t == "attack" and r.get("attacks"):
        return [(a, e) for a in r["attacks"] for e in r["epsilons"] if e > 0]
  return []


def _corruption_per_class(rec: dict, types: dict):
  """(columns ['clean', corruption...], accuracy [classes, columns]) of the first
  corruption evaluator record, severities averaged; (None, None) if absent."""
  for name, t in types.items():
    if t == "corruption":
      r = plan_lib.eval_record(rec, name)
      pc = r.get("per_class") or {}
      if pc.get("accuracy") is not None:
        return list(pc["columns"]), np.asarray(pc["accuracy"], np.float64)
  return None, None


def _per_class(rec: dict) -> np.ndarray:
  return np.nan_to_num(metrics.per_class(rec["results"]["test_confusion"])["accuracy"])


def summarize(records, plan: plan_lib.Plan) -> dict:
  """Rows per (dataset, policy): mean +- std over seeds and paired differences to
  'none' of clean accuracy, mCE, relative mCE, PGD accuracy and per-class accuracy."""
  opt = plan.options
  types = opt.get("eval_types", {})
  pgd_eps = opt.get("pgd_eps")
  got: dict = {}
  for run, rec in zip(plan.runs, records):
    if rec is not None and run.info.get("role") != "baseline":
      got[(run.info["dataset"], run.info["label"], run.seed)] = rec
  rows = []
  for ds in opt["datasets"]:
    info = data_lib.get_info(ds)
    base = {s: got[(ds, "none", s)] for s in opt["seeds"] if (ds, "none", s) in got}
    for p in opt["policies"]:
      recs = {s: got[(ds, p["label"], s)] for s in opt["seeds"]
              if (ds, p["label"], s) in got}
      row = {"dataset": ds, "policy": p["label"], "spec": p["canonical"],
             "seeds": len(recs), "seed_list": sorted(recs),
             "missing_seeds": [s for s in opt["seeds"] if s not in recs],
             "class_names": list(info.class_names)}
      metrics_of = {
          "clean_acc": lambda r: r["results"]["test_accuracy"],
          "mce": lambda r: _eval_value(r, types, "corruption", "mce")[0],
          "rel_mce": lambda r: _eval_value(r, types, "corruption", "rel_mce")[0],
          "pgd_acc": lambda r: _eval_value(r, types, "attack", "pgd", pgd_eps)[0],
          "aa_acc": lambda r: _eval_value(r, types, "attack", "autoattack", pgd_eps)[0],
      }
      for a, e in _attack_grid(base or recs, types):
        metrics_of[f"{a}@{e:g}"] = (
            lambda r, a=a, e=e: _eval_value(r, types, "attack", a, e)[0])
      for m, fn in metrics_of.items():
        vals = {s: fn(r) for s, r in recs.items()}
        vals = {s: v for s, v in vals.items() if v is not None}
        row.update({f"{m}_{k}": v for k, v in metrics.seed_mean_std(list(vals.values())).items()})
        if p["label"] != "none":
          bvals = {s: fn(r) for s, r in base.items()}
          pairs = [(vals[s], bvals[s]) for s in sorted(vals)
                   if bvals.get(s) is not None]
          d = metrics.paired(*zip(*pairs)) if pairs else metrics.paired([], [])
          row.update({f"{m}_delta_{k}": v for k, v in d.items()})
      if recs:
        row["pgd_eps"] = _eval_value(next(iter(recs.values())), types, "attack", "pgd",
                                     pgd_eps)[1]
        ips = [r["results"].get("train_img_per_s") for r in recs.values()]
        row["train_img_per_s"] = (float(np.median(ips)) if all(ips) else None)
        row["per_class_mean"] = np.mean([_per_class(r) for r in recs.values()], 0).tolist()
      paired_seeds = sorted(set(recs) & set(base))
      if paired_seeds and p["label"] != "none":
        d = np.array([_per_class(recs[s]) - _per_class(base[s]) for s in paired_seeds])
        row["per_class_gain"] = d.mean(0).tolist()
        row["per_class_gain_std"] = (d.std(0, ddof=1).tolist() if len(d) > 1 else None)
        cols, _ = _corruption_per_class(recs[paired_seeds[0]], types)
        if cols is not None:
          g = np.array([_corruption_per_class(recs[s], types)[1]
                        - _corruption_per_class(base[s], types)[1] for s in paired_seeds])
          row["corruption_columns"] = cols
          row["corruption_class_gain"] = g.mean(0).tolist()     # [classes, columns]
          row["corruption_class_gain_std"] = (g.std(0, ddof=1).tolist() if len(g) > 1
                                              else None)
      rows.append(row)
  best = {}     # per dataset: the policy with the largest mean mCE reduction vs none
  for ds in opt["datasets"]:
    cand = [r for r in rows if r["dataset"] == ds and r.get("mce_delta_mean") is not None
            and r.get("corruption_class_gain") is not None]
    if cand:
      best[ds] = min(cand, key=lambda r: r["mce_delta_mean"])["policy"]
  summary = {"study": plan.study, "options": opt, "rows": rows, "most_robust": best,
             "runs_wall_s": sum((r or {}).get("wall_s") or 0.0 for r in records),
             "missing": [r.name for r, rec in zip(plan.runs, records) if rec is None]}
  summary["costs"] = _costs(plan) if opt.get("measure_costs") else {}
  for row in rows:
    row["cost_ms_per_batch"] = (summary["costs"].get(row["spec"]) or {}).get(
        "ms_per_batch")
  summary["samples"] = _samples(plan) if opt.get("grid_examples") else {}
  return summary


def _load(opt: dict, dataset: str, n: int):
  d = opt["data"]
  return data_lib.load(dataset, data_dir=d["data_dir"] or None, source=d["data_source"],
                       tfds_dir=d["tfds_dir"] or None, limit={"test": n})


def _costs(plan: plan_lib.Plan) -> dict:
  """{canonical policy: augment.measure_cost(...)}, cached in <workdir>/costs.json."""
  from kmnist_jax import augment
  opt = plan.options
  path = os.path.join(plan.workdir, "costs.json")
  costs = io.read_json(path) if os.path.exists(path) else {}
  todo = [p for p in opt["policies"] if p["canonical"] not in costs]
  if todo:
    ds = _load(opt, opt["datasets"][0], max(opt["cost_batch_size"], 128))
    for p in todo:
      costs[p["canonical"]] = augment.measure_cost(
          p["policy"], ds.splits["test"].images, num_classes=ds.info.num_classes,
          batch_size=opt["cost_batch_size"])
    io.write_json(path, costs)
  return costs


def _samples(plan: plan_lib.Plan) -> dict:
  """{dataset: {'class_idx', 'rows': [(label, images [n, 28, 28] float)]}}: one test
  image per class (first `grid_examples` classes) and each policy applied to them."""
  import jax
  import jax.numpy as jnp

  from kmnist_jax import augment
  opt = plan.options
  out = {}
  for dataset in opt["datasets"]:
    ds = _load(opt, dataset, 2000)
    test = ds.splits["test"]
    C = ds.info.num_classes
    idx = [int(np.flatnonzero(test.labels == c)[0]) for c in range(C)
           if np.any(test.labels == c)][:opt["grid_examples"]]
    x = jnp.asarray(test.images[idx], jnp.float32)[..., None] / 255.0
    t = jax.nn.one_hot(jnp.asarray(test.labels[idx]), C)
    rows = [("original", np.asarray(x)[..., 0])]
    for p in opt["policies"]:
      if p["label"] != augment.NONE:
        y, _ = jax.jit(augment.build(p["policy"], C))(jax.random.key(0), x, t)
        rows.append((p["label"], np.asarray(y)[..., 0]))
    out[dataset] = {"classes": [int(test.labels[i]) for i in idx], "rows": rows}
  return out


# ---- Report -----------------------------------------------------------------------------

def _eps_label(rows) -> str:
  eps = {r.get("pgd_eps") for r in rows} - {None}
  return ", ".join(f"{e:g}" for e in sorted(eps)) or "-"


_METRIC_WORDS = {"clean_acc": ("clean accuracy", 1), "mce": ("mCE", -1),
                 "pgd_acc": ("PGD accuracy", 1), "aa_acc": ("AutoAttack accuracy", 1)}


def significance(rows) -> str:
  """Which paired differences to `none` pass the rule (|mean| > std over >= 2 seeds):
  one sentence per metric naming the policies that help, hurt, or neither."""
  return tables.significance(rows, _METRIC_WORDS, label="policy")


def adversarial_table(rows) -> str:
  """Accuracy (%) under each attack at each epsilon, mean ± std over seeds, with the
  paired difference to `none` (pp, * / ** as in every table); '' without attacks."""
  keys = sorted({k[:-5] for r in rows for k in r if "@" in k and k.endswith("_mean")
                 and "_delta_" not in k},
                key=lambda k: (float(k.split("@")[1]), k.split("@")[0] != "pgd"))
  if not keys:
    return ""
  head = " | ".join(f"{k.split('@')[0].upper()} ε={k.split('@')[1]}" for k in keys)
  md = [f"| policy | {head} |", "|---|" + "---|" * len(keys)]
  for r in rows:
    cells = []
    for k in keys:
      c = tables.pm(r.get(f"{k}_mean"), r.get(f"{k}_std"), digits=1)
      d = tables.delta(r, k, digits=1)
      cells.append(c + (f" (Δ {d})" if d else ""))
    md.append(f"| `{r['policy']}` | " + " | ".join(cells) + " |")
  return ("Accuracy (%) under attack (the attack evaluator's test images; PGD beside "
          "the ensemble shows how much a weak attack overstates):\n\n" + "\n".join(md))


def table_rows(summary: dict) -> list[dict]:
  """The headline table (results/augmentation_study/<kind>/table.csv): accuracies as
  fractions, mCE in %."""
  out = []
  for r in summary["rows"]:
    row = {c: r.get(c) for c in TABLE_COLUMNS}
    for m in ("clean_acc", "mce", "pgd_acc", "aa_acc"):
      row[f"{m}_significant"] = r.get(f"{m}_delta_significant")
      row[f"{m}_t_test"] = r.get(f"{m}_delta_t_test")
    for c in ("mce_mean", "mce_std", "rel_mce_mean", "rel_mce_std", "mce_delta_mean",
              "mce_delta_std"):
      row[c] = None if row[c] is None else 100 * row[c]
    out.append(row)
  return out


def render(summary: dict, report) -> None:
  from kmnist_jax import plots
  from kmnist_jax.plots import augmentation as aug_plots
  opt = summary["options"]
  report.title = report.title or "Augmentation study"
  report.metrics["augmentation_study"] = {k: v for k, v in summary.items()
                                          if k != "samples"}
  report.table("table", table_rows(summary), columns=list(TABLE_COLUMNS), show=False)
  report.section("Setup", (
      f"{len(summary['rows'])} (dataset, policy) cells, seeds {opt['seeds']}, model "
      f"{opt['model']}, {opt['num_epochs']} epochs on "
      f"{opt['train_limit'] or 'all'} training images; sum of the runs' wall-clock "
      f"{summary['runs_wall_s'] / 60:.1f} min. Accuracy in %, mean ± std over seeds; "
      "Δ: paired difference to `none` (same seed, pp); * marks a significant one "
      "(>= 2 seeds and |mean| > std of the differences, the studies' lenient rule: "
      "p ~ 0.22 with 3 seeds), ** one that a paired t-test also confirms at 5% "
      "(two-sided; 3 seeds: |mean| > 2.48 std)."))
  for ds in opt["datasets"]:
    rows = [r for r in summary["rows"] if r["dataset"] == ds]
    md = ["| policy | seeds | clean acc % | Δ vs none (pp) | mCE % | Δ mCE | rel. mCE % | "
          f"PGD acc % (eps {_eps_label(rows)}) | Δ PGD (pp) | gain most | lose most | "
          "cost ms/batch |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
      gain = lose = ""
      if r.get("per_class_gain") is not None:
        g, names = r["per_class_gain"], r["class_names"]
        order = sorted(range(len(g)), key=lambda i: -g[i])
        gain = ", ".join(f"{names[i]} {100 * g[i]:+.1f}" for i in order[:3]
                         if g[i] > 0) or "none"
        lose = (f"{names[order[-1]]} {100 * g[order[-1]]:+.1f}" if g[order[-1]] < 0
                else "none")
      cost = r.get("cost_ms_per_batch")
      md.append(f"| `{r['policy']}` | {r['seeds']} | "
                f"{tables.pm(r.get('clean_acc_mean'), r.get('clean_acc_std')) or 'not run'}"
                f" | {tables.delta(r, 'clean_acc')} | "
                f"{tables.pm(r.get('mce_mean'), r.get('mce_std'), digits=1)} | "
                f"{tables.delta(r, 'mce', digits=1)} | "
                f"{tables.pm(r.get('rel_mce_mean'), r.get('rel_mce_std'), digits=1)} | "
                f"{tables.pm(r.get('pgd_acc_mean'), r.get('pgd_acc_std'), digits=1)} | "
                f"{tables.delta(r, 'pgd_acc', digits=1)} | {gain} | {lose} "
                f"| {'' if cost is None else f'{cost:.2f}'} |")
    md += ["", significance(rows)]
    adv = adversarial_table(rows)
    if adv:
      md += ["", adv]
    report.section(ds, "\n".join(md))
    gains = [r for r in rows if r.get("per_class_gain") is not None]
    info = data_lib.get_info(ds)
    labels = plots.class_labels(info.class_names, getattr(info, "class_glyphs", None))
    if gains:
      aug_plots.gain_heatmap(
          100 * np.array([r["per_class_gain"] for r in gains]),
          [r["policy"] for r in gains], list(labels.short),
          report.figure(f"per_class_gain_{ds}"), labels=labels,
          title=f"{ds}: per-class test accuracy change vs none (pp, mean over seeds)")
    best = summary.get("most_robust", {}).get(ds)
    brow = next((r for r in gains if r["policy"] == best), None)
    if brow is not None:
      cols = brow["corruption_columns"]
      aug_plots.gain_heatmap(
          100 * np.asarray(brow["corruption_class_gain"]), list(labels.short), cols,
          report.figure(f"corruption_class_gain_{ds}"), labels=labels,
          title=f"{ds}: {best} (largest mCE reduction) minus none: accuracy change (pp) "
                "per class and corruption, severities averaged, mean over seeds")
    samples = summary.get("samples", {}).get(ds)
    if samples:
      sub = plots.class_labels([info.class_names[c] for c in samples["classes"]],
                               [labels.short[c] for c in samples["classes"]]
                               if labels.font else None)
      aug_plots.sample_grid(samples["rows"], sub, report.figure(f"samples_{ds}"),
                            title=f"{ds}: augmented samples per policy")
  pts = [{"name": r["policy"], "dataset": r["dataset"], "acc": r["clean_acc_mean"],
          "acc_std": r.get("clean_acc_std"), "mce": 100 * r["mce_mean"],
          "mce_std": 100 * (r.get("mce_std") or 0.0)} for r in summary["rows"]
         if r.get("mce_mean") is not None and r.get("clean_acc_mean") is not None]
  if pts:
    aug_plots.accuracy_vs_mce(pts, report.figure("accuracy_vs_mce"),
                              title="clean accuracy vs mCE per policy (std over seeds)")
  pol = ["| label | policy (every parameter) |", "|---|---|"]
  pol += [f"| `{p['label']}` | `{p['canonical']}` |" for p in opt["policies"]]
  report.section("Policies", "\n".join(pol))
  if summary["missing"]:
    report.section("Missing runs", "Re-run the same command to finish: "
                   + ", ".join(summary["missing"]))
