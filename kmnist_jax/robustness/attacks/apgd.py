"""APGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"), L-inf or L2, with the CE, DLR or targeted
DLR loss (APGD-T).

The algorithm, as in the authors' reference code:

* start at a random point of the ball; step size ``2 eps`` per example;
* each iteration takes a gradient step ``z = P(x_k + eta dir(grad))`` and moves with
  momentum ``x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k - x_{k-1}))`` (no momentum
  on the first step);
* checkpoints after 22% of the iterations, then windows shrinking by 3% to at least 6%
  (for 100 iterations: 22, 41, 57, 70, 80, 87, 93, 99); at a checkpoint an example
  halves its step and restarts from its best point when its loss rose in at most 75% of
  the steps of the window, or when its step was not halved at the last checkpoint and
  its best loss has not improved since;
* the best-loss point is tracked, and any misclassified iterate is kept as the
  adversarial example.

APGD-T runs the targeted DLR loss once per target: the k-th most likely other class at
the clean input (``target_rank`` 1 is the runner-up). The loop stops early once every
example of the batch is fooled (the result is the same: fooled examples keep their
first adversarial point).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kmnist_jax.robustness.attacks import core, losses, pgd

RHO = 0.75
MOMENTUM = 0.75


def checkpoints(steps: int) -> list[tuple[int, int]]:
  """[(iteration index, window length)] at which the step size is checked."""
  k = max(int(0.22 * steps), 1)
  size_decr, k_min = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
  out, counter = [], 0
  for i in range(steps):
    counter += 1
    if counter == k:
      out.append((i, k))
      k, counter = max(k - size_decr, k_min), 0
  return out


def apgd(logits_fn, x, y, eps, key, *, steps: int = 100, loss: str = "ce",
         target_rank=None, norm: str = "linf"):
  """(x_adv, fooled) of one APGD run. `loss` 'ce' or 'dlr', or with `target_rank`
  (an int, may be traced) the targeted DLR loss towards that ranked class."""
  b = x.shape[0]
  keys = core.example_keys(key, b)
  if target_rank is None:
    lossf = losses.get(loss)
  else:
    zc = logits_fn(x)
    order = jnp.argsort(-zc, axis=-1)
    target = jnp.take(order, target_rank, axis=1).astype(y.dtype)
    lossf = lambda z, yy: losses.dlr_targeted(z, yy, target)  # noqa: E731
  grad_fn = pgd.value_and_grad(logits_fn, lambda z, yy: lossf(z, yy), y)

  def loss_grad(xa):
    z, g = grad_fn(xa)
    return lossf(z, y), z, g

  cps = checkpoints(steps)
  is_cp = np.zeros(steps, bool)
  window = np.zeros(steps, np.int32)
  for i, k in cps:
    is_cp[i], window[i] = True, k
  is_cp, window = jnp.asarray(is_cp), jnp.asarray(window)

  x0 = core.random_start(keys, x, eps, norm)
  l0, z0, g0 = loss_grad(x0)
  fooled0 = jnp.argmax(z0, -1) != y
  step0 = 2.0 * jnp.broadcast_to(jnp.asarray(eps, x.dtype), (b,))
  bc = lambda v: core.bcast(v, x)  # noqa: E731

  init = dict(i=jnp.int32(0), xa=x0, x_old=x0, g=g0, step=step0, x_best=x0, l_best=l0,
              g_best=g0, found=x0, fooled=fooled0,
              hist=jnp.zeros((steps + 1, b), l0.dtype).at[0].set(l0),
              l_best_check=l0, reduced=jnp.ones((b,), bool))

  def cond(c):
    return (c["i"] < steps) & ~jnp.all(c["fooled"])

  def body(c):
    i = c["i"]
    a = jnp.where(i > 0, MOMENTUM, 1.0).astype(x.dtype)
    xa = c["xa"]
    z1 = core.project(xa + bc(c["step"]) * core.ascent_direction(c["g"], norm), x, eps,
                      norm)
    xn = core.project(xa + a * (z1 - xa) + (1 - a) * (xa - c["x_old"]), x, eps, norm)
    loss_n, z, g = loss_grad(xn)
    wrong = jnp.argmax(z, -1) != y
    found = jnp.where(bc(wrong & ~c["fooled"]), xn, c["found"])
    fooled = c["fooled"] | wrong
    better = loss_n > c["l_best"]
    x_best = jnp.where(bc(better), xn, c["x_best"])
    g_best = jnp.where(bc(better), g, c["g_best"])
    l_best = jnp.where(better, loss_n, c["l_best"])
    hist = c["hist"].at[i + 1].set(loss_n)

    # Step-size check: hist[j] is the loss after iteration j - 1 (hist[0]: the start).
    k = window[i]
    j = jnp.arange(steps + 1)[:, None]
    in_window = (j >= i + 2 - k) & (j <= i + 1)
    rose = (hist[1:] > hist[:-1])
    ups = jnp.sum(jnp.where(in_window[1:], rose, False), axis=0)
    osc = ups <= k * RHO
    no_impr = ~c["reduced"] & (c["l_best_check"] >= l_best)
    reduce = is_cp[i] & (osc | no_impr)
    step = jnp.where(reduce, c["step"] / 2, c["step"])
    reduced = jnp.where(is_cp[i], reduce, c["reduced"])
    l_best_check = jnp.where(is_cp[i], l_best, c["l_best_check"])
    return dict(i=i + 1, xa=jnp.where(bc(reduce), x_best, xn), x_old=xa,
                g=jnp.where(bc(reduce), g_best, g), step=step, x_best=x_best,
                l_best=l_best, g_best=g_best, found=found, fooled=fooled, hist=hist,
                l_best_check=l_best_check, reduced=reduced)

  c = jax.lax.while_loop(cond, body, init)
  fooled = c["fooled"]
  return jnp.where(bc(fooled), c["found"], c["x_best"]), fooled
