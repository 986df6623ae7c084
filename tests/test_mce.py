"""Corruption robustness: the identity corruption reproduces the clean accuracy of a real
trained model, the CE / mCE arithmetic against a hand-computed example, per-class
accuracy against the confusion matrix, the robustness report (experiments/robustness.py:
the robustness preset through kmnist_jax.studies.evaluate.run, a column per workdir, the
corrupted-set cache kept in the report folder) end to end, and one clear line for each
bad input."""

from __future__ import annotations

import atexit
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np
import pytest
from test_train import run as train_run
from test_train import tiny

from kmnist_jax import data, inference, metrics, train
from kmnist_jax.errors import UserError
from kmnist_jax.evaluators import attack as attack_eval
from kmnist_jax.evaluators import corruption as corruption_eval
from kmnist_jax.experiments.configs.evals import robustness as robustness_preset
from kmnist_jax.robustness import corruptions, sets
from kmnist_jax.robustness import mce as rob
from kmnist_jax.studies import evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LIMIT = 1000  # == tiny()'s test_limit

_TRAINED: dict = {}


def kmnist_test(data_dir: str, n: int):
  """(images uint8 [n,28,28], labels int64 [n]): the first n KMNIST test examples."""
  s = data.load("kmnist", data_dir=data_dir, limit={"test": n}).splits["test"]
  return s.images, s.labels.astype(np.int64)


def trained(data_dir: str, kind: str = "cnn") -> str:
  """Workdir of a small model trained on real data (once per test session):
  'cnn' (KMNIST CNN), 'logreg' (KMNIST baseline), 'mnist_logreg'."""
  if kind not in _TRAINED:
    root = tempfile.mkdtemp(prefix="rob_")
    atexit.register(shutil.rmtree, root, True)
    wd = os.path.join(root, f"tiny_{kind}")
    if kind == "cnn":
      cfg = tiny(data_dir)
    else:
      cfg = tiny(data_dir, model="logreg", model_kwargs={}, train_limit=1024,
                 dataset="mnist" if kind == "mnist_logreg" else "kmnist")
    train_run(cfg, wd)
    _TRAINED[kind] = wd
  return _TRAINED[kind]


def robustness(workdirs, *, out, baseline=(), corrupted_dir=(), corruption_names="all",
               severities="1,2,3,4,5", limit=0, seed=0, attacks="fgsm,pgd",
               epsilons="0,0.1", pgd_steps=3, adv_limit=1000, step="best",
               progress=False, data_dir=None, log=lambda *_: None):
  """experiments/robustness.py's call, through its flag translation
  (experiments/configs/evals/robustness.py's from_flags): the corruption and attack
  evaluators on each workdir (a column each, named by its folder), baselines given by
  hand (strict), the corrupted sets built into and kept in `out`."""
  flags = types.SimpleNamespace(
      out=out, corruptions=corruption_names, severities=severities, limit=limit,
      seed=seed, batch_size=1000, step=step, baseline=list(baseline),
      corrupted_dir=list(corrupted_dir), adversarial=attacks, epsilons=epsilons,
      pgd_steps=pgd_steps, pgd_step_size=0.0, adv_limit=adv_limit,
      per_class_epsilon=0.1, cjk_font="none")
  cfg, out = robustness_preset.from_flags(flags, workdirs)
  for e in cfg["evals"].values():
    e["progress"] = progress
  return evaluate.run_config(workdirs, cfg, step=step, out=out, data_dir=data_dir,
                             by="workdir", side_by_side=True, keep=("corrupted",),
                             options={"corruption": {"table": "table"}}, log=log)


@pytest.fixture(scope="module")
def model_and_data(data_dir):
  wd = trained(data_dir)
  restored = train.restore_model(wd, "latest")
  images, labels = kmnist_test(data_dir, LIMIT)
  with open(os.path.join(wd, "results.json")) as f:
    results = json.load(f)
  return restored, images, labels, results


# ---- Arithmetic ------------------------------------------------------------------------

MODEL = {"a": [0.1, 0.3], "b": [0.2, 0.2]}
BASE = {"a": [0.2, 0.6], "b": [0.6, 0.4]}


def test_ce_mce_hand_computed():
  # CE_a = (0.1 + 0.3) / (0.2 + 0.6) = 0.5;  CE_b = (0.2 + 0.2) / (0.6 + 0.4) = 0.4
  assert rob.ce(MODEL["a"], BASE["a"]) == pytest.approx(0.5)
  assert rob.ces(MODEL, BASE) == pytest.approx({"a": 0.5, "b": 0.4})
  assert rob.mce(MODEL, BASE) == pytest.approx(0.45)
  # relative, clean errors 0.05 (model) and 0.1 (baseline):
  # a: (0.05 + 0.25) / (0.1 + 0.5) = 0.5;  b: (0.15 + 0.15) / (0.5 + 0.3) = 0.375
  assert rob.relative_ces(MODEL, 0.05, BASE, 0.1) == pytest.approx({"a": 0.5, "b": 0.375})
  assert rob.relative_mce(MODEL, 0.05, BASE, 0.1) == pytest.approx(0.4375)
  assert rob.corruption_errors(MODEL) == pytest.approx({"a": 0.2, "b": 0.2})
  assert rob.mean_corruption_error({"a": [0.1, 0.3], "b": [0.5, 0.7]}) == pytest.approx(
      0.4)
  s = rob.summary(MODEL, 0.05, BASE, 0.1)
  assert s["mce"] == pytest.approx(0.45) and s["relative_mce"] == pytest.approx(0.4375)
  assert s["undefined"] == {"ce": [], "relative_ce": []}
  # The baseline against itself: every CE is exactly 1.
  assert rob.mce(BASE, BASE) == 1.0 and rob.relative_mce(BASE, 0.1, BASE, 0.1) == 1.0


def test_undefined_ces_are_left_out():
  base = {"a": [0.2, 0.6], "flat": [0.1, 0.1]}   # 'flat' never moves from clean 0.1
  model = {"a": [0.1, 0.3], "flat": [0.3, 0.3]}
  r = rob.relative_ces(model, 0.05, base, 0.1)
  assert r["a"] == pytest.approx(0.5) and np.isnan(r["flat"])
  assert rob.relative_mce(model, 0.05, base, 0.1) == pytest.approx(0.5)
  assert rob.summary(model, 0.05, base, 0.1)["undefined"]["relative_ce"] == ["flat"]
  assert np.isnan(rob.ce([0.1], [0.0]))


def test_table_mismatch_is_one_line():
  with pytest.raises(UserError, match="baseline has no errors for b"):
    rob.mce(MODEL, {"a": [0.2, 0.6]})
  with pytest.raises(UserError, match="the model has 2 severities, the baseline 1"):
    rob.mce(MODEL, {"a": [0.2], "b": [0.3]})


# ---- On a trained model ----------------------------------------------------------------

def test_identity_corruption_gives_clean_accuracy(model_and_data):
  restored, images, labels, results = model_and_data
  ev = rob.evaluate(restored, labels,
                    lambda n, s: corruptions.apply(n, images, s, 0),
                    names=["identity"], severities=[1, 3, 5], clean=images,
                    progress=False)
  clean, table = rob.error_table(ev, labels)
  np.testing.assert_array_equal(ev["corrupted"]["identity"],
                                np.stack([ev["clean"]] * 3))
  assert table["identity"].tolist() == [clean] * 3
  # ... and equals training's own evaluation of the same 1000 test images.
  assert 1 - clean == pytest.approx(results["test_accuracy"], abs=1e-9)
  assert 0.3 < 1 - clean < 1.0  # learned (chance is 0.1)


def test_corruption_changes_predictions_and_per_class(model_and_data):
  restored, images, labels, _ = model_and_data
  ev = rob.evaluate(restored, labels,
                    lambda n, s: corruptions.apply(n, images, s, 0),
                    names=["inverse"], severities=[1], clean=images, progress=False)
  clean, table = rob.error_table(ev, labels)
  assert table["inverse"][0] > clean + 0.2   # white-on-black -> black-on-white
  pc = rob.per_class_accuracy(ev, labels, 10)
  assert pc["columns"] == ["clean", "inverse"]
  conf = metrics.confusion_matrix(labels, ev["clean"], 10)
  np.testing.assert_allclose(pc["accuracy"][:, 0], metrics.per_class(conf)["accuracy"])
  # Class-count weighted mean of per-class accuracy is the overall accuracy.
  counts = np.bincount(labels, minlength=10)
  assert (pc["accuracy"][:, 1] * counts).sum() / counts.sum() == pytest.approx(
      1 - table["inverse"][0])


# ---- The script ------------------------------------------------------------------------

def test_bad_inputs_one_line():
  with pytest.raises(UserError, match=r"unknown corruption 'nope'; valid choices: .*fog"):
    sets.parse_corruptions("fog,nope")
  with pytest.raises(UserError, match="severity 6 is out of range; valid choices: 1, 2"):
    sets.parse_severities("1,6")
  with pytest.raises(UserError, match="severity 0 is out of range"):
    sets.parse_severities("0")
  with pytest.raises(UserError, match="must be comma-separated integers"):
    sets.parse_severities("1,x")
  with pytest.raises(UserError, match="identity' is the clean column"):
    sets.parse_corruptions("identity")
  assert sets.parse_corruptions("identity,fog", allow_identity=True) == (
      "identity", "fog")
  with pytest.raises(UserError, match="unknown attack 'cw'"):
    attack_eval.parse_attacks("fgsm,cw")
  with pytest.raises(UserError, match="unknown dataset 'kmnsit'"):
    corruption_eval.parse_dataset_dirs("kmnsit=/x", "--baseline")
  with pytest.raises(UserError, match="names two entries for kmnist"):
    corruption_eval.parse_dataset_dirs("kmnist=/a,kmnist:/b", "--baseline")
  with pytest.raises(UserError, match="entry '/a' names no dataset; write DATASET=DIR"):
    corruption_eval.parse_dataset_dirs(["/a"], "--baseline")
  # One syntax, DATASET=DIR; the older DATASET:DIR reads the same; a bare DIR is inferred.
  assert corruption_eval.parse_dataset_dirs("kmnist=/a,mnist:/b") == {
      "kmnist": "/a", "mnist": "/b"}
  assert corruption_eval.parse_dataset_dirs(["/x/w"], infer=lambda p: "mnist") == {
      "mnist": "/x/w"}
  assert attack_eval.parse_attacks("none") == ()
  assert sets.parse_severities("3,1") == (1, 3)


def test_baseline_for_another_dataset_refused(data_dir, tmp_path):
  cnn, mnist_base = trained(data_dir), trained(data_dir, "mnist_logreg")
  kw = dict(out=str(tmp_path / "o"), data_dir=data_dir)
  with pytest.raises(UserError, match=r"baseline .*tiny_mnist_logreg was trained on "
                                      r"mnist, not kmnist"):
    robustness([cnn], baseline=[f"kmnist={mnist_base}"], **kw)
  with pytest.raises(UserError, match=r"^baseline .*tiny_mnist_logreg is for mnist but "
                                      r"the models are evaluated on kmnist"):
    robustness([cnn], baseline=[mnist_base], **kw)
  assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("flag, line", [
    ("--severities=1,6",
     "error: severity 6 is out of range; valid choices: 1, 2, 3, 4, 5"),
    ("--baseline=kmnsit=/x", "error: --baseline kmnsit=/x: unknown dataset 'kmnsit'; "
                             "valid choices: fashion_mnist, k49, kmnist, mnist (write "
                             "DATASET=DIR)"),
    ("--adversarial=fgsm,cw", "error: unknown attack 'cw'; valid choices: apgd-ce, "
                              "apgd-dlr, apgd-t, autoattack, both, fgsm, none, pgd, "
                              "square"),
])
def test_script_bad_flag_is_one_line(tmp_path, flag, line):
  p = subprocess.run([sys.executable, os.path.join(REPO, "experiments", "robustness.py"),
                      f"--workdirs={tmp_path}", flag, f"--out={tmp_path / 'o'}"],
                     capture_output=True, text=True, timeout=300)
  assert p.returncode == 2, p.stderr
  err = [line for line in p.stderr.splitlines() if line.strip()]
  assert err == [line], err
  assert not os.path.exists(tmp_path / "o")


def test_script_end_to_end(data_dir, tmp_path):
  """The library call experiments/robustness.py makes, on a tiny subset."""
  cnn, base = trained(data_dir), trained(data_dir, "logreg")
  out = tmp_path / "rob"
  res = robustness([cnn], baseline=[f"kmnist:{base}"], out=str(out), data_dir=data_dir,
                   corruption_names="fog,inverse", severities="1,5", limit=300,
                   adv_limit=100, epsilons="0,0.1", pgd_steps=3, step="latest")
  assert res["out"] == str(out)
  m = json.load(open(out / "metrics.json"))
  # One run per workdir, its records by evaluator; the examples of each dataset.
  m["models"] = [r["records"] for r in m["runs"]]
  m["datasets"] = {r["corruption"]["dataset"]: r["corruption"] for r in m["models"]}
  files = set(os.listdir(out))
  assert {"report.md", "metrics.json", "table.csv", "table.md", "table.json",
          "attack.csv", "attack.md", "attack.json", "attack_per_class.csv",
          "attack_per_class.md", "attack_per_class.json", "corrupted",
          "corruption_grid_kmnist.png", "error_vs_severity_kmnist.png",
          "per_class_corruption_tiny_cnn.png",
          "per_class_corruption_tiny_logreg__baseline_.png",
          "accuracy_vs_epsilon.png", "robust_per_class_tiny_cnn.png"} == files, files
  for f in files:
    if f.endswith(".png"):
      assert os.path.getsize(out / f) > 2000
      assert f"![{f[:-4]}]({f})" in open(out / "report.md").read()
  assert m["meta"]["git"]["commit"] and m["datasets"]["kmnist"]["examples"] == 300
  (model,) = m["models"]
  cnn_rec, base_rec = model["corruption"], model["corruption"]["baseline"]
  assert base_rec["workdir"] == os.path.abspath(base)
  # The report's numbers are the library's arithmetic on its own error tables.
  assert cnn_rec["mce"] == pytest.approx(rob.mce(
      {k: v for k, v in cnn_rec["errors"].items()}, base_rec["errors"]))
  assert cnn_rec["relative_mce"] == pytest.approx(rob.relative_mce(
      cnn_rec["errors"], cnn_rec["clean_error"], base_rec["errors"],
      base_rec["clean_error"]))
  # The clean error equals an independent evaluation of the first 300 test images.
  restored = train.restore_model(cnn, "latest")
  images, labels = kmnist_test(data_dir, 300)
  assert cnn_rec["clean_error"] == pytest.approx(
      rob.error_rate(inference.predict(restored, images), labels))
  adv = model["attack"]["attacks"]
  for a in ("fgsm", "pgd"):
    acc = adv[a]["accuracy"]
    assert acc[0] == pytest.approx(1 - rob.error_rate(
        inference.predict(restored, images[:100]), labels[:100]))
    assert acc[1] <= acc[0]
  rows = list(csv.reader(open(out / "table.csv")))
  assert rows[0] == ["model", "dataset", "clean error", "fog", "inverse",
                     "mean corruption error", "mCE", "relative mCE"]
  assert rows[1][:2] == ["tiny_cnn", "kmnist"]
  assert float(rows[1][2]) == pytest.approx(cnn_rec["clean_error"])
  assert rows[2][0] == "tiny_logreg (baseline)"
  assert [float(v) for v in rows[2][-2:]] == [1.0, 1.0]  # the baseline against itself
  assert float(rows[1][-2]) == pytest.approx(cnn_rec["mce"])
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temp folders
  # Re-running reuses the corrupted sets kept in the output folder.
  built = json.load(open(out / "corrupted" / "kmnist-test-seed0-limit300" /
                         "manifest.json"))
  assert set(built["corruptions"]) == {"fog", "inverse"}
  # A prebuilt set (--corrupted_dir) gives the same numbers; one missing set is refused.
  pre = str(out / "corrupted" / "kmnist-test-seed0-limit300")
  kw = dict(baseline=[base], out=str(tmp_path / "rob2"), data_dir=data_dir, limit=300,
            severities="1,5", attacks="none", step="latest", corrupted_dir=[pre])
  again = robustness([cnn], corruption_names="inverse,fog", **kw)
  again = again["runs"][0]["records"]["corruption"]
  assert list(again["errors"]) == ["inverse", "fog"]
  for k in ("inverse", "fog"):
    np.testing.assert_allclose(again["errors"][k], cnn_rec["errors"][k])
  with pytest.raises(UserError,
                     match=r"lacks 2 of the requested sets \(rotate 1, rotate 5\)"):
    robustness([cnn], corruption_names="fog,rotate", **kw)
