"""Attack evaluator: robust accuracy against epsilon for any attack of
:mod:`kmnist_jax.robustness.attacks` or the AutoAttack-grade ensemble, overall, per
class and per attack, with gradient-masking checks, on the first `limit` test images.

  config.evals.attack = dict(
      type="attack",
      attacks=("pgd", "autoattack"),  # fgsm, pgd, apgd-ce, apgd-dlr, apgd-t, square,
                                      # autoattack; or "fgsm,pgd" / "both" / "none"
      epsilons=(0.0, 0.05, 0.1, 0.2, 0.3),   # radii; pixels in [0, 1]
      norm="linf",                           # or l2 (no Square)
      pgd_steps=10, pgd_step_size=0.0, pgd_restarts=1, pgd_loss="ce",
      apgd_steps=100, apgd_restarts=1, apgd_targets=9,
      square_queries=5000, square_p_init=0.8,
      ensemble=("apgd-ce", "apgd-t", "square"),     # autoattack's members, in order
      masking_eps=0.5,                       # sanity radius of the masking check (0: off)
      limit=1000, seed=0, batch_size=500,
  )

Each attack runs on its own; ``autoattack`` runs its members in sequence on the points
still robust and reports which member broke how many points. Gradient-masking checks
(the record's ``masking``): Square breaking points the gradient attacks left (in the
ensemble, or alone against them), a weaker attack beating the strongest one of the
record, robust accuracy that stays flat while epsilon doubles, and robust accuracy above 5% at ``masking_eps`` (at 0.5 every image can be
moved to the uniform grey image, so a strong attack leaves at most about one class).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax import io, metrics
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.evaluators import common
from kmnist_jax.robustness import attacks as attacks_lib

DEFAULTS = {"dataset": "", "attacks": ("fgsm", "pgd"),
            "epsilons": attacks_lib.DEFAULT_EPSILONS, **attacks_lib.SETTINGS,
            "masking_eps": 0.5, "limit": 1000, "seed": 0, "batch_size": 500,
            "per_class_epsilon": 0.1, "progress": False}
SETTING_KEYS = tuple(attacks_lib.SETTINGS)
WHITE_BOX = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t")
MASKING_LARGE_EPS_ACCURACY = 0.05   # above this at masking_eps: flagged
MASKING_SQUARE_SHARE = 0.01         # Square breaking more of the set than this: flagged


def parse_attacks(spec) -> tuple[str, ...]:
  """('fgsm', 'pgd') from 'fgsm,pgd' / 'both' / 'none' / a sequence (one-line errors)."""
  if isinstance(spec, str):
    s = spec.strip().lower()
    if s in ("", "none"):
      return ()
    if s == "both":
      return ("fgsm", "pgd")
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
  c.update(attacks_lib.check_settings({k: c[k] for k in SETTING_KEYS}))
  for a in c["attacks"]:
    attacks_lib.members(a, {k: c[k] for k in SETTING_KEYS})
  c["masking_eps"] = attacks_lib.check_epsilon(c["masking_eps"] or 0.0, "masking_eps")
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


def strongest(attacks: Sequence[str]) -> str | None:
  """The attack whose numbers a claim should use: the ensemble when it ran."""
  for a in ("autoattack", "apgd-t", "apgd-dlr", "apgd-ce", "pgd", "square", "fgsm"):
    if a in attacks:
      return a
  return None


def masking_flags(rec: dict) -> list[str]:
  """One line per sign of gradient masking in a record (an empty list: none seen)."""
  flags, n, eps = [], max(rec["n"], 1), rec["epsilons"]
  atk = rec["attacks"]
  ens = atk.get("autoattack")
  if ens and "square" in ens.get("broken_by", {}):
    sq = ens["broken_by"]["square"]
    worst = int(np.argmax(sq))
    if sq[worst] > MASKING_SQUARE_SHARE * n:
      flags.append(f"black box beats white box: Square broke {sq[worst]} of {n} points "
                   f"the gradient attacks left at eps={eps[worst]:g}")
  if "square" in atk:
    wb = [a for a in atk if a in WHITE_BOX]
    for j, e in enumerate(eps):
      best_wb = min((atk[a]["accuracy"][j] for a in wb), default=None)
      if best_wb is not None and atk["square"]["accuracy"][j] < best_wb - 0.01:
        flags.append(f"black box beats white box: Square alone leaves "
                     f"{100 * atk['square']['accuracy'][j]:.1f}% at eps={e:g}, the best "
                     f"gradient attack {100 * best_wb:.1f}%")
        break
  s = strongest(list(atk))
  if s:
    acc = atk[s]["accuracy"]
    for a in atk:      # a weaker attack finding more: too few steps, or masked gradients
      if a in (s, "square"):         # Square beating the gradient attacks: checked above
        continue
      j = int(np.argmin(np.subtract(atk[a]["accuracy"], acc)))
      if atk[a]["accuracy"][j] < acc[j] - 0.01:
        flags.append(f"{a} beats {s}: {100 * atk[a]['accuracy'][j]:.1f}% against "
                     f"{100 * acc[j]:.1f}% at eps={eps[j]:g} (the stronger attack has too "
                     "few steps or restarts, or the gradients mislead it)")
    pos = [j for j, e in enumerate(eps) if e > 0]
    if len(pos) >= 2 and eps[pos[-1]] >= 2 * eps[pos[0]]:
      lo, hi = acc[pos[0]], acc[pos[-1]]
      if lo > 0.05 and hi >= lo - 0.01:
        flags.append(f"robust accuracy does not fall with eps under {s}: "
                     f"{100 * lo:.1f}% at eps={eps[pos[0]]:g}, {100 * hi:.1f}% at "
                     f"eps={eps[pos[-1]]:g}")
  big = rec.get("masking_large_eps")
  if big and big["accuracy"] > MASKING_LARGE_EPS_ACCURACY:
    flags.append(f"robust accuracy {100 * big['accuracy']:.1f}% at eps={big['eps']:g} "
                 f"under {big['attack']} (expected ~0: every image can be moved to grey)")
  return flags


def run(restored, *, data_dir=None, **cfg) -> dict:
  """The record of one checkpoint: per attack, accuracy [E], per-class accuracy [E][C],
  the points each member broke first [E], its image-steps and seconds; the masking
  checks."""
  c = check_config(**cfg)
  ds = c["dataset"] or restored.config.dataset
  info = data_lib.get_info(ds)
  split = data_lib.load(ds, data_dir=data_dir or None,
                        limit={"test": c["limit"]} if c["limit"] else None).splits["test"]
  x, y = split.images, split.labels.astype(np.int64)
  key = jax.random.key(c["seed"])
  settings = {k: c[k] for k in SETTING_KEYS}
  rec = {"dataset": ds, "n": int(len(y)), "epsilons": list(c["epsilons"]),
         "attacks": {}, "seed": c["seed"], "settings": settings,
         "pgd_steps": c["pgd_steps"],
         "pgd_step_size": c["pgd_step_size"] or "2.5 * eps / steps",
         "per_class_epsilon": c["per_class_epsilon"], "step": int(restored.step),
         "model": restored.config.model, "workdir": getattr(restored, "workdir", None)}
  prepared = attacks_lib.Prepared.of(restored)
  for a in c["attacks"]:
    out = attacks_lib.evaluate(
        restored, x, y, attack=a, epsilons=c["epsilons"], key=key, settings=settings,
        batch_size=c["batch_size"],
        progress=c["progress"], desc=f"{a} {restored.config.model}", prepared=prepared)
    rec["attacks"][a] = {
        "description": attacks_lib.describe(a, settings),
        "accuracy": out["robust"].mean(1),
        "per_class": attacks_lib.per_class_robust(out["robust"], y, info.num_classes),
        "broken_by": out["broken_by"], "image_steps": out["image_steps"],
        "seconds": out["seconds"]}
  s = strongest(c["attacks"])
  if c["masking_eps"] and s:
    out = attacks_lib.evaluate(restored, x, y, attack=s, epsilons=(c["masking_eps"],),
                               key=jax.random.fold_in(key, 10_000), settings=settings,
                               batch_size=c["batch_size"], prepared=prepared)
    rec["masking_large_eps"] = {"attack": s, "eps": c["masking_eps"],
                                "accuracy": float(out["robust"].mean())}
  rec = io.jsonable(rec)
  rec["masking"] = masking_flags(rec)
  return rec


def summarize(records: Sequence[dict]) -> dict:
  """Mean and std (ddof=1) across seeds of each attack's curve and per-class table,
  each member's broken points (mean), the union of the masking flags."""
  r0 = common.same_setting(records, ("dataset", "epsilons", "n"), "attack")
  out = {"runs": len(records), **{k: r0.get(k) for k in ("dataset", "n", "epsilons",
                                                         "pgd_steps", "pgd_step_size",
                                                         "per_class_epsilon", "model",
                                                         "workdir", "settings")},
         "attacks": {},
         "masking": list(dict.fromkeys(f for r in records for f in r.get("masking", [])))}
  for a in r0["attacks"]:
    acc = [np.asarray(r["attacks"][a]["accuracy"], np.float64) for r in records]
    pc = [np.asarray(r["attacks"][a]["per_class"], np.float64) for r in records]
    (am, asd), (pm, psd) = metrics.mean_std(acc), metrics.mean_std(pc)
    d = r0["attacks"][a]
    out["attacks"][a] = {
        "description": d.get("description", a),
        "accuracy": {"mean": am, "std": asd}, "per_class": {"mean": pm, "std": psd},
        "per_seed": [r["attacks"][a]["accuracy"] for r in records],
        "broken_by": {m: np.mean([r["attacks"][a].get("broken_by", {}).get(m, v)
                                  for r in records], 0)
                      for m, v in d.get("broken_by", {}).items()},
        "seconds": float(np.mean([sum(r["attacks"][a].get("seconds", {}).values())
                                  for r in records]))}
  return io.jsonable(out)
