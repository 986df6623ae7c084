"""Multi-host training with the JAX multi-controller runtime, on localhost CPUs.

Two `experiments/train.py` processes (2 CPU devices each, gloo collectives, coordinator
on a free localhost port) must train the same model as one process and write one
checkpoint that restores; processes given different configs must both refuse to start.
Also: every workdir write outside Orbax goes through `etils.epath` (gs:// workdirs).
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from etils import epath
from etils.epath import testing as epath_testing

from kmnist_jax import checkpoint as ckpt_lib
from kmnist_jax import config as config_lib
from kmnist_jax import parallel, train
from kmnist_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The MLP (with dropout: per-step keys must agree across processes) compiles in a
# fraction of the CNN's time; sharded BatchNorm is covered by tests/test_train.py.
CONFIG = "kmnist_mlp"
OVERRIDES = {"train_limit": 1024, "test_limit": 200, "val_size": 128, "num_epochs": 2,
             "model_kwargs.hidden_sizes": "(64,)", "batch_size": 64,
             "eval_batch_size": 200, "parallel": "sharded",
             "progress": False, "tensorboard": False, "data_source": "files"}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def launch(workdir, data_dir, *, per_process=({}, {}), devices=2, timeout=300):
  """Runs len(per_process) train.py processes together; [(returncode, output)]."""
  port = free_port()
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir,
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  procs = []
  try:
    for pid, extra in enumerate(per_process):
      over = {**OVERRIDES, **extra}
      cmd = [sys.executable, "experiments/train.py",
             f"--config=experiments/configs/{CONFIG}.py", f"--workdir={workdir}",
             *[f"--config.{k}={v}" for k, v in over.items()],
             f"--coordinator_address=localhost:{port}",
             f"--num_processes={len(per_process)}", f"--process_id={pid}"]
      procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True))
    return [(p.wait(timeout=timeout), p.stdout.read()) for p in procs]
  finally:
    for p in procs:  # on failure or timeout: never leave a process behind
      if p.poll() is None:
        p.kill()
        p.wait()


def reference_config(data_dir):
  cfg = config_lib.load_file(CONFIG)
  for k, v in OVERRIDES.items():
    if k.startswith("model_kwargs."):
      cfg.model_kwargs[k.split(".")[1]] = ast.literal_eval(v)
    else:
      cfg[k] = v
  cfg.data_dir = data_dir
  return cfg


def history(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def test_two_processes_train_the_same_model_as_one(data_dir, tmp_path):
  wd2 = tmp_path / "two"
  out = launch(wd2, data_dir)
  for rc, text in out:
    assert rc == 0, text[-3000:]
    assert "sharded on 4 cpu device(s)" in text   # the mesh spans both processes
  # One process (this one, 8 CPU devices): the same global batches and updates.
  wd1 = tmp_path / "one"
  res1 = train.train_and_evaluate(reference_config(data_dir), str(wd1),
                                  log=lambda *_: None)
  h1, h2 = history(wd1), history(wd2)
  assert [h["epoch"] for h in h2] == [1, 2]      # written once, by process 0
  np.testing.assert_allclose([h["train_loss"] for h in h2],
                             [h["train_loss"] for h in h1], rtol=1e-4)
  assert h2[0]["train_loss"] > h2[1]["train_loss"]   # it learned
  res2 = json.load(open(wd2 / "results.json"))
  assert abs(res2["test_accuracy"] - res1["test_accuracy"]) <= 2 / 200
  assert res2["test_accuracy"] > 0.25    # chance: 0.1
  # One consistent checkpoint per saved step, restorable here as a single process.
  assert sorted(os.listdir(wd2 / "checkpoints")) == ["16", "32"]
  r1, r2 = train.restore_model(str(wd1)), train.restore_model(str(wd2))
  assert r2.step == 32 and r2.config.learning_rate == r1.config.learning_rate
  for a, b in zip(jax.tree.leaves(r2.state.params), jax.tree.leaves(r1.state.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)


def test_processes_with_different_configs_refuse_to_start(data_dir, tmp_path):
  out = launch(tmp_path / "w", data_dir, per_process=({}, {"learning_rate": 0.01}),
               timeout=200)
  for rc, text in out:
    assert rc == 2, text[-3000:]
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text[-3000:]
    assert "disagree on config.learning_rate" in errors[0]
    assert "refusing to start" in errors[0] and "data" not in errors[0].split(" (")[0]
  assert not (tmp_path / "w" / "checkpoints").exists()


def test_distributed_arguments_checked(monkeypatch):
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  with pytest.raises(UserError, match=r"process_id=2 must be in 0\.\.1"):
    parallel.initialize_distributed("h:1", 2, 2)
  with pytest.raises(UserError, match="HOST:PORT"):
    parallel.initialize_distributed("h", 2, 0)
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.2:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
  monkeypatch.setenv("JAX_PROCESS_ID", "3")
  parallel.initialize_distributed()
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
  monkeypatch.delenv("JAX_NUM_PROCESSES")
  monkeypatch.delenv("JAX_PROCESS_ID")
  parallel.initialize_distributed()      # TPU VM / SLURM: let JAX detect everything
  assert calls == [{"coordinator_address": "10.0.0.2:1234", "num_processes": 4,
                    "process_id": 3}, {}]


def test_workdir_writes_go_through_epath(data_dir, tmp_path):
  """What train.py writes outside Orbax goes through etils.epath (so gs:// works)."""
  written = []

  def record(original, path, *args, **kwargs):
    written.append(os.path.basename(os.fspath(path)).split(".tmp")[0])
    return original(path, *args, **kwargs)

  cfg = config_lib.load_file("kmnist_logreg")   # cheapest to compile
  cfg.data_dir, cfg.data_source = data_dir, "files"
  cfg.tensorboard = cfg.progress = False
  cfg.num_epochs, cfg.train_limit, cfg.test_limit, cfg.val_size = 1, 256, 200, 0
  cfg.parallel, cfg.eval_batch_size = "single", 200
  with epath_testing.mock_epath(open=record, mkdir=record, makedirs=record):
    train.train_and_evaluate(cfg, str(tmp_path / "w"), log=lambda *_: None)
  assert {"w", "metrics.jsonl", "results.json"} <= set(written), written
  assert ckpt_lib.checkpoint_dir("gs://bucket/runs/a") == "gs://bucket/runs/a/checkpoints"
  assert epath.Path(tmp_path / "w" / "results.json").exists()
