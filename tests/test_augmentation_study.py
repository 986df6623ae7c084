"""experiments/augmentation_study.py end to end at tiny size, restart, and bad input."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from kmnist_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REDUCED = "experiments/configs/augment_study_reduced.py"
TINY = ["--config.train_limit=512", "--config.test_limit=500", "--config.batch_size=64",
        "--config.eval_batch_size=250", "--config.num_epochs=1",
        "--config.parallel=single", "--config.study.datasets=('kmnist',)",
        "--config.study.seeds=(0,)", "--config.study.measure_costs=False",
        "--config.study.policies=('none','crop(pad=2)+mixup')"]


def study(workdir, *extra, data_dir):
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir, XLA_FLAGS="")
  cmd = [sys.executable, "experiments/augmentation_study.py", f"--config={REDUCED}",
         f"--workdir={workdir}", *TINY, *extra]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)


def load_script():
  sys.path.insert(0, os.path.join(REPO, "experiments"))
  spec = importlib.util.spec_from_file_location(
      "augmentation_study", os.path.join(REPO, "experiments", "augmentation_study.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def load_config(name):
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(REPO, "experiments", "configs", f"{name}.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def test_tiny_study_end_to_end_then_skips_finished_runs(data_dir, tmp_path):
  wd = tmp_path / "study"
  p = study(wd, data_dir=data_dir)
  assert p.returncode == 0, p.stderr[-3000:]
  summary = json.load(open(wd / "results.json"))
  rows = {r["label"]: r for r in summary["rows"]}
  assert set(rows) == {"none", "crop+mixup"}
  for r in rows.values():
    assert r["seeds"] == [0] and 0.2 < r["mean"] <= 1.0 and r["dataset"] == "kmnist"
    assert len(r["per_class_mean"]) == 10
  gain = rows["crop+mixup"]
  assert len(gain["per_class_gain"]) == 10
  assert gain["delta_mean"] == pytest.approx(gain["mean"] - rows["none"]["mean"])
  md = open(wd / "results.md").read()
  assert "| `crop+mixup` | 1 |" in md and "| `none` | 1 |" in md
  assert "tsu" in md and "crop(pad=2,p=1)+mixup(alpha=0.2,p=1)" in md
  for png in ("samples_kmnist.png", "per_class_gain_kmnist.png"):
    assert open(wd / png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", png
  run_dir = wd / "runs" / "kmnist" / "crop+mixup" / "seed0"
  assert (run_dir / "study_run.json").exists()
  assert json.load(open(run_dir / "results.json"))["finished"]

  # The same command again trains nothing and writes the same table.
  mtime = os.path.getmtime(run_dir / "results.json")
  p = study(wd, data_dir=data_dir)
  assert p.returncode == 0, p.stderr[-3000:]
  assert p.stdout.count("skipped") == 2, p.stdout[-2000:]
  assert os.path.getmtime(run_dir / "results.json") == mtime
  again = {r["label"]: r["mean"] for r in json.load(open(wd / "results.json"))["rows"]}
  assert again == {k: r["mean"] for k, r in rows.items()}


def test_bad_policy_fails_in_one_line_before_anything_loads(tmp_path):
  p = study(tmp_path, "--config.study.policies=('none','afine(rot=15)')",
            data_dir=str(tmp_path / "nowhere"))
  assert p.returncode == 2, p.stderr[-2000:]
  errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, p.stderr[-2000:]
  assert "'afine'" in errors[0] and "affine, elastic" in errors[0]
  assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("field,value,needle", [
    ("policies", ("none", "cutout(size=-3)"), "0 <= size <= 28"),
    ("policies", ("affine",), "must include 'none'"),
    ("datasets", ("kmnist", "cifar"), "'cifar'"),
    ("seeds", (), "seeds is empty"),
])
def test_plan_rejects_bad_study_configs(field, value, needle):
  mod = load_script()
  cfg = load_config("augment_study_reduced")
  cfg.study[field] = value
  with pytest.raises(UserError, match=needle) as e:
    mod.plan(cfg)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["augment_study_reduced", "augment_study_full"])
def test_study_configs_plan_every_run(name):
  mod = load_script()
  cfg = load_config(name)
  policies, runs = mod.plan(cfg)
  st = cfg.study
  assert len(runs) == len(st.policies) * len(st.datasets) * len(st.seeds)
  assert len(st.seeds) >= 3 and set(st.datasets) == {"mnist", "kmnist"}
  assert len({p["label"] for p in policies}) == len(policies)
  first = runs[0]["config"]
  assert "study" not in first and first.augment == ""
  assert {r["config"].augment for r in runs} - {""} == set(st.policies) - {"none"}
