"""Adversarial attacks, jit-compiled over batches, and the AutoAttack-grade ensemble.

Threat model: pixels in [0, 1] (``models.preprocess`` of the uint8 images); the
adversary moves an image by at most ``eps`` in the L-inf norm (or L2) and must stay in
[0, 1]. Attacks by name (:data:`ATTACKS`):

=============  =====================================================================
``fgsm``       one signed-gradient step (Goodfellow et al. 2015)
``pgd``        PGD with ``pgd_restarts`` random starts and a loss (ce, dlr, margin)
``apgd-ce``    APGD on the cross-entropy (Croce & Hein 2020), 100 steps
``apgd-dlr``   APGD on the DLR loss
``apgd-t``     APGD on the targeted DLR loss, one run per top-k other class (k = 9)
``square``     Square, score-based black box, 5,000 queries (L-inf)
``autoattack`` APGD-CE -> APGD-T -> Square on the points still robust; robust only if
               a point survives all (the standard AutoAttack without FAB)
=============  =====================================================================

Modules: :mod:`.losses` (CE, DLR, targeted DLR, margin), :mod:`.core` (ball, box,
keys), :mod:`.pgd` (FGSM, PGD), :mod:`.apgd` (APGD, APGD-T), :mod:`.square`,
:mod:`.run` (members in sequence over a set, compiled batches, epsilon sweeps). Each
attack is a pure function of a logits function, so adversarial training
(:mod:`kmnist_jax.train`) runs the same code on the parameters it trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np

from kmnist_jax import config as config_lib
from kmnist_jax import metrics
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.robustness.attacks import (  # noqa: F401
  apgd,
  core,
  losses,
  pgd,
  run,
  square,
)
from kmnist_jax.robustness.attacks.core import NORMS
from kmnist_jax.robustness.attacks.losses import LOSSES
from kmnist_jax.robustness.attacks.run import Member, Prepared, robustness  # noqa: F401

ATTACKS = ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "square", "autoattack")
ENSEMBLE = ("apgd-ce", "apgd-t", "square")          # autoattack's members, in order
DEFAULT_EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
MAX_EPSILON = 1.0

# Settings of the attacks (the attack evaluator's, and adversarial training's PGD).
SETTINGS = {"norm": "linf", "pgd_steps": 10, "pgd_step_size": 0.0, "pgd_restarts": 1,
            "pgd_loss": "ce", "apgd_steps": 100, "apgd_restarts": 1, "apgd_targets": 9,
            "square_queries": 5000, "square_p_init": 0.8, "ensemble": ENSEMBLE}


# ---- Validation ------------------------------------------------------------------------

def check_attack(name: str) -> str:
  if name not in ATTACKS:
    raise unknown("attack", name, ATTACKS)
  return name


def check_epsilons(epsilons) -> tuple[float, ...]:
  """Sorted, distinct epsilons in [0, MAX_EPSILON] (pixels in [0, 1]); one-line errors."""
  eps = config_lib.number_list(
      epsilons, float, f"epsilons {epsilons!r} must be comma-separated numbers in "
      f"[0, {MAX_EPSILON}] (pixels in [0, 1]), e.g. 0,0.1,0.3")
  if not eps:
    raise UserError("no epsilons given; use e.g. 0,0.05,0.1,0.2,0.3 (pixels in [0, 1])")
  for e in eps:
    check_epsilon(e)
  if len(set(eps)) != len(eps):
    raise UserError(f"epsilon list {eps} names one twice")
  return tuple(sorted(eps))


def check_epsilon(e, what: str = "epsilon") -> float:
  if (isinstance(e, bool) or not isinstance(e, (int, float, np.number))
      or not np.isfinite(e) or e < 0 or e > MAX_EPSILON):
    raise UserError(f"{what} {e!r} is out of range; valid: 0 <= eps <= {MAX_EPSILON} "
                    "(a radius on pixels scaled to [0, 1], e.g. 0.3)")
  return float(e)


def check_steps(steps, step_size=None, what: str = "pgd"):
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
    raise UserError(f"{what} steps must be a positive integer, got {steps!r}")
  if step_size is not None and (isinstance(step_size, bool) or not np.isfinite(step_size)
                                or step_size <= 0):
    raise UserError(f"{what} step size must be > 0 (or unset for 2.5 eps / steps), got "
                    f"{step_size!r}")


def check_loss(name: str) -> str:
  if name not in LOSSES:
    raise unknown("attack loss", name, LOSSES)
  return name


def check_norm(name: str) -> str:
  if name not in NORMS:
    raise unknown("attack norm", name, NORMS)
  return name


def _positive_int(name, v, low=1):
  if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
    raise UserError(f"{name} must be an integer >= {low}, got {v!r}")
  return int(v)


def check_settings(settings: Mapping) -> dict:
  """:data:`SETTINGS` filled in and checked (one-line errors naming the valid values)."""
  bad = sorted(set(settings) - set(SETTINGS))
  if bad:
    raise unknown("attack setting", bad[0], SETTINGS)
  s = {**SETTINGS, **settings}
  check_norm(s["norm"])
  check_loss(s["pgd_loss"])
  s["pgd_step_size"] = float(s["pgd_step_size"] or 0.0)
  check_steps(s["pgd_steps"], s["pgd_step_size"] or None)
  check_steps(s["apgd_steps"], None, "apgd")
  for k in ("pgd_restarts", "apgd_restarts", "square_queries"):
    _positive_int(k, s[k])
  _positive_int("apgd_targets", s["apgd_targets"])
  if not 0 < float(s["square_p_init"]) <= 1:
    raise UserError(f"square_p_init must be in (0, 1], got {s['square_p_init']!r}")
  ens = s["ensemble"]
  ens = tuple(p.strip() for p in ens.split(",")) if isinstance(ens, str) else tuple(ens)
  for a in ens:
    if a not in ATTACKS or a == "autoattack":
      raise unknown("ensemble member", a, [x for x in ATTACKS if x != "autoattack"])
  if not ens:
    raise UserError("the ensemble has no members; e.g. apgd-ce,apgd-t,square")
  s["ensemble"] = ens
  if s["norm"] != "linf" and "square" in ens:
    raise UserError("square is L-inf only; for norm=l2 use e.g. ensemble=apgd-ce,apgd-t")
  return s


def members(attack: str, settings: Mapping | None = None) -> tuple[Member, ...]:
  """The sequence of :class:`Member` an attack name runs, from checked settings."""
  check_attack(attack)
  s = check_settings(settings or {})
  if attack == "autoattack":
    return tuple(m for a in s["ensemble"] for m in members(a, s))
  if attack == "fgsm":
    return (Member("fgsm", "fgsm"),)
  if attack == "pgd":
    return (Member("pgd", "pgd", loss=s["pgd_loss"], steps=int(s["pgd_steps"]),
                   step_size=s["pgd_step_size"] or None,
                   restarts=int(s["pgd_restarts"])),)
  if attack in ("apgd-ce", "apgd-dlr"):
    return (Member(attack, "apgd", loss=attack[5:], steps=int(s["apgd_steps"]),
                   restarts=int(s["apgd_restarts"])),)
  if attack == "apgd-t":
    return (Member("apgd-t", "apgd-t", loss="dlr", steps=int(s["apgd_steps"]),
                   restarts=int(s["apgd_restarts"]), targets=int(s["apgd_targets"])),)
  if s["norm"] != "linf":
    raise UserError("square is L-inf only (norm=linf)")
  return (Member("square", "square", queries=int(s["square_queries"]),
                 p_init=float(s["square_p_init"])),)


def describe(attack: str, settings: Mapping | None = None) -> str:
  """'APGD-CE (100 steps) -> APGD-T (9 targets x 100 steps) -> Square (5000 queries)'."""
  out = []
  for m in members(attack, settings):
    if m.kind == "fgsm":
      out.append("FGSM")
    elif m.kind == "pgd":
      out.append(f"PGD-{m.steps} ({m.loss}, {m.restarts} start"
                 f"{'s' if m.restarts > 1 else ''})")
    elif m.kind == "apgd":
      out.append(f"{m.name.upper()} ({m.steps} steps, {m.restarts} restart"
                 f"{'s' if m.restarts > 1 else ''})")
    elif m.kind == "apgd-t":
      out.append(f"APGD-T ({m.targets} targets x {m.steps} steps)")
    else:
      out.append(f"Square ({m.queries} queries)")
  return " -> ".join(out)


# ---- Over a set ------------------------------------------------------------------------

def check_images(images, labels):
  images, labels = np.asarray(images), np.asarray(labels)
  if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
    raise UserError(f"attack images must be uint8 [N, 28, 28], got {images.dtype}"
                    f"{list(images.shape)}")
  if labels.shape != images.shape[:1]:
    raise UserError(f"{len(labels)} labels for {len(images)} images")
  return images, labels


def evaluate(restored, images, labels, *, attack: str,
             epsilons: Sequence[float] = DEFAULT_EPSILONS, key=None,
             settings: Mapping | None = None, batch_size: int = 500,
             dtype: str | None = None, progress: bool = False, desc: str = "",
             prepared: Prepared | None = None) -> dict:
  """:func:`kmnist_jax.robustness.attacks.run.robustness` of `attack` (by name) on
  `restored` (a train.Restored or a model), images uint8 [N, 28, 28]; `key` default
  key(0). The model comes through :func:`kmnist_jax.inference.prepare` (pass
  `prepared` to reuse one across attacks)."""
  ms = members(attack, settings)
  s = check_settings(settings or {})
  epsilons = check_epsilons(epsilons)
  images, labels = check_images(images, labels)
  prepared = prepared or Prepared.of(restored, dtype)
  key = jax.random.key(0) if key is None else key
  return robustness(prepared, images, labels, ms, epsilons, key=key, norm=s["norm"],
                    batch_size=int(batch_size), progress=progress, desc=desc or attack)


def attack_predictions(restored, images: np.ndarray, labels: np.ndarray, *, attack: str,
                       epsilons: Sequence[float] = DEFAULT_EPSILONS, key=None,
                       steps: int = 10, step_size: float | None = None,
                       batch_size: int = 500, dtype: str | None = None,
                       progress: bool = True, desc: str = "") -> np.ndarray:
  """Predictions int32 [len(epsilons), N] under `attack` at each epsilon: the clean
  prediction where the example survives, the prediction at its adversarial point where
  it does not (:func:`evaluate` with PGD's `steps` and `step_size`)."""
  images, labels = check_images(images, labels)
  if len(images) == 0:
    return np.zeros((len(check_epsilons(epsilons)), 0), np.int32)
  out = evaluate(restored, images, labels, attack=attack, epsilons=epsilons, key=key,
                 settings={"pgd_steps": steps, "pgd_step_size": step_size or 0.0},
                 batch_size=batch_size, dtype=dtype, progress=progress, desc=desc)
  return out["pred"]


def accuracy_curve(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Accuracy at each epsilon: [E] from predictions [E, N]."""
  return (np.asarray(preds) == np.asarray(labels)[None]).mean(1)


def per_class_accuracy(preds: np.ndarray, labels: np.ndarray,
                       num_classes: int) -> np.ndarray:
  """Robust accuracy per class [E, C] (NaN for a class absent from `labels`)."""
  labels = np.asarray(labels)
  return np.stack([metrics.per_class(metrics.confusion_matrix(labels, p, num_classes))
                   ["accuracy"] for p in np.atleast_2d(preds)])


def per_class_robust(robust: np.ndarray, labels: np.ndarray,
                     num_classes: int) -> np.ndarray:
  """Robust accuracy per class [E, C] from robust flags [E, N] (NaN: class absent)."""
  labels = np.asarray(labels)
  out = np.full((len(robust), num_classes), np.nan)
  for c in range(num_classes):
    m = labels == c
    if m.any():
      out[:, c] = np.asarray(robust)[:, m].mean(1)
  return out
