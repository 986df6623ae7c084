"""Attack evaluator: FGSM / PGD-Linf accuracy curves over epsilon, overall and per class,
on the first `limit` test images.

  config.evals.attack = dict(
      type="attack",
      attacks=("fgsm", "pgd"),       # or "fgsm,pgd" / "both" / "none"
      epsilons=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3),   # L-inf, pixels in [0, 1]
      pgd_steps=10, pgd_step_size=0.0,                   # 0: 2.5 * eps / steps
      limit=1000, seed=0,                                # PGD's random start
  )

The attacks are :mod:`kmnist_jax.robustness.attacks` (threat model and counting rule
there: eps = 0 is exactly the clean accuracy, robust accuracy never exceeds it). The
model goes through the same restored-model path as every prediction
(:func:`kmnist_jax.inference.prepare`), keeping the conv formulation that is fast for
gradients.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import jax
import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax import io, metrics
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.evaluators import common
from kmnist_jax.robustness import attacks as attacks_lib

DEFAULTS = {"dataset": "", "attacks": attacks_lib.ATTACKS,
            "epsilons": attacks_lib.DEFAULT_EPSILONS, "pgd_steps": 10,
            "pgd_step_size": 0.0, "limit": 1000, "seed": 0, "batch_size": 500,
            "per_class_epsilon": 0.1, "progress": False}


def parse_attacks(spec) -> tuple[str, ...]:
  """('fgsm', 'pgd') from 'fgsm,pgd' / 'both' / 'none' / a sequence (one-line errors)."""
  if isinstance(spec, str):
    s = spec.strip().lower()
    if s in ("", "none"):
      return ()
    if s == "both":
      return attacks_lib.ATTACKS
    spec = [p.strip() for p in s.split(",") if p.strip()]
  names = tuple(dict.fromkeys(spec))
  for n in names:
    if n not in attacks_lib.ATTACKS:
      raise unknown("attack", n, attacks_lib.ATTACKS + ("both", "none"))
  return names


def check_config(**cfg) -> dict:
  """Settings with defaults filled in, every value checked before anything loads."""
  bad = sorted(set(cfg) - set(DEFAULTS))
  if bad:
    raise unknown("attack evaluator setting", bad[0], DEFAULTS)
  c = {**DEFAULTS, **cfg}
  c["attacks"] = parse_attacks(c["attacks"])
  c["epsilons"] = attacks_lib.check_epsilons(c["epsilons"]) if c["attacks"] else ()
  c["pgd_step_size"] = float(c["pgd_step_size"] or 0.0)
  if "pgd" in c["attacks"]:
    attacks_lib.check_steps(c["pgd_steps"], c["pgd_step_size"] or None)
  for k in ("limit", "seed", "batch_size"):
    v = c[k]
    low = 1 if k == "batch_size" else 0
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
      raise UserError(f"attack evaluator: {k}={v!r} must be a "
                      + ("positive integer" if k == "batch_size"
                         else "non-negative integer (limit 0: all)"))
  if c["dataset"] and c["dataset"] not in data_lib.DATASETS:
    raise unknown("dataset", c["dataset"], data_lib.DATASETS)
  return c


def nearest(values, target) -> float:
  values = list(values)
  return values[int(np.argmin([abs(v - target) for v in values]))]


def run(restored, *, data_dir=None, **cfg) -> dict:
  """The record of one checkpoint: per attack, accuracy [E] and per-class accuracy
  [E][C] at each epsilon, on `limit` test images."""
  c = check_config(**cfg)
  ds = c["dataset"] or restored.config.dataset
  info = data_lib.get_info(ds)
  split = data_lib.load(ds, data_dir=data_dir or None,
                        limit={"test": c["limit"]} if c["limit"] else None).splits["test"]
  x, y = split.images, split.labels.astype(np.int64)
  key = jax.random.key(c["seed"])
  rec = {"dataset": ds, "n": int(len(y)), "epsilons": list(c["epsilons"]),
         "attacks": {}, "seed": c["seed"], "pgd_steps": c["pgd_steps"],
         "pgd_step_size": c["pgd_step_size"] or "2.5 * eps / steps",
         "per_class_epsilon": c["per_class_epsilon"], "step": int(restored.step),
         "model": restored.config.model, "workdir": getattr(restored, "workdir", None)}
  for a in c["attacks"]:
    preds = attacks_lib.attack_predictions(
        restored, x, y, attack=a, epsilons=c["epsilons"], key=key,
        steps=c["pgd_steps"], step_size=c["pgd_step_size"] or None,
        batch_size=c["batch_size"], progress=c["progress"],
        desc=f"{a.upper()} {restored.config.model}")
    rec["attacks"][a] = {
        "accuracy": attacks_lib.accuracy_curve(preds, y),
        "per_class": attacks_lib.per_class_accuracy(preds, y, info.num_classes)}
  return io.jsonable(rec)


def summarize(records: Sequence[dict]) -> dict:
  """Mean and std (ddof=1) across seeds of each attack's curve and per-class table."""
  r0 = common.same_setting(records, ("dataset", "epsilons", "n"), "attack")
  out = {"runs": len(records), **{k: r0.get(k) for k in ("dataset", "n", "epsilons",
                                                         "pgd_steps", "pgd_step_size",
                                                         "per_class_epsilon", "model",
                                                         "workdir")},
         "attacks": {}}
  for a in r0["attacks"]:
    acc = [np.asarray(r["attacks"][a]["accuracy"], np.float64) for r in records]
    pc = [np.asarray(r["attacks"][a]["per_class"], np.float64) for r in records]
    (am, asd), (pm, psd) = metrics.mean_std(acc), metrics.mean_std(pc)
    out["attacks"][a] = {"accuracy": {"mean": am, "std": asd},
                         "per_class": {"mean": pm, "std": psd},
                         "per_seed": [r["attacks"][a]["accuracy"] for r in records]}
  return io.jsonable(out)


# ---- Rendering -------------------------------------------------------------------------

def _safe(name: str) -> str:
  return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def table_rows(named: Sequence[tuple[str, dict]]) -> tuple[list[str], list[list]]:
  """Rows (model, dataset, attack, n, runs, accuracy at each epsilon: the mean over
  runs, then its std when there are several)."""
  eps = next((s["epsilons"] for _, s in named if s["attacks"]), [])
  several = any(s["runs"] > 1 for _, s in named)
  head = (["model", "dataset", "attack", "n", "runs"] + [f"eps={e:g}" for e in eps]
          + ([f"std eps={e:g}" for e in eps] if several else []))
  rows = []
  for name, s in named:
    for a, d in s["attacks"].items():
      rows.append([name, s["dataset"], a.upper(), s["n"], s["runs"]]
                  + list(d["accuracy"]["mean"])
                  + (list(d["accuracy"]["std"]) if several else []))
  return head, rows


def figures(named: Sequence[tuple[str, dict]], report, *, cjk_font="auto") -> list[str]:
  """accuracy_vs_epsilon.png (all models) and robust_per_class_<name>.png per model."""
  from kmnist_jax import plots
  curves = [{"name": f"{name} ({s['dataset']})", "attack": a, "epsilons": s["epsilons"],
             "accuracy": d["accuracy"]["mean"]}
            for name, s in named for a, d in s["attacks"].items()]
  if not curves:
    return []
  files = [plots.accuracy_vs_epsilon(curves, report.figure("accuracy_vs_epsilon"))]
  for name, s in named:
    if not s["attacks"]:
      continue
    eps = list(s["epsilons"])
    e_star = nearest(eps, s.get("per_class_epsilon", 0.1))
    k = eps.index(e_star)
    info = data_lib.get_info(s["dataset"])
    lab = plots.class_labels(info.class_names, info.class_glyphs, font=cjk_font)
    first = next(iter(s["attacks"].values()))
    series = ([{"name": "clean", "accuracy": first["per_class"]["mean"][eps.index(0.0)]}]
              if 0.0 in eps else [])
    series += [{"name": f"{a.upper()} ε={e_star:g}",
                "accuracy": d["per_class"]["mean"][k]} for a, d in s["attacks"].items()]
    files.append(plots.robust_per_class(
        series, lab, report.figure(f"robust_per_class_{_safe(name)}"),
        title=f"{name} on {s['dataset']}: per-class accuracy (%) under attack "
              f"({s['n']} test images)"))
  return files


def render_many(named: Sequence[tuple[str, dict]], report, *, cjk_font="auto") -> dict:
  """Table ``attack`` (accuracy % at each epsilon) and :func:`figures` into `report`."""
  from kmnist_jax.report import pct
  head, rows = table_rows(named)
  if rows:
    s = named[0][1]
    report.table("attack", [dict(zip(head, r)) for r in rows], columns=head,
                 formats={h: functools.partial(pct, digits=1) for h in head[5:]})
    report.section(f"Accuracy (%) under attack (PGD: {s['pgd_steps']} steps, step size "
                   f"{s['pgd_step_size']}, random start)",
                   "An example counts as robust only if every point the attack "
                   "evaluated is classified correctly "
                   "(kmnist_jax/robustness/attacks.py).")
  files = figures(named, report, cjk_font=cjk_font)
  return {"head": head, "rows": rows, "figures": files}


def render(summary: dict, report, *, name: str | None = None, cjk_font="auto") -> dict:
  """:func:`render_many` of one summary."""
  w = summary.get("workdir")
  default = os.path.basename(os.path.normpath(w)) if w else summary.get("model")
  return render_many([(name or default or "model", summary)], report, cjk_font=cjk_font)
