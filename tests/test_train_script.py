"""experiments/train.py end to end, as a user runs it (subprocess, real data)."""

import json
import os
import subprocess
import sys

from script_checks import one_error_line
from tiny_runs import jit_cache_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.train_limit=1024", "--config.test_limit=500", "--config.val_size=256",
        "--config.num_epochs=2", "--config.model_kwargs.widths=(8,16)",
        "--config.model_kwargs.dense=32", "--config.batch_size=64",
        "--config.eval_batch_size=250", "--config.parallel=single"]


def train(workdir, *extra, data_dir, config="experiments/configs/kmnist_cnn.py"):
  # The runs here have one config: they share a compilation cache, the first compiles.
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir, XLA_FLAGS="",
             **jit_cache_env("train_script"))
  cmd = [sys.executable, "experiments/train.py", f"--config={config}",
         f"--workdir={workdir}", *TINY, *extra]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)


def test_train_writes_everything_and_resumes(data_dir, tmp_path):
  wd = tmp_path / "run"
  p = train(wd, "--config.num_epochs_stop=1", data_dir=data_dir)
  assert p.returncode == 0, p.stderr[-3000:]
  assert "Test accuracy:" in p.stdout
  assert json.load(open(wd / "results.json"))["epochs"] == 1
  assert len(open(wd / "metrics.jsonl").readlines()) == 1
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(wd / "tensorboard"))
  # Same command again (without the stop): resumes, does not restart.
  p = train(wd, data_dir=data_dir)
  assert p.returncode == 0, p.stderr[-3000:]
  assert "Resuming from" in p.stdout and "(epoch 1)" in p.stdout
  res = json.load(open(wd / "results.json"))
  assert res["epochs"] == 2 and res["finished"] and res["test_accuracy"] > 0.3
  lines = [json.loads(line) for line in open(wd / "metrics.jsonl")]
  assert [r["epoch"] for r in lines] == [1, 2]
  assert sorted(os.listdir(wd / "checkpoints"))  # Orbax step dirs


def test_bad_dataset_name(data_dir, tmp_path):
  msg = one_error_line(train(tmp_path, "--config.dataset=kmnsit", data_dir=data_dir))
  assert "kmnsit" in msg and "kmnist" in msg and "fashion_mnist" in msg


def test_missing_data_names_files_dir_and_env(tmp_path):
  msg = one_error_line(train(tmp_path / "w", "--config.data_source=files",
                             data_dir=str(tmp_path / "nowhere")))
  assert "nowhere" in msg and "KMNIST_JAX_DATA_DIR" in msg and "train-" in msg


def test_workdir_of_other_config_refused(data_dir, tmp_path):
  assert train(tmp_path, "--config.num_epochs_stop=1", data_dir=data_dir).returncode == 0
  msg = one_error_line(train(tmp_path, "--config.learning_rate=0.5", data_dir=data_dir))
  assert "learning_rate" in msg and "allow_config_mismatch" in msg


def test_unknown_override_key_is_refused(data_dir, tmp_path):
  msg = one_error_line(train(tmp_path, "--config.lerning_rate=0.1", data_dir=data_dir))
  assert "lerning_rate" in msg and "did you mean learning_rate" in msg
  assert not (tmp_path / "checkpoints").exists()
