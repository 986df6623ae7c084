"""Optimizers and learning-rate schedules, chosen by name from the config (optax)."""

from __future__ import annotations

import jax
import optax

from kmnist_jax import config as config_lib
from kmnist_jax.errors import unknown


def schedule(cfg, steps_per_epoch: int) -> optax.Schedule:
  """The learning rate as a function of the global step."""
  total = max(1, int(cfg.num_epochs * steps_per_epoch))
  warmup = int(cfg.warmup_epochs * steps_per_epoch)
  lr = cfg.learning_rate
  name = cfg.schedule
  if name == "onecycle":
    return optax.cosine_onecycle_schedule(total, lr, pct_start=0.25)
  if name == "constant":
    main = optax.constant_schedule(lr)
  elif name == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, total - warmup))
  elif name == "step":  # x0.1 at 50% and 75% of training.
    rest = max(1, total - warmup)
    main = optax.piecewise_constant_schedule(lr, {rest // 2: 0.1, (3 * rest) // 4: 0.1})
  else:
    raise unknown("schedule", name, config_lib.SCHEDULES)
  if warmup:
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), main], [warmup])
  return main


def _decay_mask(params):
  """Weight decay on kernels only (ndim > 1), not on biases or norm scales."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def create(cfg, steps_per_epoch: int) -> optax.GradientTransformation:
  lr = schedule(cfg, steps_per_epoch)
  name, wd = cfg.optimizer, cfg.weight_decay
  if name == "adamw":
    tx = optax.adamw(lr, b1=cfg.momentum, weight_decay=wd, mask=_decay_mask)
  else:
    if name == "sgd":
      base = optax.sgd(lr)
    elif name in ("momentum", "nesterov"):
      base = optax.sgd(lr, momentum=cfg.momentum, nesterov=name == "nesterov")
    elif name == "adam":
      base = optax.adam(lr, b1=cfg.momentum)
    elif name == "adadelta":
      # Keras' Adadelta defaults (the rois-codh benchmark): rho 0.95, epsilon 1e-7.
      base = optax.adadelta(lr, rho=0.95, eps=1e-7)
    else:
      raise unknown("optimizer", name, config_lib.OPTIMIZERS)
    # Coupled L2 (added to the gradient), as in torch's SGD/Adam weight_decay.
    tx = optax.chain(optax.add_decayed_weights(wd, _decay_mask), base) if wd else base
  if cfg.grad_clip:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), tx)
  return tx
