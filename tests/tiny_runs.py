"""Tiny trained checkpoints shared by the evaluation tests: each is trained once per
test session (per xdist worker) into the session's temporary folder and reused."""

import os
import subprocess
import sys

from test_train import run as train_run
from test_train import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {
    # A small KMNIST CNN, 2 epochs with a validation split (per-epoch confusions).
    "kmnist": dict(train_limit=1024, val_size=256, num_epochs=2),
    # One cheap epoch on MNIST (side by side with KMNIST).
    "mnist": dict(train_limit=512, val_size=128, num_epochs=1, dataset="mnist"),
}


def workdir(tmp_path_factory, data_dir, name: str = "kmnist") -> str:
  """The workdir of tiny run `name` (see SETTINGS), trained on first use."""
  wd = tmp_path_factory.getbasetemp() / "tiny_runs" / name
  if not (wd / "results.json").exists():
    train_run(tiny(data_dir, **SETTINGS[name]), wd)
  return str(wd)


def script(name, *args, data_dir, timeout=600):
  """experiments/<name> as a user runs it: (returncode, stdout, stderr)."""
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir, XLA_FLAGS="")
  return subprocess.run([sys.executable, f"experiments/{name}", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
  return [ln for ln in stderr.splitlines() if ln.startswith("error:")]
