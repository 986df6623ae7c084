"""Training on real slices of KMNIST / MNIST: accuracy, parallel modes, resume, bad input."""

import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from kmnist_jax import checkpoint as ckpt_lib
from kmnist_jax import config as config_lib
from kmnist_jax import lock, train
from kmnist_jax.errors import Preempted, UserError


def tiny(data_dir, **overrides):
  """A small, fast config on real data (first N examples of each split)."""
  c = config_lib.base()
  c.data_dir = data_dir
  c.data_source = "files"
  c.train_limit = 2048
  c.test_limit = 1000
  c.val_size = 0
  c.model = "cnn"
  c.model_kwargs = {"widths": (8, 16), "dense": 32, "dropout": 0.0}
  c.batch_size = 64
  c.eval_batch_size = 200
  c.num_epochs = 2
  c.learning_rate = 3e-3
  c.progress = False
  c.tensorboard = False
  c.parallel = "single"
  for k, v in overrides.items():
    c[k] = v
  return c


def run(cfg, workdir):
  return train.train_and_evaluate(cfg, str(workdir), log=lambda *_: None)


def history(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def final_params(workdir):
  ck = ckpt_lib.Checkpoints(str(workdir), read_only=True)
  step = ck.latest_step()
  path = os.path.join(ck.directory, str(step))
  ck.close()
  return step, path


# ---- Learns on real data ---------------------------------------------------------------

def test_kmnist_cnn_learns_well_above_chance(data_dir, tmp_path):
  res = run(tiny(data_dir, train_limit=4096, num_epochs=3, val_size=512,
                 model_kwargs={"widths": (16, 32), "dense": 64, "dropout": 0.1}),
            tmp_path)
  assert res["test_accuracy"] > 0.75, res   # chance is 0.10
  h = history(tmp_path)
  assert [r["epoch"] for r in h] == [1, 2, 3]
  assert h[-1]["train_loss"] < h[0]["train_loss"]
  assert 0.7 < h[-1]["val_accuracy"] <= 1.0
  conf = np.array(h[-1]["val_confusion"])
  assert conf.shape == (10, 10) and conf.sum() == 512
  saved = json.load(open(tmp_path / "results.json"))
  assert saved["test_accuracy"] == res["test_accuracy"]
  assert np.array(saved["test_confusion"]).sum() == 1000
  # The in-training evaluator (its own sharded loop, XLA's forward conv) and the one
  # inference path on the restored checkpoint agree image for image.
  from kmnist_jax import evaluators, inference
  restored = evaluators.restore(str(tmp_path), "latest")
  x, y = evaluators.load_split("kmnist", "test", cfg=restored.config, limit=1000)
  pred = inference.predict(restored, x)
  conf = np.zeros((10, 10), np.int64)
  np.add.at(conf, (y, pred), 1)
  np.testing.assert_array_equal(conf, np.array(saved["test_confusion"]))


def test_mnist_keras_cnn_learns(data_dir, tmp_path):
  res = run(tiny(data_dir, dataset="mnist", model="keras_cnn", model_kwargs={},
                 optimizer="adadelta", learning_rate=1.0, schedule="constant",
                 weight_decay=0.0, num_epochs=2), tmp_path)
  assert res["test_accuracy"] > 0.85, res


@pytest.mark.parametrize("model,kwargs", [("logreg", {}), ("mlp", {"hidden": 64}),
                                          ("preact_resnet18", {"width": 4})])
def test_other_models_train(data_dir, tmp_path, model, kwargs):
  res = run(tiny(data_dir, dataset="mnist", model=model, model_kwargs=kwargs,
                 train_limit=1024, num_epochs=3, test_limit=400), tmp_path)
  assert res["test_accuracy"] > 0.4, res


# ---- Parallel modes agree --------------------------------------------------------------

def test_parallel_modes_agree(data_dir, tmp_path):
  assert jax.device_count() == 8, "conftest should give 8 CPU devices"
  results, hists = {}, {}
  for mode in ("single", "pmap", "sharded"):
    results[mode] = run(tiny(data_dir, parallel=mode), tmp_path / mode)
    hists[mode] = history(tmp_path / mode)
    assert results[mode]["parallel"] == mode
  assert results["pmap"]["devices"] == results["sharded"]["devices"] == 8
  assert_modes_agree(results, hists)


def assert_modes_agree(results, hists):
  """pmap and sharded runs agree with the single-device run epoch by epoch (train loss
  to 0.2%, accuracy to 1 pp: counted per replica under pmap and summed once per chunk,
  the same total) and on the test set."""
  for mode in ("pmap", "sharded"):
    for a, b in zip(hists["single"], hists[mode]):
      np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=2e-3)
      assert abs(a["train_accuracy"] - b["train_accuracy"]) <= 0.01, (a, b)
    assert abs(results[mode]["test_accuracy"] - results["single"]["test_accuracy"]) <= 0.01
    np.testing.assert_allclose(results[mode]["test_loss"], results["single"]["test_loss"],
                               rtol=1e-2)


def test_parallel_modes_agree_with_dropout(data_dir, tmp_path):
  # Dropout masks are drawn per replica under pmap, so only accuracy is compared.
  kw = {"widths": (8, 16), "dense": 32, "dropout": 0.3}
  acc = {m: run(tiny(data_dir, parallel=m, model_kwargs=kw), tmp_path / m)["test_accuracy"]
         for m in ("single", "pmap", "sharded")}
  assert abs(acc["sharded"] - acc["single"]) <= 0.005, acc  # same masks as single
  assert abs(acc["pmap"] - acc["single"]) <= 0.05, acc


def test_batch_not_divisible_by_devices(data_dir, tmp_path):
  with pytest.raises(UserError, match="divisible by the number of devices"):
    run(tiny(data_dir, parallel="pmap", batch_size=60), tmp_path)


# ---- Determinism, checkpoints, resume ---------------------------------------------------

def test_same_seed_same_numbers_other_seed_differs(data_dir, tmp_path):
  a = run(tiny(data_dir, num_epochs=1), tmp_path / "a")
  b = run(tiny(data_dir, num_epochs=1), tmp_path / "b")
  c = run(tiny(data_dir, num_epochs=1, seed=1), tmp_path / "c")
  assert a["test_loss"] == b["test_loss"] and a["train_loss"] == b["train_loss"]
  assert c["train_loss"] != a["train_loss"]


def test_resume_matches_uninterrupted_run(data_dir, tmp_path):
  kw = {"widths": (8, 16), "dense": 32, "dropout": 0.2}
  full = run(tiny(data_dir, num_epochs=3, model_kwargs=kw), tmp_path / "full")
  # Interrupted after epoch 1, then resumed with the same command (in another mode).
  part = run(tiny(data_dir, num_epochs=3, num_epochs_stop=1, model_kwargs=kw),
             tmp_path / "resumed")
  assert part["epochs"] == 1 and not part["finished"]
  resumed = run(tiny(data_dir, num_epochs=3, model_kwargs=kw), tmp_path / "resumed")
  assert resumed["epochs"] == 3 and resumed["finished"]
  assert resumed["test_loss"] == full["test_loss"]
  assert resumed["test_accuracy"] == full["test_accuracy"]
  assert history(tmp_path / "resumed")[-1]["train_loss"] == history(
      tmp_path / "full")[-1]["train_loss"]
  assert len(history(tmp_path / "resumed")) == 3
  # Re-running a finished workdir trains nothing and reports the same numbers.
  again = run(tiny(data_dir, num_epochs=3, model_kwargs=kw), tmp_path / "resumed")
  assert again["test_loss"] == full["test_loss"]
  # Training time covers every epoch across the resumption (elapsed_s: one call's
  # wall-clock); a finished run run again still reports it and its throughput.
  epochs = history(tmp_path / "resumed")
  assert resumed["train_s"] == pytest.approx(sum(h["epoch_time_s"] for h in epochs))
  assert resumed["train_s"] > part["train_s"] > 0
  assert again["train_s"] == resumed["train_s"] and again["train_img_per_s"] > 0


def test_restore_across_parallel_modes(data_dir, tmp_path):
  run(tiny(data_dir, num_epochs=2, num_epochs_stop=1, parallel="pmap"), tmp_path / "w")
  res = run(tiny(data_dir, num_epochs=2, parallel="sharded"), tmp_path / "w")
  ref = run(tiny(data_dir, num_epochs=2, parallel="single"), tmp_path / "ref")
  np.testing.assert_allclose(res["test_loss"], ref["test_loss"], rtol=1e-2)


def test_keeps_latest_and_best_checkpoints(data_dir, tmp_path):
  run(tiny(data_dir, num_epochs=4, val_size=256, keep_checkpoints=1), tmp_path)
  h = history(tmp_path)
  steps_per_epoch = h[0]["step"]
  best_epoch = max(range(4), key=lambda i: (h[i]["val_accuracy"], i))
  ck = ckpt_lib.Checkpoints(str(tmp_path), read_only=True)
  steps = ck.steps()
  expected = {4 * steps_per_epoch, (best_epoch + 1) * steps_per_epoch}
  assert set(steps) == expected, (steps, expected)
  step, cfg, hist = ck.restore_meta()
  assert step == 4 * steps_per_epoch and cfg["model"] == "cnn" and len(hist) == 4


def test_refuses_workdir_of_another_config(data_dir, tmp_path):
  run(tiny(data_dir, num_epochs=1), tmp_path)
  with pytest.raises(UserError) as e:
    run(tiny(data_dir, num_epochs=1, learning_rate=0.1, batch_size=32), tmp_path)
  msg = str(e.value)
  assert "learning_rate" in msg and "batch_size" in msg and "allow_config_mismatch" in msg
  assert "\n" not in msg
  # Runtime-only fields (parallel mode, progress) may change.
  run(tiny(data_dir, num_epochs=1, parallel="sharded", progress=True), tmp_path)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path):
  run(tiny(data_dir, num_epochs=2, num_epochs_stop=1), tmp_path)
  good = ckpt_lib.Checkpoints(str(tmp_path), read_only=True).steps()
  bad = tiny(data_dir, num_epochs=2, learning_rate=1e38,
             allow_config_mismatch=True)
  with pytest.raises(train.TrainingDiverged, match=r"NaN/inf at step \d+ \(epoch 2\)"
                     ) as e:
    run(bad, tmp_path)
  assert f"checkpoints/{good[-1]}" in str(e.value)
  assert ckpt_lib.Checkpoints(str(tmp_path), read_only=True).steps() == good


# ---- Bad config ------------------------------------------------------------------------

@pytest.mark.parametrize("field,value,choice", [
    ("dataset", "kmnsit", "kmnist"), ("model", "resnet", "preact_resnet18"),
    ("optimizer", "adamm", "adamw"), ("parallel", "tpu", "sharded"),
    ("schedule", "linear", "onecycle"), ("data_source", "web", "tfds"),
    ("dtype", "fp16", "bfloat16")])
def test_unknown_names_name_the_choices(field, value, choice):
  c = config_lib.base()
  c[field] = value
  with pytest.raises(UserError, match=f"{field}={value!r}.*valid choices.*{choice}"):
    config_lib.validate(c)


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("learning_rate", -1.0),
                                         ("label_smoothing", 1.0), ("val_size", -5),
                                         ("stop_at_test_accuracy", 99.0)])
def test_out_of_range_values(field, value):
  c = config_lib.base()
  c[field] = value
  with pytest.raises(UserError, match=field):
    config_lib.validate(c)


def test_unknown_model_kwarg(data_dir, tmp_path):
  with pytest.raises(UserError, match="unknown argument 'depthh'.*widths"):
    run(tiny(data_dir, model_kwargs={"depthh": 3}), tmp_path)


@pytest.mark.parametrize("model,kwargs", [
    ("cnn", {}), ("mlp", {}), ("cnn", {"widths": (8, 16, 32), "dense": 0}),
    ("keras_cnn", {})])
def test_jitted_init_is_bit_identical_to_op_by_op(model, kwargs):
  """init_model compiles the whole initialisation as one program (at
  train.RUN_ONCE_OPT_LEVEL): the same values as building the model op by op (so
  results of earlier runs stay reproducible)."""
  from flax import nnx
  c = config_lib.base()
  c.model, c.seed = model, 3
  c.model_kwargs.update(kwargs)
  eager = train.init_model(c, 10, compiled=False)
  jitted = train.init_model(c, 10)
  a, b = jax.tree.leaves(nnx.state(eager)), jax.tree.leaves(nnx.state(jitted))
  assert len(a) == len(b) > 0
  for x, y in zip(a, b):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_chunk_steps_divides_epoch():
  for spe in (1, 7, 13, 100, 460, 468, 937):
    c = train.chunk_steps_per_call(spe, 10)
    assert spe % c == 0 and (c >= 8 or c == spe)


def test_stop_at_test_accuracy(data_dir, tmp_path):
  """The time-to-accuracy mode: test accuracy and elapsed time every epoch, a stop at
  the first epoch that reaches the target, and a resumed run that does not go on."""
  cfg = tiny(data_dir, model="logreg", model_kwargs={}, num_epochs=4,
             eval_test_every_epoch=True, stop_at_test_accuracy=0.3)
  res = run(cfg, tmp_path)
  (h,) = history(tmp_path)
  assert h["test_accuracy"] >= 0.3 and h["elapsed_s"] > 0
  assert res["epochs"] == 1 and not res["finished"]
  assert res["test_accuracy"] == pytest.approx(h["test_accuracy"])
  run(cfg, tmp_path)
  assert len(history(tmp_path)) == 1


def test_eval_test_from_epoch_checks_the_test_set_from_that_epoch_only(data_dir, tmp_path):
  """eval_test_from_epoch: epochs before it have no test evaluation (and cannot stop
  the run); a checkpoint saved before the field existed resumes as saved with its
  default, and differs from any other value."""
  cfg = tiny(data_dir, model="logreg", model_kwargs={}, num_epochs=3,
             eval_test_every_epoch=True, stop_at_test_accuracy=0.05,
             eval_test_from_epoch=2)
  res = run(cfg, tmp_path)
  h = history(tmp_path)
  assert [("test_accuracy" in r) for r in h] == [False, True]
  assert res["epochs"] == 2 and h[1]["test_accuracy"] >= 0.05
  saved = dict(cfg.to_dict())
  del saved["eval_test_from_epoch"]
  assert config_lib.differences(saved, {**saved, "eval_test_from_epoch": 1}) == []
  assert config_lib.differences(saved, {**saved, "eval_test_from_epoch": 2},
                                ignore=()) != []
  with pytest.raises(UserError, match="eval_test_from_epoch=0 must be >= 1"):
    config_lib.validate(tiny(data_dir, eval_test_from_epoch=0))


# ---- Preemption, damage, the workdir lock ---------------------------------------------

def sigterm_at(step, sig=signal.SIGTERM):
  """on_chunk callback: `sig` to this process once training reaches `step`."""
  def on_chunk(s):
    if s == step:
      os.kill(os.getpid(), sig)
  return on_chunk


def test_ctrl_c_saves_at_the_next_chunk_without_a_traceback(data_dir, tmp_path):
  cfg = tiny(data_dir, num_epochs=1, model="logreg", model_kwargs={},
             progress_updates_per_epoch=4)
  before = signal.getsignal(signal.SIGINT)    # pytest-xdist workers ignore SIGINT
  with pytest.raises(Preempted, match=r"stopped by SIGINT at step 8 \(epoch 1, step 8/32"):
    train.train_and_evaluate(cfg, str(tmp_path), log=lambda *_: None,
                             on_chunk=sigterm_at(8, signal.SIGINT))
  assert signal.getsignal(signal.SIGINT) is before           # the old handler is back
  assert ckpt_lib.Checkpoints(str(tmp_path), read_only=True).steps() == [8]
  assert lock.holder(tmp_path) is None


def test_sigterm_mid_epoch_saves_and_resumes_bit_identically(data_dir, tmp_path, capfd):
  # 32 steps/epoch in chunks of 8: SIGTERM after step 40 = epoch 2, step 8 of 32.
  kw = dict(num_epochs=2, model="mlp", model_kwargs={"hidden": 32, "dropout": 0.2},
            progress_updates_per_epoch=4)
  full = run(tiny(data_dir, **kw), tmp_path / "full")
  with pytest.raises(Preempted) as e:
    train.train_and_evaluate(tiny(data_dir, **kw), str(tmp_path / "w"),
                             log=lambda *_: None, on_chunk=sigterm_at(40))
  assert e.value.step == 40 and "SIGTERM" in str(e.value)
  assert "epoch 2, step 8/32" in str(e.value) and "checkpoints/40" in str(e.value)
  assert "received SIGTERM" in capfd.readouterr().err
  assert len(history(tmp_path / "w")) == 1
  assert 40 in ckpt_lib.Checkpoints(str(tmp_path / "w"), read_only=True).steps()
  # The handler is gone after the run: default SIGTERM action again.
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
  logs = []
  resumed = train.train_and_evaluate(tiny(data_dir, **kw), str(tmp_path / "w"),
                                     log=logs.append)
  assert any("Resuming from" in m and "epoch 2, step 8 of the epoch" in m for m in logs)
  assert resumed["test_loss"] == full["test_loss"]
  assert resumed["test_accuracy"] == full["test_accuracy"]
  assert history(tmp_path / "w")[-1]["train_loss"] == history(
      tmp_path / "full")[-1]["train_loss"]
  a = train.restore_model(str(tmp_path / "w")).state
  b = train.restore_model(str(tmp_path / "full")).state
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_damaged_latest_checkpoint_resumes_from_previous(data_dir, tmp_path, capfd):
  from test_checkpoint import damage
  kw = dict(num_epochs=3, model="mlp", model_kwargs={"hidden": 32}, train_limit=1024)
  full = run(tiny(data_dir, **kw), tmp_path / "full")
  run(tiny(data_dir, **kw), tmp_path / "w")
  latest = ckpt_lib.Checkpoints(str(tmp_path / "w"), read_only=True).latest_step()
  damage(tmp_path / "w" / "checkpoints" / str(latest), "bitflip")
  capfd.readouterr()
  again = run(tiny(data_dir, **kw), tmp_path / "w")
  err = capfd.readouterr().err
  assert f"checkpoints/{latest} is damaged" in err and "moved 1 damaged" in err
  assert (tmp_path / "w" / "damaged_checkpoints" / str(latest)).is_dir()
  assert again["test_loss"] == full["test_loss"]
  saved = json.load(open(tmp_path / "w" / "results.json"))
  assert saved["test_accuracy"] == full["test_accuracy"]
  assert train.restore_model(str(tmp_path / "w")).step == latest   # saved again


def test_workdir_in_use_is_refused(data_dir, tmp_path):
  with lock.WorkdirLock(tmp_path / "w"):
    code = ("import sys; from kmnist_jax import lock\n"
            "try:\n  lock.WorkdirLock(sys.argv[1]).acquire()\n"
            "except lock.WorkdirLocked as e:\n  print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w")],
                         cwd=os.path.dirname(os.path.dirname(__file__)),
                         capture_output=True, text=True).stdout
    assert f"pid {os.getpid()}" in out and "in use by another run" in out
    run(tiny(data_dir, num_epochs=1, model="logreg", model_kwargs={}), tmp_path / "w")
  assert lock.holder(tmp_path / "w") is None


# ---- --config flags (checked before absl parses them) ---------------------------------

CNN_FILE = "experiments/configs/kmnist_cnn.py"


@pytest.mark.parametrize("args,match", [
    (["--config=nope.py"], r"--config file 'nope.py' does not exist; valid choices: .*"
                           r"kmnist_cnn.py"),
    (["--config", CNN_FILE, "--config.model_kwargs.widthz=1"],
     r"unknown config field 'model_kwargs.widthz' .*did you mean widths.*"
     r"config.model_kwargs: dense, depth, dropout, widths"),
    ([f"--config={CNN_FILE}", "--config.model_kwargs.widths.x=1"],
     r"config.model_kwargs.widths is not a group of fields"),
    ([f"--config={CNN_FILE}", "--config.lerning_rate=1"],
     r"unknown config field 'lerning_rate'.*did you mean learning_rate"),
])
def test_bad_config_flags(args, match):
  with pytest.raises(UserError, match=match):
    config_lib.check_override_flags(["train.py", *args])


def test_valid_nested_override_and_broken_config_file(tmp_path):
  config_lib.check_override_flags(["train.py", f"--config={CNN_FILE}",
                                   "--config.model_kwargs.widths=(8,16)"])
  bad = tmp_path / "bad.py"
  bad.write_text("def get_config(:\n")
  with pytest.raises(UserError, match=r"config file .*bad.py' cannot be loaded "
                                      r"\(line 1\): SyntaxError"):
    config_lib.check_override_flags(["train.py", f"--config={bad}"])
