"""Tiny trained checkpoints shared by the evaluation tests: each is trained once per
test session (per xdist worker) into the session's temporary folder and reused."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

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


_JIT_CACHES: dict[str, str] = {}


def jit_cache_env(name: str) -> dict:
  """Environment variables that give the scripts a test file starts one after another
  JAX's persistent compilation cache, in a folder of their own (`name`, one per test
  process): a script run with the config of an earlier one (a resumed run, the same
  command again) loads the programs that run compiled instead of compiling them again,
  and the same programs give the same numbers. {} when KMNIST_JAX_TEST_JIT_CACHE=0
  (as in conftest.py). Only for scripts that compile one at a time: without a size
  limit JAX writes its entries unlocked (of several processes of one run, only
  process 0 writes)."""
  if os.environ.get("KMNIST_JAX_TEST_JIT_CACHE", "1") == "0":
    return {}
  if name not in _JIT_CACHES:
    _JIT_CACHES[name] = tempfile.mkdtemp(prefix=f"kmnist_jax_{name}_jit_cache_")
    atexit.register(shutil.rmtree, _JIT_CACHES[name], True)
  return {"JAX_COMPILATION_CACHE_DIR": _JIT_CACHES[name],
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def script(name, *args, data_dir, timeout=600):
  """experiments/<name> as a user runs it: (returncode, stdout, stderr)."""
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir, XLA_FLAGS="")
  return subprocess.run([sys.executable, f"experiments/{name}", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
  return [ln for ln in stderr.splitlines() if ln.startswith("error:")]
