"""Adversarial training: the adversary inside the compiled training step.

``config.adversarial`` (defaults in :func:`kmnist_jax.config.base`) picks a method:

===========  ==========================================================================
``none``     plain training
``fgsm_rs``  fast FGSM (Wong et al. 2020): a random start in the ball, one signed
             gradient step of ``step_size`` (default 1.25 eps), projected
``pgd``      PGD adversarial training (Madry et al. 2018): ``steps`` PGD steps of
             ``step_size`` (default 2.5 eps / steps) from a random start, ascending
             ``loss`` (ce, dlr, margin); the model trains on the last iterate
``trades``   TRADES (Zhang et al. 2019): loss = CE(clean) + beta KL(p_clean || p_adv);
             the adversary ascends the KL for ``steps`` steps from x + 0.001 N(0, 1)
===========  ==========================================================================

All three run :func:`kmnist_jax.robustness.attacks.pgd.pgd` (``track=False``, the last
iterate), the function the evaluators run, on the parameters being trained: one PGD,
one set of losses. The adversary is a transform of the batch after augmentation, on
device inside the chunk's ``lax.scan`` (no host work per step), under ``jit``, ``pmap``
and sharded ``jit`` alike. Its randomness: one key per example of the *global* batch,
split from ``fold_in(step key, ADVERSARY)`` (step keys come from (seed, step)), each
replica taking its examples' keys, so every parallel mode attacks an example from the
same start.

Epsilon ramps linearly from 0 to ``eps`` over ``eps_warmup_epochs`` (a step size given
for the full eps scales with it). BatchNorm while attacking (``bn_mode``): ``eval``
(default) attacks the model as it is evaluated, with its running statistics and no
dropout, as TRADES' and most PGD-AT implementations do (``model.eval()`` while
attacking), so the attack is the evaluators' attack on the current parameters;
``train`` attacks with the batch's own statistics (and dropout), as fast FGSM's
reference code does; the running statistics are never updated by the attack.

Catastrophic overfitting (fast FGSM's failure: robustness to PGD collapses within an
epoch while FGSM accuracy soars): with ``check_every_epoch`` each epoch ends with PGD
(``check_steps`` steps, CE, the evaluators' PGD) at the full eps on the first
``check_images`` validation images, the same images and attack keys every epoch. Its
accuracy is the run's ``val_pgd_accuracy``; the kept "best" checkpoint is the one with
the highest such accuracy (robust early stopping, Rice et al. 2020). A collapse
(:func:`collapse`: after the warm-up, the accuracy falls below ``collapse_ratio`` times
its best so far, that best being above chance) is reported in one line, and with
``stop_on_collapse`` the run stops there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kmnist_jax import models
from kmnist_jax.errors import UserError
from kmnist_jax.robustness.attacks import core, losses, pgd

METHODS = ("none", "fgsm_rs", "pgd", "trades")
BN_MODES = ("eval", "train")
ATTACK_LOSSES = losses.LOSSES
TRADES_START_STD = 0.001
FGSM_RS_STEP = 1.25       # fast FGSM's step: 1.25 eps (Wong et al. 2020)
PGD_STEP = 2.5            # PGD's step: 2.5 eps / steps (the evaluators' rule)
ADVERSARY = 3             # folded into a step's key: the adversary's stream


# ---- Config checks ---------------------------------------------------------------------

def _bad(field: str, value, rule: str) -> UserError:
  return UserError(f"config.adversarial.{field}={value!r} {rule}")


def _number(a, field: str) -> float:
  v = a[field]
  if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
    raise _bad(field, v, "must be a number")
  return float(v)


def _int_at_least(a, field: str, low: int) -> int:
  v = a[field]
  if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
    raise _bad(field, v, f"must be an integer >= {low}")
  return int(v)


def check(cfg) -> None:
  """One UserError line for a bad ``config.adversarial`` (called by config.validate,
  before any data is loaded)."""
  from kmnist_jax import config as config_lib
  a = cfg.adversarial
  fields = set(config_lib.base().adversarial.keys())
  if not isinstance(a, Mapping) and not hasattr(a, "keys"):
    raise UserError(f"config.adversarial must be a group of fields "
                    f"({', '.join(sorted(fields))}), got {a!r}")
  unknown_fields = sorted(set(a.keys()) - fields)
  if unknown_fields:
    raise UserError(f"unknown field config.adversarial.{unknown_fields[0]}; valid fields: "
                    f"{', '.join(sorted(fields))}")
  missing = sorted(fields - set(a.keys()))
  if missing:
    raise UserError(f"config.adversarial is missing fields {missing}; start config files "
                    "from kmnist_jax.config.base() and set fields of its adversarial block")
  if a.method not in METHODS:
    raise UserError(f"config.adversarial.method={a.method!r} is not valid; valid choices: "
                    f"{', '.join(METHODS)}")
  eps = _number(a, "eps")
  if not 0.0 <= eps <= 1.0:
    raise _bad("eps", a.eps, "is out of range; valid: 0 <= eps <= 1 (an L-inf radius on "
               "pixels scaled to [0, 1], e.g. 0.3 for MNIST)")
  _int_at_least(a, "steps", 1)
  if _number(a, "step_size") < 0:
    raise _bad("step_size", a.step_size, "must be >= 0 (0: pgd / trades 2.5 eps / steps, "
               "fgsm_rs 1.25 eps)")
  if _number(a, "beta") < 0:
    raise _bad("beta", a.beta, "must be >= 0 (TRADES' weight of the KL term, e.g. 6)")
  warm = _number(a, "eps_warmup_epochs")
  if warm < 0 or (warm and warm >= cfg.num_epochs):
    raise _bad("eps_warmup_epochs", a.eps_warmup_epochs,
               f"must be >= 0 and smaller than config.num_epochs={cfg.num_epochs}")
  if a.loss not in ATTACK_LOSSES:
    raise UserError(f"config.adversarial.loss={a.loss!r} is not valid; valid choices: "
                    f"{', '.join(ATTACK_LOSSES)}")
  if a.bn_mode not in BN_MODES:
    raise UserError(f"config.adversarial.bn_mode={a.bn_mode!r} is not valid; valid "
                    f"choices: {', '.join(BN_MODES)}")
  for f in ("check_every_epoch", "stop_on_collapse"):
    if not isinstance(a[f], bool):
      raise _bad(f, a[f], "must be True or False")
  _int_at_least(a, "check_images", 1)
  _int_at_least(a, "check_steps", 1)
  if not 0.0 < _number(a, "collapse_ratio") < 1.0:
    raise _bad("collapse_ratio", a.collapse_ratio,
               "must be in (0, 1) (collapse: the check's accuracy below this fraction of "
               "its best, e.g. 0.5)")
  if a.method == "none":
    return
  # What the adversary cannot serve.
  if a.loss != "ce" and a.method != "pgd":
    raise _bad("loss", a.loss, f"applies to method=pgd only (method={a.method!r} ascends "
               + ("the KL to the clean prediction)" if a.method == "trades" else "the CE)"))
  if cfg.augment:
    from kmnist_jax import augment
    batch_ops = [n for n, _ in augment.parse(cfg.augment)
                 if augment.REGISTRY[n].level == "batch"]
    if batch_ops:
      raise UserError(f"config.augment={cfg.augment!r} mixes examples ({batch_ops[0]}): "
                      f"config.adversarial.method={a.method!r} attacks each example's own "
                      "label; drop the batch-level op (mixup, cutmix) or use method=none")
  if a.check_every_epoch and not cfg.val_size:
    raise UserError("config.adversarial.check_every_epoch=True needs validation images "
                    "but config.val_size=0; set config.val_size (e.g. 5000) or "
                    "config.adversarial.check_every_epoch=False")


def step_size(method: str, eps: float, steps: int, step_size: float = 0.0) -> float:
  """The attack's step at radius `eps`: `step_size`, or the method's rule when 0."""
  if step_size:
    return float(step_size)
  if method == "fgsm_rs":
    return FGSM_RS_STEP * eps
  return PGD_STEP * eps / steps


# ---- The transform ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Adversary:
  """The adversary of one run (static settings; everything traced comes per call)."""
  graphdef: Any
  method: str
  eps: float
  steps: int          # 1 for fgsm_rs
  alpha: float        # the step at the full eps
  loss: str
  beta: float
  bn_mode: str
  warmup_steps: int   # eps ramps over this many steps (0: none)
  dtype: Any = jnp.float32

  def epsilon(self, step):
    """eps at global `step` (traced, or a Python int: a Python float): the linear
    warm-up, then eps."""
    if isinstance(step, int):
      return self.eps * min(1.0, step / self.warmup_steps) if self.warmup_steps else self.eps
    if not self.warmup_steps:
      return jnp.float32(self.eps)
    ramp = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / self.warmup_steps)
    return jnp.float32(self.eps) * ramp

  def logits_fn(self, params, rest, key):
    """The attacked model: eval mode (running statistics), or train mode's batch
    statistics with the updated statistics dropped."""
    if self.bn_mode == "eval":
      return core.model_logits(self.graphdef, params, rest, self.dtype)

    def fn(x):
      logits, _ = models.apply(self.graphdef, params, rest, x.astype(self.dtype),
                               train=True, key=key)
      return logits.astype(jnp.float32)
    return fn

  def perturb(self, params, rest, x, y, keys, step, key):
    """The adversarial batch (no gradient flows back through it).

    x float [b, 28, 28, 1] in [0, 1] (after augmentation), y int labels [b], keys one
    per example [b], step the global step (eps warm-up), key the attack's dropout key
    (bn_mode=train)."""
    eps = self.epsilon(step)
    alpha = self.alpha * (eps / self.eps) if self.eps else jnp.float32(0.0)
    f = self.logits_fn(params, rest, key)
    if self.method == "trades":
      clean = jax.lax.stop_gradient(f(x))
      noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), x.shape[1:],
                                                   x.dtype))(keys)
      xa = pgd.pgd(f, x, clean, eps, keys, steps=self.steps, step_size=alpha,
                   loss=losses.kl, track=False, start=x + TRADES_START_STD * noise)
    else:
      xa = pgd.pgd(f, x, y, eps, keys, steps=self.steps, step_size=alpha,
                   loss=self.loss, track=False)
    return jax.lax.stop_gradient(xa)


def build(cfg, graphdef, steps_per_epoch: int) -> Adversary | None:
  """The run's :class:`Adversary`, or None for method=none."""
  a = cfg.adversarial
  if a.method == "none":
    return None
  steps = 1 if a.method == "fgsm_rs" else int(a.steps)
  return Adversary(
      graphdef=graphdef, method=a.method, eps=float(a.eps), steps=steps,
      alpha=step_size(a.method, float(a.eps), steps, float(a.step_size)),
      loss="ce" if a.method == "fgsm_rs" else a.loss, beta=float(a.beta),
      bn_mode=a.bn_mode, warmup_steps=round(float(a.eps_warmup_epochs) * steps_per_epoch),
      dtype=jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32)


def example_keys(step_key, batch_size: int, local_indices) -> jax.Array:
  """One key per example of the global batch from a step's key, gathered for this
  replica's examples (`local_indices`: :meth:`kmnist_jax.parallel.Parallel.local_indices`)."""
  keys = jax.random.split(jax.random.fold_in(step_key, ADVERSARY), batch_size)
  return keys[local_indices(jnp.arange(batch_size))]


def trades_loss(clean_logits, adv_logits, targets, beta: float):
  """TRADES' objective: mean CE(clean, targets) + beta mean KL(p_clean || p_adv) (the
  gradient flows through both passes, as in the reference implementation)."""
  ce = optax.softmax_cross_entropy(clean_logits, targets).mean()
  return ce + beta * losses.kl(adv_logits, clean_logits).mean()


# ---- The overfitting guard -------------------------------------------------------------

class Check:
  """PGD accuracy at the full eps on a fixed held-out batch, compiled once; run on one
  device from a host copy of the parameters (the same number in every parallel mode)."""

  def __init__(self, graphdef, cfg, images: np.ndarray, labels: np.ndarray, key):
    a = cfg.adversarial
    n = min(int(a.check_images), len(labels))
    self.n, self.eps, self.steps = n, float(a.eps), int(a.check_steps)
    self.images = jnp.asarray(images[:n])
    self.labels = jnp.asarray(labels[:n], jnp.int32)
    self.keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
    dtype = jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32
    steps, eps = self.steps, self.eps

    @jax.jit
    def robust(params, rest, images, labels, keys):
      f = core.model_logits(graphdef, params, rest, dtype)
      x = models.preprocess(images, jnp.float32)
      _, fooled = pgd.pgd(f, x, labels, eps, keys, steps=steps, track=True)
      return jnp.mean(~fooled & (core.predict(f, x) == labels))

    self._robust = robust

  def describe(self) -> str:
    return f"PGD-{self.steps} accuracy on {self.n} validation images at eps {self.eps:g}"

  def __call__(self, params, rest) -> float:
    return float(self._robust(params, rest, self.images, self.labels, self.keys))


def collapse(scores: Sequence[float], ratio: float, floor: float) -> int | None:
  """The index of the best earlier score when the last of `scores` fell below
  ``ratio`` x that best and that best exceeds `floor` (chance accuracy: a model no
  better than chance has no robustness to lose); else None."""
  if len(scores) < 2:
    return None
  before = list(scores[:-1])
  best = int(np.argmax(before))
  if before[best] > floor and scores[-1] < ratio * before[best]:
    return best
  return None
