"""Convolution formulations, chosen per backend (and on CPU, per layer shape).

Why this exists: on XLA:CPU (jaxlib 0.10.2) a convolution's *gradients* inside a
``while`` loop -- which is what ``lax.scan`` over training steps compiles to -- run
one to two orders of magnitude slower than the forward convolution. Two formulations
avoid them:

* ``im2col``: shifted slices concatenated, then one matmul; its backward pass is
  matmuls, slices and pads only.
* ``fwdconv``: the im2col forward pass and kernel gradient (one matmul with the saved
  columns), with the *input* gradient written as a forward convolution (the full
  correlation of the output gradient with the flipped kernel), which XLA:CPU runs at
  full speed in loops. It wins on small feature maps and loses on large ones
  (``benchmarks/cpu_variants.py --variants=default,fwdconv,im2col``; docs/performance.md).

In both, the kernel gradient is one matmul, written as (dy^T cols)^T
(:func:`kernel_grad`): in the direct operand order XLA:CPU transposes the larger
operand first (``benchmarks/conv_grad.py``). The columns themselves are the
concatenation of kh*kw shifted slices, or, on large maps with many channels, one
gather that writes them in a single pass (:func:`_cols`; values and gradients
bit-identical).

``auto`` is ``lax.conv_general_dilated`` on GPU/TPU (cuDNN / the TPU convolution
units) and, on CPU, ``fwdconv`` for stride-1 convs whose input is at most
``FWDCONV_MAX_SIDE`` pixels on a side, ``im2col`` otherwise. All formulations compute
the same function with the same parameters, so a checkpoint trained with one restores
and evaluates with another.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from kmnist_jax.errors import UserError

CONV_IMPLS = ("auto", "xla", "im2col", "fwdconv")
FWDCONV_MAX_SIDE = 16  # CPU 'auto': fwdconv up to this input height / width
GATHER_MIN_CHANNELS = 8    # stride-1 im2col columns by one gather from this many channels
GATHER_MIN_PIXELS = 16 * 16  # ... on output maps larger than this


def resolve_conv_impl(impl: str) -> str:
  """'auto' -> 'cpu_auto' (per layer: fwdconv or im2col) on CPU, 'xla' on GPU/TPU."""
  if impl not in CONV_IMPLS:
    raise UserError(f"unknown conv_impl {impl!r}; valid choices: {', '.join(CONV_IMPLS)}")
  if impl == "auto":
    return "cpu_auto" if jax.default_backend() == "cpu" else "xla"
  return impl


def _is_default_2d(dimension_numbers, lhs_dilation, rhs_dilation, feature_group_count,
                   batch_group_count, ndim):
  if ndim != 4 or feature_group_count != 1 or batch_group_count != 1:
    return False
  if any(d != 1 for d in (lhs_dilation or (1, 1))) or any(
      d != 1 for d in (rhs_dilation or (1, 1))):
    return False
  if dimension_numbers is None:
    return False
  dn = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers)
  return dn == lax.conv_dimension_numbers((1,) * 4, (1,) * 4, ("NHWC", "HWIO", "NHWC"))


def conv_im2col(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                precision=None, preferred_element_type=None, **unused):
  """Drop-in for ``lax.conv_general_dilated`` (NHWC x HWIO, no dilation, no groups).

  Any other configuration falls through to ``lax.conv_general_dilated``.
  """
  if not _is_default_2d(dimension_numbers, lhs_dilation, rhs_dilation,
                        feature_group_count, batch_group_count, lhs.ndim):
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
        dimension_numbers, feature_group_count, batch_group_count, precision,
        preferred_element_type)
  h, w, c = lhs.shape[1:]
  kh, kw, _, o = rhs.shape
  sh, sw = window_strides
  if isinstance(padding, str):
    padding = lax.padtype_to_pads((h, w), (kh, kw), (sh, sw), padding)
  cols = _cols(lhs, kh, kw, padding, (sh, sw))
  if preferred_element_type is not None:
    return lax.dot_general(cols, rhs.reshape(kh * kw * c, o),
                           (((3,), (0,)), ((), ())), precision=precision,
                           preferred_element_type=preferred_element_type)
  return _matmul(cols, rhs.reshape(kh * kw * c, o), precision)


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, padding, precision, preferred_element_type):
  return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC,
                                  precision=precision,
                                  preferred_element_type=preferred_element_type)


def _cols(x, kh, kw, padding, strides=(1, 1)):
  """im2col: [b, Ho, Wo, kh*kw*c], the taps in (i, j, c) order.

  Stride-1 columns of large maps with many channels (:func:`_gather_pays`: keras_cnn's
  second conv) are built with one gather (:func:`_gathered_cols`); the rest concatenate
  shifted slices. Both give the same array and the same gradient.
  """
  (pt, pb), (pl, pr) = padding
  x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  sh, sw = strides
  ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  if kh * kw == 1 or (sh, sw) != (1, 1) or not _gather_pays(ho, wo, x.shape[3]):
    return _concat_cols(x, kh, kw, (sh, sw), ho, wo)
  return _gathered_cols(x, (x.shape, kh, kw, ho, wo))


def _gather_pays(ho: int, wo: int, c: int) -> bool:
  """Whether one gather builds these columns faster than the concatenation: only for
  large maps of many channels (keras_cnn's 24x24 x 32); on small maps and on one input
  channel the gather was slower, so those keep the concatenation (docs/performance.md)."""
  return c >= GATHER_MIN_CHANNELS and ho * wo > GATHER_MIN_PIXELS


def _concat_cols(x, kh, kw, strides, ho, wo):
  """The columns of the padded input as kh*kw shifted (strided) slices, concatenated."""
  sh, sw = strides
  cols = [x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]
  return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


@functools.lru_cache(maxsize=64)
def _row_starts(hp: int, wp: int, c: int, kh: int, ho: int, wo: int) -> np.ndarray:
  """Flat offsets into a padded [hp, wp, c] image of each (h, w, i) column piece: the
  kw*c taps of kernel row i at output (h, w) are contiguous there."""
  h, w, i = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(kh), indexing="ij")
  return (((h + i) * wp + w) * c).reshape(-1, 1).astype(np.int32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _gathered_cols(x, geometry):
  """Stride-1 im2col of the padded x as ONE gather of ho*wo*kh contiguous pieces of
  kw*c values (the kh*kw taps in (i, j, c) order, as :func:`_concat_cols` gives).

  Why: XLA:CPU writes the concatenation of nine shifted slices in two passes (each
  slice, then the concatenate); the gather writes the columns once
  (``benchmarks/profile_step.py --model=keras_cnn``). The gradient is the
  transpose of :func:`_concat_cols` (slices, pads and adds, which XLA fuses well),
  not the gather's scatter-add, so values and gradients are bit-identical to it.
  """
  shape, kh, kw, ho, wo = geometry
  b, hp, wp, c = shape
  dnums = lax.GatherDimensionNumbers(offset_dims=(0, 2), collapsed_slice_dims=(),
                                     start_index_map=(1,))
  cols = lax.gather(x.reshape(b, hp * wp * c),
                    jnp.asarray(_row_starts(hp, wp, c, kh, ho, wo)), dnums,
                    slice_sizes=(b, kw * c), mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)
  return cols.reshape(b, ho, wo, kh * kw * c)


def _gathered_cols_fwd(x, geometry):
  return _gathered_cols(x, geometry), None


def _gathered_cols_bwd(geometry, _, g):
  shape, kh, kw, ho, wo = geometry
  transpose = jax.linear_transpose(
      lambda x: _concat_cols(x, kh, kw, (1, 1), ho, wo),
      jax.ShapeDtypeStruct(shape, g.dtype))
  return transpose(g)


_gathered_cols.defvjp(_gathered_cols_fwd, _gathered_cols_bwd)


def kernel_grad(cols, dy, precision):
  """dW [K, O] = cols^T dy, contracting the batch and spatial dims, as (dy^T cols)^T.

  The same sum as ``dot_general(cols, dy)`` over dims (0, 1, 2), in the operand order
  XLA:CPU runs fastest: the direct form makes XLA transpose the larger operand
  (``benchmarks/conv_grad.py``, results/conv_grad/).
  """
  k, o = cols.shape[-1], dy.shape[-1]
  return lax.dot_general(dy.reshape(-1, o), cols.reshape(-1, k), (((0,), (0,)), ((), ())),
                         precision=precision).T


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(cols, w2d, precision):
  """cols [..., K] @ w2d [K, O], with :func:`kernel_grad` as the weight gradient."""
  return lax.dot_general(cols, w2d, (((cols.ndim - 1,), (0,)), ((), ())),
                         precision=precision)


def _matmul_fwd(cols, w2d, precision):
  return _matmul(cols, w2d, precision), (cols, w2d)


def _matmul_bwd(precision, res, dy):
  cols, w2d = res
  dy = dy.astype(cols.dtype)
  dcols = lax.dot_general(dy, w2d, (((dy.ndim - 1,), (1,)), ((), ())),
                          precision=precision)
  return dcols.astype(cols.dtype), kernel_grad(cols, dy, precision).astype(w2d.dtype)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _fwdconv(x, w, padding, precision, preferred_element_type):
  return _fwdconv_fwd(x, w, padding, precision, preferred_element_type)[0]


def _fwdconv_fwd(x, w, padding, precision, preferred_element_type):
  kh, kw, c, o = w.shape
  cols = _cols(x, kh, kw, padding)
  y = lax.dot_general(cols, w.reshape(kh * kw * c, o), (((3,), (0,)), ((), ())),
                      precision=precision, preferred_element_type=preferred_element_type)
  return y, (cols, w)


def _fwdconv_bwd(padding, precision, preferred_element_type, res, dy):
  cols, w = res
  kh, kw, c, o = w.shape
  (pt, pb), (pl, pr) = padding
  dy = dy.astype(cols.dtype)
  dw = kernel_grad(cols, dy, precision).reshape(kh, kw, c, o)
  # dx: the "full" correlation of dy with the spatially flipped kernel (in/out
  # swapped), a forward convolution, which XLA:CPU runs fast inside loops.
  w_t = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
  dx = _conv(dy, w_t, ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr)),
             precision, None)
  return dx.astype(cols.dtype), dw.astype(w.dtype)


_fwdconv.defvjp(_fwdconv_fwd, _fwdconv_bwd)


def conv_fwdconv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                 precision=None, preferred_element_type=None, **unused):
  """Drop-in for ``lax.conv_general_dilated``: im2col forward and kernel gradient, the
  input gradient as a forward convolution (see the module docstring).

  Stride-1, undilated, ungrouped NHWC x HWIO convolutions with padding <= kernel - 1
  take this path; anything else falls through to :func:`conv_im2col`.
  """
  args = (lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
          dimension_numbers, feature_group_count, batch_group_count, precision,
          preferred_element_type)
  if tuple(window_strides) != (1, 1) or not _is_default_2d(
      dimension_numbers, lhs_dilation, rhs_dilation, feature_group_count,
      batch_group_count, lhs.ndim):
    return conv_im2col(*args)
  kh, kw = rhs.shape[:2]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), (1, 1), padding)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if any(p < 0 or p > k - 1 for (lo, hi), k in zip(padding, (kh, kw)) for p in (lo, hi)):
    return conv_im2col(*args)
  return _fwdconv(lhs, rhs, padding, precision, preferred_element_type)


def conv_cpu_auto(lhs, rhs, *args, **kwargs):
  """CPU default: :func:`conv_fwdconv` on small feature maps, :func:`conv_im2col` on
  large ones (``FWDCONV_MAX_SIDE``)."""
  if lhs.ndim == 4 and max(lhs.shape[1:3]) <= FWDCONV_MAX_SIDE:
    return conv_fwdconv(lhs, rhs, *args, **kwargs)
  return conv_im2col(lhs, rhs, *args, **kwargs)


@functools.cache
def conv_fn(impl: str):
  """The `conv_general_dilated` to give ``nnx.Conv`` for an implementation name."""
  impl = resolve_conv_impl(impl)
  return {"im2col": conv_im2col, "fwdconv": conv_fwdconv,
          "cpu_auto": conv_cpu_auto}.get(impl, lax.conv_general_dilated)
