"""The CPU convolution formulations equal lax.conv_general_dilated, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from kmnist_jax import convs as ops
from kmnist_jax.errors import UserError

DN = ("NHWC", "HWIO", "NHWC")


def normal(rng, shape):
  """Test inputs: float32 standard normals from a seeded numpy Generator (an eager
  jax.random draw compiles a threefry program per shape, seconds each on 2 cores)."""
  return jnp.asarray(rng.standard_normal(shape, np.float32))


@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((2, 28, 28, 1), (3, 3, 1, 4), (1, 1), "SAME"),
    ((2, 28, 28, 3), (3, 3, 3, 5), (1, 1), "VALID"),
    ((2, 7, 7, 4), (3, 3, 4, 6), (2, 2), ((1, 1), (1, 1))),
    ((2, 14, 14, 4), (1, 1, 4, 8), (2, 2), "VALID"),
    ((2, 9, 9, 2), (3, 3, 2, 2), (2, 2), "SAME"),
    ((2, 12, 12, 8), (3, 3, 8, 16), (1, 1), ((0, 2), (1, 0))),
    ((2, 9, 9, 3), (5, 5, 3, 4), (1, 1), "SAME"),
    ((2, 20, 20, 16), (3, 3, 16, 8), (1, 1), "VALID"),
])
@pytest.mark.parametrize("impl", ["im2col", "fwdconv", "auto"])
def test_matches_lax_conv(shape, kernel, stride, padding, impl):
  rng = np.random.default_rng(0)
  x, w = normal(rng, shape), normal(rng, kernel)
  def ref(x, w):
    return lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=DN)
  conv = ops.conv_fn(impl)
  def got(x, w):
    return conv(x, w, stride, padding, dimension_numbers=DN)
  # Each side under one jit, as in training (op by op, every operation compiles).
  np.testing.assert_allclose(jax.jit(got)(x, w), jax.jit(ref)(x, w), rtol=1e-4, atol=1e-4)
  def grads(f):
    return jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), (0, 1)))(x, w)
  for a, b in zip(grads(got), grads(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_other_configurations_fall_back_to_lax():
  x = jnp.ones((1, 8, 8, 4))
  w = jnp.ones((3, 3, 2, 4))
  out = ops.conv_im2col(x, w, (1, 1), "SAME", dimension_numbers=DN, feature_group_count=2)
  ref = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN,
                                 feature_group_count=2)
  np.testing.assert_allclose(out, ref)


def test_resolve():
  assert ops.resolve_conv_impl("auto") == "cpu_auto"  # tests run on CPU
  assert ops.resolve_conv_impl("xla") == "xla"
  with pytest.raises(UserError, match="conv_impl 'cudnn'.*auto, xla, im2col, fwdconv"):
    ops.resolve_conv_impl("cudnn")


def test_cpu_auto_picks_by_feature_map_size(monkeypatch):
  calls = []
  monkeypatch.setattr(ops, "conv_fwdconv", lambda *a, **k: calls.append("fwdconv"))
  monkeypatch.setattr(ops, "conv_im2col", lambda *a, **k: calls.append("im2col"))
  w = jnp.ones((3, 3, 4, 4))
  for side in (ops.FWDCONV_MAX_SIDE, ops.FWDCONV_MAX_SIDE + 1):
    ops.conv_cpu_auto(jnp.ones((1, side, side, 4)), w, (1, 1), "SAME",
                      dimension_numbers=DN)
  assert calls == ["fwdconv", "im2col"]


@pytest.mark.parametrize("shape,kernel,padding", [
    ((3, 28, 28, 8), (3, 3), ((1, 1), (1, 1))),     # SAME
    ((2, 26, 26, 32), (3, 3), ((0, 0), (0, 0))),    # keras_cnn conv2 (VALID)
    ((2, 19, 21, 8), (5, 3), ((2, 1), (0, 2))),     # non-square, uneven padding
])
def test_gathered_columns_equal_the_concatenated_slices(shape, kernel, padding):
  """Stride-1 im2col is one gather; its values and gradient are bit-identical to the
  concatenation of shifted slices (and its autodiff transpose)."""
  kh, kw = kernel
  rng = np.random.default_rng(1)
  x = normal(rng, shape)
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
  def concat(x):
    return ops._concat_cols(jnp.pad(x, ((0, 0), *padding, (0, 0))), kh, kw, (1, 1), ho, wo)
  def gathered(x):
    return ops._cols(x, kh, kw, padding)
  want, want_vjp = jax.vjp(jax.jit(concat), x)
  got, got_vjp = jax.vjp(jax.jit(gathered), x)
  assert got.shape == (shape[0], ho, wo, kh * kw * shape[3])
  np.testing.assert_array_equal(got, want)
  g = normal(rng, got.shape)
  np.testing.assert_array_equal(got_vjp(g)[0], want_vjp(g)[0])
  # The gather really is the forward pass (not the slices).
  hlo = jax.jit(gathered).lower(x).as_text()
  assert "gather" in hlo and "concatenate" not in hlo
