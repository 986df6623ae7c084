"""FGSM and PGD (Madry et al. 2018), L-inf or L2, with a choice of loss.

* **FGSM** (Goodfellow et al. 2015): one step of size eps along the ascent direction.
* **PGD**: a random start in the ball, then ``steps`` iterations of
  ``x <- proj(x + alpha * dir(grad L))``; default ``alpha = 2.5 eps / steps`` (the walk
  can cross the ball from any start). Restarts are run by the caller on the points still
  robust (:mod:`kmnist_jax.robustness.attacks.run`), as AutoAttack does.

Counting (``track=True``, evaluation): the returned point is the first misclassified
point among the start and every iterate, else the last iterate (the "best adversarial
so far"), so ``fooled`` is true exactly when some point the attack evaluated fooled the
model. ``track=False`` (adversarial training) returns the last iterate and no flags,
and accepts any loss ``f(logits, y) -> [B]`` (TRADES passes clean logits as ``y``) and
an explicit ``start`` point (TRADES starts from ``x + 0.001 N(0, 1)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kmnist_jax.robustness.attacks import core, losses


def _loss_fn(loss):
  return losses.get(loss) if isinstance(loss, str) else loss


def value_and_grad(logits_fn, lossf, y):
  """x -> (logits, d sum(loss) / d x)."""

  def f(x):
    z = logits_fn(x)
    return lossf(z, y).sum(), z

  def fn(x):
    (_, z), g = jax.value_and_grad(f, has_aux=True)(x)
    return z, g

  return fn


def fgsm(logits_fn, x, y, eps, key=None, *, loss="ce", norm="linf"):
  """(x_adv, fooled): one step of size eps (no random start; `key` unused)."""
  del key
  _, g = value_and_grad(logits_fn, _loss_fn(loss), y)(x)
  xa = core.project(x + core.bcast(eps, x) * core.ascent_direction(g, norm), x, eps, norm)
  return xa, core.predict(logits_fn, xa) != y


def pgd(logits_fn, x, y, eps, key, *, steps: int = 10, step_size=None, loss="ce",
        norm="linf", random_start: bool = True, track: bool = True, start=None):
  """(x_adv, fooled) of one PGD run; with ``track=False`` just the last iterate.
  ``start``: the first iterate (projected onto the ball and box) instead of a random
  start or ``x``."""
  alpha = 2.5 * eps / steps if step_size is None else step_size
  alpha = core.bcast(alpha, x)
  grad_fn = value_and_grad(logits_fn, _loss_fn(loss), y)
  keys = core.example_keys(key, x.shape[0])
  if start is not None:
    x0 = core.project(start, x, eps, norm)
  else:
    x0 = core.random_start(keys, x, eps, norm) if random_start else x

  def step(xa, g):
    return core.project(xa + alpha * core.ascent_direction(g, norm), x, eps, norm)

  if not track:
    return jax.lax.fori_loop(0, steps, lambda _, xa: step(xa, grad_fn(xa)[1]), x0)

  def body(_, carry):
    xa, found, fooled = carry
    z, g = grad_fn(xa)
    wrong = jnp.argmax(z, -1) != y
    found = jnp.where(core.bcast(wrong & ~fooled, x), xa, found)
    return step(xa, g), found, fooled | wrong

  fooled0 = jnp.zeros(y.shape, bool)
  xa, found, fooled = jax.lax.fori_loop(0, steps, body, (x0, x0, fooled0))
  wrong = core.predict(logits_fn, xa) != y
  found = jnp.where(core.bcast(wrong & ~fooled, x), xa, found)
  fooled = fooled | wrong
  return jnp.where(core.bcast(fooled, x), found, xa), fooled
