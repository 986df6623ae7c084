"""Every experiment config loads, validates, and documents its run command."""

import glob
import importlib.util
import os

import pytest

from kmnist_jax import config as config_lib
from kmnist_jax import models

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "experiments",
                                        "configs", "[a-z]*.py")))
REQUIRED = {"kmnist_cnn", "mnist_cnn", "kmnist_resnet18", "kmnist_logreg", "kmnist_mlp",
            "kmnist_keras_cnn"}


def load(path):
  spec = importlib.util.spec_from_file_location("cfg", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_required_configs_exist():
  assert REQUIRED <= {os.path.basename(p)[:-3] for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p))
def test_config_valid_and_documented(path):
  mod = load(path)
  cfg = mod.get_config()
  config_lib.validate(cfg)
  name = os.path.basename(path)
  assert f"experiments/configs/{name}" in mod.__doc__, "docstring must hold the run command"
  assert "python experiments/train.py" in mod.__doc__
  assert "%" in mod.__doc__, "docstring must state the accuracy it should reach"
  # Model kwargs are accepted by the model.
  accepted = models.model_kwargs(cfg.model)
  assert set(cfg.model_kwargs.keys()) <= set(accepted)


def test_keras_config_matches_benchmark():
  cfg = load([p for p in CONFIGS if p.endswith("kmnist_keras_cnn.py")][0]).get_config()
  assert (cfg.model, cfg.optimizer, cfg.learning_rate, cfg.batch_size, cfg.num_epochs,
          cfg.augment, cfg.val_size) == ("keras_cnn", "adadelta", 1.0, 128, 12, "", 0)


def test_differences_ignore_runtime_fields():
  a = config_lib.to_dict(config_lib.base())
  b = dict(a, parallel="pmap", progress=False, learning_rate=1.0)
  assert config_lib.differences(a, b) == [
      f"learning_rate: {a['learning_rate']!r} (checkpoint) vs 1.0 (now)"]


def test_from_dict_roundtrip():
  c = config_lib.base()
  c.model_kwargs = {"widths": (8, 16)}
  d = config_lib.to_dict(c)
  assert d["model_kwargs"]["widths"] == [8, 16]
  assert config_lib.from_dict(d).model == c.model
