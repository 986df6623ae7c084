"""kmnist_jax.metrics: hand-computed small cases, and scikit-learn on random labels."""

import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from kmnist_jax import metrics
from kmnist_jax.errors import UserError

# 3 classes, 8 examples.
Y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
P = np.array([0, 1, 1, 1, 1, 2, 0, 2])
CONF = np.array([[1, 2, 0],
                 [0, 2, 0],
                 [1, 0, 2]])


def test_confusion_by_hand():
  np.testing.assert_array_equal(metrics.confusion_matrix(Y, P, 3), CONF)
  np.testing.assert_allclose(metrics.normalize_rows(CONF),
                             [[1 / 3, 2 / 3, 0], [0, 1, 0], [1 / 3, 0, 2 / 3]])
  # An empty row (class without examples) normalises to zeros, not nan.
  np.testing.assert_array_equal(metrics.normalize_rows([[0, 0], [1, 1]]),
                                [[0, 0], [0.5, 0.5]])


def test_per_class_by_hand():
  pc = metrics.per_class(CONF)
  np.testing.assert_array_equal(pc["support"], [3, 2, 3])
  np.testing.assert_array_equal(pc["predicted"], [2, 4, 2])
  np.testing.assert_array_equal(pc["correct"], [1, 2, 2])
  np.testing.assert_allclose(pc["accuracy"], [1 / 3, 1, 2 / 3])
  np.testing.assert_allclose(pc["recall"], pc["accuracy"])
  np.testing.assert_allclose(pc["precision"], [1 / 2, 2 / 4, 2 / 2])
  # F1 = 2PR/(P+R): class 0: 2*(1/2)(1/3)/(5/6) = 0.4; class 1: 2/3; class 2: 0.8.
  np.testing.assert_allclose(pc["f1"], [0.4, 2 / 3, 0.8])
  assert metrics.balanced_accuracy(CONF) == pytest.approx((1 / 3 + 1 + 2 / 3) / 3)


def test_empty_classes():
  conf = np.array([[2, 0, 0], [0, 0, 0], [1, 0, 0]])  # class 1 absent, never predicted
  pc = metrics.per_class(conf)
  assert math.isnan(pc["accuracy"][1])
  assert pc["precision"][1] == 0 and pc["f1"][1] == 0 and pc["f1"][2] == 0
  assert metrics.balanced_accuracy(conf) == pytest.approx(0.5)  # mean of 1.0 and 0.0


@pytest.mark.parametrize("seed,C,n",
                         [(0, 10, 500), (1, 10, 37), (2, 5, 200), (3, 49, 300)])
def test_against_sklearn_on_random_labels(seed, C, n):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, C, n)
  # Predictions correct about half the time, so every score is non-trivial.
  p = np.where(rng.random(n) < 0.5, y, rng.integers(0, C, n))
  conf = metrics.confusion_matrix(y, p, C)
  np.testing.assert_array_equal(conf, skm.confusion_matrix(y, p, labels=range(C)))
  pc = metrics.per_class(conf)
  prec, rec, f1, support = skm.precision_recall_fscore_support(
      y, p, labels=range(C), zero_division=0)
  np.testing.assert_allclose(pc["precision"], prec)
  np.testing.assert_allclose(np.nan_to_num(pc["recall"]), rec)
  np.testing.assert_allclose(pc["f1"], f1)
  np.testing.assert_array_equal(pc["support"], support)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # sklearn warns about classes absent from y
    expected = skm.balanced_accuracy_score(y, p)
  assert metrics.balanced_accuracy(conf) == pytest.approx(expected)
  assert np.trace(conf) / n == pytest.approx(skm.accuracy_score(y, p))


def test_most_confused_directed_and_symmetric():
  conf = np.array([[50, 7, 1],
                   [3, 40, 7],
                   [9, 0, 30]])
  d = metrics.most_confused(conf, 3)
  # 9 (2->0), then the tie 7 (0->1) and 7 (1->2) in class order.
  assert [(x["true"], x["pred"], x["count"]) for x in d] == [(2, 0, 9), (0, 1, 7),
                                                              (1, 2, 7)]
  assert d[0]["rate"] == pytest.approx(9 / 39)
  s = metrics.most_confused(conf, 5, symmetric=True)
  # pairs: (0,1): 7+3=10, (0,2): 1+9=10, (1,2): 7+0=7
  assert [(x["a"], x["b"], x["count"]) for x in s] == [(0, 1, 10), (0, 2, 10), (1, 2, 7)]
  assert s[1]["a_as_b"] == 1 and s[1]["b_as_a"] == 9
  assert s[0]["rate"] == pytest.approx(10 / (58 + 50))
  assert metrics.most_confused(np.eye(3, dtype=int) * 5) == []  # no mistakes


def test_wilson_interval_known_values():
  # Wilson 95% for 8/10: (0.4902, 0.9433); for 0/10: (0, 0.2775) (textbook values).
  lo, hi = metrics.wilson_interval([8, 0, 10, 0], [10, 10, 10, 0])
  np.testing.assert_allclose(lo[:3], [0.4902, 0.0, 0.7225], atol=1e-4)
  np.testing.assert_allclose(hi[:3], [0.9433, 0.2775, 1.0], atol=1e-4)
  assert math.isnan(lo[3]) and math.isnan(hi[3])
  # Symmetry: lo(k, n) == 1 - hi(n - k, n); a higher level is wider.
  k, n = np.array([3, 17, 250]), np.array([20, 40, 1000])
  lo, hi = metrics.wilson_interval(k, n)
  lo2, hi2 = metrics.wilson_interval(n - k, n)
  np.testing.assert_allclose(lo, 1 - hi2)
  lo99, hi99 = metrics.wilson_interval(k, n, 0.99)
  assert np.all(lo99 < lo) and np.all(hi99 > hi)
  with pytest.raises(UserError, match="confidence"):
    metrics.wilson_interval(1, 2, 1.5)


def test_bootstrap_interval():
  k, n = np.array([900, 50, 0]), np.array([1000, 100, 0])
  lo, hi = metrics.bootstrap_interval(k, n, seed=1)
  lo_again, hi_again = metrics.bootstrap_interval(k, n, seed=1)
  np.testing.assert_array_equal(lo, lo_again)  # deterministic from the seed
  np.testing.assert_array_equal(hi, hi_again)
  assert lo[0] <= 0.9 <= hi[0] and lo[1] <= 0.5 <= hi[1]
  assert math.isnan(lo[2])
  # Close to the Wilson interval for large n.
  wlo, whi = metrics.wilson_interval(k[:2], n[:2])
  np.testing.assert_allclose(lo[:2], wlo, atol=0.02)
  np.testing.assert_allclose(hi[:2], whi, atol=0.02)


def test_calibration_by_hand():
  # Two bins: (0, 0.5] and (0.5, 1]. Confidences 0.4, 0.5 (bin 0), 0.8, 0.9 (bin 1).
  probs = np.array([[0.4, 0.3, 0.3],
                    [0.5, 0.5, 0.0],
                    [0.1, 0.8, 0.1],
                    [0.05, 0.05, 0.9]])
  labels = np.array([0, 1, 1, 0])  # correct: yes, no (argmax 0), yes, no
  cal = metrics.calibration(probs, labels, num_bins=2)
  np.testing.assert_array_equal(cal["count"], [2, 2])
  np.testing.assert_allclose(cal["accuracy"], [0.5, 0.5])
  np.testing.assert_allclose(cal["confidence"], [0.45, 0.85])
  assert cal["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.35)
  assert cal["mce"] == pytest.approx(0.35)
  np.testing.assert_allclose(cal["edges"], [0, 0.5, 1])


def test_calibration_against_a_loop():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(400, 10)) * 3
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  labels = rng.integers(0, 10, 400)
  cal = metrics.calibration(probs, labels, num_bins=10)
  conf, correct = probs.max(1), probs.argmax(1) == labels
  ece = 0.0
  for b in range(10):
    lo, hi = b / 10, (b + 1) / 10
    m = (conf > lo) & (conf <= hi) if b else (conf <= hi)
    if m.any():
      ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
  assert cal["ece"] == pytest.approx(ece)
  assert cal["count"].sum() == 400


def test_nll_and_examples():
  probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
  labels = np.array([0, 0, 0, 1, 1])
  assert metrics.negative_log_likelihood(probs, labels) == pytest.approx(
      -np.mean(np.log([0.9, 0.2, 0.4, 0.7, 0.4])))
  # Class 0 predicted as 1: examples 1 (0.8) and 2 (0.6), most confident first.
  np.testing.assert_array_equal(metrics.confident_mistakes(labels, probs, 0, 1), [1, 2])
  np.testing.assert_array_equal(metrics.confident_mistakes(labels, probs, 0, 1, k=1), [1])
  np.testing.assert_array_equal(metrics.typical_examples(labels, probs, 0), [0])
  np.testing.assert_array_equal(metrics.typical_examples(labels, probs, 1), [3])


def test_over_epochs_and_over_runs():
  history = [{"epoch": 1, "val_confusion": [[8, 2], [4, 6]]},
             {"epoch": 2},  # no confusion recorded: skipped
             {"epoch": 3, "val_confusion": [[9.0, 1.0], [1.0, 9.0]]}]
  epochs, confs = metrics.confusions_over_epochs(history)
  np.testing.assert_array_equal(epochs, [1, 3])
  assert confs.shape == (2, 2, 2) and confs.dtype == np.int64
  np.testing.assert_allclose(metrics.per_class_error(confs), [[0.2, 0.4], [0.1, 0.1]])
  e, c = metrics.confusions_over_epochs([{"epoch": 1}])
  assert e.shape == (0,) and c.size == 0
  mean, std = metrics.mean_std([[0.9, 0.5], [0.7, 0.5]])
  np.testing.assert_allclose(mean, [0.8, 0.5])
  np.testing.assert_allclose(std, [np.std([0.9, 0.7], ddof=1), 0])
  np.testing.assert_array_equal(metrics.mean_std([[0.3, 0.4]])[1], [0, 0])


def test_separability_scores():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(3), 40)
  centers = np.array([[0, 0], [20, 0], [0, 20]])
  separated = centers[labels] + rng.normal(size=(120, 2))
  assert metrics.knn_accuracy(separated, labels) == 1.0
  assert metrics.silhouette(separated, labels) > 0.8
  noise = rng.normal(size=(120, 2))
  assert metrics.knn_accuracy(noise, labels) < 0.6
  assert abs(metrics.silhouette(noise, labels)) < 0.1
  assert metrics.silhouette(separated, labels, max_points=60) > 0.8


def test_summarize_is_json_ready():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 100)
  probs = rng.dirichlet(np.ones(4), 100)
  s = metrics.summarize(labels, probs, top_k=3, interval="bootstrap")
  assert s["n"] == 100 and s["confusion"].sum() == 100
  assert s["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == labels))
  assert len(s["most_confused"]) == 3
  text = json.dumps(metrics.jsonable(s), allow_nan=False)  # nan -> null, numpy -> lists
  assert json.loads(text)["per_class"]["support"] == s["per_class"]["support"].tolist()
  assert metrics.jsonable({"x": float("nan"), "y": np.float32(2)}) == {"x": None,
                                                                      "y": 2.0}


def test_bad_input():
  with pytest.raises(UserError, match=r"preds span 0\.\.3, outside 0\.\.2"):
    metrics.confusion_matrix([0, 1], [0, 3], 3)
  with pytest.raises(UserError, match="differ in length"):
    metrics.confusion_matrix([0, 1], [0], 3)
  with pytest.raises(UserError, match="1-D integer"):
    metrics.confusion_matrix(np.array([0.5]), [0], 3)
  with pytest.raises(UserError, match="4 rows but there are 3 labels"):
    metrics.calibration(np.ones((4, 2)) / 2, [0, 1, 0])
  with pytest.raises(UserError, match="unknown interval 'normal'"):
    metrics.summarize([0, 1], np.eye(2), interval="normal")
  with pytest.raises(UserError, match="square"):
    metrics.per_class(np.ones((2, 3)))
