"""Square attack (Andriushchenko et al. 2020), L-inf: a score-based black box. It
never looks at a gradient, so it exposes gradient masking: a model that defeats the
gradient attacks but not Square has hidden its gradients, not gained robustness.

As in the authors' code (the AutoAttack version): start from vertical stripes of
``+-eps``; at each query change one square window of every example to a random
``+-2 eps`` (per channel, projected back to the ball and the box) and keep the change
when the margin loss ``z_y - max_{i != y} z_i`` goes down; the window's side follows
the schedule of ``p`` (the fraction of pixels changed), halved at fixed fractions of
the query budget. Each example draws its own window position and signs from its own
key. An example stops being queried once it is misclassified (its margin <= 0); the
loop ends when every example of the batch is, or after ``queries`` queries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kmnist_jax.robustness.attacks import core, losses

# p_init divided by these at (query / budget * 10,000) > the bounds (AutoAttack's rule).
_P_BOUNDS = np.array([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])


def p_schedule(it, queries: int, p_init: float):
  """Fraction of pixels the window covers at query `it` (may be traced)."""
  t = jnp.floor(it / queries * 10000).astype(jnp.int32)
  halvings = jnp.sum(t > jnp.asarray(_P_BOUNDS))
  return p_init / jnp.where(halvings > 0, 2.0 ** halvings, 1.0)


def square(logits_fn, x, y, eps, key, *, queries: int = 5000, p_init: float = 0.8,
           norm: str = "linf"):
  """(x_adv, fooled); also usable on any logits function (no gradients taken)."""
  if norm != "linf":
    raise ValueError("square: only the L-inf version is implemented")
  b, h, w, ch = x.shape
  keys = core.example_keys(key, b)
  e = core.bcast(eps, x)
  k_init = jax.vmap(lambda k: jax.random.fold_in(k, queries))(keys)
  stripes = jax.vmap(lambda k: jax.random.rademacher(k, (1, w, ch), x.dtype))(k_init)
  x_best = jnp.clip(x + e * stripes, 0.0, 1.0)
  m0 = losses.margin(logits_fn(x_best), y)
  rows = jnp.arange(h)[None, :, None, None]
  cols = jnp.arange(w)[None, None, :, None]
  n_feat = h * w * ch

  def draw(k, s):
    k1, k2, k3 = jax.random.split(k, 3)
    vh = jnp.floor(jax.random.uniform(k1) * (h - s)).astype(jnp.int32)
    vw = jnp.floor(jax.random.uniform(k2) * (w - s)).astype(jnp.int32)
    return vh, vw, jax.random.rademacher(k3, (ch,), x.dtype)

  def cond(c):
    return (c["it"] < queries) & jnp.any(c["margin"] > 0)

  def body(c):
    it = c["it"]
    p = p_schedule(it, queries, p_init)
    s = jnp.maximum(jnp.round(jnp.sqrt(p * n_feat / ch)), 1).astype(jnp.int32)
    s = jnp.minimum(s, h - 1)
    vh, vw, sign = jax.vmap(lambda k: draw(jax.random.fold_in(k, it), s))(keys)
    vh, vw = vh[:, None, None, None], vw[:, None, None, None]
    inside = (rows >= vh) & (rows < vh + s) & (cols >= vw) & (cols < vw + s)
    x_new = jnp.where(inside, c["x_best"] + 2.0 * e * sign[:, None, None, :],
                      c["x_best"])
    x_new = jnp.clip(jnp.clip(x_new, x - e, x + e), 0.0, 1.0)
    m = losses.margin(logits_fn(x_new), y)
    active = c["margin"] > 0
    better = active & (m < c["margin"])
    return dict(it=it + 1, x_best=jnp.where(core.bcast(better, x), x_new, c["x_best"]),
                margin=jnp.where(better, m, c["margin"]),
                queries=c["queries"] + active.astype(jnp.int32))

  c = jax.lax.while_loop(cond, body, dict(it=jnp.int32(0), x_best=x_best, margin=m0,
                                          queries=jnp.ones((b,), jnp.int32)))
  return c["x_best"], c["margin"] <= 0

