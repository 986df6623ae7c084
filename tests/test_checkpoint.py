"""Checkpoint restore from a workdir alone, and its bad inputs."""

import jax.numpy as jnp
import numpy as np
import pytest

from kmnist_jax import checkpoint as ckpt_lib
from kmnist_jax import data, models, train
from kmnist_jax.errors import UserError
from test_train import run, tiny


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


def test_workdir_without_checkpoint(tmp_path):
  with pytest.raises(UserError, match=f"no checkpoints in '{tmp_path}'"):
    train.restore_model(str(tmp_path))
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(UserError, match="no checkpoint found"):
    train.restore_model(str(tmp_path))
