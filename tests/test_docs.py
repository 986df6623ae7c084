"""The README's configs table is generated from the measured results and cannot drift."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "configs_table.py")


def _run(*args):
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        cwd=REPO)


def test_table_is_generated_from_results_and_checked(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text("# x\n\n<!-- configs:begin -->\nold\n<!-- configs:end -->\n\nrest\n")
  r = _run(f"--readme={readme}", "--check")
  assert r.returncode == 1 and "stale" in r.stderr
  r = _run(f"--readme={readme}")
  assert r.returncode == 0, r.stderr
  text = readme.read_text()
  assert text.startswith("# x\n") and text.endswith("\n\nrest\n")
  rows = [line for line in text.splitlines() if line.startswith("| `")]
  names = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "experiments", "configs"))
                 if f.endswith(".py") and not f.startswith("_"))
  listed = [row.split("`")[1] for row in rows]
  assert set(listed) <= set(names) and "kmnist_cnn" in listed and "mnist_logreg" in listed
  assert not any(n.startswith(("augment_study", "transfer_")) for n in listed)
  kmnist_cnn = next(row for row in rows if row.startswith("| `kmnist_cnn`"))
  assert "96.08% ± 0.26](results/accuracy_gpu_h100.md) (3 seeds, 8 s)" in kmnist_cnn
  assert _run(f"--readme={readme}", "--check").returncode == 0


def test_readme_table_is_up_to_date():
  r = _run("--check")
  assert r.returncode == 0, r.stderr


def test_no_block_is_one_line(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text("no table here\n")
  r = _run(f"--readme={readme}")
  assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr
