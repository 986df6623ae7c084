"""FGSM / PGD-Linf on a small model trained on real KMNIST: eps = 0 gives the clean
predictions exactly, PGD never beats clean accuracy and weakens as eps grows, the
perturbation stays in the eps-ball and in [0, 1], the run is reproducible from its key,
and bad inputs get one line."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_mce import kmnist_test, trained

from kmnist_jax import inference, models, train
from kmnist_jax.errors import UserError
from kmnist_jax.robustness import attacks as adv

N = 400


@pytest.fixture(scope="module")
def setup(data_dir):
  restored = train.restore_model(trained(data_dir), "latest")
  images, labels = kmnist_test(data_dir, N)
  clean = inference.predict(restored, images)
  return restored, images, labels, clean


@pytest.fixture(scope="module")
def pgd_preds(setup):
  model, images, labels, _ = setup
  eps = (0.0, 0.02, 0.05, 0.1, 0.2)
  # Batches of 32: every chunk of survivors has one shape, compiled once (with 200, the
  # shrinking survivors took 200, 128, 64 and 32, each slower to compile); results do
  # not depend on the batch (tests/test_autoattack.py).
  return eps, adv.attack_predictions(model, images, labels, attack="pgd", epsilons=eps,
                                     key=jax.random.key(1), steps=5, batch_size=32,
                                     progress=False)


def test_eps_zero_is_clean(setup, pgd_preds):
  model, images, labels, clean = setup
  _, preds = pgd_preds
  np.testing.assert_array_equal(preds[0], clean)
  f = adv.attack_predictions(model, images, labels, attack="fgsm", epsilons=[0, 0.1],
                             batch_size=150, progress=False)  # 150: a padded last batch
  np.testing.assert_array_equal(f[0], clean)
  fgsm_acc = adv.accuracy_curve(f, labels)
  assert fgsm_acc[1] < fgsm_acc[0] - 0.1, fgsm_acc


def test_pgd_below_clean_and_non_increasing(setup, pgd_preds):
  _, _, labels, clean = setup
  eps, preds = pgd_preds
  acc = adv.accuracy_curve(preds, labels)
  clean_acc = (clean == labels).mean()
  assert clean_acc > 0.5
  assert np.all(acc <= clean_acc), acc
  assert np.all(np.diff(acc) <= 0), dict(zip(eps, acc))
  assert acc[-1] < 0.2 * clean_acc, acc   # eps = 0.2 breaks an undefended model
  # Never counts as robust an example the model gets wrong on clean input.
  assert not np.any((preds == labels[None]) & (clean != labels)[None])
  pc = adv.per_class_accuracy(preds, labels, 10)
  counts = np.bincount(labels, minlength=10)
  np.testing.assert_allclose((pc * counts).sum(1) / counts.sum(), acc)


def test_pgd_stays_in_ball_and_is_reproducible(setup):
  model, images, labels, _ = setup
  graphdef, params, rest = models.split(model.model)
  f = adv.core.model_logits(graphdef, params, rest)
  x = models.preprocess(images[:64])
  y = jnp.asarray(labels[:64], jnp.int32)
  key = jax.random.key(3)
  attack = jax.jit(lambda x, k: adv.pgd.pgd(f, x, y, 0.1, k, steps=3)[0])
  xa = attack(x, key)
  d = np.asarray(xa - x)
  assert np.abs(d).max() <= 0.1 + 1e-6 and np.abs(d).max() > 0.05
  assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
  np.testing.assert_array_equal(np.asarray(attack(x, key)), np.asarray(xa))
  assert not np.array_equal(np.asarray(attack(x, jax.random.key(4))), np.asarray(xa))
  xf = jax.jit(lambda x: adv.pgd.fgsm(f, x, y, 0.1)[0])(x)
  assert np.abs(np.asarray(xf - x)).max() <= 0.1 + 1e-6
  assert float(xf.min()) >= 0.0 and float(xf.max()) <= 1.0


def test_bad_inputs(setup):
  model, images, labels, _ = setup
  with pytest.raises(UserError, match="epsilon -0.1 is out of range"):
    adv.check_epsilons("0,-0.1")
  with pytest.raises(UserError, match="epsilon 2.0 is out of range"):
    adv.check_epsilons([2])
  with pytest.raises(UserError, match="must be comma-separated numbers"):
    adv.check_epsilons("0,abc")
  with pytest.raises(UserError, match="unknown attack 'cw'; valid choices: apgd-ce, apgd-dlr, apgd-t, "
                     "autoattack, fgsm, pgd, square"):
    adv.attack_predictions(model, images, labels, attack="cw")
  with pytest.raises(UserError, match="pgd steps must be a positive integer"):
    adv.attack_predictions(model, images, labels, attack="pgd", steps=0)
  with pytest.raises(UserError, match="attack images must be uint8"):
    adv.attack_predictions(model, images.astype(np.float32), labels, attack="fgsm")
  assert adv.check_epsilons("0.3,0,0.1") == (0.0, 0.1, 0.3)
