"""The corruption and attack evaluators on a small model trained on real KMNIST, 200 test
images, 2 corruptions x 2 severities: the identity column is the clean accuracy exactly,
the mCE arithmetic is the baseline's errors divided as defined, a precomputed baseline
gives the same numbers as a baseline workdir, summaries are mean / std across seeds,
eps = 0 is the clean accuracy and accuracy falls with eps; bad settings are one line."""

from __future__ import annotations

import numpy as np
import pytest
from test_mce import kmnist_test, trained

from kmnist_jax import inference, train
from kmnist_jax.errors import UserError
from kmnist_jax.evaluators import attack, corruption
from kmnist_jax.robustness import mce, sets

N = 200
SETTINGS = dict(corruptions="identity,fog,inverse", severities=(1, 5), limit=N)


@pytest.fixture(scope="module")
def setup(data_dir, tmp_path_factory):
  cache = str(tmp_path_factory.mktemp("corrupted"))
  cnn = train.restore_model(trained(data_dir), "latest")
  base_dir = trained(data_dir, "logreg")
  kw = dict(data_dir=data_dir, cache_dir=cache, **SETTINGS)
  rec = corruption.run(cnn, baseline={"kmnist": base_dir}, baseline_step="latest", **kw)
  images, labels = kmnist_test(data_dir, N)
  return cnn, base_dir, kw, rec, images, labels


def test_identity_is_clean_and_mce_arithmetic(setup):
  cnn, base_dir, kw, rec, images, labels = setup
  clean_error = float((inference.predict(cnn, images) != labels).mean())
  assert rec["examples"] == N and rec["clean_error"] == clean_error
  assert rec["errors"]["identity"] == [clean_error, clean_error]
  assert 0.2 < 1 - clean_error < 1.0  # learned (chance is 0.1)
  assert rec["errors"]["inverse"][1] > clean_error + 0.2
  # CE / mCE from the two error tables, by the definitions (identity left out).
  b = rec["baseline"]
  ce = {n: sum(rec["errors"][n]) / sum(b["errors"][n]) for n in ("fog", "inverse")}
  rel = {n: sum(e - clean_error for e in rec["errors"][n])
         / sum(e - b["clean_error"] for e in b["errors"][n]) for n in ("fog", "inverse")}
  assert rec["ce"] == pytest.approx(ce) and set(rec["ce"]) == {"fog", "inverse"}
  assert rec["mce"] == pytest.approx(np.mean(list(ce.values())))
  assert rec["relative_mce"] == pytest.approx(np.mean(list(rel.values())))
  assert rec["mean_corruption_error"] == pytest.approx(
      np.mean([np.mean(rec["errors"][n]) for n in ("fog", "inverse")]))
  # Per class: the class-count weighted mean is the overall accuracy, column by column.
  acc = np.asarray(rec["per_class"]["accuracy"])
  counts = np.bincount(labels, minlength=10)
  assert rec["per_class"]["columns"] == ["clean", "identity", "fog", "inverse"]
  np.testing.assert_allclose(counts @ acc / counts.sum(),
                             [1 - clean_error, 1 - clean_error,
                              1 - np.mean(rec["errors"]["fog"]),
                              1 - np.mean(rec["errors"]["inverse"])])


def test_baseline_given_as_numbers_or_itself(setup):
  cnn, base_dir, kw, rec, _, _ = setup
  b = rec["baseline"]
  given = corruption.run(cnn, baseline={"kmnist": {"clean_error": b["clean_error"],
                                                   "errors": b["errors"]}}, **kw)
  for k in ("mce", "relative_mce", "ce", "relative_ce"):
    assert given[k] == pytest.approx(rec[k]), k
  assert given["errors"] == rec["errors"]
  # The baseline against itself: every CE is exactly 1.
  logreg = train.restore_model(base_dir, "latest")
  own = corruption.run(logreg, baseline={"kmnist": base_dir}, baseline_step="latest",
                       **kw)
  assert own["mce"] == 1.0 and own["relative_mce"] == 1.0
  assert own["errors"] == b["errors"]


def test_summarize_across_seeds(setup):
  cnn, base_dir, kw, rec, _, _ = setup
  other = corruption.run(cnn, baseline={"kmnist": base_dir}, baseline_step="latest",
                         **{**kw, "seed": 1})
  assert other["corrupted_dir"].endswith("seed1-limit200")  # other corruption draws
  assert not np.array_equal(sets.load(other["corrupted_dir"], "fog", 5)[0],
                            sets.load(rec["corrupted_dir"], "fog", 5)[0])
  s = corruption.summarize([rec, other])
  assert s["runs"] == 2
  for k in ("mean_corruption_error", "mce", "relative_mce"):
    v = [rec[k], other[k]]
    assert s[k]["mean"] == pytest.approx(np.mean(v)), k
    assert s[k]["std"] == pytest.approx(np.std(v, ddof=1)), k
    assert s["per_seed"][k] == v
  np.testing.assert_allclose(s["ce"]["fog"]["mean"],
                             (rec["ce"]["fog"] + other["ce"]["fog"]) / 2)
  np.testing.assert_allclose(s["errors"]["inverse"]["mean"],
                             np.mean([rec["errors"]["inverse"],
                                      other["errors"]["inverse"]], 0))
  np.testing.assert_allclose(s["per_class"]["mean"], np.mean(
      [rec["per_class"]["accuracy"], other["per_class"]["accuracy"]], 0))
  with pytest.raises(UserError, match="differ in baseline"):
    corruption.summarize([rec, corruption.run(cnn, **kw)])
  with pytest.raises(UserError, match="differ in examples"):
    corruption.summarize([rec, {**other, "examples": 100}])


def test_attack_eps0_is_clean_and_monotone(setup, data_dir):
  cnn, _, _, _, images, labels = setup
  n = N // 2
  images, labels = images[:n], labels[:n]
  rec = attack.run(cnn, data_dir=data_dir, limit=n, epsilons=(0.0, 0.02, 0.1),
                   pgd_steps=3, seed=1)
  clean_acc = float((inference.predict(cnn, images) == labels).mean())
  assert rec["n"] == n
  for a in ("fgsm", "pgd"):
    acc = rec["attacks"][a]["accuracy"]
    assert acc[0] == pytest.approx(clean_acc, abs=1e-12)
    assert np.all(np.diff(acc) <= 0) and acc[-1] < acc[0] - 0.1, (a, acc)
    pc = np.asarray(rec["attacks"][a]["per_class"])
    counts = np.bincount(labels, minlength=10)
    np.testing.assert_allclose(pc @ counts / counts.sum(), acc)
  assert all(p <= f + 1e-12 for p, f in zip(rec["attacks"]["pgd"]["accuracy"],
                                            rec["attacks"]["fgsm"]["accuracy"]))
  s = attack.summarize([rec, rec])
  assert s["attacks"]["pgd"]["accuracy"]["mean"] == pytest.approx(
      rec["attacks"]["pgd"]["accuracy"])
  assert s["attacks"]["pgd"]["accuracy"]["std"] == [0.0] * 3


@pytest.mark.parametrize("mod, kw, match", [
    (corruption, {"severity": 3}, "unknown corruption evaluator setting 'severity'"),
    (corruption, {"severities": "1,6"}, "severity 6 is out of range"),
    (corruption, {"corruptions": "fog,fgo"}, "unknown corruption 'fgo'"),
    (corruption, {"corruptions": "identity"}, "besides 'identity'"),
    (corruption, {"limit": -1}, r"limit=-1 must be a non-negative integer"),
    (corruption, {"baseline": "kmnsit=/x"}, "unknown dataset 'kmnsit'"),
    (attack, {"attacks": "cw"}, "unknown attack 'cw'"),
    (attack, {"epsilons": "0,2"}, "epsilon 2.0 is out of range"),
    (attack, {"pgd_steps": 0}, "pgd steps must be a positive integer"),
])
def test_bad_settings_one_line(mod, kw, match):
  with pytest.raises(UserError, match=match) as e:
    mod.check_config(**kw)
  assert "\n" not in str(e.value)


def test_precomputed_baseline_must_match(setup):
  cnn, _, kw, rec, _, _ = setup
  with pytest.raises(UserError, match="no errors at severity 5"):
    corruption.run(cnn, baseline={"kmnist": {"clean_error": 0.3, "severities": [1, 3],
                                             "errors": rec["baseline"]["errors"]}}, **kw)
  with pytest.raises(UserError, match="baseline has no errors for inverse"):
    corruption.run(cnn, baseline={"kmnist": {"clean_error": 0.3, "errors": {
        "fog": [0.5, 0.6]}}}, **kw)
  assert mce.mce({"a": [0.1]}, {"a": [0.2]}) == 0.5
