"""The attack evaluator's report: accuracy under attack at each epsilon (table
``attack``), which member of an ensemble broke which points (``attack_broken_by``),
per class under the strongest attack (``attack_per_class``), the gradient-masking
checks, accuracy vs epsilon and per-class figures (:func:`render_many`). Numbers come
from the summaries (:func:`kmnist_jax.evaluators.attack.summarize`). The plots
(matplotlib) are imported by the functions that draw.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from kmnist_jax import data as data_lib
from kmnist_jax.evaluators import attack
from kmnist_jax.reports.base import pct
from kmnist_jax.reports.common import default_name, safe


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


def broken_rows(named: Sequence[tuple[str, dict]]) -> tuple[list[str], list[list]]:
  """Rows (model, dataset, attack, member, points it broke first at each epsilon) of
  the attacks made of several members (the ensemble)."""
  eps = next((s["epsilons"] for _, s in named if s["attacks"]), [])
  head = ["model", "dataset", "attack", "member"] + [f"eps={e:g}" for e in eps]
  rows = []
  for name, s in named:
    for a, d in s["attacks"].items():
      if len(d.get("broken_by", {})) > 1:
        for m, v in d["broken_by"].items():
          rows.append([name, s["dataset"], a.upper(), m.upper()] + list(v))
  return head, rows


def per_class_rows(named: Sequence[tuple[str, dict]]) -> tuple[list[str], list[list]]:
  """Rows (model, dataset, attack, eps, accuracy of each class): clean, and the
  strongest attack at the epsilon nearest ``per_class_epsilon``."""
  classes = max((data_lib.get_info(s["dataset"]).num_classes for _, s in named
                 if s["attacks"]), default=0)
  head = ["model", "dataset", "attack", "eps"] + [f"class {c}" for c in range(classes)]
  rows = []
  for name, s in named:
    a = attack.strongest(list(s["attacks"]))
    if a is None:
      continue
    eps = list(s["epsilons"])
    names = list(data_lib.get_info(s["dataset"]).class_names)
    k = eps.index(attack.nearest(eps, s.get("per_class_epsilon", 0.1)))
    pc = s["attacks"][a]["per_class"]["mean"]
    if 0.0 in eps:
      rows.append([name, s["dataset"], "clean", 0.0] + list(pc[eps.index(0.0)]))
    rows.append([name, s["dataset"], a.upper(), eps[k]] + list(pc[k]))
    head[4:4 + len(names)] = [f"{c} {n}" for c, n in enumerate(names)]
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
    e_star = attack.nearest(eps, s.get("per_class_epsilon", 0.1))
    k = eps.index(e_star)
    info = data_lib.get_info(s["dataset"])
    lab = plots.class_labels(info.class_names, info.class_glyphs, font=cjk_font)
    first = next(iter(s["attacks"].values()))
    series = ([{"name": "clean", "accuracy": first["per_class"]["mean"][eps.index(0.0)]}]
              if 0.0 in eps else [])
    series += [{"name": f"{a.upper()} ε={e_star:g}",
                "accuracy": d["per_class"]["mean"][k]} for a, d in s["attacks"].items()]
    files.append(plots.robust_per_class(
        series, lab, report.figure(f"robust_per_class_{safe(name)}"),
        title=f"{name} on {s['dataset']}: per-class accuracy (%) under attack "
              f"({s['n']} test images)"))
  return files


def headline(record: dict) -> str:
  """One line on one record (logged as it is made): accuracy at each epsilon per
  attack."""
  return "; ".join(f"{a.upper()} " + ", ".join(
      f"eps {e:g} {100 * v:.1f}%" for e, v in zip(record["epsilons"], d["accuracy"]))
      for a, d in record["attacks"].items()) or "no attack"


def render_many(named: Sequence[tuple[str, dict]], report, *, cjk_font="auto") -> dict:
  """Tables ``attack`` (accuracy % at each epsilon) and ``attack_broken_by`` (which
  member of an ensemble broke how many points), the masking checks, and
  :func:`figures` into `report`."""
  head, rows = table_rows(named)
  if rows:
    s = named[0][1]
    attacks = dict.fromkeys(a for _, s2 in named for a in s2["attacks"])
    how = "; ".join(f"{a.upper()}: {d}" for a, d in
                    ((a, next(s2["attacks"][a]["description"] for _, s2 in named
                              if a in s2["attacks"])) for a in attacks))
    report.table("attack", [dict(zip(head, r)) for r in rows], columns=head,
                 formats={h: functools.partial(pct, digits=1) for h in head[5:]})
    report.section(f"Accuracy (%) under attack, {s['n']} test images ({how})",
                   "An example counts as robust only if every point an attack "
                   "evaluated is classified correctly, and at an epsilon only if it "
                   "survived every smaller one (kmnist_jax/robustness/attacks/run.py). "
                   "Claims use the strongest attack: AUTOATTACK when it ran.")
    bh, br = broken_rows(named)
    if br:
      report.table("attack_broken_by", [dict(zip(bh, r)) for r in br], columns=bh,
                   formats={h: (lambda v: f"{v:.1f}".rstrip("0").rstrip("."))
                            for h in bh[4:]},
                   caption="Points each member of an ensemble broke first (mean over "
                           "runs); later members only see the survivors.")
    ph, pr = per_class_rows(named)
    report.table("attack_per_class", [dict(zip(ph, r)) for r in pr], columns=ph,
                 formats={h: functools.partial(pct, digits=1) for h in ph[4:]},
                 caption="Per-class accuracy (%) on clean input and under the "
                         "strongest attack at the per-class epsilon.")
    lines = [f"- {name}: {f}" for name, s2 in named for f in s2.get("masking", [])]
    report.section("Gradient-masking checks",
                   "\n".join(lines) + "\n" if lines else
                   "No sign of gradient masking: Square found nothing the gradient "
                   "attacks missed, robust accuracy falls with epsilon, and (where "
                   "checked) reaches ~0 at the sanity radius.\n")
  files = figures(named, report, cjk_font=cjk_font)
  return {"head": head, "rows": rows, "figures": files}


def render(summary: dict, report, *, name: str | None = None, cjk_font="auto") -> dict:
  """:func:`render_many` of one summary."""
  return render_many([(name or default_name(summary), summary)], report,
                     cjk_font=cjk_font)
