"""Randomized smoothing (kmnist_jax/robustness/smoothing.py, the `smoothing` evaluator):
the statistics against scipy's own routines; CERTIFY on a classifier whose class
probabilities under Gaussian noise are known exactly gives the counts, radii and
abstentions the formulas say; the counts are reproducible from the key and
independent of the batch layout, and a sigma sweep compiles once; on a model trained on
real KMNIST the certified accuracy behaves as it must; bad settings get one line."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_runs
from scipy import stats

from kmnist_jax import evaluators, inference, io, reports
from kmnist_jax.errors import UserError
from kmnist_jax.evaluators import smoothing as smoothing_eval
from kmnist_jax.reports import Report
from kmnist_jax.robustness import smoothing as sm

# ---- The statistics ------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_clopper_pearson_lower_is_scipys(alpha):
  n = np.array([1, 2, 10, 100, 100, 100, 100, 1000, 1000, 10_000, 100_000, 100_000,
                100_000])
  k = np.array([1, 1, 7, 1, 50, 99, 100, 503, 1000, 9_990, 60_000, 99_999, 100_000])
  got = sm.clopper_pearson_lower(k, n, alpha)
  want = stats.beta.ppf(alpha, k, n - k + 1)
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
  assert np.all(got <= want + 1e-15)  # the bisection keeps the lower end
  assert sm.clopper_pearson_lower(0, 50, alpha) == 0.0
  # k = n: the bound solves p^n = alpha.
  np.testing.assert_allclose(sm.clopper_pearson_lower(1000, 1000, alpha),
                             alpha ** (1 / 1000), rtol=1e-12)


def test_binomial_test_is_scipys():
  rng = np.random.default_rng(0)
  m = rng.integers(1, 400, 200)
  k = rng.integers(0, m + 1)
  want = np.array([stats.binomtest(int(a), int(b), 0.5).pvalue for a, b in zip(k, m)])
  np.testing.assert_allclose(sm.binomial_test_half(k, m), want, rtol=1e-9, atol=1e-15)
  assert sm.binomial_test_half(0, 0) == 1.0
  # PREDICT: the top class when its lead over the runner-up passes the test.
  counts = np.array([[0, 60, 40], [0, 0, 100], [30, 30, 40], [5, 500, 495]])
  pred = sm.predict_counts(counts, alpha=0.001)
  np.testing.assert_array_equal(pred, [sm.ABSTAIN, 2, sm.ABSTAIN, sm.ABSTAIN])
  np.testing.assert_array_equal(sm.predict_counts(counts, alpha=0.1), [1, 2, -1, -1])
  np.testing.assert_array_equal(sm.predict_counts(counts, alpha=0.3), [1, 2, 2, -1])


# ---- CERTIFY where the answer is known -------------------------------------------------

T = 0.5  # the threshold classifier: class 1 iff x[0] + noise > T


def threshold_logits(params, x):
  """Logits [B, 2] of 'class 1 iff x[:, 0] > params': under N(0, sigma^2) noise,
  P(class 1) = Phi((x0 - T) / sigma) exactly."""
  v = x[:, 0] - params
  return jnp.stack([-v, v], -1)


SIGMA, N0, N, ALPHA, M = 0.25, 100, 1000, 0.001, 150
P1 = (0.5, 0.6, 0.99, 0.9999, 0.1)  # P(class 1) of each group of M inputs


def _known_inputs():
  x0 = T + SIGMA * stats.norm.ppf(np.asarray(P1))
  x = np.repeat(x0, M).astype(np.float32)[:, None]
  p1 = stats.norm.cdf((x[:, 0].astype(np.float64) - T) / SIGMA)  # of the float32 inputs
  return x, p1


@pytest.fixture(scope="module")
def known():
  x, p1 = _known_inputs()
  res = sm.certify(threshold_logits, jnp.float32(T), x, sigma=SIGMA,
                   key=jax.random.key(7), num_classes=2, n0=N0, n=N, alpha=ALPHA,
                   batch_size=1000)
  return x, p1, res


def _abstention_and_radius_law(p1: float):
  """Exact P(abstain) and E[radius] (0 when abstaining) of CERTIFY for an input with
  P(class 1) = p1, with E[radius^2] for the spread."""
  k_sel = np.arange(N0 + 1)
  sel1 = stats.binom.pmf(k_sel, N0, p1)[k_sel > N0 - k_sel].sum()  # ties go to class 0
  k = np.arange(N + 1)
  lower = np.where(k == 0, 0.0, stats.beta.ppf(ALPHA, np.maximum(k, 1), N - k + 1))
  ok = lower >= 0.5
  r = np.where(ok, SIGMA * stats.norm.ppf(np.where(ok, lower, 0.5)), 0.0)
  p_abst, e_r, e_r2 = 0.0, 0.0, 0.0
  for cls_p, w in ((p1, sel1), (1 - p1, 1 - sel1)):
    pmf = stats.binom.pmf(k, N, cls_p)
    p_abst += w * pmf[~ok].sum()
    e_r += w * (pmf * r).sum()
    e_r2 += w * (pmf * r * r).sum()
  return p_abst, e_r, e_r2


def test_certify_counts_follow_the_known_probabilities(known):
  _, p1, res = known
  assert res["counts_select"].shape == (len(p1), 2) and res["counts"].shape == (len(p1), 2)
  np.testing.assert_array_equal(res["counts_select"].sum(1), N0)
  np.testing.assert_array_equal(res["counts"].sum(1), N)
  for g in range(len(P1)):
    s = slice(g * M, (g + 1) * M)
    p = p1[s].mean()
    freq = res["counts"][s, 1].mean() / N
    sd = np.sqrt(p * (1 - p) / (M * N))
    assert abs(freq - p) <= 4 * sd + 1e-9, (P1[g], freq, p)
    # Each image's count is a Binomial(N, p) draw: no count far outside its law.
    assert np.all(np.abs(res["counts"][s, 1] - N * p) <= 5 * np.sqrt(N * p * (1 - p))
                  + 1)


def test_certify_radius_and_abstention_are_the_formulas(known):
  _, p1, res = known
  # Given the counts, the bound, the abstention and the radius are exactly Cohen's.
  c_a = np.argmax(res["counts_select"], 1)
  n_a = res["counts"][np.arange(len(c_a)), c_a]
  np.testing.assert_array_equal(res["n_a"], n_a)
  lower = np.where(n_a == 0, 0.0, stats.beta.ppf(ALPHA, np.maximum(n_a, 1), N - n_a + 1))
  np.testing.assert_allclose(res["p_lower"], lower, rtol=1e-9, atol=1e-12)
  abst = lower < 0.5
  np.testing.assert_array_equal(res["prediction"] == sm.ABSTAIN, abst)
  np.testing.assert_array_equal(res["prediction"][~abst], c_a[~abst])
  np.testing.assert_allclose(res["radius"][~abst],
                             SIGMA * stats.norm.ppf(lower[~abst]), rtol=1e-9)
  assert np.all(res["radius"][abst] == 0)
  # Over the M inputs of each group: abstentions and mean radius as the law says.
  for g, p_true in enumerate(P1):
    s = slice(g * M, (g + 1) * M)
    p_abst, e_r, e_r2 = _abstention_and_radius_law(float(p1[s].mean()))
    n_abst = int(abst[s].sum())
    assert abs(n_abst - M * p_abst) <= 4 * np.sqrt(M * p_abst * (1 - p_abst)) + 1, (
        p_true, n_abst, M * p_abst)
    r_mean = res["radius"][s].mean()
    sd = np.sqrt(max(e_r2 - e_r ** 2, 0.0) / M)
    assert abs(r_mean - e_r) <= 4 * sd + 1e-6, (p_true, r_mean, e_r)
    # The certified class is the likelier one.
    want = 1 if p_true > 0.5 else 0
    assert np.all(res["prediction"][s][~abst[s]] == want)
  # pA = 1/2: always abstains; pA = 0.9999: never, with the radius of ~all-correct
  # counts (at most sigma * Phi^-1(alpha^(1/n))).
  assert abst[:M].all()
  assert not abst[3 * M:4 * M].any()
  top = sm.max_radius(SIGMA, N, ALPHA)
  np.testing.assert_allclose(top, SIGMA * stats.norm.ppf(ALPHA ** (1 / N)), rtol=1e-9)
  assert res["radius"].max() <= top + 1e-12
  assert np.median(res["radius"][3 * M:4 * M]) > 0.9 * top


def test_predict_on_known_probabilities():
  x, _ = _known_inputs()
  x = x[::3]  # 50 inputs per group
  pred = sm.predict(threshold_logits, jnp.float32(T), x, sigma=SIGMA, n=N, alpha=ALPHA,
                    key=jax.random.key(8), num_classes=2)
  g = np.repeat(np.arange(len(P1)), M // 3)
  # pA = 1/2: the test passes with probability <= alpha; a clear majority: never fails.
  assert (pred[g == 0] == sm.ABSTAIN).mean() >= 0.95
  assert np.all(pred[g == 2] == 1) and np.all(pred[g == 3] == 1)
  assert np.all(pred[g == 4] == 0)
  # pA = 0.6 at n = 1000: the p-value of ~600 vs ~400 is far below alpha (~1e-10).
  assert (pred[g == 1] == 1).mean() >= 0.9


def test_counts_reproducible_layout_free_and_one_compile():
  traces = []

  def logits(params, x):
    traces.append(1)
    return threshold_logits(params, x)

  x, _ = _known_inputs()
  x = x[::37]  # 21 inputs: padded groups
  kw = dict(n=300, key=jax.random.key(3), num_classes=2)
  a = sm.sample_counts(logits, jnp.float32(T), x, sigma=0.25, batch_size=128, **kw)
  compiles = len(traces)
  b = sm.sample_counts(logits, jnp.float32(T), x, sigma=0.25, batch_size=128, **kw)
  np.testing.assert_array_equal(a, b)
  c = sm.sample_counts(logits, jnp.float32(T), x, sigma=0.5, batch_size=128, **kw)
  assert len(traces) == compiles  # sigma is traced: no new compile for a new sigma
  assert not np.array_equal(a, c)
  # Each noisy copy has its own key: another batch layout draws the same noise.
  d = sm.sample_counts(logits, jnp.float32(T), x, sigma=0.25, batch_size=1000, **kw)
  np.testing.assert_array_equal(a, d)
  e = sm.sample_counts(logits, jnp.float32(T), x, sigma=0.25, batch_size=128,
                       **{**kw, "key": jax.random.key(4)})
  assert not np.array_equal(a, e)


# ---- A model trained on real KMNIST ----------------------------------------------------

SETTINGS = dict(sigmas=(0.02, 0.25), n0=32, n=256, limit=48, batch_size=512)


@pytest.fixture(scope="module")
def ckpt(data_dir, tmp_path_factory):
  return evaluators.restore(tiny_runs.workdir(tmp_path_factory, data_dir), "latest")


@pytest.fixture(scope="module")
def records(ckpt, data_dir):
  """The record of seed 0, and the same as if a second seed had certified every radius
  at 60% of its length (for the summary across seeds)."""
  rec = smoothing_eval.run(ckpt, data_dir=data_dir, seed=0, **SETTINGS)
  other = json.loads(io.dumps_json(rec))
  other["seed"] = 1
  labels = np.asarray(rec["labels"])
  for res in other["results"]:
    pred, rad = np.asarray(res["prediction"]), 0.6 * np.asarray(res["radius"])
    res["radius"] = rad.tolist()
    res["certified_accuracy"] = sm.certified_accuracy(pred, rad, labels,
                                                      rec["radii"]).tolist()
    res["average_certified_radius"] = sm.average_certified_radius(pred, rad, labels)
  return [rec, other]


def test_real_model_certificates(ckpt, records, data_dir):
  rec = records[0]
  labels = np.asarray(rec["labels"])
  images, _ = evaluators.load_split("kmnist", "test", data_dir=data_dir, limit=48)
  clean = inference.predict(ckpt, images)
  clean_acc = (clean == labels).mean()
  assert clean_acc > 0.5
  assert rec["n_images"] == 48 and rec["sigmas"] == [0.02, 0.25]
  for res in rec["results"]:
    acc = np.asarray(res["certified_accuracy"])
    assert np.all(np.diff(acc) <= 0), acc                  # non-increasing in radius
    # Certified correct needs pA_lower >= 1/2, so a majority of the n copies.
    assert acc[0] <= res["majority_accuracy"] + 1e-12
    pred, rad = np.asarray(res["prediction"]), np.asarray(res["radius"])
    assert np.all(rad <= res["max_radius"] + 1e-6)
    assert np.all(rad[pred == sm.ABSTAIN] == 0)
    np.testing.assert_allclose(res["abstention_rate"], (pred == sm.ABSTAIN).mean())
    np.testing.assert_allclose(res["average_certified_radius"],
                               np.where(pred == labels, rad, 0).mean(), atol=1e-6)
    pc = np.asarray(res["per_class"]["certified_accuracy"])   # [R, C]
    counts = np.asarray(res["per_class"]["count"])
    np.testing.assert_allclose(np.nansum(pc * counts, 1) / counts.sum(), acc)
  small, large = rec["results"]
  # Tiny noise: the smoothed classifier is the model itself on nearly every image.
  certified = np.asarray(small["prediction"]) != sm.ABSTAIN
  assert certified.mean() > 0.8
  assert (np.asarray(small["prediction"])[certified] == clean[certified]).mean() > 0.95
  assert small["certified_accuracy"][0] >= clean_acc - 0.15
  # More noise: a larger radius can be certified; the base model is no better on it.
  assert large["max_radius"] > small["max_radius"]
  assert large["noisy_accuracy"] <= small["noisy_accuracy"] + 0.05


def test_summary_and_report(records, tmp_path):
  s = smoothing_eval.summarize(records)
  assert s["runs"] == 2 and [d["sigma"] for d in s["results"]] == [0.02, 0.25]
  for k, d in enumerate(s["results"]):
    per = np.asarray([r["results"][k]["certified_accuracy"] for r in records])
    np.testing.assert_allclose(d["certified_accuracy"]["mean"], per.mean(0))
    np.testing.assert_allclose(d["certified_accuracy"]["std"], per.std(0, ddof=1))
    # The curve is exact: at the table's radii it gives the table's values.
    cr, ca = np.asarray(d["curve"]["radii"]), np.asarray(d["curve"]["accuracy"])
    assert np.all(np.diff(cr) > 0) and np.all(np.diff(ca) <= 1e-12) and ca[-1] == 0
    for r, want in zip(s["radii"], d["certified_accuracy"]["mean"]):
      i = np.searchsorted(cr, r)   # the first curve point >= r holds the value on r
      assert (ca[i] if i < len(cr) else 0.0) == pytest.approx(want), (r, want)
  rep = Report(str(tmp_path / "rep"), title="smoothing")
  out = reports.smoothing.render(s, rep, name="tiny")
  rep.write()
  assert len(out["rows"]) == 2 and "r=0.5" in out["head"] and "ACR" in out["head"]
  for f in ("smoothing.md", "smoothing_per_class.csv", "certified_accuracy_vs_radius.png",
            "report.md"):
    assert (tmp_path / "rep" / f).is_file(), f
  with pytest.raises(UserError, match="differ in sigmas"):
    smoothing_eval.summarize([records[0], {**records[1], "sigmas": [0.5]}])


# ---- Bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("settings, pattern", [
    (dict(sigmas=0.0), r"sigma 0\.0 is not valid; valid: a noise level > 0"),
    (dict(sigmas="0.25,-1"), r"sigma -1\.0 is not valid; valid: a noise level > 0"),
    (dict(sigmas="abc"), r"sigmas 'abc' must be comma-separated numbers"),
    (dict(sigmas=()), r"no sigmas given"),
    (dict(n0=1000, n=100), r"n0=1000 > n=100 is not valid; valid: 1 <= n0 <= n"),
    (dict(n=0), r"n=0 is not valid; valid: a positive integer"),
    (dict(alpha=0.0), r"alpha=0\.0 is not valid; valid: 0 < alpha < 1"),
    (dict(alpha=1.5), r"alpha=1\.5 is not valid; valid: 0 < alpha < 1"),
    (dict(radii=(0, -0.5)), r"radius -0\.5 is not valid; valid: an L2 radius >= 0"),
    (dict(limit=-1), r"limit=-1 must be a non-negative integer"),
    (dict(sigma=0.25), r"unknown smoothing evaluator setting 'sigma'.*sigmas"),
])
def test_bad_settings_one_line(settings, pattern):
  with pytest.raises(UserError, match=pattern) as e:
    evaluators.from_config({"s": {"type": "smoothing", **settings}})
  assert "\n" not in str(e.value)


def test_bad_sigma_stops_the_script_before_anything_loads(data_dir, tmp_path):
  missing = str(tmp_path / "no_such_workdir")
  r = tiny_runs.script("evaluate.py", f"--workdirs={missing}",
                       "--config=experiments/configs/evals/smoothing.py",
                       "--config.evals.smoothing.sigmas=-0.5", data_dir=data_dir)
  assert r.returncode == 2, r.stderr
  lines = tiny_runs.error_lines(r.stderr)
  assert len(lines) == 1 and "sigma -0.5 is not valid" in lines[0], r.stderr
  assert "Traceback" not in r.stderr
