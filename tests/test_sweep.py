"""launch/sweep.py: expansion, refusal of bad sweep files, and a real 2-run sweep that
tabulates, then resumes (finished runs skipped, an unfinished one resumed): the study
runner's cache rule."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from kmnist_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "launch", "sweep.py")


def _module():
  spec = importlib.util.spec_from_file_location("launch_sweep", SCRIPT)
  mod = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = mod   # dataclasses look their module up there
  spec.loader.exec_module(mod)
  return mod


sweep = _module()


def write(tmp_path, obj, name="s.json"):
  path = tmp_path / name
  path.write_text(json.dumps(obj))
  return str(path)


def cli(*args, data_dir="", timeout=600):
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir, XLA_FLAGS="")
  return subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_product_of_zipped_groups():
  s = {"config": "kmnist_cnn", "fixed": {},
       "product": [{"model": ["cnn", "mlp"], "learning_rate": [0.1, 0.2]},
                   {"seed": [0, 1, 2]}]}
  runs = sweep.expand(s)
  assert len(runs) == 6
  assert runs[0] == {"model": "cnn", "learning_rate": 0.1, "seed": 0}
  assert {(r["model"], r["learning_rate"]) for r in runs} == {("cnn", 0.1), ("mlp", 0.2)}
  assert sweep.run_name({"model_kwargs.widths": (8, 16), "seed": 0}) == "widths=8-16,seed=0"
  assert sweep.flag_value((8, 16)) == "(8,16)" and sweep.flag_value([4]) == "(4,)"


def test_example_sweeps_plan(tmp_path):
  for name in ("lr_x_seed.py", "model_x_lr.json"):
    _, runs = sweep.plan(os.path.join(REPO, "launch", "sweeps", name), str(tmp_path))
    assert len(runs) == 4, name
    assert len({r.workdir for r in runs}) == 4
    for r in runs:
      assert r.command[1].endswith("experiments/train.py")
      assert f"--workdir={r.workdir}" in r.command
      assert os.path.dirname(r.workdir) == str(tmp_path / "runs")


@pytest.mark.parametrize("obj,words", [
    ({"config": "experiments/configs/kmnist_cnn.py",
      "product": [{"lerning_rate": [0.1]}]},
     ["'lerning_rate'", "did you mean learning_rate"]),
    ({"config": "experiments/configs/kmnist_cnn.py", "fixed": {"model_kwargs.widht": [8]},
      "product": []}, ["'model_kwargs.widht'", "did you mean widths"]),
    ({"config": "experiments/configs/kmnist_cnn.py",
      "product": [{"seed": [0, 1], "learning_rate": [0.1]}]}, ["one length"]),
    ({"config": "experiments/configs/kmnist_cnn.py",
      "product": [{"learning_rate": [0.1, -1.0]}]}, ["learning_rate=-1.0", "> 0"]),
    ({"config": "nope", "product": []}, ["unknown config 'nope'", "kmnist_cnn"]),
    ({"config": "experiments/configs/kmnist_cnn.py", "grid": []}, ["grid", "product"]),
])
def test_bad_sweep_refused_before_any_run(tmp_path, obj, words):
  with pytest.raises(UserError) as e:
    sweep.sweep_main(write(tmp_path, obj), str(tmp_path / "wd"), log=lambda *_: None)
  for w in words:
    assert w in str(e.value), str(e.value)
  assert not (tmp_path / "wd").exists()


def test_cli_unknown_key_one_line(tmp_path):
  p = cli("--sweep", write(tmp_path, {"config": "experiments/configs/kmnist_cnn.py",
                                      "product": [{"sed": [0, 1]}]}),
          "--workdir", str(tmp_path / "wd"))
  assert p.returncode == 2, p.stderr
  errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "'sed'" in errors[0] and "seed" in errors[0]
  assert not (tmp_path / "wd").exists()


@pytest.mark.slow   # real (tiny) training runs
def test_sweep_runs_tabulates_and_resumes(data_dir, tmp_path):
  s = write(tmp_path, {
      "config": "kmnist_logreg",   # by name; the cheapest model to compile
      "fixed": {"train_limit": 1024, "test_limit": 500, "val_size": 0, "num_epochs": 1,
                "batch_size": 64, "eval_batch_size": 250, "tensorboard": False,
                "data_source": "files"},
      # Zipped: the third run cannot start (a batch larger than the training set).
      "product": [{"learning_rate": [0.003, 0.03, 0.01], "batch_size": [64, 64, 2048]}]})
  wd = tmp_path / "sweep"
  p = cli("--sweep", s, "--workdir", str(wd), "--parallel", "2", data_dir=data_dir)
  assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
  assert "2 done, 1 failed" in p.stdout
  assert "batch_size=2048 is larger than the training set" in p.stdout   # in the table
  names = ["learning_rate=0.003,batch_size=64", "learning_rate=0.03,batch_size=64"]
  bad = "learning_rate=0.01,batch_size=2048"
  assert p.stderr.strip().splitlines()[-1] == (
      f"error: 1 run(s) failed: {bad} (see their log.txt)")
  rows = list(csv.DictReader(open(wd / "results.csv")))
  assert [r["run"] for r in rows] == names + [bad]
  assert rows[2]["status"] == "failed" and rows[2]["test_accuracy"] == ""
  rows = rows[:2]
  _, runs = sweep.plan(s, str(wd))
  dirs = {r.name: r.workdir for r in runs}
  for r, name in zip(rows, names):
    assert os.path.basename(dirs[name]).startswith(name + "-")      # <name>-<key[:12]>
    res = json.load(open(os.path.join(dirs[name], "results.json")))
    rec = json.load(open(os.path.join(dirs[name], "record.json")))
    assert float(r["test_accuracy"]) == res["test_accuracy"] > 0.2   # chance: 0.1
    assert rec["results"]["test_accuracy"] == res["test_accuracy"]
    assert r["status"] == "done" and r["epochs"] == "1" and float(r["wall_s"]) > 0
    assert "Test accuracy:" in open(os.path.join(dirs[name], "log.txt")).read()
  md = (wd / "results.md").read_text()
  assert md.count("\n") == 5 and f"| {names[1]} | 0.03 | 64 | done |" in md
  # Again, after losing one run's record: the other is skipped, this one resumes
  # from its checkpoint (same numbers), nothing retrains.
  first = json.load(open(os.path.join(dirs[names[1]], "results.json")))
  os.remove(os.path.join(dirs[names[1]], "record.json"))
  p = cli("--sweep", s, "--workdir", str(wd), "--parallel", "2", data_dir=data_dir)
  assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
  assert "1 done, 1 cached, 1 failed" in p.stdout
  log0, log1 = (open(os.path.join(dirs[n], "log.txt")).read() for n in names)
  assert log0.count("== run ") == 1 and log1.count("== run ") == 2
  last = log1.split("== run ")[-1]
  assert "Resuming from" in last and "epoch 1/1" not in last
  assert json.load(open(os.path.join(dirs[names[1]], "results.json")))["test_accuracy"] \
      == first["test_accuracy"]
