"""The attack ensemble is trustworthy: on a linear model (a logistic regression trained
on real KMNIST) it finds the exact L-inf robust accuracy, which has a closed form, where
PGD-10 does not; on a small CNN robust accuracy equals clean accuracy at eps 0, never
rises with eps, reaches 0 at eps 0.5, and the ensemble is never above one of its
members; results do not depend on the batch; APGD's schedule and the DLR losses are
the paper's; Square exposes a model that hides its gradients; bad settings get one line.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_mce import kmnist_test, trained

from kmnist_jax import models, reports, train
from kmnist_jax.errors import UserError
from kmnist_jax.evaluators import attack as attack_eval
from kmnist_jax.robustness import attacks as adv

FAST = {"square_queries": 200, "apgd_targets": 3, "apgd_steps": 30}
# Attacks compile once per batch shape, and a smaller shape compiles faster: the
# attacks run in batches of 32 (every chunk of survivors padded to 32), and
# test_results_do_not_depend_on_the_batch compares them with batches of 128.
BATCH = 32


def exact_linear_robust(prepared, images, labels, eps):
  """Robust flags of a model whose logits are affine in the input: for each wrong class
  j the worst point in the ball and the [0, 1] box is coordinate-wise (the lower end
  where w_y - w_j is positive, the upper end elsewhere)."""
  f = adv.core.model_logits(prepared.graphdef, prepared.params, prepared.rest)
  x = np.asarray(models.preprocess(jnp.asarray(images), jnp.float32))
  zero = jnp.zeros_like(x[:1])
  b = np.asarray(f(zero))[0].astype(np.float64)
  w = np.asarray(jax.jacobian(lambda v: f(v)[0])(zero), np.float64).reshape(len(b), -1)
  # Affine: the logits of the images are w x + b (checks the model really is linear).
  np.testing.assert_allclose(x.reshape(len(x), -1) @ w.T + b, np.asarray(f(x)),
                             rtol=1e-4, atol=1e-3)
  xf = x.reshape(len(x), -1).astype(np.float64)
  lo, hi = np.clip(xf - eps, 0, 1), np.clip(xf + eps, 0, 1)
  robust = np.ones(len(x), bool)
  for j in range(len(b)):
    d = w[labels] - w[j]                              # [N, D]
    worst = np.where(d > 0, lo, hi)
    m = (d * worst).sum(1) + b[labels] - b[j]
    robust &= (labels == j) | (m > 0)
  return robust


@pytest.fixture(scope="module")
def logreg(data_dir):
  restored = train.restore_model(trained(data_dir, "logreg"), "latest")
  images, labels = kmnist_test(data_dir, 500)
  return restored, images, labels


def test_ensemble_finds_exact_linear_robust_accuracy(logreg):
  restored, images, labels = logreg
  prepared = adv.Prepared.of(restored)
  eps = (0.0, 0.02, 0.05, 0.1)
  exact = np.array([exact_linear_robust(prepared, images, labels, e).mean() for e in eps])
  assert exact[0] > 0.4 and exact[-1] < exact[1]
  ens = adv.evaluate(restored, images, labels, attack="autoattack", epsilons=eps,
                     settings={"square_queries": 300}, prepared=prepared,
                     batch_size=BATCH)
  acc = ens["robust"].mean(1)
  assert np.abs(acc - exact).max() <= 0.002, (acc, exact)
  pgd = adv.evaluate(restored, images, labels, attack="pgd", epsilons=eps,
                     prepared=prepared, batch_size=BATCH)["robust"].mean(1)
  assert np.all(pgd >= exact - 1e-9)
  assert (pgd - exact).max() > 0.01, (pgd, exact)    # PGD-10 overstates it here


@pytest.fixture(scope="module")
def cnn(data_dir):
  restored = train.restore_model(trained(data_dir), "latest")
  images, labels = kmnist_test(data_dir, 100)
  return restored, images, labels, adv.Prepared.of(restored)


EPS = (0.0, 0.03, 0.1, 0.5)


@pytest.fixture(scope="module")
def members_and_ensemble(cnn):
  restored, images, labels, prepared = cnn
  out = {a: adv.evaluate(restored, images, labels, attack=a, epsilons=EPS,
                         settings=FAST, prepared=prepared, key=jax.random.key(7),
                         batch_size=BATCH)
         for a in ("apgd-ce", "apgd-t", "square", "autoattack")}
  return out


def test_cnn_curve_is_sound(cnn, members_and_ensemble):
  _, _, labels, _ = cnn
  ens = members_and_ensemble["autoattack"]
  clean_acc = (ens["clean"] == labels).mean()
  acc = ens["robust"].mean(1)
  assert acc[0] == clean_acc > 0.5
  assert np.all(np.diff(acc) <= 0) and np.all(acc <= clean_acc), acc
  assert acc[-1] == 0.0, acc                        # eps 0.5: nothing survives
  assert acc[1] < 0.8 * clean_acc, acc              # eps 0.03 hurts an undefended CNN
  # Robust examples are never misclassified on clean input, and robust at a larger
  # eps only if robust at every smaller one.
  assert not np.any(ens["robust"] & (ens["clean"] != labels)[None])
  assert np.all(ens["robust"][1:] <= ens["robust"][:-1])
  # Every broken point is counted once, by the member that broke it first.
  broken = (ens["clean"] == labels).sum() - ens["robust"].sum(1)
  np.testing.assert_array_equal(broken, np.sum(list(ens["broken_by"].values()), 0))


def test_ensemble_never_above_a_member(members_and_ensemble):
  ens = members_and_ensemble["autoattack"]["robust"]
  for a in ("apgd-ce", "apgd-t", "square"):
    member = members_and_ensemble[a]["robust"]
    assert np.all(ens <= member), a                  # per example, at every eps
  assert max(members_and_ensemble["autoattack"]["broken_by"]["apgd-t"]) > 0


def test_results_do_not_depend_on_the_batch(cnn):
  restored, images, labels, prepared = cnn
  kw = dict(attack="autoattack", epsilons=(0.03,), settings=FAST, prepared=prepared,
            key=jax.random.key(7))
  a = adv.evaluate(restored, images, labels, batch_size=BATCH, **kw)
  b = adv.evaluate(restored, images, labels, batch_size=128, **kw)
  np.testing.assert_array_equal(a["robust"], b["robust"])
  c = adv.evaluate(restored, images, labels, batch_size=BATCH, **kw)
  np.testing.assert_array_equal(a["pred"], c["pred"])          # same seed, same numbers


def test_apgd_schedule_and_losses():
  assert [i + 1 for i, _ in adv.apgd.checkpoints(100)] == [22, 41, 57, 70, 80, 87, 93, 99]
  z = jnp.array([[3.0, 1.0, 0.5, 0.0], [0.0, 2.0, 1.0, 4.0]])
  y = jnp.array([0, 1])
  np.testing.assert_allclose(adv.losses.margin(z, y), [2.0, -2.0])
  # DLR: -(z_y - max_other) / (z_pi1 - z_pi3)
  np.testing.assert_allclose(adv.losses.dlr(z, y), [-2.0 / 2.5, 2.0 / 3.0], rtol=1e-6)
  # Targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
  t = jnp.array([2, 3])
  np.testing.assert_allclose(adv.losses.dlr_targeted(z, y, t),
                             [-2.5 / 2.75, 2.0 / 3.5], rtol=1e-6)
  # Shift and scale invariance of DLR (what makes it robust to saturated softmax).
  np.testing.assert_allclose(adv.losses.dlr(3 * z + 5, y), adv.losses.dlr(z, y),
                             rtol=1e-5)


def test_square_exposes_masked_gradients(cnn):
  """A model that hides its input gradients (stop_gradient: the same predictions, zero
  gradients, as a shattered-gradient defence gives): the gradient attacks find only
  what their random start finds, Square finds more, and the masking check says so."""
  _, images, labels, prepared = cnn
  f0 = adv.core.model_logits(prepared.graphdef, prepared.params, prepared.rest)

  def masked(x):
    return f0(jax.lax.stop_gradient(x))

  x = models.preprocess(jnp.asarray(images[:64]), jnp.float32)
  y = jnp.asarray(labels[:64], jnp.int32)
  eps = 0.1
  # Under jit: one compilation, not one per operation of the model.
  clean_ok = np.asarray(jax.jit(lambda x: adv.core.predict(masked, x))(x) == y)
  keys = jax.random.split(jax.random.key(0), 64)
  _, f_apgd = jax.jit(lambda x: adv.apgd.apgd(masked, x, y, eps, keys, steps=20))(x)
  _, f_sq = jax.jit(lambda x: adv.square.square(masked, x, y, eps, keys, queries=300))(x)
  f_apgd, f_sq = np.asarray(f_apgd) & clean_ok, np.asarray(f_sq) & clean_ok
  assert f_sq.sum() > f_apgd.sum() + 5, (f_sq.sum(), f_apgd.sum())
  n = int(clean_ok.sum())
  rec = {"n": 64, "epsilons": [eps], "attacks": {
      "apgd-ce": {"accuracy": [(n - f_apgd.sum()) / 64]},
      "square": {"accuracy": [(n - f_sq.sum()) / 64]}}}
  flags = attack_eval.masking_flags(rec)
  assert any("black box beats white box" in f for f in flags), flags
  # An honest model's record raises no flag.
  assert attack_eval.masking_flags({"n": 64, "epsilons": [0.0, 0.1, 0.2], "attacks": {
      "apgd-ce": {"accuracy": [0.9, 0.5, 0.1]}, "square": {"accuracy": [0.9, 0.6, 0.2]}},
      "masking_large_eps": {"attack": "apgd-ce", "eps": 0.5, "accuracy": 0.0}}) == []


def test_a_weaker_attack_beating_the_stronger_is_flagged():
  base = {"n": 32, "epsilons": [0.0, 0.1, 0.2],
          "masking_large_eps": {"attack": "autoattack", "eps": 0.5, "accuracy": 0.0}}
  flags = attack_eval.masking_flags({**base, "attacks": {
      "pgd": {"accuracy": [0.62, 0.19, 0.0]},
      "autoattack": {"accuracy": [0.62, 0.28, 0.09]}}})
  assert flags == ["pgd beats autoattack: 19.0% against 28.0% at eps=0.1 (the stronger "
                   "attack has too few steps or restarts, or the gradients mislead it)"]
  flags = attack_eval.masking_flags({**base, "attacks": {
      "fgsm": {"accuracy": [0.9, 0.3, 0.05]}, "pgd": {"accuracy": [0.9, 0.4, 0.0]}}})
  assert len(flags) == 1 and flags[0].startswith("fgsm beats pgd: 30.0% against 40.0%")
  assert attack_eval.masking_flags({**base, "attacks": {   # within 1 pp: no flag
      "pgd": {"accuracy": [0.62, 0.275, 0.0]},
      "autoattack": {"accuracy": [0.62, 0.28, 0.0]}}}) == []


def test_evaluator_record_and_report(cnn, data_dir, tmp_path):
  restored, _, _, _ = cnn
  rec = attack_eval.run(restored, data_dir=data_dir, attacks="pgd,autoattack",
                        epsilons=(0, 0.05, 0.1), limit=100, batch_size=BATCH, **FAST)
  a = rec["attacks"]["autoattack"]
  assert set(a["broken_by"]) == {"apgd-ce", "apgd-t", "square"}
  assert np.all(np.asarray(a["accuracy"]) <= np.asarray(rec["attacks"]["pgd"]["accuracy"]))
  assert len(a["per_class"]) == 3 and len(a["per_class"][0]) == 10
  assert rec["masking_large_eps"]["accuracy"] == 0.0 and rec["masking"] == []
  assert "APGD-T (3 targets x 30 steps)" in a["description"]
  from kmnist_jax.reports import Report
  report = Report(str(tmp_path), title="t")
  out = reports.attack.render(attack_eval.summarize([rec, rec]), report, cjk_font=None)
  assert any("AUTOATTACK" in r for r in map(str, out["rows"]))
  report.write()
  text = (tmp_path / "report.md").read_text()
  files = {p.name for p in tmp_path.iterdir()}
  assert "Gradient-masking checks" in text
  assert {"attack_broken_by.csv", "attack_per_class.csv"} <= files, files


@pytest.mark.parametrize("cfg,msg", [
    ({"attacks": "apgd"}, "unknown attack 'apgd'; valid choices: apgd-ce"),
    ({"pgd_loss": "hinge"}, "unknown attack loss 'hinge'; valid choices: ce, dlr, margin"),
    ({"epsilons": (0, 1.5)}, "epsilon 1.5 is out of range; valid: 0 <= eps <= 1.0"),
    ({"norm": "l1"}, "unknown attack norm 'l1'; valid choices: l2, linf"),
    ({"apgd_steps": 0}, "apgd steps must be a positive integer"),
    ({"apgd_targets": 0}, "apgd_targets must be an integer >= 1"),
    ({"square_queries": -5}, "square_queries must be an integer >= 1"),
    ({"ensemble": "apgd-ce,fab"}, "unknown ensemble member 'fab'"),
    ({"norm": "l2", "attacks": "square"}, "square is L-inf only"),
    ({"masking_eps": 2}, "masking_eps 2 is out of range"),
])
def test_bad_settings_one_line(cfg, msg):
  with pytest.raises(UserError, match=msg.replace("(", r"\(").replace(")", r"\)")):
    attack_eval.check_config(**cfg)


@pytest.mark.parametrize("override,msg", [
    ("--config.evals.attack.attacks=apgd", "unknown attack 'apgd'; valid choices: "),
    ("--config.evals.attack.pgd_loss=hinge", "unknown attack loss 'hinge'"),
    ("--config.evals.attack.epsilons=(0,1.5)", "epsilon 1.5 is out of range"),
])
def test_preset_bad_input_is_one_line_before_loading(data_dir, tmp_path, override, msg):
  from tiny_runs import script
  p = script("evaluate.py", f"--workdirs={tmp_path / 'missing'}",
             "--config=experiments/configs/evals/adversarial.py", override,
             data_dir=data_dir)
  lines = p.stderr.strip().splitlines()
  assert p.returncode == 2 and len(lines) == 1, p.stderr[-600:]
  assert lines[0].startswith("error: ") and msg in lines[0], lines


def test_survivors_are_split_into_few_near_equal_padded_chunks():
  from kmnist_jax.robustness.attacks import run as run_lib
  for n in range(1, 2100, 7):
    parts = run_lib.chunks(n, 500)
    assert parts[0][0] == 0 and parts[-1][1] == n             # every survivor, once
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [e - s for s, e in parts]
    assert len(parts) == -(-n // 500) and max(sizes) - min(sizes) <= 1
    for c in sizes:
      b = run_lib.bucket(c, 500)
      assert c <= b <= 500 and (b - c < 128)
  assert {run_lib.bucket(c, 500) for c in range(1, 501)} == {
      32, 64, 128, 256, 384, 500}
  assert [run_lib.bucket(c, 48) for c in (1, 33, 48)] == [32, 48, 48]
  assert run_lib.chunks(0, 500) == [] and run_lib.chunks(630, 500) == [(0, 315),
                                                                       (315, 630)]
