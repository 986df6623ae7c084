"""The command-line layer: repeated --config.x overrides take the last value (absl's
rule), and a study given the same override twice plans with the last value."""

import os
import subprocess
import sys

from kmnist_jax import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_repeated_overrides_keep_the_last():
  argv = ["s.py", "--config.study.seeds=(0,)", "--workdir=w", "--config.num_epochs", "2",
          "--config.study.seeds=(1,)", "--config.num_epochs=3", "--config=x.py"]
  assert cli.last_overrides(argv) == ["s.py", "--workdir=w", "--config.study.seeds=(1,)",
                                      "--config.num_epochs=3", "--config=x.py"]
  assert cli.last_overrides(["s.py", "--config.a=1"]) == ["s.py", "--config.a=1"]


def test_a_study_given_one_override_twice_plans_the_last_value(tmp_path):
  """ml_collections alone joins the two values of a tuple field (seeds (0, 0): 'two
  runs ... are named mnist-none-s0'); the last one wins instead."""
  env = dict(os.environ, XLA_FLAGS="", PYTHONPATH=REPO)
  wd = tmp_path / "w"
  p = subprocess.run(
      [sys.executable, "experiments/augmentation_study.py", f"--workdir={wd}",
       "--config.study.seeds=0", "--config.study.seeds=0", "--config.study.seeds=1",
       "--config.study.datasets=('mnist',)", "--config.study.policies=('none',)",
       "--dry_run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  assert "# 1 runs in 1 array(s)" in p.stdout and "error" not in p.stderr
