"""Per-example attack losses of logits ``z`` [B, C] and labels ``y`` [B] (pure functions).

An attack *ascends* every loss here except :func:`margin`, which Square descends (a
point is misclassified exactly when its margin is <= 0).

* ``ce``: the cross-entropy of the true label.
* ``dlr``: Croce & Hein's Difference of Logits Ratio,
  ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)`` (``pi`` sorts the logits in
  decreasing order): invariant to shifting and scaling the logits, so a model cannot
  hide behind saturated softmax outputs.
* ``dlr_targeted``: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`` for a
  target class ``t`` (APGD-T).
* ``margin``: ``z_y - max_{i != y} z_i`` (Square's loss; also PGD's "margin" loss, ascended
  as its negative, Carlini & Wagner's f6).

Not an attack loss by name: :func:`kl`, ``KL(softmax(z_ref) || softmax(z))`` of logits
``z`` against reference logits (TRADES' adversary and training loss).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

LOSSES = ("ce", "dlr", "margin")


def _true_logit(z, y):
  return jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]


def margin(z, y):
  """z_y - max_{i != y} z_i (<= 0: misclassified)."""
  others = jnp.where(jax.nn.one_hot(y, z.shape[-1], dtype=bool), -jnp.inf, z)
  return _true_logit(z, y) - others.max(-1)


def ce(z, y):
  return optax.softmax_cross_entropy_with_integer_labels(z, y)


def dlr(z, y):
  zs = jnp.sort(z, axis=-1)
  return -margin(z, y) / (zs[:, -1] - zs[:, -3] + 1e-12)


def dlr_targeted(z, y, t):
  zs = jnp.sort(z, axis=-1)
  return -(_true_logit(z, y) - _true_logit(z, t)) / (
      zs[:, -1] - 0.5 * (zs[:, -3] + zs[:, -4]) + 1e-12)


def kl(z, z_ref):
  """KL(p_ref || p) per example [B], p = softmax(z), p_ref = softmax(z_ref)."""
  log_p_ref = jax.nn.log_softmax(z_ref, -1)
  return jnp.sum(jnp.exp(log_p_ref) * (log_p_ref - jax.nn.log_softmax(z, -1)), -1)


def get(name: str):
  """The ascended loss of `name` (one of :data:`LOSSES`): f(z, y) -> [B]."""
  if name == "ce":
    return ce
  if name == "dlr":
    return dlr
  if name == "margin":
    return lambda z, y: -margin(z, y)
  raise ValueError(name)
