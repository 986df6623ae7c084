"""Checkpoint restore from a workdir alone, its verification, and its bad inputs."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import run, tiny

from kmnist_jax import checkpoint as ckpt_lib
from kmnist_jax import config as config_lib
from kmnist_jax import data, models, train
from kmnist_jax.errors import UserError


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  wd = tmp_path_factory.mktemp("trained")
  res = run(tiny(data_dir, num_epochs=3, val_size=256), wd)
  return wd, res


def test_restore_model_reproduces_test_accuracy(trained, data_dir):
  wd, res = trained
  r = train.restore_model(str(wd))
  assert r.config.model == "cnn" and len(r.history) == 3
  test = data.load("kmnist", data_dir=data_dir, limit={"test": 1000}).splits["test"]
  logits = r.model(models.preprocess(jnp.asarray(test.images)), train=False)
  acc = float(np.mean(np.argmax(logits, -1) == test.labels))
  assert abs(acc - res["test_accuracy"]) < 1e-6
  feats = r.model.features(models.preprocess(jnp.asarray(test.images[:4])), train=False)
  assert feats.shape == (4, 32)


def test_best_and_explicit_steps(trained):
  wd, _ = trained
  ck = ckpt_lib.Checkpoints(str(wd), read_only=True)
  steps = ck.steps()
  best = train.best_step(str(wd))
  assert best in steps
  assert train.restore_model(str(wd), "best").step == best
  assert train.restore_model(str(wd), steps[0]).step == steps[0]
  with pytest.raises(UserError, match=r"no checkpoint at step 7 .*available steps"):
    train.restore_model(str(wd), 7)


def test_read_only_open_logs_no_orbax_notice(trained, caplog):
  """Every evaluation / transfer source opens read-only: Orbax's two notices about it
  ('read_only=True, setting save_interval_steps=0', 'Given directory is read only')
  stay out of the user's stderr; other warnings still pass."""
  import logging
  wd, _ = trained
  with caplog.at_level(logging.WARNING):
    ckpt_lib.Checkpoints(str(wd), read_only=True).steps()
    logging.getLogger("absl").warning("Given directory is read only: after the open")
  msgs = [r.getMessage() for r in caplog.records]
  assert not [m for m in msgs if "save_interval_steps=0" in m]
  assert [m for m in msgs if "read only" in m] == ["Given directory is read only: after the open"]


def test_workdir_without_checkpoint(tmp_path):
  with pytest.raises(UserError, match=f"no checkpoints in '{tmp_path}'"):
    train.restore_model(str(tmp_path))
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(UserError, match="no checkpoint found"):
    train.restore_model(str(tmp_path))


# ---- Damage: verified restore, fallback to the newest intact checkpoint ---------------

def largest_array_file(step_dir) -> str:
  """The biggest file of a checkpoint's state/ (where the parameters are)."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, "state"))
           for f in fs]
  return max(files, key=os.path.getsize)


def damage(step_dir, kind: str) -> None:
  """Damages one checkpoint folder the ways a disk or a user does."""
  step_dir = str(step_dir)
  if kind == "bitflip":          # 4 KB inverted in the middle of the params file
    path = largest_array_file(step_dir)
    with open(path, "r+b") as f:
      size = os.path.getsize(path)
      f.seek(max(0, size // 2 - 2048))
      block = f.read(4096)
      f.seek(max(0, size // 2 - 2048))
      f.write(bytes(b ^ 0xFF for b in block))
  elif kind == "truncate":
    path = largest_array_file(step_dir)
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 3)
  elif kind == "no_history_metadata":
    os.remove(os.path.join(step_dir, "history", "metadata"))
  elif kind == "no_state":
    shutil.rmtree(os.path.join(step_dir, "state"))
  else:
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["bitflip", "truncate", "no_history_metadata",
                                  "no_state"])
def test_damaged_latest_falls_back_to_newest_intact(trained, tmp_path, kind, capfd):
  wd, _ = trained
  copy = tmp_path / "w"
  shutil.copytree(wd, copy)
  steps = ckpt_lib.Checkpoints(str(copy), read_only=True).steps()
  latest, older = max(steps), sorted(steps)[-2]
  damage(copy / "checkpoints" / str(latest), kind)
  capfd.readouterr()
  r = train.restore_model(str(copy), "latest")
  assert r.step == older and r.verified
  assert [s for s, _ in r.skipped] == [latest]
  err = capfd.readouterr().err
  lines = [line for line in err.splitlines() if line.startswith("warning: ")]
  assert any(f"checkpoints/{latest} is damaged" in line for line in lines), err
  assert any(f"using checkpoint {ckpt_lib.checkpoint_dir(str(copy))}/{older}" in line
             for line in lines), err
  assert "Traceback" not in err
  reference = train.restore_model(str(wd), older)
  np.testing.assert_array_equal(jax.tree.leaves(r.state)[3],
                                jax.tree.leaves(reference.state)[3])
  # An explicit step is never silently replaced.
  with pytest.raises(UserError, match=f"no intact checkpoint .*step {latest}: "):
    train.restore_model(str(copy), latest)


def test_no_intact_checkpoint_is_one_line(trained, tmp_path):
  wd, _ = trained
  copy = tmp_path / "w"
  shutil.copytree(wd, copy)
  steps = ckpt_lib.Checkpoints(str(copy), read_only=True).steps()
  for s in steps:
    damage(copy / "checkpoints" / str(s), "bitflip")
  with pytest.raises(UserError) as e:
    train.restore_model(str(copy))
  msg = str(e.value)
  assert "\n" not in msg and "no intact checkpoint" in msg
  assert all(f"step {s}: " in msg for s in steps)
  assert "SHA-256" in msg or "cannot be read" in msg


def test_old_checkpoint_without_digest_restores_unverified(trained, tmp_path, capfd):
  wd, res = trained
  copy = tmp_path / "w"
  shutil.copytree(wd, copy)
  for s in ckpt_lib.Checkpoints(str(copy), read_only=True).steps():
    shutil.rmtree(copy / "checkpoints" / str(s) / "manifest")  # as written before
  r = train.restore_model(str(copy))
  assert not r.verified and r.step == train.restore_model(str(wd)).step
  assert "has no digest" in capfd.readouterr().err


def test_non_finite_state_is_refused(trained, tmp_path):
  wd, _ = trained
  r = train.restore_model(str(wd))
  leaves, treedef = jax.tree.flatten(r.state)
  leaves = [np.asarray(x) for x in leaves]
  leaves[3] = leaves[3].copy()
  leaves[3].flat[0] = np.nan
  ck = ckpt_lib.Checkpoints(str(tmp_path))
  ck.save(5, jax.tree.unflatten(treedef, leaves), config_lib.to_dict(r.config),
          r.history)
  ck.close()
  digest = ckpt_lib.state_digest(jax.tree.unflatten(treedef, leaves))
  assert not digest["finite"]
  with pytest.raises(UserError, match="step 5: its arrays hold NaN/inf"):
    ckpt_lib.Checkpoints(str(tmp_path), read_only=True).restore(r.state)


def test_digest_covers_every_byte_in_leaf_order():
  a = {"x": np.arange(4, dtype=np.float32), "y": np.zeros((2, 2), np.int32)}
  d = ckpt_lib.state_digest(a)
  assert d["finite"] and [leaf[1:] for leaf in d["leaves"]] == [[[4], "float32"],
                                                                [[2, 2], "int32"]]
  b = {"x": a["x"].copy(), "y": a["y"]}
  b["x"][2] = np.nextafter(b["x"][2], np.float32(10))   # one ulp
  assert ckpt_lib.state_digest(b)["sha256"] != d["sha256"]
  c = {"x": a["x"].reshape(2, 2), "y": a["y"].reshape(4)}   # same bytes, other shapes
  assert ckpt_lib.state_digest(c)["sha256"] != d["sha256"]


def test_disk_full_is_one_line_and_leaves_nothing(trained, tmp_path, monkeypatch):
  wd, _ = trained
  r = train.restore_model(str(wd))
  ck = ckpt_lib.Checkpoints(str(tmp_path))
  usage = shutil.disk_usage(str(tmp_path))
  monkeypatch.setattr(ckpt_lib.shutil, "disk_usage",
                      lambda p: usage._replace(free=1000))
  with pytest.raises(ckpt_lib.DiskFull) as e:
    ck.save(5, r.state, config_lib.to_dict(r.config), r.history)
  msg = str(e.value)
  assert "disk full" in msg and ck.directory in msg and "MB" in msg and "\n" not in msg
  assert os.listdir(ck.directory) == []


def _orphan_failed_task(filename: str, kind: str = "task") -> None:
  """A task whose coroutine (compiled as if from `filename`) fails, a future given an
  exception raised in that file, or (kind "tensorstore") a future given TensorStore's
  read error the way its C++ sets it (no Python frame), dropped without its exception
  being retrieved: asyncio logs it when collected."""
  import asyncio
  import gc
  ns = {}
  exec(compile("async def read_array():\n  raise ValueError('cannot read')\n"
               "def read_sync():\n  raise ValueError('cannot read')\n", filename, "exec"),
       ns)
  loop = asyncio.new_event_loop()
  try:
    if kind == "task":
      fut = loop.create_task(ns["read_array"]())
      loop.run_until_complete(asyncio.sleep(0.01))
    elif kind == "tensorstore":
      fut = loop.create_future()
      fut.set_exception(ValueError(
          'OUT_OF_RANGE: Error reading "params.head.kernel.value/0.0" in OCDBT database '
          'at local file "/w/checkpoints/96/state/": Requested byte range [1, 2) is not '
          'valid for value of size 1'))
    else:
      fut = loop.create_future()
      try:
        ns["read_sync"]()
      except ValueError as e:
        fut.set_exception(e)
    assert fut.done()
    del fut
    gc.collect()
  finally:
    loop.close()


def test_orbax_orphan_read_tasks_print_no_traceback(caplog):
  """When several arrays of a damaged checkpoint fail to read, only the first failure
  is reported (in one line); asyncio's traceback for the others is dropped, and only
  for Orbax's coroutines and TensorStore's read errors."""
  import gc
  gc.collect()    # what earlier tests left for the collector is logged before, not here
  with caplog.at_level("ERROR", logger="asyncio"):
    _orphan_failed_task("/site-packages/orbax/checkpoint/_src/serialization/x.py")
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    _orphan_failed_task("/site-packages/orbax/checkpoint/_src/x.py", "future")
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    _orphan_failed_task("/site-packages/someone_else/x.py", "tensorstore")
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    _orphan_failed_task("/site-packages/someone_else/x.py")
    _orphan_failed_task("/site-packages/someone_else/x.py", "future")
    kept = [r for r in caplog.records if "never retrieved" in r.getMessage()]
  assert [r.getMessage().split("\n")[0] for r in kept] == [
      "Task exception was never retrieved", "Future exception was never retrieved"]
  assert "someone_else" in kept[0].getMessage()
