"""kmnist_jax.studies.evaluate and experiments/evaluate.py end to end on real tiny
checkpoints: records per evaluator, seeds grouped as mean ± std, MNIST beside KMNIST,
one report folder (default inside the first workdir); bad input is one error line."""

import json
import os
import shutil

import pytest
import tiny_runs

from kmnist_jax.errors import UserError
from kmnist_jax.studies import evaluate

PRESET = "experiments/configs/evals/classification.py"


@pytest.fixture(scope="module")
def workdirs(data_dir, tmp_path_factory):
  """Copies of the tiny KMNIST run (twice: as two seeds) and of the tiny MNIST run."""
  root = tmp_path_factory.mktemp("evaluate")
  kmnist = tiny_runs.workdir(tmp_path_factory, data_dir, "kmnist")
  mnist = tiny_runs.workdir(tmp_path_factory, data_dir, "mnist")
  out = []
  for name, src in (("kmnist_a", kmnist), ("kmnist_b", kmnist), ("mnist", mnist)):
    shutil.copytree(src, root / name)
    out.append(str(root / name))
  return out


def test_evaluate_returns_one_record_per_evaluator(workdirs, data_dir):
  recs = evaluate.evaluate(workdirs[0], {"test": {"type": "classification", "limit": 200},
                                         "sim": {"type": "cka", "examples": 50}},
                           step="latest", data_dir=data_dir)
  assert sorted(recs) == ["sim", "test"]
  assert recs["test"]["n"] == 200 and recs["test"]["workdir"] == workdirs[0]
  assert recs["sim"]["models"] == ["kmnist_a", "random init"]
  with pytest.raises(UserError, match="unknown evaluator type"):
    evaluate.evaluate(workdirs[0], {"x": {"type": "nope"}})


def test_script_end_to_end(workdirs, data_dir):
  p = tiny_runs.script("evaluate.py", "--workdirs=" + ",".join(workdirs),
                       f"--config={PRESET}", "--step=latest", "--split=validation",
                       "--config.evals.classification.limit=200",
                       "--config.cjk_font=none", data_dir=data_dir)
  assert p.returncode == 0, p.stderr[-3000:]
  out = os.path.join(workdirs[0], "evaluation", "classification")  # the default
  assert f"report: {out}/report.md" in p.stdout
  md = open(os.path.join(out, "report.md")).read()
  assert md.startswith("# Classification\n")
  for text in ("## Runs", "## Comparison", "| # | kmnist class | mnist class | "
               "cnn on kmnist (2 seeds) | cnn on mnist |", "## cnn on mnist: Per class"):
    assert text in md, text
  for link in [ln.split("](")[1].rstrip(")") for ln in md.splitlines()
               if ln.startswith("![")]:
    assert os.path.isfile(os.path.join(out, link)), link
  m = json.load(open(os.path.join(out, "metrics.json")))
  assert "versions" in m["meta"] and "evaluate.py" in m["meta"]["command"]
  assert [r["workdir"] for r in m["runs"]] == workdirs
  groups = m["summaries"]["classification"]
  assert list(groups) == ["cnn on kmnist (2 seeds)", "cnn on mnist"]
  kmnist = groups["cnn on kmnist (2 seeds)"]
  assert kmnist["runs"] == 2 and kmnist["split"] == "validation" and kmnist["n"] == 200
  assert kmnist["accuracy"]["std"] == 0.0  # the same checkpoint twice
  rows = open(os.path.join(out, "comparison.csv")).read().splitlines()
  assert rows[0] == "#,class_kmnist,class_mnist,m0,m1" and len(rows) == 1 + 10 + 3
  assert not [f for f in os.listdir(os.path.dirname(out)) if f.startswith(".")]


def test_script_bad_input_is_one_line_exit_2(workdirs, data_dir, tmp_path):
  cases = [
      (["--step=bst"], "--step='bst' is not valid"),
      (["--config.evals.classification.type=nope"],
       "unknown evaluator type (config.evals.classification.type) 'nope'"),
      ([f"--workdirs={tmp_path}/none"], "does not exist"),
  ]
  for args, want in cases:
    p = tiny_runs.script("evaluate.py", f"--workdirs={workdirs[0]}", f"--config={PRESET}",
                         *args, data_dir=data_dir)
    errors = tiny_runs.error_lines(p.stderr)
    assert p.returncode == 2 and len(errors) == 1, p.stderr[-2000:]
    assert want in errors[0] and "Traceback" not in p.stderr, errors
  assert not os.path.exists(os.path.join(workdirs[0], "evaluation", "evaluation"))


def test_library_bad_input():
  with pytest.raises(UserError, match="--workdirs is empty"):
    evaluate.run([], {"c": {"type": "classification"}})
  with pytest.raises(UserError, match="unknown split 'tset' .--split.; valid choices: "
                                      "test, validation, train"):
    evaluate.with_overrides({"c": {"type": "classification"}}, split="tset")
  assert evaluate.with_overrides({"c": {"type": "classification"},
                                  "k": {"type": "cka"}}, dataset="mnist", split="train"
                                 ) == {"c": {"type": "classification", "dataset": "mnist",
                                             "split": "train"},
                                       "k": {"type": "cka", "dataset": "mnist"}}
