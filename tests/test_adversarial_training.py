"""Adversarial training (kmnist_jax.robustness.adversarial_training) on real data: bad
input, each method under jit / pmap / sharded jit, bit-identical resume, a real gain in
robustness, the adversarial batch in the ball and the box, the overfitting guard."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import assert_modes_agree, history, run, sigterm_at, tiny

from kmnist_jax import checkpoint as ckpt_lib
from kmnist_jax import config as config_lib
from kmnist_jax import data as data_lib
from kmnist_jax import models, train
from kmnist_jax.errors import Preempted, UserError
from kmnist_jax.robustness import adversarial_training as adv_lib
from kmnist_jax.robustness import attacks
from kmnist_jax.studies import plan as plan_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def adv(cfg, **fields):
  for k, v in fields.items():
    cfg.adversarial[k] = v
  return cfg


def tiny_adv(data_dir, method="pgd", adversarial=None, **overrides):
  """tiny() with an adversary: eps 0.1, 3 steps, no check unless asked."""
  fields = dict(method=method, eps=0.1, steps=3, check_every_epoch=False)
  fields.update(adversarial or {})
  return adv(tiny(data_dir, **overrides), **fields)


# ---- Bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("fields,overrides,match", [
    ({"method": "pgdd"}, {}, r"config.adversarial.method='pgdd' is not valid; valid "
                             r"choices: none, fgsm_rs, pgd, trades"),
    ({"method": "pgd", "eps": 1.5}, {}, r"config.adversarial.eps=1.5 is out of range; "
                                        r"valid: 0 <= eps <= 1"),
    ({"method": "pgd", "eps": -0.1}, {}, r"eps=-0.1 is out of range"),
    ({"method": "pgd", "steps": 0}, {}, r"config.adversarial.steps=0 must be an integer "
                                        r">= 1"),
    ({"method": "trades", "beta": -1.0}, {}, r"config.adversarial.beta=-1.0 must be >= 0"),
    ({"method": "pgd", "step_size": -0.01}, {}, r"step_size=-0.01 must be >= 0"),
    ({"method": "pgd", "loss": "hinge"}, {}, r"loss='hinge' is not valid; valid choices: "
                                             r"ce, dlr, margin"),
    ({"method": "pgd", "bn_mode": "frozen"}, {}, r"bn_mode='frozen' is not valid; valid "
                                                 r"choices: eval, train"),
    ({"method": "pgd", "eps_warmup_epochs": 6.0}, {}, r"eps_warmup_epochs=6.0 must be >= 0 "
                                                      r"and smaller than config.num_epochs=6"),
    ({"method": "fgsm_rs", "collapse_ratio": 1.0}, {}, r"collapse_ratio=1.0 must be in \(0, 1\)"),
    ({"method": "pgd", "check_images": 0}, {}, r"check_images=0 must be an integer >= 1"),
    # what the adversary cannot serve
    ({"method": "trades", "loss": "dlr"}, {}, r"loss='dlr' applies to method=pgd only"),
    ({"method": "pgd"}, {"augment": "crop(pad=2)+mixup(alpha=0.2)"},
     r"mixes examples \(mixup\).*attacks each example's own label"),
    ({"method": "fgsm_rs"}, {"val_size": 0}, r"check_every_epoch=True needs validation "
                                             r"images but config.val_size=0"),
])
def test_bad_adversarial_config_is_one_line(fields, overrides, match):
  c = config_lib.base()
  for k, v in overrides.items():
    c[k] = v
  adv(c, **fields)
  with pytest.raises(UserError, match=match) as e:
    config_lib.validate(c)
  assert "\n" not in str(e.value)


def test_an_unknown_field_of_the_block():
  c = config_lib.base()
  c.adversarial.unlock()
  c.adversarial.epz = 0.3
  with pytest.raises(UserError, match=r"unknown field config.adversarial.epz; valid "
                                      r"fields: beta, .*eps, "):
    config_lib.validate(c)


def test_the_script_prints_one_error_line_before_loading_anything(tmp_path):
  """A bad block stops experiments/train.py with one `error:` line and exit code 2,
  before any data is read (the data folder does not even exist)."""
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=str(tmp_path / "no_data"), XLA_FLAGS="")
  p = subprocess.run([sys.executable, "experiments/train.py",
                      "--config=experiments/configs/mnist_cnn.py",
                      "--config.adversarial.method=pgd", "--config.adversarial.eps=1.5",
                      f"--workdir={tmp_path / 'w'}"],
                     cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode == 2, p.stderr[-2000:]
  errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
  assert errors == ["error: config.adversarial.eps=1.5 is out of range; valid: 0 <= eps "
                    "<= 1 (an L-inf radius on pixels scaled to [0, 1], e.g. 0.3 for "
                    "MNIST)"], p.stderr[-2000:]
  assert "Traceback" not in p.stderr


# ---- The transform ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_batch(data_dir):
  ds = data_lib.load("mnist", data_dir=data_dir, source="files", val_size=0,
                     limit={"train": 64, "test": 10})
  tr = ds.splits["train"]
  return models.preprocess(tr.images[:32], jnp.float32), jnp.asarray(tr.labels[:32],
                                                                     jnp.int32)


@pytest.fixture(scope="module")
def small_model():
  cfg = tiny("unused")
  graphdef, _, state = train.init_state(cfg, 10, steps_per_epoch=8)
  return graphdef, state


@pytest.mark.parametrize("method", ["fgsm_rs", "pgd", "trades"])
def test_adversarial_batch_stays_in_the_ball_and_the_box(mnist_batch, small_model, method):
  x, y = mnist_batch
  graphdef, state = small_model
  keys = jax.random.split(jax.random.key(0), len(y))
  for bn_mode in ("eval", "train"):
    cfg = adv(tiny("unused"), method=method, eps=0.2, steps=4, bn_mode=bn_mode,
              eps_warmup_epochs=1.0)
    a = adv_lib.build(cfg, graphdef, steps_per_epoch=8)
    assert a.warmup_steps == 8 and a.epsilon(4) == pytest.approx(0.1)
    assert a.alpha == pytest.approx(1.25 * 0.2 if method == "fgsm_rs" else 2.5 * 0.2 / 4)
    perturb = jax.jit(a.perturb)
    f = jax.jit(a.logits_fn(state.params, state.rest, jax.random.key(1)))
    clean_loss = attacks.losses.ce(f(x), y).mean()
    for step, eps in [(0, 0.0), (4, 0.1), (100, 0.2)]:
      xa = perturb(state.params, state.rest, x, y, keys, jnp.int32(step),
                   jax.random.key(1))
      d = np.abs(np.asarray(xa - x)).max(axis=(1, 2, 3))
      assert (d <= eps + 1e-6).all(), (bn_mode, step, d.max())
      assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
      if eps == 0.0:
        np.testing.assert_array_equal(np.asarray(xa), np.asarray(x))
      else:
        assert d.max() > 0.5 * eps      # it moved, up to the ball's edge
        if method != "trades":          # it raises the loss it ascends
          assert attacks.losses.ce(f(xa), y).mean() > clean_loss, (bn_mode, step)
  # The same keys give the same batch; other keys another.
  xa1, xa2, xa3 = (np.asarray(perturb(state.params, state.rest, x, y, k, jnp.int32(8),
                                      jax.random.key(1)))
                   for k in (keys, keys, keys[::-1]))
  np.testing.assert_array_equal(xa1, xa2)
  assert not np.array_equal(xa1, xa3)


def test_trades_loss_is_ce_plus_beta_kl():
  z = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
  za = jnp.array([[0.0, 1.0, -1.0], [0.5, 0.5, 0.0]])
  t = jax.nn.one_hot(jnp.array([0, 1]), 3)
  p, pa = np.asarray(jax.nn.softmax(z)), np.asarray(jax.nn.softmax(za))
  kl = np.sum(p * (np.log(p) - np.log(pa)), -1)
  ce = -np.log(p[[0, 1], [0, 1]])
  assert float(adv_lib.trades_loss(z, za, t, 6.0)) == pytest.approx(
      ce.mean() + 6.0 * kl.mean(), rel=1e-5)
  assert float(attacks.losses.kl(z, z).sum()) == pytest.approx(0.0, abs=1e-6)


# ---- Training on real data -------------------------------------------------------------

@pytest.mark.parametrize("method", ["fgsm_rs", "pgd", "trades"])
def test_each_method_trains_and_reports_throughput(data_dir, tmp_path, method):
  res = run(tiny_adv(data_dir, method, num_epochs=1, val_size=256,
                     adversarial={"check_every_epoch": True, "check_images": 64}),
            tmp_path)
  assert res["adversarial"] == method
  assert res["test_accuracy"] > 0.3, res          # chance is 0.10
  h = history(tmp_path)
  assert np.isfinite(h[0]["train_loss"]) and h[0]["train_img_per_s"] > 0
  assert res["train_img_per_s"] > 0
  assert h[0]["adv_eps"] == pytest.approx(0.1)
  assert 0.0 <= h[0]["val_pgd_accuracy"] <= h[0]["val_accuracy"]
  assert h[0]["adv_collapse"] is False


def test_parallel_modes_agree_under_pgd(data_dir, tmp_path):
  """Mirrors test_train.py::test_parallel_modes_agree for method=pgd: each example is
  attacked from the same start in every mode (keys of the global batch)."""
  assert jax.device_count() == 8
  results, hists = {}, {}
  for mode in ("single", "pmap", "sharded"):
    results[mode] = run(tiny_adv(data_dir, parallel=mode, num_epochs=1), tmp_path / mode)
    hists[mode] = history(tmp_path / mode)
  assert_modes_agree(results, hists)


def test_sigterm_mid_epoch_resumes_bit_identically_under_pgd(data_dir, tmp_path):
  # 32 steps/epoch in chunks of 8: SIGTERM after step 40 = epoch 2, step 8 of 32.
  kw = dict(num_epochs=2, model="mlp", model_kwargs={"hidden": 32, "dropout": 0.2},
            progress_updates_per_epoch=4, val_size=256)
  fields = {"check_every_epoch": True, "check_images": 32, "eps_warmup_epochs": 1.0}
  full = run(tiny_adv(data_dir, adversarial=fields, **kw), tmp_path / "full")
  with pytest.raises(Preempted) as e:
    train.train_and_evaluate(tiny_adv(data_dir, adversarial=fields, **kw),
                             str(tmp_path / "w"), log=lambda *_: None,
                             on_chunk=sigterm_at(40))
  assert e.value.step == 40
  resumed = run(tiny_adv(data_dir, adversarial=fields, **kw), tmp_path / "w")
  assert resumed["test_loss"] == full["test_loss"]
  timing = ("epoch_time_s", "train_img_per_s", "elapsed_s")
  numbers = lambda wd: [{k: v for k, v in h.items() if k not in timing}  # noqa: E731
                        for h in history(wd)]
  assert numbers(tmp_path / "w") == numbers(tmp_path / "full")   # the PGD check too
  a = train.restore_model(str(tmp_path / "w")).state
  b = train.restore_model(str(tmp_path / "full")).state
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  # Another adversary is another config: the workdir refuses it.
  with pytest.raises(UserError, match=r"adversarial: .*'eps': 0.1.*'eps': 0.2"):
    run(tiny_adv(data_dir, adversarial={**fields, "eps": 0.2}, **kw), tmp_path / "w")


@pytest.mark.slow   # two trainings and two APGD evaluations
def test_pgd_training_is_more_robust_than_plain(data_dir, tmp_path):
  """1 epoch on 4,096 MNIST images, PGD-5 at eps 0.1, against the same run without the
  adversary: APGD-CE accuracy at eps 0.1 on 256 test images (the evaluators' attack)."""
  ds = data_lib.load("mnist", data_dir=data_dir, source="files", val_size=0,
                     limit={"train": 1, "test": 256})
  te = ds.splits["test"]
  robust = {}
  for method in ("none", "pgd"):
    cfg = tiny_adv(data_dir, method, dataset="mnist", train_limit=4096, num_epochs=1,
                   test_limit=256, adversarial={"steps": 5})
    run(cfg, tmp_path / method)
    out = attacks.evaluate(train.restore_model(str(tmp_path / method)), te.images,
                           te.labels, attack="apgd-ce", epsilons=[0.1])
    robust[method] = float(out["robust"][0].mean())
  assert robust["pgd"] > robust["none"] + 0.15, robust


# ---- The overfitting guard -------------------------------------------------------------

def test_collapse_rule():
  rule = adv_lib.collapse
  assert rule([0.8], 0.5, 0.1) is None                       # nothing to compare yet
  assert rule([0.6, 0.8, 0.5], 0.5, 0.1) is None             # a dip, not a collapse
  assert rule([0.6, 0.8, 0.39], 0.5, 0.1) == 1               # below half the best (ep 2)
  assert rule([0.6, 0.8, 0.0, 0.7], 0.5, 0.1) is None         # judged on the last only
  assert rule([0.08, 0.01], 0.5, 0.1) is None                # never above chance
  assert rule([0.3, 0.2], 0.7, 0.1) == 0                     # another ratio


def test_a_collapse_is_reported_stops_and_keeps_the_best(data_dir, tmp_path, monkeypatch):
  """A crafted collapse (the check's accuracy falls from 0.8 to 0.1 at epoch 2): one
  warning line, the run stops there, the best checkpoint (epoch 1) is the kept 'best',
  and the same command does not train on."""
  scores = iter([0.8, 0.1])
  monkeypatch.setattr(adv_lib.Check, "__call__", lambda self, p, r: next(scores))
  cfg = tiny_adv(data_dir, "fgsm_rs", num_epochs=4, val_size=256, keep_checkpoints=1,
                 adversarial={"check_every_epoch": True, "check_images": 32})
  logs = []
  res = train.train_and_evaluate(cfg, str(tmp_path), log=logs.append)
  warnings = [m for m in logs if "catastrophic overfitting" in m]
  assert len(warnings) == 1 and "\n" not in warnings[0], logs
  assert warnings[0].startswith("warning: catastrophic overfitting at epoch 2: PGD-10 "
                                "accuracy on 32 validation images at eps 0.1 fell to "
                                "0.1000, below 0.5 x its best 0.8000 (epoch 1); stopping")
  assert res["epochs"] == 2 and not res["finished"] and res["adv_collapse_epoch"] == 2
  h = history(tmp_path)
  assert [r["adv_collapse"] for r in h] == [False, True]
  steps_per_epoch = h[0]["step"]
  assert set(ckpt_lib.Checkpoints(str(tmp_path), read_only=True).steps()) == {
      steps_per_epoch, 2 * steps_per_epoch}
  assert train.best_step(str(tmp_path)) == steps_per_epoch
  again = train.train_and_evaluate(cfg, str(tmp_path), log=lambda *_: None)
  assert again["epochs"] == 2 and len(history(tmp_path)) == 2


# ---- The study runner's cache -----------------------------------------------------------

def test_the_block_is_in_the_study_cache_key():
  base = train.resolved_config(config_lib.base())
  key = lambda c: plan_lib.run_key(plan_lib.Run("r", "train", c), {})  # noqa: E731
  # At its default the block stays out of the key (committed records keep theirs) ...
  assert key(base) == key({k: v for k, v in base.items() if k != "adversarial"})
  # ... any other value of any of its fields is another run.
  for field, value in [("method", "pgd"), ("eps", 0.1), ("steps", 7), ("beta", 1.0),
                       ("bn_mode", "train"), ("check_images", 64)]:
    other = dict(base, adversarial={**base["adversarial"], field: value})
    assert key(other) != key(base), field


# ---- The throughput benchmark ------------------------------------------------------------

def bench(*args, data_dir=None):
  env = dict(os.environ, XLA_FLAGS="")
  if data_dir:
    env["KMNIST_JAX_DATA_DIR"] = data_dir
  return subprocess.run([sys.executable, "benchmarks/adv_train_throughput.py", *args],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("args,match", [
    (["--methods=pgd,nope"], "error: unknown method 'nope'; valid choices: none, fgsm_rs, "
                             "pgd, trades"),
    (["--eps=2"], "error: --eps=2.0 is out of range; valid: 0 <= eps <= 1"),
    (["--torch_variants=cuda"], "error: unknown PyTorch variant 'cuda'; valid choices: "
                                "eager, channels_last"),
    (["--steps=0"], "error: flag --steps=0: 0 is not a positive integer"),
    (["--tag=a/b"], "error: --tag 'a/b' must be letters"),
    (["stray"], "error: unexpected arguments 'stray'"),
])
def test_benchmark_bad_flags_are_one_line(tmp_path, args, match):
  p = bench(*args, f"--out_dir={tmp_path / 'out'}")
  assert p.returncode == 2, p.stderr[-2000:]
  assert p.stderr.strip().startswith(match) and len(p.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "out").exists()


@pytest.mark.slow   # two worker processes on the full MNIST train set
def test_benchmark_quick_run(data_dir, tmp_path):
  pytest.importorskip("torch")
  p = bench("--quick", "--methods=pgd", "--steps=2", "--chunk_steps=1",
            "--torch_variants=eager", f"--out_dir={tmp_path}", data_dir=data_dir)
  assert p.returncode == 0, p.stderr[-3000:]
  res = json.load(open(tmp_path / "adv_train_throughput_cpu.json"))
  r = res["results"]["pgd-2"]
  assert r["jax"]["img_per_s"] > 0 and r["torch"]["eager"]["img_per_s"] > 0
  assert r["jax"]["params"] == r["torch"]["eager"]["params"]     # the twin, checked
  assert res["meta"]["command"].startswith("python benchmarks/adv_train_throughput.py")
  assert "| pgd-2 |" in (tmp_path / "adv_train_throughput_cpu.md").read_text()
