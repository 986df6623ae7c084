"""Linear CKA: identities it must satisfy, its two estimators, and its invariances."""

import numpy as np
import pytest

from kmnist_jax.transfer import cka as similarity


def _orthogonal(d, rng):
  q, r = np.linalg.qr(rng.normal(size=(d, d)))
  return q * np.sign(np.diag(r))


@pytest.fixture
def reps():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 20))
  # y: a nonlinear function of x plus noise, so CKA(x, y) is strictly between 0 and 1.
  y = np.tanh(x @ rng.normal(size=(20, 12))) + 0.3 * rng.normal(size=(300, 12))
  return x, y, rng


@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one(reps, debiased):
  x, y, _ = reps
  assert similarity.cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-10)
  assert similarity.cka(y, y, debiased=debiased) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_transform_scale_and_shift(reps, debiased):
  x, y, rng = reps
  base = similarity.cka(x, y, debiased=debiased)
  assert 0.05 < base < 0.95
  q = _orthogonal(x.shape[1], rng)
  assert similarity.cka(x @ q, y, debiased=debiased) == pytest.approx(base, abs=1e-10)
  assert similarity.cka(3.7 * x, 0.01 * y, debiased=debiased) == pytest.approx(base,
                                                                               abs=1e-10)
  assert similarity.cka(x + 5.0, y - 2.0, debiased=debiased) == pytest.approx(base,
                                                                              abs=1e-10)
  # ... but not to an arbitrary (anisotropic) linear map.
  a = np.diag(np.linspace(0.1, 10, x.shape[1]))
  assert abs(similarity.cka(x @ a, y, debiased=debiased) - base) > 1e-3


def test_feature_and_gram_forms_agree_and_match_the_definition(reps):
  x, y, _ = reps
  # Definition with centred Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).
  n = len(x)
  h = np.eye(n) - 1.0 / n
  k, m = h @ x @ x.T @ h, h @ y @ y.T @ h
  want = np.sum(k * m) / np.sqrt(np.sum(k * k) * np.sum(m * m))
  assert similarity.cka(x, y) == pytest.approx(want, rel=1e-10)
  # Wider than the number of examples: the example-space path.
  wide = np.concatenate([x, x ** 2], 1)[:15]
  kw = (np.eye(15) - 1 / 15) @ wide @ wide.T @ (np.eye(15) - 1 / 15)
  ly = (np.eye(15) - 1 / 15) @ y[:15] @ y[:15].T @ (np.eye(15) - 1 / 15)
  assert similarity.cka(wide, y[:15]) == pytest.approx(
      np.sum(kw * ly) / np.sqrt(np.sum(kw * kw) * np.sum(ly * ly)), rel=1e-10)


def test_independent_representations_score_low_debiased():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(400, 50)), rng.normal(size=(400, 50))
  biased = similarity.cka(a, b)
  debiased = similarity.cka(a, b, debiased=True)
  assert abs(debiased) < 0.02 < biased   # the biased estimator is inflated for wide layers


def test_matrix_and_bad_input(reps):
  x, y, _ = reps
  m = similarity.cka_matrix({"a": x, "b": y}, {"a": x.reshape(300, 4, 5), "b": y})
  assert m.shape == (2, 2)
  assert m[0, 0] == pytest.approx(1.0) and m[1, 1] == pytest.approx(1.0)
  assert m[0, 1] == pytest.approx(m[1, 0])
  with pytest.raises(ValueError, match="same examples"):
    similarity.cka(x, y[:10])
  with pytest.raises(ValueError, match=r"\[n, \.\.\.\]"):
    similarity.cka(np.ones(5), np.ones(5))
