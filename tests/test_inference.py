"""kmnist_jax.inference: every output equals a direct model call, odd sizes are padded
and cut back, one trace per batch shape, dtype and conv formulation handled."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from kmnist_jax import config as config_lib
from kmnist_jax import inference, models, train
from kmnist_jax.errors import UserError

TOL = dict(rtol=1e-4, atol=1e-5)


def tiny_cnn(**kw):
  """A small CNN, initialised by one compiled program (as train.init_model does; op by
  op, every initializer compiles on its own)."""
  def build():
    return models.create("cnn", num_classes=10, rngs=nnx.Rngs(0), widths=(4, 8),
                         dense=16, dropout=0.0, **kw)
  graphdef, _ = nnx.split(nnx.eval_shape(build))
  return nnx.merge(graphdef, train.run_once(lambda: nnx.split(build())[1]))


@pytest.fixture(scope="module")
def model():
  m = tiny_cnn()
  # Non-trivial BatchNorm statistics, so that eval mode (running averages) matters.
  g, p, r = models.split(m)
  x = models.preprocess(images(64, seed=3))
  _, r = jax.jit(models.apply, static_argnames="train")(g, p, r, x, train=True)
  return nnx.merge(g, p, r)


def images(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def direct(model, x, method="__call__"):
  x = models.preprocess(x)
  if method == "activations":   # eager: the dict in the model's layer order
    return {k: np.asarray(v) for k, v in model.activations(x).items()}
  return np.asarray(_direct(model, x, method))


@nnx.jit(static_argnames="method")   # one compile, not one per operation of the model
def _direct(model, x, method):
  return getattr(model, method)(x, train=False)


def test_every_output_equals_a_direct_call(model):
  x = images(37)
  logits = direct(model, x)
  np.testing.assert_allclose(inference.predict(model, x, output="logits"), logits, **TOL)
  np.testing.assert_allclose(inference.predict(model, x, output="probs"),
                             np.asarray(jax.nn.softmax(logits, -1)), **TOL)
  labels = inference.predict(model, x)
  assert labels.dtype == np.int32 and labels.shape == (37,)
  np.testing.assert_array_equal(labels, logits.argmax(-1))
  feats = inference.predict(model, x, output="features")
  assert feats.dtype == np.float32 and feats.shape == (37, 16)
  np.testing.assert_allclose(feats, direct(model, x, "features"), **TOL)
  acts = inference.predict(model, x, output="activations", batch_size=16)
  want = direct(model, x, "activations")
  assert list(acts) == list(want) == ["stage1", "stage2", "features"]  # layer order
  for k in want:
    assert acts[k].shape == want[k].shape
    np.testing.assert_allclose(acts[k], want[k], **TOL)


def test_a_restored_checkpoint_and_a_bare_model_give_the_same(model):
  cfg = config_lib.base()
  restored = train.Restored(model=model, config=cfg, history=[], step=0, state=None)
  x = images(20)
  np.testing.assert_array_equal(inference.predict(restored, x, output="logits"),
                                inference.predict(model, x, output="logits"))
  with pytest.raises(UserError, match="expected a restored checkpoint"):
    inference.predict(object(), x)


@pytest.mark.parametrize("n", [1, 7, 250, 251, 999])
def test_odd_sizes_are_padded_and_cut_back(model, n):
  x = images(n, seed=n)
  out = inference.predict(model, x, output="logits", batch_size=250)
  assert out.shape == (n, 10)
  np.testing.assert_allclose(out, direct(model, x), **TOL)


def test_no_images(model):
  x = np.zeros((0, 28, 28), np.uint8)
  assert inference.predict(model, x).shape == (0,)
  assert inference.predict(model, x, output="probs").shape == (0, 10)
  acts = inference.predict(model, x, output="activations")
  assert {k: v.shape for k, v in acts.items()} == {
      "stage1": (0, 14, 14, 4), "stage2": (0, 7, 7, 8), "features": (0, 16)}


def test_compiled_once_per_shape(model):
  inference.compiled.cache_clear()
  traces = lambda: inference.TRACES["count"]  # noqa: E731
  t0 = traces()
  inference.predict(model, images(1200), batch_size=500)   # 3 batches of 500
  assert traces() == t0 + 1
  inference.predict(model, images(700), batch_size=500)    # same shape: no trace
  inference.predict(model, images(1200, seed=1), batch_size=500)
  assert traces() == t0 + 1
  inference.predict(model, images(3), batch_size=500)      # padded to 4: one new shape
  inference.predict(model, images(4), batch_size=500)
  assert traces() == t0 + 2
  assert inference.batch_shape(3, 500) == 4 and inference.batch_shape(501, 500) == 500
  inference.predict(model, images(700), batch_size=500, output="probs")  # new output
  assert traces() == t0 + 3
  # Another model object with the same structure reuses the compiled function.
  inference.predict(tiny_cnn(), images(700), batch_size=500)
  assert traces() == t0 + 3


def test_dtype(model):
  x = images(64)
  f32 = inference.predict(model, x, output="logits")
  bf16 = inference.predict(model, x, output="logits", dtype="bfloat16")
  assert bf16.dtype == np.float32  # outputs are float32 whatever the compute dtype
  assert not np.array_equal(bf16, f32)
  np.testing.assert_allclose(bf16, f32, atol=0.1 * np.abs(f32).max())
  # A model built in bfloat16 computes in bfloat16 by default (as a direct call does).
  m16 = tiny_cnn(dtype=jnp.bfloat16)
  assert inference.model_dtype(m16) == "bfloat16" and inference.model_dtype(model) == (
      "float32")
  np.testing.assert_allclose(inference.predict(m16, x, output="logits"), direct(m16, x),
                             rtol=0.05, atol=0.05)
  with pytest.raises(UserError, match="unknown dtype 'float16'"):
    inference.predict(model, x, dtype="float16")


def test_inference_uses_xla_convolutions_and_leaves_the_model_alone(model):
  m = tiny_cnn(conv_impl="im2col")
  convs = [c for _, c in nnx.iter_graph(m) if isinstance(c, nnx.Conv)]
  g, _, _, _ = inference.prepare(m)
  swapped = nnx.merge(g, *models.split(m)[1:])
  assert all(c.conv_general_dilated is jax.lax.conv_general_dilated
             for _, c in nnx.iter_graph(swapped) if isinstance(c, nnx.Conv))
  assert all(c.conv_general_dilated is not jax.lax.conv_general_dilated for c in convs)
  x = images(50)
  np.testing.assert_allclose(inference.predict(m, x, output="logits"), direct(m, x),
                             **TOL)
  np.testing.assert_allclose(inference.predict(m, x, output="logits", conv_impl="keep"),
                             direct(m, x), **TOL)


def test_bad_input(model):
  with pytest.raises(UserError, match=r"images must be uint8 \[N, 28, 28\], got float32"):
    inference.predict(model, images(5).astype(np.float32))
  with pytest.raises(UserError, match="unknown inference output 'proba'.*probs"):
    inference.predict(model, images(5), output="proba")
  with pytest.raises(UserError, match="batch_size must be >= 1"):
    inference.predict(model, images(5), batch_size=0)
  # [N, 28, 28, 1] is accepted as well.
  np.testing.assert_array_equal(inference.predict(model, images(5)[..., None]),
                                inference.predict(model, images(5)))


def test_forward_graphdef_swaps_the_convolutions_only():
  """The in-training evaluator's graphdef (train.py): every conv runs XLA's own
  convolution, the params / rest trees are the training ones, the model given is left
  as it was, and the logits match the training formulation's."""
  from jax import lax
  m = tiny_cnn(conv_impl="im2col")
  g, p, r = models.split(m)
  fg = inference.forward_graphdef(g, p, r)
  assert fg != g
  convs = [x for _, x in nnx.iter_graph(nnx.merge(fg, p, r)) if isinstance(x, nnx.Conv)]
  assert len(convs) == 2
  assert all(c.conv_general_dilated is lax.conv_general_dilated for c in convs)
  kept = [x for _, x in nnx.iter_graph(m) if isinstance(x, nnx.Conv)]
  assert all(c.conv_general_dilated is not lax.conv_general_dilated for c in kept)
  x = models.preprocess(images(50))
  a, _ = models.apply(g, p, r, x, train=False)
  b, _ = models.apply(fg, p, r, x, train=False)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)
