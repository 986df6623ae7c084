"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): PREDICT and CERTIFY with
certified L2 radii, for any classifier given as a logits function, on CPU / GPU / TPU.

The smoothed classifier of a base classifier f at noise level sigma is
``g(x) = argmax_c P(f(x + e) = c)``, ``e ~ N(0, sigma^2 I)``. If the top class has
probability at least ``pA > 1/2``, g is constant on the L2 ball of radius
``sigma * Phi^-1(pA)`` around x (Cohen et al., Theorem 1). The probabilities are
estimated by Monte Carlo, so both procedures hold with probability ``1 - alpha``:

* **CERTIFY** (Cohen et al., Algorithm 1, ``certify``): ``n0`` noisy copies pick the
  class ``cA`` (the most frequent prediction; ties to the lowest index), ``n`` fresh
  copies count ``nA`` = how often f predicts ``cA``, and ``pA_lower`` is the one-sided
  ``(1 - alpha)`` Clopper-Pearson lower bound of ``nA / n``. If ``pA_lower < 1/2`` it
  abstains; else it returns ``cA`` with radius ``sigma * Phi^-1(pA_lower)``.
* **PREDICT** (Algorithm 2, ``predict``): ``n`` noisy copies; with ``nA``, ``nB`` the
  two largest counts, it returns the top class if the two-sided binomial test of
  ``nA`` successes in ``nA + nB`` trials at ``p = 1/2`` has p-value ``<= alpha``, else
  abstains (-1, :data:`ABSTAIN`).

The paper's settings are the defaults: ``n0 = 100``, ``n = 100,000``, ``alpha =
0.001``. Cost: ``n0 + n`` forward passes per image and noise level (100,100 by
default); a smaller ``n`` loosens the bound (with every copy correct the largest
certifiable radius is ``sigma * Phi^-1(alpha^(1/n))``: 3.8 sigma at n = 100,000, 2.6
sigma at n = 1,000).

**Noise.** Gaussian noise is added to the pixels scaled to [0, 1]
(``models.preprocess``) and **not clipped** (Cohen et al.'s convention: the theorem
needs the plain Gaussian; clipping would change the distribution the bound is about),
so radii are L2 distances in that pixel scale (an image of 784 pixels: a radius of 1
is e.g. 1/28 on every pixel, or one pixel moved by 1).

**On device, compiled.** The noise is drawn inside one ``jit`` function that runs a
``lax.fori_loop`` over batches of noisy copies and accumulates the class counts, with
``sigma`` and the number of copies traced (one compile per model, batch layout and
number of classes serves every sigma). Each copy has its own key,
``fold_in(fold_in(fold_in(key, phase), image), copy)`` (phase 0: CERTIFY's selection,
1: its estimation, 2: PREDICT), so the counts depend only on the key, the image's
index, ``n`` and sigma, not on the batch size or on how images are grouped.

**The statistics** run on the host in float64 on the counts: the Clopper-Pearson bound
is the root in p of the binomial tail ``P(X >= nA | n, p) = alpha`` (the regularized
incomplete beta ``I_p(nA, n - nA + 1)``, found by bisection), and the binomial test
uses the same tail; the tests check both against scipy.stats' own routines.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from kmnist_jax import inference, models
from kmnist_jax.errors import UserError

ABSTAIN = -1
DEFAULT_N0 = 100
DEFAULT_N = 100_000
DEFAULT_ALPHA = 0.001
DEFAULT_SIGMAS = (0.25,)
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
PHASES = {"select": 0, "estimate": 1, "predict": 2}


# ---- Validation ------------------------------------------------------------------------

def _numbers(spec, what: str, example: str) -> list[float]:
  parts = spec.split(",") if isinstance(spec, str) else (
      [spec] if isinstance(spec, (int, float, np.number)) else list(spec))
  out = []
  for p in parts:
    if isinstance(p, str) and not p.strip():
      continue
    try:
      if isinstance(p, bool):
        raise ValueError
      out.append(float(p))
    except (TypeError, ValueError):
      raise UserError(f"{what} {spec!r} must be comma-separated numbers, e.g. "
                      f"{example}") from None
  return out


def check_sigmas(sigmas) -> tuple[float, ...]:
  """Distinct noise levels > 0 (pixels in [0, 1]), in the given order; one-line errors."""
  s = _numbers(sigmas, "sigmas", "0.25,0.5,1.0")
  if not s:
    raise UserError("no sigmas given; valid: one or more noise levels > 0 (the std of "
                    "the Gaussian noise on pixels in [0, 1]), e.g. 0.25,0.5,1.0")
  for v in s:
    if not math.isfinite(v) or v <= 0:
      raise UserError(f"sigma {v!r} is not valid; valid: a noise level > 0 (the std of "
                      "the Gaussian noise on pixels in [0, 1]), e.g. 0.25, 0.5, 1.0")
  if len(set(s)) != len(s):
    raise UserError(f"sigma list {s} names one twice")
  return tuple(s)


def check_radii(radii) -> tuple[float, ...]:
  """Sorted, distinct L2 radii >= 0 at which certified accuracy is reported."""
  r = _numbers(radii, "radii", "0,0.5,1,1.5,2")
  if not r:
    raise UserError("no radii given; valid: one or more L2 radii >= 0, e.g. 0,0.5,1,2")
  for v in r:
    if not math.isfinite(v) or v < 0:
      raise UserError(f"radius {v!r} is not valid; valid: an L2 radius >= 0 (pixels in "
                      "[0, 1]), e.g. 0, 0.5, 1.0")
  if len(set(r)) != len(r):
    raise UserError(f"radius list {r} names one twice")
  return tuple(sorted(r))


def _count(v, name: str) -> int:
  if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
    raise UserError(f"{name}={v!r} is not valid; valid: a positive integer "
                    f"(Cohen et al.: n0={DEFAULT_N0}, n={DEFAULT_N})")
  return int(v)


def check_samples(n0, n) -> tuple[int, int]:
  """(n0, n): positive integers with n0 <= n."""
  n0, n = _count(n0, "n0"), _count(n, "n")
  if n0 > n:
    raise UserError(f"n0={n0} > n={n} is not valid; valid: 1 <= n0 <= n (n0 noisy "
                    f"copies select the class, n bound its probability; Cohen et al.: "
                    f"n0={DEFAULT_N0}, n={DEFAULT_N})")
  return n0, n


def check_alpha(alpha) -> float:
  """The failure probability, in (0, 1)."""
  try:
    a = float(alpha)
    if isinstance(alpha, bool):
      raise ValueError
  except (TypeError, ValueError):
    a = float("nan")
  if not (0.0 < a < 1.0):
    raise UserError(f"alpha={alpha!r} is not valid; valid: 0 < alpha < 1 (the "
                    f"probability that a certificate is wrong; Cohen et al.: "
                    f"{DEFAULT_ALPHA})")
  return a


# ---- Statistics (host, float64) --------------------------------------------------------

def binomial_tail(k, n, p) -> np.ndarray:
  """P(X >= k) for X ~ Binomial(n, p), elementwise (k, n integers; p in [0, 1]):
  1 for k <= 0, 0 for k > n, else the regularized incomplete beta I_p(k, n - k + 1)."""
  k, n, p = np.broadcast_arrays(np.asarray(k, np.float64), np.asarray(n, np.float64),
                                np.asarray(p, np.float64))
  inside = (k >= 1) & (k <= n)
  a = np.where(inside, k, 1.0)
  b = np.where(inside, n - k + 1, 1.0)
  out = special.betainc(a, b, p)
  return np.where(k <= 0, 1.0, np.where(k > n, 0.0, out))


def clopper_pearson_lower(k, n, alpha: float, *, iterations: int = 80) -> np.ndarray:
  """One-sided (1 - alpha) Clopper-Pearson lower bound of a binomial proportion from k
  successes in n trials, elementwise: the p with ``P(X >= k | n, p) = alpha`` (0 for
  k = 0); equal to ``Beta(k, n - k + 1)``'s alpha-quantile. Found by bisection on the
  tail (monotone in p), keeping the lower end, so the bound is never above the root."""
  k, n = np.broadcast_arrays(np.asarray(k, np.int64), np.asarray(n, np.int64))
  if np.any(k < 0) or np.any(k > n):
    raise ValueError("clopper_pearson_lower: need 0 <= k <= n")
  lo, hi = np.zeros(k.shape), np.ones(k.shape)
  for _ in range(iterations):
    mid = 0.5 * (lo + hi)
    below = binomial_tail(k, n, mid) < alpha
    lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
  return np.where(k == 0, 0.0, lo)


def binomial_test_half(k, m) -> np.ndarray:
  """Two-sided p-value of k successes in m trials against p = 1/2, elementwise
  (scipy.stats.binomtest's two-sided test; 1 for m = 0 or k = m / 2)."""
  k, m = np.broadcast_arrays(np.asarray(k, np.int64), np.asarray(m, np.int64))
  hi = np.maximum(k, m - k)
  p = np.minimum(1.0, 2.0 * binomial_tail(hi, m, 0.5))
  return np.where((m == 0) | (2 * hi == m), 1.0, p)


def max_radius(sigma: float, n: int, alpha: float) -> float:
  """The largest radius CERTIFY can give with n copies: every copy voting for the
  class, ``sigma * Phi^-1(alpha^(1/n))``."""
  return float(sigma) * float(special.ndtri(clopper_pearson_lower(n, n, alpha)))


# ---- Counting predictions under noise (device, compiled) -------------------------------

LogitsFn = Callable  # (params, x float [B, *shape]) -> logits [B, C]


@functools.lru_cache(maxsize=16)
def _compiled_counts(logits_fn, num_classes: int, group: int, reps: int):
  """jit(params, x [group, *shape], index [group], sigma, n, key) -> counts [group, C]:
  for each of `group` images, the class counts of `logits_fn` over n noisy copies, in
  ceil(n / reps) forward passes of group * reps inputs (the last pass's copies beyond
  n are drawn but not counted)."""

  @jax.jit
  def run(params, x, index, sigma, n, key):
    shape = x.shape[1:]
    image_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, index)

    def noise(k, j):
      return jax.random.normal(jax.random.fold_in(k, j), shape, jnp.float32)

    def body(s, counts):
      j = s * reps + jnp.arange(reps, dtype=jnp.int32)   # copy numbers of this pass
      e = jax.vmap(lambda k: jax.vmap(lambda jj: noise(k, jj))(j))(image_keys)
      xn = (x[:, None].astype(jnp.float32) + sigma * e).reshape((group * reps,) + shape)
      pred = jnp.argmax(logits_fn(params, xn), -1).reshape(group, reps)
      hit = jax.nn.one_hot(pred, num_classes, dtype=jnp.int32)
      return counts + (hit * (j < n)[None, :, None].astype(jnp.int32)).sum(1)

    steps = (n + reps - 1) // reps
    return jax.lax.fori_loop(0, steps, body, jnp.zeros((group, num_classes), jnp.int32))

  return run


def layout(n: int, num_images: int, batch_size: int) -> tuple[int, int]:
  """(images per pass, copies per image per pass) for `n` copies of `num_images`
  images in forward passes of about `batch_size` inputs."""
  reps = max(1, min(int(n), int(batch_size)))
  group = max(1, int(batch_size) // reps)
  return min(group, inference.batch_shape(max(num_images, 1), group)), reps


def sample_counts(logits_fn: LogitsFn, params, x, *, n: int, sigma: float, key,
                  num_classes: int, batch_size: int = 1000, progress: bool = False,
                  desc: str = "") -> np.ndarray:
  """Class counts int64 [N, num_classes] of the predictions of `logits_fn(params, .)`
  on n noisy copies ``x + N(0, sigma^2)`` of each input of `x` (float [N, *shape],
  pixels in [0, 1]; the noise is not clipped). The copies of input i use the keys
  ``fold_in(fold_in(key, i), copy)``. `logits_fn` must be the same object from call to
  call for the compiled function to be reused (it is cached on it)."""
  x = np.asarray(x, np.float32)
  num = len(x)
  if num == 0:
    return np.zeros((0, num_classes), np.int64)
  n = _count(n, "n")
  group, reps = layout(n, num, batch_size)
  fn = _compiled_counts(logits_fn, int(num_classes), group, reps)
  index = np.arange(num, dtype=np.int32)
  xs, index = inference.pad_to_multiple(group, x, index)
  starts = range(0, len(xs), group)
  if progress and len(starts) > 1:
    from tqdm.auto import tqdm
    starts = tqdm(starts, desc=desc or "smoothing", unit="batch", leave=False)
  out = [fn(params, xs[i:i + group], index[i:i + group], jnp.float32(sigma),
            jnp.int32(n), key) for i in starts]
  return np.concatenate([np.asarray(c) for c in out])[:num].astype(np.int64)


# ---- The two procedures on counts ------------------------------------------------------

def certify_counts(counts_select, counts, *, sigma: float, alpha: float) -> dict:
  """CERTIFY from the counts of its two samples ([N, C] each): {'prediction' int [N]
  (ABSTAIN = -1), 'radius' [N] (0 when abstaining), 'p_lower' [N], 'n_a' [N]}."""
  counts_select, counts = np.asarray(counts_select), np.asarray(counts)
  c_a = np.argmax(counts_select, 1)
  n_a = counts[np.arange(len(counts)), c_a]
  p_lower = clopper_pearson_lower(n_a, counts.sum(1), alpha)
  ok = p_lower >= 0.5
  radius = np.where(ok, float(sigma) * special.ndtri(np.where(ok, p_lower, 0.5)), 0.0)
  return {"prediction": np.where(ok, c_a, ABSTAIN).astype(np.int64),
          "radius": radius, "p_lower": p_lower, "n_a": n_a.astype(np.int64)}


def predict_counts(counts, *, alpha: float) -> np.ndarray:
  """PREDICT from the counts [N, C] of its sample: the top class, or ABSTAIN when the
  binomial test of the two largest counts at p = 1/2 has p-value > alpha."""
  counts = np.asarray(counts)
  order = np.argsort(-counts, axis=1, kind="stable")
  rows = np.arange(len(counts))
  n1, n2 = counts[rows, order[:, 0]], counts[rows, order[:, 1]]
  p = binomial_test_half(n1, n1 + n2)
  return np.where(p <= alpha, order[:, 0], ABSTAIN).astype(np.int64)


def certify(logits_fn: LogitsFn, params, x, *, sigma: float, key, num_classes: int,
            n0: int = DEFAULT_N0, n: int = DEFAULT_N, alpha: float = DEFAULT_ALPHA,
            batch_size: int = 1000, progress: bool = False, desc: str = "") -> dict:
  """CERTIFY (module docstring) on each input of `x` (float [N, *shape] in [0, 1]):
  :func:`certify_counts`' dict plus the two samples' counts 'counts_select' and
  'counts' [N, C]."""
  sigma = check_sigmas([sigma])[0]
  n0, n = check_samples(n0, n)
  alpha = check_alpha(alpha)
  kw = dict(sigma=sigma, num_classes=num_classes, batch_size=batch_size,
            progress=progress)
  c0 = sample_counts(logits_fn, params, x, n=n0,
                     key=jax.random.fold_in(key, PHASES["select"]),
                     desc=f"{desc} select".strip(), **kw)
  c = sample_counts(logits_fn, params, x, n=n,
                    key=jax.random.fold_in(key, PHASES["estimate"]),
                    desc=f"{desc} estimate".strip(), **kw)
  return {**certify_counts(c0, c, sigma=sigma, alpha=alpha), "counts_select": c0,
          "counts": c}


def predict(logits_fn: LogitsFn, params, x, *, sigma: float, key, num_classes: int,
            n: int = DEFAULT_N, alpha: float = DEFAULT_ALPHA, batch_size: int = 1000,
            progress: bool = False) -> np.ndarray:
  """PREDICT (module docstring) on each input of `x`: int [N], ABSTAIN = -1."""
  sigma = check_sigmas([sigma])[0]
  alpha = check_alpha(alpha)
  c = sample_counts(logits_fn, params, x, n=n, sigma=sigma,
                    key=jax.random.fold_in(key, PHASES["predict"]),
                    num_classes=num_classes, batch_size=batch_size, progress=progress)
  return predict_counts(c, alpha=alpha)


# ---- A restored model ------------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _model_logits(graphdef, dtype: str):
  """(params=(params, rest), x float [B, 28, 28, 1]) -> float32 logits, eval mode."""
  jdt = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32

  def fn(params, x):
    logits, _ = models.apply(graphdef, params[0], params[1], x.astype(jdt), train=False)
    return logits.astype(jnp.float32)

  return fn


def model_logits(restored, *, dtype: str | None = None) -> tuple[LogitsFn, object, int]:
  """(logits_fn, params, number of classes) of a restored checkpoint or a model, for
  :func:`certify` / :func:`predict`: the model comes through
  :func:`kmnist_jax.inference.prepare` (the fast forward convolution, the
  checkpoint's dtype unless `dtype` is given)."""
  graphdef, params, rest, dt = inference.prepare(restored, dtype=dtype)
  model = getattr(restored, "model", restored)
  return _model_logits(graphdef, dt), (params, rest), int(model.head.out_features)


def pixels(images) -> np.ndarray:
  """uint8 images [N, 28, 28] -> float32 [N, 28, 28, 1] in [0, 1] (the model's input)."""
  x = np.asarray(images)
  if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
    raise UserError(f"smoothing images must be uint8 [N, 28, 28], got {x.dtype}"
                    f"{list(x.shape)}")
  return (x.astype(np.float32) / np.float32(255.0))[..., None]


# ---- Metrics ---------------------------------------------------------------------------

def certified_accuracy(prediction, radius, labels, radii: Sequence[float]) -> np.ndarray:
  """[R]: the fraction of examples certified correct with radius >= r, at each r
  (an abstention counts as wrong; Cohen et al.'s certified test-set accuracy)."""
  ok = np.asarray(prediction) == np.asarray(labels)
  radius = np.asarray(radius)
  return np.asarray([(ok & (radius >= r)).mean() if len(ok) else np.nan for r in radii])


def average_certified_radius(prediction, radius, labels) -> float:
  """Mean over examples of the radius when certified correct, 0 otherwise."""
  ok = np.asarray(prediction) == np.asarray(labels)
  return float(np.where(ok, radius, 0.0).mean()) if len(ok) else float("nan")


def per_class(values, labels, num_classes: int) -> np.ndarray:
  """Mean of `values` [N] (or [K, N]) within each class: [C] (or [K, C]); NaN for a
  class absent from `labels`."""
  v = np.asarray(values, np.float64)
  labels = np.asarray(labels)
  out = np.full(v.shape[:-1] + (num_classes,), np.nan)
  for c in range(num_classes):
    m = labels == c
    if m.any():
      out[..., c] = v[..., m].mean(-1)
  return out


def summary(result: dict, labels, *, radii: Sequence[float], num_classes: int,
            predicted: np.ndarray | None = None) -> dict:
  """The numbers of one noise level from :func:`certify`'s result: certified accuracy
  at each radius, average certified radius, abstention rate, the base classifier's
  accuracy on the noisy copies, the majority vote's accuracy over the n copies
  (the smoothed classifier without its test), PREDICT's accuracy and abstention rate
  (`predicted`, when given), each also per class."""
  labels = np.asarray(labels)
  pred, rad = result["prediction"], result["radius"]
  ok = pred == labels
  counts = result["counts"]
  rows = np.arange(len(labels))
  noisy = counts[rows, labels] / np.maximum(counts.sum(1), 1)
  majority = np.argmax(counts, 1) == labels
  radii = list(radii)
  by_r = np.stack([ok & (rad >= r) for r in radii]).astype(np.float64)
  out = {"certified_accuracy": certified_accuracy(pred, rad, labels, radii),
         "average_certified_radius": average_certified_radius(pred, rad, labels),
         "abstention_rate": float((pred == ABSTAIN).mean()),
         "noisy_accuracy": float(noisy.mean()),
         "majority_accuracy": float(majority.mean()),
         "per_class": {
             "certified_accuracy": per_class(by_r, labels, num_classes),
             "average_certified_radius": per_class(np.where(ok, rad, 0.0), labels,
                                                   num_classes),
             "abstention_rate": per_class(pred == ABSTAIN, labels, num_classes),
             "noisy_accuracy": per_class(noisy, labels, num_classes),
             "count": np.bincount(labels, minlength=num_classes)}}
  if predicted is not None:
    out["predict_accuracy"] = float((predicted == labels).mean())
    out["predict_abstention_rate"] = float((predicted == ABSTAIN).mean())
    out["per_class"]["predict_accuracy"] = per_class(predicted == labels, labels,
                                                     num_classes)
  out["per_class"]["count"] = out["per_class"]["count"].tolist()
  return out
