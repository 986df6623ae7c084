"""The robust-training study (kmnist_jax.studies.robust_training): its script end to end
at tiny size on real MNIST (plain and PGD training, the ensemble, mCE against the
logistic-regression baseline, smoothing), the summary checked against the records it
was made from, the cache, and bad input."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from script_checks import assert_rerun_trains_nothing, one_error_line

from kmnist_jax import config as config_lib
from kmnist_jax import metrics, train
from kmnist_jax.errors import UserError
from kmnist_jax.studies import plan as plan_lib
from kmnist_jax.studies import robust_training as rt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "experiments/configs/studies/robust_training.py"
TINY = ["--config.train_limit=512", "--config.test_limit=500", "--config.batch_size=64",
        "--config.eval_batch_size=250", "--config.num_epochs=1",
        "--config.parallel=single", "--config.model=logreg", "--config.model_kwargs={}",
        "--config.adversarial.check_images=32",
        "--config.adversarial.check_steps=2", "--config.adversarial.eps_warmup_epochs=0",
        "--config.study.datasets=('mnist',)", "--config.study.seeds=(0,1)",
        "--config.study.methods=('none','pgd')",
        "--config.study.overrides.pgd.adversarial.steps=2",
        "--config.study.epsilons.mnist=(0.0,0.1,0.3)",
        "--config.evals.attack.limit=24", "--config.evals.attack.apgd_steps=4",
        "--config.evals.attack.apgd_targets=1", "--config.evals.attack.square_queries=8",
        "--config.evals.corruption.corruptions=shot_noise,fog",
        "--config.evals.corruption.severities=(1,)",
        "--config.evals.corruption.limit=64", "--config.evals.smoothing.n0=8",
        "--config.evals.smoothing.n=40", "--config.evals.smoothing.limit=12"]


# The mCE baseline at the study's tiny size: the committed MNIST logistic regression
# (study.baseline_config), one epoch on 512 images instead of ten on 55,000. What is
# tested is the study's plumbing: the summary's mCE is checked against the records.
TINY_BASELINE = '''from kmnist_jax import config as config_lib


def get_config():
  c = config_lib.load_file("mnist_logreg")
  c.train_limit, c.test_limit, c.num_epochs, c.parallel = 512, 500, 1, "single"
  return c
'''


def tiny_baseline(folder) -> str:
  """--config.study.baseline_config=<a tiny copy of mnist_logreg in `folder`>."""
  path = os.path.join(folder, "mnist_logreg_tiny.py")
  with open(path, "w") as f:
    f.write(TINY_BASELINE)
  return f"--config.study.baseline_config={path}"


def study(workdir, *extra, data_dir):
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir, XLA_FLAGS="", PYTHONPATH=REPO)
  cmd = [sys.executable, "experiments/robust_training_study.py", f"--config={CONFIG}",
         f"--workdir={workdir}", *TINY, *extra]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=900)


def _cfg(**study):
  cfg = config_lib.load_file(CONFIG)
  for k, v in study.items():
    if k == "overrides":       # one method's entry replaced, the others kept
      for m, o in v.items():
        cfg.study.overrides[m] = o
    else:
      cfg.study[k] = v
  return cfg


@pytest.mark.slow   # real (tiny) training runs and attacks
def test_tiny_study_end_to_end_summary_equals_its_records(data_dir, tmp_path):
  wd = tmp_path / "study"
  baseline = tiny_baseline(tmp_path)
  p = study(wd, "--parallel=1", baseline, data_dir=data_dir)
  assert p.returncode == 0, p.stderr[-3000:]
  out = wd / "report"
  rows = list(csv.DictReader(open(out / "table.csv")))
  assert list(rows[0]) == list(rt.TABLE_COLUMNS)
  by = {r["method"]: r for r in rows}
  assert set(by) == {"none", "pgd"} and all(r["seeds"] == "2" for r in rows)
  assert by["pgd"]["train_eps"] == "0.3" and by["none"]["train_eps"] == ""

  # Every number of the summary, recomputed from the records it was made from.
  recs = {}
  for f in (wd / "runs").glob("*/record.json"):
    rec = json.load(open(f))
    recs[f.parent.name.rsplit("-", 1)[0]] = rec
  assert sorted(recs) == ["baseline-mnist", "mnist-none-s0", "mnist-none-s1",
                          "mnist-pgd-s0", "mnist-pgd-s1"]
  # Every evaluator read the run's best checkpoint (the most robust to the PGD check),
  # and the record says how long evaluation took beside training.
  for f in (wd / "runs").glob("*/record.json"):
    rec = json.load(open(f))
    for name, ev in rec["evals"].items():
      assert ev["record"]["step"] == train.best_step(str(f.parent)), (f, name)
    assert rec["wall_s"] > 0 and (rec.get("eval_s", 0) > 0) == bool(rec["evals"])
  pgd0 = recs["mnist-pgd-s0"]
  assert pgd0["config"]["adversarial"]["method"] == "pgd"
  assert pgd0["config"]["adversarial"]["eps"] == 0.3
  assert pgd0["config"]["adversarial"]["steps"] == 2
  assert recs["mnist-none-s0"]["config"]["adversarial"]["method"] == "none"
  summary = json.load(open(out / "metrics.json"))["robust_training_study"]
  srow = {r["method"]: r for r in summary["rows"]}

  def robust(rec, eps):
    a = rec["evals"]["attack"]["record"]
    assert a["epsilons"] == [0.0, 0.1, 0.3]
    return a["attacks"]["autoattack"]["accuracy"][a["epsilons"].index(eps)]

  for m in ("none", "pgd"):
    r0, r1 = recs[f"mnist-{m}-s0"], recs[f"mnist-{m}-s1"]
    for name, fn in (("clean_acc", lambda r: r["evals"]["corruption"]["record"][
                                      "clean_accuracy"]),
                     ("robust_acc", lambda r: robust(r, 0.3)),
                     ("robust@0.1", lambda r: robust(r, 0.1)),
                     ("mce", lambda r: r["evals"]["corruption"]["record"]["mce"]),
                     ("acr", lambda r: r["evals"]["smoothing"]["record"]["results"][0][
                         "average_certified_radius"])):
      vals = [fn(r0), fn(r1)]
      assert srow[m][f"{name}_mean"] == pytest.approx(np.mean(vals)), (m, name)
      assert srow[m][f"{name}_std"] == pytest.approx(np.std(vals, ddof=1)), (m, name)
      if m == "pgd":
        base = [fn(recs["mnist-none-s0"]), fn(recs["mnist-none-s1"])]
        d = metrics.paired(vals, base)
        assert srow[m][f"{name}_delta_mean"] == pytest.approx(d["mean"]), name
        assert srow[m][f"{name}_delta_significant"] == d["significant"], name
    pc = np.array([r["evals"]["attack"]["record"]["attacks"]["autoattack"]["per_class"][2]
                   for r in (r0, r1)], dtype=np.float64)       # None (no image): nan
    seen = (~np.isnan(pc)).sum(0)                                # seeds with images
    want = [None if k == 0 else t / k for t, k in zip(np.nansum(pc, 0), seen)]
    assert srow[m]["per_class_robust"] == pytest.approx(want)
  # Robust accuracy never above clean, never rising with eps (per run, by the ensemble).
  for rec in recs.values():
    if "attack" in rec.get("evals", {}):
      acc = rec["evals"]["attack"]["record"]["attacks"]["autoattack"]["accuracy"]
      assert all(a >= b for a, b in zip(acc, acc[1:]))
  md = open(out / "report.md").read()
  assert "| `pgd` | 2 |" in md and "| `none` | 2 |" in md and "robust accuracy" in md
  for png in ("clean_vs_robust_mnist.png", "robust_vs_eps_mnist.png",
              "per_class_robust_mnist.png", "certified_mnist.png"):
    assert open(out / png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", png

  # The same command again trains and attacks nothing and writes the same table.
  assert_rerun_trains_nothing(lambda: study(wd, baseline, data_dir=data_dir),
                              sorted((wd / "runs").glob("*/record.json")), 5,
                              out / "table.csv", rows)


def test_bad_method_override_fails_in_one_line_before_anything_loads(tmp_path):
  p = study(tmp_path / "w", "--config.study.overrides.pgd.adversarial.method=pgdd",
            data_dir=str(tmp_path / "nowhere"))
  error = one_error_line(p)
  assert "'pgdd'" in error and "fgsm_rs, pgd, trades" in error
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("field,value,needle", [
    ("methods", ("pgd", "trades"), "must include 'none'"),
    ("methods", ("none", "pgd", "pgd"), "names a method twice"),
    ("methods", ("none", "pgdx"), "'pgdx' has no entry in config.study.overrides"),
    ("overrides", {"pgd": {"adversarail": {"steps": 3}}}, "unknown training-config field"),
    ("train_eps", {"mnist": 0.3}, "no entry for dataset 'kmnist'"),
    ("train_eps", {"mnist": 1.5, "kmnist": 0.1}, "0 <= eps <= 1"),
    ("epsilons", {"mnist": (0.0, 0.3, 0.1), "kmnist": (0.0, 0.1)}, "increasing"),
    ("datasets", ("mnist", "cifar"), "unknown dataset 'cifar'"),
    ("seeds", (), "seeds is empty"),
])
def test_plan_rejects_bad_study_configs(field, value, needle):
  with pytest.raises(UserError, match=needle):
    rt.plan(_cfg(**{field: value}))


def test_committed_config_plans_every_method_with_its_eps_and_evaluators():
  p = rt.plan(config_lib.load_file(CONFIG), "/tmp/robust_training_plan")
  names = [r.name for r in p.runs]
  assert names[:2] == ["baseline-mnist", "baseline-kmnist"]
  assert len(names) == 2 + 5 * 2 * 3
  for r in p.runs[2:]:
    ds, method = r.info["dataset"], r.info["label"]
    a = r.config["adversarial"]
    if method in ("fgsm_rs", "pgd", "trades"):
      assert a["method"] == method and a["eps"] == {"mnist": 0.3, "kmnist": 0.1}[ds]
    else:
      assert a["method"] == "none"
    assert (r.config["augment"] == "noise(std=0.25)") == (method == "noise")
    assert r.evals["attack"]["epsilons"] == (
        (0.0, 0.1, 0.2, 0.3) if ds == "mnist" else (0.0, 0.05, 0.1, 0.2))
    assert r.evals["corruption"]["baseline"] == {ds: plan_lib.REF + f"baseline-{ds}"}
    assert set(r.evals) == {"attack", "corruption", "smoothing"}
  # Every run has its own key: no two methods collapse to one cached run.
  assert len({r.key for r in p.runs}) == len(p.runs)
