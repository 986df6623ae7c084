"""White-box L-infinity attacks (FGSM, PGD) on a trained model, compiled over batches.

Why here and not in the script: the attack is a pure function of the functional model
(``models.split`` -> graphdef, params, rest; ``models.apply(..., train=False)``), so it
runs unchanged on CPU, GPU or TPU, under ``jit``, with no NNX state mutated.

Threat model: pixels in [0, 1] (``models.preprocess`` of the uint8 images); an
adversary may move every pixel by at most ``eps`` (``||x' - x||_inf <= eps``) and must
stay in [0, 1]. Both attacks ascend the cross-entropy of the true label:

* **FGSM** (Goodfellow et al. 2015): ``x' = clip(x + eps * sign(grad_x L), 0, 1)``.
* **PGD-Linf** (Madry et al. 2018): a uniform random start in the eps-ball (from a jax
  key), then ``steps`` iterations of ``x <- proj(x + alpha * sign(grad_x L))`` where
  ``proj`` clips to the eps-ball around x and to [0, 1]. Default ``alpha = 2.5 eps /
  steps`` (Madry's rule: the walk can cross the ball from any start).

**What is counted.** An attack reports, per example, the prediction at the worst point
it evaluated: the first misclassified point among the clean input, the random start and
each iterate (the "best adversarial so far", as in AutoAttack), or the last point when
none was misclassified. So robust accuracy never exceeds clean accuracy, and eps = 0
reproduces the clean predictions exactly (the perturbation is identically zero).

Batching: the images are padded to whole batches (``inference.pad_to_multiple``, the
batch from ``inference.batch_shape``) and one ``jit`` call runs
``lax.map`` over the batches (the PGD loop is a ``lax.fori_loop`` inside), with
``eps`` a traced argument, so an epsilon sweep compiles once per (model, attack,
shape). Randomness: the key of batch ``b`` is ``fold_in(key, b)``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kmnist_jax import config as config_lib
from kmnist_jax import inference, metrics, models
from kmnist_jax.errors import UserError, unknown

ATTACKS = ("fgsm", "pgd")
DEFAULT_EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
MAX_EPSILON = 1.0


# ---- Validation ------------------------------------------------------------------------

def check_attack(name: str) -> str:
  if name not in ATTACKS:
    raise unknown("attack", name, ATTACKS)
  return name


def check_epsilons(epsilons) -> tuple[float, ...]:
  """Sorted, distinct epsilons in [0, MAX_EPSILON] (pixels in [0, 1]); one-line errors."""
  eps = config_lib.number_list(
      epsilons, float, f"epsilons {epsilons!r} must be comma-separated numbers in "
      f"[0, {MAX_EPSILON}] (pixels in [0, 1]), e.g. 0,0.1,0.3")
  if not eps:
    raise UserError("no epsilons given; use e.g. 0,0.05,0.1,0.2,0.3 (pixels in [0, 1])")
  for e in eps:
    if not np.isfinite(e) or e < 0 or e > MAX_EPSILON:
      raise UserError(f"epsilon {e!r} is out of range; valid: 0 <= eps <= {MAX_EPSILON} "
                      "(an L-inf radius on pixels scaled to [0, 1], e.g. 0.3)")
  if len(set(eps)) != len(eps):
    raise UserError(f"epsilon list {eps} names one twice")
  return tuple(sorted(eps))


def check_steps(steps: int, step_size: float | None):
  if isinstance(steps, bool) or int(steps) != steps or steps < 1:
    raise UserError(f"pgd steps must be a positive integer, got {steps!r}")
  if step_size is not None and (not np.isfinite(step_size) or step_size <= 0):
    raise UserError(f"pgd step size must be > 0 (or unset for 2.5 eps / steps), got "
                    f"{step_size!r}")


# ---- The attacks on one batch (pure functions) -----------------------------------------

def _loss_and_grad(graphdef, dtype):
  """(params, rest, x float [B,28,28,1], y) -> (logits, d loss / d x)."""

  def loss(x, params, rest, y):
    logits, _ = models.apply(graphdef, params, rest, x.astype(dtype), train=False)
    logits = logits.astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum(), logits

  def fn(params, rest, x, y):
    (_, logits), g = jax.value_and_grad(loss, has_aux=True)(x, params, rest, y)
    return logits, g

  return fn


def _predict(graphdef, dtype):
  def fn(params, rest, x):
    logits, _ = models.apply(graphdef, params, rest, x.astype(dtype), train=False)
    return jnp.argmax(logits, -1).astype(jnp.int32)
  return fn


def _worst(pred, found, new_pred, y):
  """Keeps the first misclassifying prediction per example (see module docstring)."""
  pred = jnp.where(found, pred, new_pred)
  return pred, found | (new_pred != y)


def fgsm(graphdef, params, rest, x, y, eps, *, dtype=jnp.float32):
  """FGSM adversarial images of float `x` [B,28,28,1] in [0, 1] (labels `y`)."""
  _, g = _loss_and_grad(graphdef, dtype)(params, rest, x, y)
  return jnp.clip(x + eps * jnp.sign(g), 0.0, 1.0)


def pgd(graphdef, params, rest, x, y, eps, key, *, steps: int = 10,
        step_size: float | None = None, dtype=jnp.float32, track: bool = False):
  """PGD-Linf adversarial images of `x` (random start from `key`).

  With `track`, returns (x_adv, predictions at the worst point evaluated) instead.
  """
  alpha = 2.5 * eps / steps if step_size is None else step_size
  grad_fn = _loss_and_grad(graphdef, dtype)
  lo, hi = jnp.clip(x - eps, 0.0, 1.0), jnp.clip(x + eps, 0.0, 1.0)
  x0 = jnp.clip(x + jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps, lo, hi)
  pred = jnp.zeros(y.shape, jnp.int32)
  found = jnp.zeros(y.shape, bool)

  def body(_, carry):
    xa, pred, found = carry
    logits, g = grad_fn(params, rest, xa, y)
    pred, found = _worst(pred, found, jnp.argmax(logits, -1).astype(jnp.int32), y)
    return jnp.clip(xa + alpha * jnp.sign(g), lo, hi), pred, found

  xa, pred, found = jax.lax.fori_loop(0, steps, body, (x0, pred, found))
  if not track:
    return xa
  pred, _ = _worst(pred, found, _predict(graphdef, dtype)(params, rest, xa), y)
  return xa, pred


# ---- Over a whole set, compiled --------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _compiled(graphdef, attack: str, steps: int, step_size: float | None, dtype: str):
  """jit(params, rest, images uint8 [nb,B,28,28], labels [nb,B], eps, key) -> preds."""
  dt = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
  predict = _predict(graphdef, dt)

  @jax.jit
  def run(params, rest, images, labels, eps, key):
    def one(args):
      b, xb, yb = args
      x = models.preprocess(xb, jnp.float32)
      clean = predict(params, rest, x)
      found = clean != yb
      if attack == "fgsm":
        new = predict(params, rest, fgsm(graphdef, params, rest, x, yb, eps, dtype=dt))
      else:
        _, new = pgd(graphdef, params, rest, x, yb, eps, jax.random.fold_in(key, b),
                     steps=steps, step_size=step_size, dtype=dt, track=True)
      return jnp.where(found, clean, new)

    idx = jnp.arange(images.shape[0])
    return jax.lax.map(one, (idx, images, labels))

  return run


def attack_predictions(restored, images: np.ndarray, labels: np.ndarray, *, attack: str,
                       epsilons: Sequence[float] = DEFAULT_EPSILONS, key=None,
                       steps: int = 10, step_size: float | None = None,
                       batch_size: int = 500, dtype: str | None = None,
                       progress: bool = True, desc: str = "") -> np.ndarray:
  """Predictions int32 [len(epsilons), N] of `restored` (a train.Restored or a model)
  under `attack` at each epsilon.

  The model comes through :func:`kmnist_jax.inference.prepare` (the same restored-model
  path as every prediction) with its training conv formulation kept (the fast one for
  gradients), its dtype from the checkpoint unless `dtype` is given; the images are
  padded by :func:`kmnist_jax.inference.pad_to_multiple`. `images` uint8 [N,28,28];
  `key` a jax key (PGD's random start; default key(0)). Accuracy at eps is
  ``(preds[i] == labels).mean()``; per-class robust accuracy follows from the same array.
  """
  check_attack(attack)
  epsilons = check_epsilons(epsilons)
  if attack == "pgd":
    check_steps(steps, step_size)
  images, labels = np.asarray(images), np.asarray(labels)
  if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
    raise UserError(f"attack images must be uint8 [N, 28, 28], got {images.dtype}"
                    f"{list(images.shape)}")
  if labels.shape != images.shape[:1]:
    raise UserError(f"{len(labels)} labels for {len(images)} images")
  n = len(images)
  if n == 0:
    return np.zeros((len(epsilons), 0), np.int32)
  key = jax.random.key(0) if key is None else key
  b = inference.batch_shape(n, int(batch_size))
  xs, ys = inference.pad_to_multiple(b, images, labels.astype(np.int32))
  nb = len(xs) // b
  xs, ys = xs.reshape(nb, b, 28, 28), ys.reshape(nb, b)
  graphdef, params, rest, dt = inference.prepare(restored, dtype=dtype, conv_impl="keep")
  fn = _compiled(graphdef, attack, int(steps) if attack == "pgd" else 0,
                 None if step_size is None else float(step_size), dt)
  it = list(enumerate(epsilons))
  if progress:
    from tqdm.auto import tqdm
    it = tqdm(it, desc=desc or attack, unit="eps", leave=False)
  out = []
  for i, eps in it:
    p = fn(params, rest, xs, ys, jnp.float32(eps), jax.random.fold_in(key, i))
    out.append(np.asarray(p).reshape(-1)[:n])
  return np.stack(out)


def accuracy_curve(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Accuracy at each epsilon: [E] from predictions [E, N]."""
  return (np.asarray(preds) == np.asarray(labels)[None]).mean(1)


def per_class_accuracy(preds: np.ndarray, labels: np.ndarray,
                       num_classes: int) -> np.ndarray:
  """Robust accuracy per class [E, C] (NaN for a class absent from `labels`)."""
  labels = np.asarray(labels)
  return np.stack([metrics.per_class(metrics.confusion_matrix(labels, p, num_classes))
                   ["accuracy"] for p in np.atleast_2d(preds)])
