"""Optimizers and schedules by name."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kmnist_jax import config as config_lib
from kmnist_jax import optim


def cfg(**kw):
  c = config_lib.base()
  c.num_epochs = 10
  for k, v in kw.items():
    c[k] = v
  return c


def test_onecycle_peaks_at_lr_and_decays():
  s = optim.schedule(cfg(schedule="onecycle", learning_rate=0.1), 100)
  lrs = np.array([s(i) for i in range(0, 1000, 10)])
  assert abs(lrs.max() - 0.1) < 1e-6
  assert lrs[0] < 0.01 and lrs[-1] < 1e-4
  assert np.argmax(lrs) == 25  # 25% of training


def test_warmup_then_cosine():
  s = optim.schedule(cfg(schedule="cosine", learning_rate=1.0, warmup_epochs=1), 10)
  assert float(s(0)) == 0.0 and abs(float(s(10)) - 1.0) < 1e-6
  assert float(s(99)) < 0.01


def test_step_schedule():
  s = optim.schedule(cfg(schedule="step", learning_rate=1.0), 10)
  assert float(s(0)) == 1.0 and abs(float(s(60)) - 0.1) < 1e-6 and abs(float(s(90)) - 0.01) < 1e-7


@pytest.mark.parametrize("name", config_lib.OPTIMIZERS)
def test_each_optimizer_descends(name):
  lr = 1.0 if name == "adadelta" else 0.1
  tx = optim.create(cfg(optimizer=name, learning_rate=lr, schedule="constant",
                        weight_decay=1e-4), 10)
  params = {"w": jnp.ones((3, 3)), "b": jnp.ones((3,))}
  def loss(p):
    return jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2)
  state = tx.init(params)
  start = loss(params)
  for _ in range(20):
    import jax
    g = jax.grad(loss)(params)
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
  assert loss(params) < start


def test_weight_decay_skips_biases():
  tx = optim.create(cfg(optimizer="sgd", learning_rate=1.0, schedule="constant",
                        weight_decay=0.5), 10)
  params = {"w": jnp.ones((2, 2)), "b": jnp.ones((2,))}
  zeros = {"w": jnp.zeros((2, 2)), "b": jnp.zeros((2,))}
  updates, _ = tx.update(zeros, tx.init(params), params)
  assert float(updates["w"][0, 0]) == -0.5 and float(updates["b"][0]) == 0.0
