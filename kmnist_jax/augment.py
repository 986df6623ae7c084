r"""On-device data augmentation, composed by name from a policy string.

A policy is ``name(key=value, ...)`` terms joined by ``+`` and applied left to right,
for example::

    affine(rot=15,shift=2)+elastic(alpha=34,sigma=4)+cutout(size=8)
    crop(pad=2)+mixup(alpha=0.2)

Parameters not given take their defaults (:data:`REGISTRY`, or
``python -m kmnist_jax.augment`` for the table); ``''`` or ``none`` is no augmentation.
Every op has a probability ``p`` of being applied (per example, or per batch for the
batch-level ops).

* Per-example ops (``affine``, ``elastic``, ``cutout``, ``erase``, ``noise``, ``crop``)
  take ``(key, image [H, W, C] float in [0, 1], **params)`` and are jittable and
  vmappable; :func:`build` vmaps them over ``jax.random.split(key, B)``, so each
  example's randomness is a function of (seed, step, example index).
* Batch-level ops (``mixup``, ``cutmix``) take ``(key, x [B, H, W, C], targets [B, C])``
  and mix the soft targets too (the loss is the cross-entropy with these targets).
* Geometric ops (``affine``, ``elastic``) produce sampling coordinates; consecutive
  ones are fused into ONE bilinear resampling (``jax.scipy.ndimage.map_coordinates``,
  order 1, zero fill), so ``affine+elastic`` blurs once and costs one gather.

Resampling is ``jax.scipy.ndimage.map_coordinates``, with the elastic field smoothed by
two 28x28 Gaussian matrices (a separable convolution with zero padding, equal to
``scipy.ndimage.gaussian_filter(mode='constant', truncate=4)``). dm-pix's
``elastic_deformation`` (a depthwise ``lax.conv`` blur) was not used: far slower on
the CPU (docs/performance.md).

Every op keeps shape and dtype, keeps values in [0, 1], and is the identity at zero
strength (and at ``p=0``). Parameters are static Python numbers (they shape the traced
computation: a Gaussian matrix, a padding, a box size), keys and images are traced.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import ndimage

from kmnist_jax.errors import UserError

Augmenter = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


# ---- Resampling --------------------------------------------------------------------------

def _grid(shape: Sequence[int]) -> jax.Array:
  """[2, H, W] float32 (row, col) coordinates of every pixel."""
  h, w = shape
  return jnp.stack(jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                                jnp.arange(w, dtype=jnp.float32), indexing="ij"))


def warp(image: jax.Array, coords: jax.Array) -> jax.Array:
  """out[i, j] = image[coords[:, i, j]] by bilinear interpolation, zero outside.

  `image` [H, W, C]; `coords` [2, H', W'] (row, col) in input pixels.
  """
  def one(channel):
    return ndimage.map_coordinates(channel, [coords[0], coords[1]], order=1,
                                   mode="constant", cval=0.0)
  out = jax.vmap(one, in_axes=-1, out_axes=-1)(image.astype(jnp.float32))
  return out.astype(image.dtype)


def _apply_coin(key, p: float):
  """True with probability p (a Python 1.0 gives a constant True)."""
  if p >= 1.0:
    return jnp.ones((), bool)
  return jax.random.bernoulli(key, p)


# ---- Affine ------------------------------------------------------------------------------

def _inverse_affine(rot_deg, scale, shear_deg):
  """The 2x2 pull matrix (output -> input, in (row, col)) of the forward transform
  shear (columns shift with the row), then rotation (counter-clockwise as displayed),
  then isotropic scaling."""
  t = jnp.deg2rad(rot_deg)
  c, s = jnp.cos(t), jnp.sin(t)
  # Forward on (row, col): R = [[c, -s], [s, c]], Sh = [[1, 0], [-tan, 1]], S = scale.
  # Inverse = Sh^-1 R^-1 S^-1 = [[1, 0], [tan, 1]] [[c, s], [-s, c]] / scale.
  tan = jnp.tan(jnp.deg2rad(shear_deg))
  rinv = jnp.stack([jnp.stack([c, s]), jnp.stack([-s, c])])
  shinv = jnp.stack([jnp.stack([jnp.ones_like(tan), jnp.zeros_like(tan)]),
                     jnp.stack([tan, jnp.ones_like(tan)])])
  return (shinv @ rinv) / scale


def _affine_coords(coords, shape, rot, scale, shear, shift):
  """Input coordinates of an affine about the image centre, translated by shift
  (dy, dx) pixels, applied to the output coordinates `coords` [2, H, W]."""
  center = (jnp.asarray(shape, jnp.float32) - 1.0) / 2.0
  minv = _inverse_affine(rot, scale, shear)
  rel = coords - (center + jnp.asarray(shift, jnp.float32))[:, None, None]
  return jnp.einsum("ij,jhw->ihw", minv, rel) + center[:, None, None]


def affine_transform(image: jax.Array, *, rot: float = 0.0, scale: float = 1.0,
                     shear: float = 0.0, shift: Sequence[float] = (0.0, 0.0)):
  """Deterministic affine: rotate `rot` degrees counter-clockwise (as displayed),
  scale by the factor `scale`, shear by `shear` degrees, about the centre, then
  translate by `shift` = (down, right) pixels. Bilinear, zero fill."""
  shape = image.shape[:2]
  return warp(image, _affine_coords(_grid(shape), shape, rot, scale, shear, shift))


def _affine_sample(key, shape, coords, *, rot, scale, shear, shift, p):
  k_rot, k_scale, k_shear, k_shift, k_p = jax.random.split(key, 5)
  on = _apply_coin(k_p, p).astype(jnp.float32)
  def u(k, n=()):
    return jax.random.uniform(k, n, minval=-1.0, maxval=1.0) * on
  return _affine_coords(coords if coords is not None else _grid(shape), shape,
                        rot=u(k_rot) * rot, scale=1.0 + u(k_scale) * scale,
                        shear=u(k_shear) * shear, shift=u(k_shift, (2,)) * shift)


def affine(key, image, *, rot: float = 10.0, scale: float = 0.1, shear: float = 10.0,
           shift: float = 2.0, p: float = 1.0):
  """Random affine: rotation U(-rot, rot) degrees, scale factor U(1-scale, 1+scale),
  shear U(-shear, shear) degrees, translation U(-shift, shift) pixels on each axis."""
  shape = image.shape[:2]
  return warp(image, _affine_sample(key, shape, None, rot=rot, scale=scale,
                                    shear=shear, shift=shift, p=p))


# ---- Elastic distortion (Simard et al. 2003) --------------------------------------------

def gaussian_matrix(n: int, sigma: float) -> np.ndarray:
  """G [n, n] with G @ v = 1-D Gaussian filter of v (zero padding, truncated at 4
  sigma, kernel normalised): scipy.ndimage.gaussian_filter1d(mode='constant')."""
  if sigma <= 0:
    return np.eye(n, dtype=np.float32)
  radius = int(4.0 * sigma + 0.5)
  k = np.arange(-radius, radius + 1)
  g = np.exp(-0.5 * (k / sigma) ** 2)
  g /= g.sum()
  d = np.arange(n)[:, None] - np.arange(n)[None, :]
  return np.where(np.abs(d) <= radius, g[np.clip(d + radius, 0, 2 * radius)],
                  0.0).astype(np.float32)


def elastic_field(key, shape, *, alpha: float, sigma: float) -> jax.Array:
  """[2, H, W] displacement: uniform(-1, 1) noise, Gaussian-smoothed (sigma, static),
  times alpha (Simard et al. 2003)."""
  h, w = shape
  u = jax.random.uniform(key, (2, h, w), minval=-1.0, maxval=1.0)
  gh, gw = jnp.asarray(gaussian_matrix(h, sigma)), jnp.asarray(gaussian_matrix(w, sigma))
  return alpha * jnp.einsum("ij,cjk,lk->cil", gh, u, gw)


def _elastic_sample(key, shape, coords, *, alpha, sigma, p):
  k_field, k_p = jax.random.split(key)
  on = _apply_coin(k_p, p).astype(jnp.float32)
  field = elastic_field(k_field, shape, alpha=alpha, sigma=sigma) * on
  if coords is None:  # on the pixel grid: the field is exact there
    return _grid(shape) + field
  # After another geometric op: the field at those (off-grid) points.
  def at(f):
    return ndimage.map_coordinates(f, [coords[0], coords[1]], order=1,
                                           mode="nearest")
  return coords + jnp.stack([at(field[0]), at(field[1])])


def elastic(key, image, *, alpha: float = 34.0, sigma: float = 4.0, p: float = 1.0):
  """Elastic distortion: pixels move by the smoothed random field (alpha, sigma)."""
  shape = image.shape[:2]
  return warp(image, _elastic_sample(key, shape, None, alpha=alpha, sigma=sigma, p=p))


# ---- Occlusion, noise, crop ---------------------------------------------------------------

def _box_mask(shape, top, left, height, width):
  """[H, W] bool: rows [top, top + height) x cols [left, left + width)."""
  h, w = shape
  r = jnp.arange(h)[:, None]
  c = jnp.arange(w)[None, :]
  return (r >= top) & (r < top + height) & (c >= left) & (c < left + width)


def cutout(key, image, *, size: int = 8, p: float = 1.0):
  """Cutout (DeVries & Taylor 2017): a size x size square of zeros centred on a
  uniform random pixel (clipped at the border)."""
  h, w = image.shape[:2]
  k_c, k_p = jax.random.split(key)
  cy, cx = jax.random.randint(k_c, (2,), 0, jnp.array([h, w]))
  on = _apply_coin(k_p, p)
  mask = _box_mask((h, w), cy - size // 2, cx - size // 2, size, size) & on
  return jnp.where(mask[..., None], jnp.zeros_like(image), image)


def erase(key, image, *, min_area: float = 0.02, max_area: float = 0.4,
          ratio: float = 3.3, p: float = 0.5):
  """Random erasing (Zhong et al. 2017): a rectangle of area U(min_area, max_area)
  of the image and aspect ratio log-uniform in [1/ratio, ratio], filled with uniform
  noise. (Rectangles that do not fit are clipped instead of redrawn.)"""
  h, w = image.shape[:2]
  k_a, k_r, k_y, k_x, k_v, k_p = jax.random.split(key, 6)
  area = jax.random.uniform(k_a, minval=min_area, maxval=max_area) * h * w
  log_r = jax.random.uniform(k_r, minval=-math.log(ratio), maxval=math.log(ratio))
  eh = jnp.clip(jnp.round(jnp.sqrt(area * jnp.exp(log_r))), 0, h).astype(jnp.int32)
  ew = jnp.clip(jnp.round(jnp.sqrt(area / jnp.exp(log_r))), 0, w).astype(jnp.int32)
  top = jnp.floor(jax.random.uniform(k_y) * (h - eh + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(k_x) * (w - ew + 1)).astype(jnp.int32)
  mask = _box_mask((h, w), top, left, eh, ew) & _apply_coin(k_p, p)
  fill = jax.random.uniform(k_v, image.shape, dtype=jnp.float32).astype(image.dtype)
  return jnp.where(mask[..., None], fill, image)


def noise(key, image, *, std: float = 0.1, p: float = 1.0):
  """Additive Gaussian noise N(0, std^2), clipped to [0, 1]."""
  k_n, k_p = jax.random.split(key)
  eps = jax.random.normal(k_n, image.shape, jnp.float32) * std
  eps = jnp.where(_apply_coin(k_p, p), eps, 0.0)
  return jnp.clip(image.astype(jnp.float32) + eps, 0.0, 1.0).astype(image.dtype)


def crop(key, image, *, pad: int = 2, p: float = 1.0):
  """Random crop with padding: zero-pad by `pad` pixels, crop the original size at a
  uniform random offset (an integer translation in [-pad, pad]^2, exact)."""
  h, w = image.shape[:2]
  pad = int(pad)
  if pad == 0:
    return image
  k_o, k_p = jax.random.split(key)
  off = jax.random.randint(k_o, (2,), 0, 2 * pad + 1)
  off = jnp.where(_apply_coin(k_p, p), off, pad)
  padded = jnp.pad(image, ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2))
  start = (off[0], off[1]) + (0,) * (image.ndim - 2)
  return jax.lax.dynamic_slice(padded, start, image.shape)


# ---- Batch-level: mixup, cutmix ------------------------------------------------------------

def _partner(key, x, targets):
  perm = jax.random.permutation(key, x.shape[0])
  return x[perm], targets[perm]


def mixup(key, x, targets, *, alpha: float = 0.2, p: float = 1.0):
  """mixup (Zhang et al. 2018): one lam ~ Beta(alpha, alpha) per batch;
  x = lam x + (1 - lam) x[perm], and the same for the targets."""
  if alpha <= 0:
    return x, targets
  k_l, k_perm, k_p = jax.random.split(key, 3)
  lam = jax.random.beta(k_l, alpha, alpha)
  lam = jnp.where(_apply_coin(k_p, p), lam, 1.0)
  x2, t2 = _partner(k_perm, x, targets)
  xm = (lam * x.astype(jnp.float32) + (1 - lam) * x2.astype(jnp.float32)).astype(x.dtype)
  return xm, lam * targets + (1 - lam) * t2


def cutmix(key, x, targets, *, alpha: float = 1.0, p: float = 0.5):
  """CutMix (Yun et al. 2019): one box per batch of area fraction ~(1 - lam),
  lam ~ Beta(alpha, alpha), pasted from x[perm]; targets mixed by the box's actual
  (clipped) area."""
  if alpha <= 0:
    return x, targets
  h, w = x.shape[1:3]
  k_l, k_perm, k_c, k_p = jax.random.split(key, 4)
  lam = jax.random.beta(k_l, alpha, alpha)
  cut = jnp.sqrt(1.0 - lam)
  bh, bw = (cut * h).astype(jnp.int32), (cut * w).astype(jnp.int32)
  cy, cx = jax.random.randint(k_c, (2,), 0, jnp.array([h, w]))
  top, left = jnp.clip(cy - bh // 2, 0, h), jnp.clip(cx - bw // 2, 0, w)
  bottom, right = jnp.clip(cy + bh - bh // 2, 0, h), jnp.clip(cx + bw - bw // 2, 0, w)
  mask = _box_mask((h, w), top, left, bottom - top, right - left) & _apply_coin(k_p, p)
  x2, t2 = _partner(k_perm, x, targets)
  xm = jnp.where(mask[None, :, :, None], x2, x)
  lam_area = 1.0 - jnp.sum(mask) / (h * w)
  return xm, lam_area * targets + (1 - lam_area) * t2


# ---- Registry ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Param:
  name: str
  default: float
  lo: float
  hi: float
  integer: bool = False
  doc: str = ""

  def range_text(self) -> str:
    return f"{self.lo:g} <= {self.name} <= {self.hi:g}" + (" (integer)" if self.integer
                                                           else "")


@dataclasses.dataclass(frozen=True)
class Op:
  name: str
  fn: Callable                  # the op alone: fn(key, image or (x, targets), **params)
  params: tuple[Param, ...]
  level: str                    # 'example' | 'batch'
  doc: str
  sample_coords: Callable | None = None   # geometric ops: (key, shape, coords, **params)

  @property
  def defaults(self) -> dict:
    return {q.name: q.default for q in self.params}


def _p(default=1.0):
  return Param("p", default, 0.0, 1.0, doc="probability of applying")


REGISTRY: dict[str, Op] = {op.name: op for op in (
    Op("affine", affine, (
        Param("rot", 10.0, 0.0, 180.0, doc="max rotation, degrees"),
        Param("scale", 0.1, 0.0, 0.9, doc="max relative scale change"),
        Param("shear", 10.0, 0.0, 60.0, doc="max shear, degrees"),
        Param("shift", 2.0, 0.0, 14.0, doc="max translation per axis, pixels"),
        _p()), "example", "random rotation, scale, shear and translation",
       sample_coords=_affine_sample),
    Op("elastic", elastic, (
        Param("alpha", 34.0, 0.0, 200.0, doc="displacement scale, pixels"),
        Param("sigma", 4.0, 0.0, 20.0, doc="smoothing of the field, pixels"),
        _p()), "example", "elastic distortion (Simard et al. 2003)",
       sample_coords=_elastic_sample),
    Op("cutout", cutout, (
        Param("size", 8, 0, 28, integer=True, doc="side of the zeroed square, pixels"),
        _p()), "example", "cutout: a zeroed square at a random centre"),
    Op("erase", erase, (
        Param("min_area", 0.02, 0.0, 1.0, doc="min erased area fraction"),
        Param("max_area", 0.4, 0.0, 1.0, doc="max erased area fraction"),
        Param("ratio", 3.3, 1.0, 10.0, doc="max aspect ratio"),
        _p(0.5)), "example", "random erasing with uniform noise (Zhong et al. 2017)"),
    Op("noise", noise, (
        Param("std", 0.1, 0.0, 1.0, doc="Gaussian noise standard deviation"),
        _p()), "example", "additive Gaussian noise, clipped to [0, 1]"),
    Op("crop", crop, (
        Param("pad", 2, 0, 14, integer=True, doc="zero padding before the crop, pixels"),
        _p()), "example", "random crop with zero padding"),
    Op("mixup", mixup, (
        Param("alpha", 0.2, 0.0, 100.0, doc="Beta(alpha, alpha) of the mixing weight"),
        _p()), "batch", "mixup of images and targets (Zhang et al. 2018)"),
    Op("cutmix", cutmix, (
        Param("alpha", 1.0, 0.0, 100.0, doc="Beta(alpha, alpha) of the kept area"),
        _p(0.5)), "batch", "CutMix: a box pasted from another example (Yun et al. 2019)"),
)}

NONE = "none"


def describe() -> str:
  """The registry as text: each op, its parameters, defaults and valid ranges."""
  lines = []
  for op in REGISTRY.values():
    lines.append(f"{op.name} ({op.level}): {op.doc}")
    for q in op.params:
      lines.append(f"    {q.name}={q.default:g}  [{q.range_text()}]  {q.doc}")
  return "\n".join(lines)


# ---- Parsing -------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _split_top(text: str, sep: str) -> list[str]:
  """Splits on `sep` outside parentheses."""
  parts, depth, cur = [], 0, []
  for ch in text:
    if ch == "(":
      depth += 1
    elif ch == ")":
      depth -= 1
    if ch == sep and depth == 0:
      parts.append("".join(cur))
      cur = []
    else:
      cur.append(ch)
  parts.append("".join(cur))
  return parts


def _error(policy: str, what: str) -> UserError:
  return UserError(f"augment policy {policy!r}: {what}")


def _parse_term(policy: str, term: str) -> tuple[str, dict]:
  text = term.strip()
  if not text:
    raise _error(policy, "empty term (two '+' in a row, or a '+' at an end); "
                 "write name(key=value, ...)+name(...)")
  m = re.match(r"^([^()]*?)\s*(?:\((.*)\))?$", text, re.S)
  if m is None or "(" in (m.group(1) or "") or (m.group(2) and ("(" in m.group(2)
                                                                or ")" in m.group(2))):
    raise _error(policy, f"cannot parse {text!r}; write name(key=value, ...) with "
                 "balanced parentheses")
  name, args = m.group(1).strip(), m.group(2)
  if name not in REGISTRY:
    raise _error(policy, f"unknown augmentation {name!r} in {text!r}; valid choices: "
                 f"{', '.join(REGISTRY)}")
  op = REGISTRY[name]
  valid = ", ".join(q.name for q in op.params)
  params = op.defaults
  given = set()
  for item in (_split_top(args, ",") if args and args.strip() else []):
    if "=" not in item:
      raise _error(policy, f"{name}: {item.strip()!r} is not key=value; parameters of "
                   f"{name}: {valid}")
    key, value = (s.strip() for s in item.split("=", 1))
    spec = next((q for q in op.params if q.name == key), None)
    if spec is None:
      raise _error(policy, f"{name}: unknown parameter {key!r}; valid parameters of "
                   f"{name}: {valid}")
    if key in given:
      raise _error(policy, f"{name}: parameter {key!r} given twice")
    given.add(key)
    try:
      v = float(value)
    except ValueError:
      raise _error(policy, f"{name}({key}={value}): {value!r} is not a number; "
                   f"valid: {spec.range_text()}") from None
    if not math.isfinite(v) or not spec.lo <= v <= spec.hi or (
        spec.integer and not v.is_integer()):
      raise _error(policy, f"{name}({key}={value}) is out of range; valid: "
                   f"{spec.range_text()}")
    params[key] = int(v) if spec.integer else v
  if name == "erase" and params["min_area"] > params["max_area"]:
    raise _error(policy, f"erase: min_area={params['min_area']:g} is larger than "
                 f"max_area={params['max_area']:g}; valid: min_area <= max_area")
  return name, params


def parse(policy: str) -> list[tuple[str, dict]]:
  """'affine(rot=15)+cutout' -> [('affine', {all params}), ('cutout', {...})].

  '' and 'none' give []. Raises UserError (one line naming the bad part and the valid
  choices) for unknown names or parameters and out-of-range values.
  """
  if not isinstance(policy, str):
    raise UserError(f"augment policy must be a string, got {type(policy).__name__}")
  if policy.strip() in ("", NONE):
    return []
  if policy.count("(") != policy.count(")"):
    raise _error(policy, "unbalanced parentheses; write name(key=value, ...)+name(...)")
  return [_parse_term(policy, t) for t in _split_top(policy, "+")]


def format_policy(parsed: list[tuple[str, dict]]) -> str:
  """The canonical string of a parsed policy (every parameter spelled out)."""
  if not parsed:
    return NONE
  return "+".join(f"{n}(" + ",".join(f"{k}={v:g}" for k, v in ps.items()) + ")"
                  for n, ps in parsed)


# ---- Building the augmenter ----------------------------------------------------------------

def _example_fn(ops: list[tuple[Op, dict, int]]) -> Callable:
  """(key, image) -> image applying `ops` in order, consecutive geometric ops fused
  into one resampling. Each op's key is fold_in(example key, its policy index)."""

  def f(key, image):
    i = 0
    while i < len(ops):
      op, params, idx = ops[i]
      if op.sample_coords is None:
        image = op.fn(jax.random.fold_in(key, idx), image, **params)
        i += 1
        continue
      j = i
      while j < len(ops) and ops[j][0].sample_coords is not None:
        j += 1
      # Pull mapping: the last op's coordinates are computed first.
      coords = None
      for g_op, g_params, g_idx in reversed(ops[i:j]):
        coords = g_op.sample_coords(jax.random.fold_in(key, g_idx), image.shape[:2],
                                    coords, **g_params)
      image = warp(image, coords)
      i = j
    return image

  return f


def build(policy: str, num_classes: int | None = None) -> Augmenter:
  """augmenter(key, x [B, H, W, C] in [0, 1], targets [B, num_classes]) -> (x, targets).

  Per-example ops run vmapped over ``jax.random.split(fold_in(key, segment), B)``;
  batch-level ops on the whole batch; all in one traced function (no host work).
  """
  parsed = parse(policy)
  segments: list[tuple[str, Any]] = []
  for idx, (name, params) in enumerate(parsed):
    op = REGISTRY[name]
    if op.level == "batch":
      segments.append(("batch", (op, params)))
    elif segments and segments[-1][0] == "example":
      segments[-1][1].append((op, params, idx))
    else:
      segments.append(("example", [(op, params, idx)]))

  def augmenter(key, x, targets):
    if num_classes is not None and targets.shape[-1] != num_classes:
      raise ValueError(f"targets have {targets.shape[-1]} classes, expected {num_classes}")
    for s, (kind, what) in enumerate(segments):
      k = jax.random.fold_in(key, s)
      if kind == "batch":
        op, params = what
        x, targets = op.fn(k, x, targets, **params)
      else:
        x = jax.vmap(_example_fn(what))(jax.random.split(k, x.shape[0]), x)
    return x, targets

  return augmenter


# ---- Cost ------------------------------------------------------------------------------------

def measure_cost(policy: str, images: np.ndarray | None = None, *, batch_size: int = 128,
                 steps: int = 50, repeats: int = 5, num_classes: int = 10) -> dict:
  """Milliseconds per batch of the policy inside a compiled ``lax.scan`` (as in
  training: a fresh key per step): the fastest of `repeats` calls of `steps` steps
  (the least disturbed by other work on a shared machine), and the median.

  `images`: uint8 [N, 28, 28] (N >= batch_size) or None for uniform noise.
  Returns {'ms_per_batch' (fastest), 'ms_per_batch_median', 'compile_s'}.
  """
  if images is None:
    x = jax.random.uniform(jax.random.key(0), (batch_size, 28, 28, 1))
  else:
    x = jnp.asarray(images[:batch_size], jnp.float32)[..., None] / 255.0
  t = jax.nn.one_hot(jnp.arange(batch_size) % num_classes, num_classes)
  aug = build(policy, num_classes)

  @jax.jit
  def run(x, t, key):
    def body(carry, i):
      y, u = aug(jax.random.fold_in(key, i), x, t)
      return carry + jnp.sum(y) + jnp.sum(u), None
    return jax.lax.scan(body, jnp.zeros(()), jnp.arange(steps))[0]

  t0 = time.perf_counter()
  run(x, t, jax.random.key(1)).block_until_ready()
  first = time.perf_counter() - t0
  times = []
  for r in range(repeats):
    t0 = time.perf_counter()
    run(x, t, jax.random.key(2 + r)).block_until_ready()
    times.append(time.perf_counter() - t0)
  med = float(np.median(times))
  return {"ms_per_batch": 1000.0 * min(times) / steps,
          "ms_per_batch_median": 1000.0 * med / steps,
          "compile_s": max(0.0, first - med)}


if __name__ == "__main__":
  print(describe())
