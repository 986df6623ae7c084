"""What every attack shares: the threat model (L-inf or L2 ball intersected with the
[0, 1] pixel box), per-example keys, and the model as a function of its input.

An attack is a pure, jittable function
``attack(logits_fn, x, y, eps, key, **static) -> (x_adv, fooled)`` of float images
``x`` [B, 28, 28, 1] in [0, 1] and labels ``y`` [B]: ``x_adv`` stays in the ball and
in the box, ``fooled`` [B] says the model misclassifies ``x_adv``. ``logits_fn(x) ->
float32 logits [B, C]`` is any differentiable function (an evaluated checkpoint, or the
parameters being trained), so evaluation and adversarial training run one
implementation. ``key`` is one key (split into one per example) or a batch of B keys:
with a key per example (folded from the example's index) the result for an example does
not depend on which other examples share its batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kmnist_jax import models

NORMS = ("linf", "l2")


def model_logits(graphdef, params, rest, dtype=jnp.float32):
  """logits_fn of a split model in inference mode (BatchNorm's running statistics,
  no dropout), evaluated in `dtype`, returning float32."""

  def fn(x):
    logits, _ = models.apply(graphdef, params, rest, x.astype(dtype), train=False)
    return logits.astype(jnp.float32)

  return fn


def example_keys(key, n: int):
  """One key per example: `key` itself when it is already a batch of n keys."""
  if key.ndim == 0:
    return jax.random.split(key, n)
  if key.shape != (n,):
    raise ValueError(f"{key.shape[0]} keys for {n} examples")
  return key


def bcast(v, x):
  """A scalar or per-example [B] value broadcast against images x [B, ...]."""
  v = jnp.asarray(v, x.dtype)
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim)) if v.ndim else v


def lp_norm(d, norm: str):
  """Per-example norm [B] of perturbations d [B, ...]."""
  flat = d.reshape(d.shape[0], -1)
  if norm == "linf":
    return jnp.abs(flat).max(-1)
  return jnp.sqrt((flat * flat).sum(-1))


def normalize(d, norm: str):
  """d / ||d|| per example (the unit-norm direction; 0 stays 0)."""
  return d / (bcast(lp_norm(d, norm), d) + 1e-12)


def project(xa, x, eps, norm: str):
  """xa projected onto {||xa - x|| <= eps} and then clipped to [0, 1]. For L-inf the
  result is the exact projection onto the intersection; for L2 it is AutoAttack's
  (rescale, then clip), which stays inside the intersection."""
  e = bcast(eps, x)
  if norm == "linf":
    return jnp.clip(jnp.clip(xa, x - e, x + e), 0.0, 1.0)
  d = xa - x
  n = bcast(lp_norm(d, norm), d)
  return jnp.clip(x + d * jnp.minimum(1.0, e / (n + 1e-12)), 0.0, 1.0)


def ascent_direction(g, norm: str):
  """The steepest-ascent step of unit norm for gradient g: sign(g) for L-inf, g/||g||_2."""
  return jnp.sign(g) if norm == "linf" else normalize(g, "l2")


def random_start(keys, x, eps, norm: str):
  """A random point of the ball (clipped to the box): uniform in the L-inf cube, a
  uniformly random direction at radius eps for L2 (AutoAttack's starts)."""
  shape = x.shape[1:]
  if norm == "linf":
    t = jax.vmap(lambda k: jax.random.uniform(k, shape, x.dtype, -1.0, 1.0))(keys)
  else:
    t = jax.vmap(lambda k: jax.random.normal(k, shape, x.dtype))(keys)
  return jnp.clip(x + bcast(eps, x) * normalize(t, norm), 0.0, 1.0)


def predict(logits_fn, x):
  return jnp.argmax(logits_fn(x), -1).astype(jnp.int32)
