"""The benchmark scripts run end to end (smoke size) and write their result files."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, data_dir):
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir, XLA_FLAGS="")
  return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)


def test_throughput_quick(data_dir, tmp_path):
  p = run(["benchmarks/throughput.py", "--quick", "--models", "cnn", "--jax_modes",
           "single", "--torch_variants", "", "--augment", "cutout", "--out_dir",
           str(tmp_path)], data_dir)
  assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
  res = json.load(open(tmp_path / "throughput_cpu.json"))
  single = res["results"]["cnn"]["jax:single"]
  assert single["img_per_s"] > 0 and single["compile_s"] >= 0
  assert 0 < single["last_loss"] < 10  # it really trained on real images
  assert (tmp_path / "throughput_cpu.md").read_text().count("JAX single") >= 1


def test_accuracy_tiny(data_dir, tmp_path):
  p = run(["benchmarks/accuracy.py", "--configs", "kmnist_logreg", "--seeds", "0,1",
           "--set", "train_limit=1024,test_limit=500,num_epochs=1,parallel=single",
           "--out", str(tmp_path), "--workdir_root", str(tmp_path / "runs")], data_dir)
  assert p.returncode == 0, p.stderr[-2000:]
  res = json.load(open(tmp_path / "accuracy_cpu.json"))
  (row,) = res["rows"]
  assert len(row["runs"]) == 2 and 0.1 < row["mean"] <= 1.0 and row["std"] is not None
  assert "| kmnist_logreg | kmnist | 2 |" in (tmp_path / "accuracy_cpu.md").read_text()
