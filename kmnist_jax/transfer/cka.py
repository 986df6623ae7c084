"""Representation similarity: linear CKA (centered kernel alignment), numpy only.

Why CKA: to ask whether a network trained on MNIST computes KMNIST-like features we
need a similarity of two sets of activations of the same inputs that does not care
about the arbitrary basis of a layer (any rotation of the units is the same
representation) nor its scale, and that compares layers of different widths. Linear
CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations
Revisited") is exactly that: invariant to orthogonal transforms and isotropic scaling,
not to arbitrary invertible linear maps (which would make every wide layer look alike),
and 1 for a representation with itself.

``cka(X, Y)`` takes activations ``[n, ...]`` of the same n inputs (flattened to
``[n, d]``). The default is the classic (biased) estimator in its feature-space form,
``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred X, Y (cost
O(n d^2), fine for d up to a few thousand). ``debiased=True`` uses the unbiased HSIC
estimator (Song et al. 2012; recommended by Nguyen et al. 2021 for small n or wide
layers) on the n x n Gram matrices. All arithmetic is float64.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _flat(x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim < 2:
    raise ValueError(f"cka: activations must be [n, ...] with n examples, got shape "
                     f"{list(x.shape)}")
  return x.reshape(len(x), -1)


def _hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
  """Unbiased HSIC estimator (Song et al. 2012, eq. 5), up to a constant factor."""
  n = len(K)
  K = K.copy()
  L = L.copy()
  np.fill_diagonal(K, 0.0)
  np.fill_diagonal(L, 0.0)
  term1 = np.sum(K * L)                     # tr(K L) for symmetric K, L
  term2 = K.sum() * L.sum() / ((n - 1) * (n - 2))
  term3 = 2.0 * (K.sum(0) @ L.sum(1)) / (n - 2)
  return float((term1 + term2 - term3) / (n * (n - 3)))


def cka(x, y, *, debiased: bool = False) -> float:
  """Linear CKA between activations x [n, ...] and y [n, ...] of the same n inputs."""
  X, Y = _flat(x), _flat(y)
  if len(X) != len(Y):
    raise ValueError(f"cka: x and y must hold the same examples, got {len(X)} and "
                     f"{len(Y)} rows")
  n = len(X)
  if debiased:
    if n < 4:
      raise ValueError(f"cka: the debiased estimator needs at least 4 examples, got {n}")
    K, L = X @ X.T, Y @ Y.T
    xy = _hsic_unbiased(K, L)
    xx, yy = _hsic_unbiased(K, K), _hsic_unbiased(L, L)
    denom = np.sqrt(max(xx, 0.0) * max(yy, 0.0))
    return float(xy / denom) if denom > 0 else 0.0
  X = X - X.mean(0)
  Y = Y - Y.mean(0)
  # Work in the smaller of feature space and example space.
  if min(X.shape[1], Y.shape[1]) <= n:
    xy = np.sum((Y.T @ X) ** 2)
    xx = np.linalg.norm(X.T @ X)
    yy = np.linalg.norm(Y.T @ Y)
  else:
    K, L = X @ X.T, Y @ Y.T
    xy, xx, yy = np.sum(K * L), np.linalg.norm(K), np.linalg.norm(L)
  denom = xx * yy
  return float(xy / denom) if denom > 0 else 0.0


def cka_matrix(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], *,
               debiased: bool = False) -> np.ndarray:
  """CKA between every layer of `a` (rows) and every layer of `b` (columns), both
  ``{layer name: activations [n, ...]}`` of the same inputs, in insertion order."""
  return np.array([[cka(xa, xb, debiased=debiased) for xb in b.values()]
                   for xa in a.values()])
