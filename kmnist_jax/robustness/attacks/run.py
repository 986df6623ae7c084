"""Attacks over a whole set of images: members, survivors, epsilons, compiled batches.

An attack by name is a sequence of *members* (:class:`Member`); ``autoattack`` is
APGD-CE, then APGD-T, then Square. :func:`robustness` runs them as AutoAttack does:

* for each epsilon in increasing order, only the points still robust are attacked: a
  point misclassified on clean input is never robust, and a point broken at a smaller
  epsilon stays broken (its adversarial example lies in every larger ball), so robust
  accuracy never rises with epsilon and never exceeds clean accuracy; eps = 0 is the
  clean accuracy exactly;
* each member (each restart, each APGD-T target) runs on the survivors of the ones
  before it; a point counts as robust only if it survives them all (the per-example
  worst case), and the report says which member broke how many points.

Compilation: the survivors are gathered into near-equal chunks of at most
``batch_size``, each padded to one of a few shapes (:func:`bucket`), and one ``jit`` per
(model, member, batch shape) runs a batch with ``eps`` a traced argument, so an epsilon sweep, the restarts and the
targets reuse it. Randomness: each example's key is folded from the seed, the
epsilon's index, the member's name, the restart and the example's index in the set, so an
example's result does not depend on which others share its batch.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from kmnist_jax import inference, models
from kmnist_jax.robustness.attacks import apgd as apgd_lib
from kmnist_jax.robustness.attacks import core
from kmnist_jax.robustness.attacks import pgd as pgd_lib
from kmnist_jax.robustness.attacks import square as square_lib

KINDS = ("fgsm", "pgd", "apgd", "apgd-t", "square")


@dataclasses.dataclass(frozen=True)
class Member:
  """One attack of a sequence, with its static settings."""
  name: str                      # as reported: fgsm, pgd, apgd-ce, apgd-dlr, apgd-t, square
  kind: str                      # one of KINDS
  loss: str = "ce"
  steps: int = 0
  step_size: float | None = None
  restarts: int = 1
  targets: int = 0               # apgd-t: the top-k other classes
  queries: int = 0               # square
  p_init: float = 0.8

  def uid(self) -> int:
    """A stable number of the member's name: its keys are the same alone or in an
    ensemble, so the ensemble is never weaker than one of its members."""
    return zlib.crc32(self.name.encode()) & 0x7FFFFFFF

  def runs(self):
    """[(restart, target rank or None)] in the order they run."""
    ranks = range(1, self.targets + 1) if self.kind == "apgd-t" else [None]
    return [(r, t) for t in ranks for r in range(self.restarts)]

  def steps_per_image(self) -> int:
    """Gradient (or query) steps one run spends on one image."""
    return {"fgsm": 1, "pgd": self.steps, "apgd": self.steps, "apgd-t": self.steps,
            "square": self.queries}[self.kind]


def _attack_fn(member: Member, norm: str):
  """(logits_fn, x, y, eps, keys, target_rank) -> (x_adv, fooled)."""
  m = member
  if m.kind == "fgsm":
    return lambda f, x, y, eps, k, t: pgd_lib.fgsm(f, x, y, eps, k, loss=m.loss, norm=norm)
  if m.kind == "pgd":
    return lambda f, x, y, eps, k, t: pgd_lib.pgd(
        f, x, y, eps, k, steps=m.steps, step_size=m.step_size, loss=m.loss, norm=norm)
  if m.kind == "apgd":
    return lambda f, x, y, eps, k, t: apgd_lib.apgd(f, x, y, eps, k, steps=m.steps,
                                                    loss=m.loss, norm=norm)
  if m.kind == "apgd-t":
    return lambda f, x, y, eps, k, t: apgd_lib.apgd(f, x, y, eps, k, steps=m.steps,
                                                    target_rank=t, norm=norm)
  if m.kind == "square":
    return lambda f, x, y, eps, k, t: square_lib.square(
        f, x, y, eps, k, queries=m.queries, p_init=m.p_init, norm=norm)
  raise ValueError(m.kind)


@functools.lru_cache(maxsize=64)
def _compiled(graphdef, member: Member | None, norm: str, dtype: str):
  """jit(params, rest, images uint8 [b,28,28], labels [b], index [b], eps, key,
  target_rank) -> (fooled [b], prediction at the returned point [b]); `member` None:
  the clean predictions."""
  dt = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
  attack = None if member is None else _attack_fn(member, norm)

  @jax.jit
  def run(params, rest, images, labels, index, eps, key, target_rank):
    f = core.model_logits(graphdef, params, rest, dt)
    x = models.preprocess(images, jnp.float32)
    if attack is None:
      pred = core.predict(f, x)
      return pred != labels, pred
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(index)
    xa, fooled = attack(f, x, labels, eps, keys, target_rank)
    pred = core.predict(f, xa)
    return fooled | (pred != labels), pred

  return run


def bucket(n: int, batch_size: int) -> int:
  """The batch shape for a chunk of `n` <= `batch_size` survivors: 32 or 64 for a few,
  else the next multiple of 128, at most `batch_size`: a handful of shapes (so a
  handful of compilations per attack) that waste at most 127 images per chunk."""
  for b in (32, 64):
    if n <= b:
      return min(b, batch_size)
  return min(-(-n // 128) * 128, batch_size)


def chunks(n: int, batch_size: int) -> list[tuple[int, int]]:
  """[(start, stop)]: `n` survivors in ceil(n / batch_size) near-equal chunks (630 of
  500 -> 315 + 315, padded to 384 each, not 500 + 130 padded to 500 + 256)."""
  if n <= 0:
    return []
  k = -(-n // batch_size)
  size, extra = divmod(n, k)
  bounds = np.cumsum([0] + [size + (i < extra) for i in range(k)])
  return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


# Members that only query the model's outputs: they run on the inference convolutions.
GRADIENT_FREE = ("square",)


@dataclasses.dataclass
class Prepared:
  """A model ready for attacks: :func:`kmnist_jax.inference.prepare`'s split, with
  its training conv formulation kept (the fast one for gradients), and `forward`, the
  same model on the inference convolutions (the fastest forward pass) for the clean
  predictions and the gradient-free members (None: `graphdef` for everything)."""
  graphdef: object
  params: object
  rest: object
  dtype: str
  forward: object = None

  @classmethod
  def of(cls, restored, dtype: str | None = None) -> Prepared:
    graphdef, params, rest, dt = inference.prepare(restored, dtype=dtype,
                                                   conv_impl="keep")
    forward = inference.prepare(restored, dtype=dtype)[0]
    return cls(graphdef, params, rest, dt, forward)

  def batches(self, member, norm, images, labels, idx, eps, key, rank, batch_size):
    """(fooled, predictions) of the examples `idx`, in compiled batches."""
    gd = (self.forward if self.forward is not None
          and (member is None or member.kind in GRADIENT_FREE) else self.graphdef)
    fn = _compiled(gd, member, norm, self.dtype)
    fooled = np.zeros(len(idx), bool)
    pred = np.zeros(len(idx), np.int32)
    for s, e in chunks(len(idx), batch_size):
      chunk = idx[s:e]
      b = bucket(len(chunk), batch_size)
      (ci,) = inference.pad_to_multiple(b, chunk.astype(np.int32))
      f, p = fn(self.params, self.rest, images[ci], labels[ci], ci, jnp.float32(eps),
                key, jnp.int32(rank or 0))
      fooled[s:e] = np.asarray(f)[:len(chunk)]
      pred[s:e] = np.asarray(p)[:len(chunk)]
    return fooled, pred


def robustness(prepared: Prepared, images: np.ndarray, labels: np.ndarray,
               members: Sequence[Member], epsilons: Sequence[float], *, key,
               norm: str = "linf", batch_size: int = 500, progress: bool = False,
               desc: str = "") -> dict:
  """Runs `members` in sequence at each of the (sorted) `epsilons`.

  Returns ``robust`` bool [E, N], ``pred`` int32 [E, N] (the prediction at the point
  that broke each example, the clean prediction otherwise), ``clean`` [N] predictions,
  ``broken_by`` {member name: [E] points it broke first, at that epsilon or a smaller
  one}, ``image_steps`` {member: steps spent}, ``seconds`` {member: wall time}.
  """
  images = np.asarray(images, np.uint8)
  labels = np.asarray(labels, np.int32)
  n, ne = len(images), len(epsilons)
  idx_all = np.arange(n)
  _, clean = prepared.batches(None, norm, images, labels, idx_all, 0.0, key, None,
                              batch_size)
  robust = np.zeros((ne, n), bool)
  pred = np.tile(clean, (ne, 1))
  names = list(dict.fromkeys(m.name for m in members))
  broken_by = {m: [0] * ne for m in names}
  steps = dict.fromkeys(names, 0)
  seconds = dict.fromkeys(names, 0.0)
  alive = clean == labels
  work = [(e, m, r, t) for e in range(ne) for m in members for r, t in m.runs()]
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=len(work), desc=desc or "attack", unit="run", leave=False)
  for e, eps in enumerate(epsilons):
    for m in names:
      broken_by[m][e] = broken_by[m][e - 1] if e else 0
    for m in members:
      for r, t in m.runs():
        idx = idx_all[alive]
        if bar is not None:
          bar.set_postfix(eps=f"{eps:g}", attack=m.name, robust=len(idx))
          bar.update()
        if eps == 0 or not len(idx):
          continue
        k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(key, e), m.uid()),
                               r)
        t0 = time.perf_counter()
        fooled, p = prepared.batches(m, norm, images, labels, idx, eps, k, t,
                                     batch_size)
        seconds[m.name] += time.perf_counter() - t0
        steps[m.name] += len(idx) * m.steps_per_image()
        broken = idx[fooled]
        alive[broken] = False
        pred[e:, broken] = p[fooled]            # broken at every larger epsilon too
        broken_by[m.name][e] += int(fooled.sum())
    robust[e] = alive
  if bar is not None:
    bar.close()
  return {"robust": robust, "pred": pred, "clean": clean, "broken_by": broken_by,
          "image_steps": steps, "seconds": seconds}
