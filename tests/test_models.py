"""Tests for kmnist_jax.models: shapes, registry, dtypes, purity, overfitting, BN sync."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from kmnist_jax import errors
from kmnist_jax import models as M

B = 8
# Small configurations so every test compiles in about a second on 2 CPU cores.
SMALL = {
    'logreg': {},
    'mlp': {'hidden': 32},
    'keras_cnn': {},
    'cnn': {'widths': (8, 16), 'dense': 32},
    'preact_resnet18': {'width': 4},
}
FEATURE_DIM = {'logreg': 784, 'mlp': 32, 'keras_cnn': 128, 'cnn': 32, 'preact_resnet18': 32}
HAS_DROPOUT = {'mlp', 'keras_cnn', 'cnn'}


def test_small_covers_registry():
  assert set(SMALL) == set(M.MODELS)


@functools.lru_cache(maxsize=None)
def _small_states(name, num_classes, kw_items):
  return M.split(M.create(name, num_classes=num_classes, rngs=rngs(), **dict(kw_items)))


def normal(seed, shape):
  """Test inputs: float32 standard normals from a seeded numpy Generator (an eager
  jax.random draw compiles a threefry program per shape, seconds each on 2 cores)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


def rngs(seed=0):
  # 'rbg' keys: initialising each new weight shape compiles ~3x faster than threefry.
  return nnx.Rngs(jax.random.key(seed, impl='rbg'))


def small(name, num_classes=10, **kw):
  """A fresh copy of a small model; each configuration is initialised once per session
  (eager initialisation compiles one random op per weight shape: seconds on 2 cores).

  conv_impl='xla' unless asked: im2col graphs compile several times slower on CPU;
  test_conv_impls_agree checks that both give the same function."""
  kw = {'conv_impl': 'xla', **SMALL[name], **kw}
  return nnx.merge(*_small_states(name, num_classes, tuple(sorted(kw.items()))), copy=True)


@pytest.fixture(scope='module')
def images():
  return np.random.RandomState(0).randint(0, 256, (B, 28, 28), dtype=np.uint8)


@pytest.fixture(scope='module')
def x(images):
  return M.preprocess(images)


def bn_stats(rest):
  return [np.asarray(a) for a in jax.tree.leaves(rest)]


# --------------------------------------------------------------------------- preprocess


def test_preprocess_uint8(images):
  x = M.preprocess(images)
  assert x.shape == (B, 28, 28, 1) and x.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(x)[..., 0], images / 255.0, rtol=1e-6)
  edges = M.preprocess(np.array([[[0] * 28] * 28, [[255] * 28] * 28], np.uint8))
  assert float(edges.min()) == 0.0 and float(edges.max()) == 1.0
  np.testing.assert_array_equal(M.preprocess(images[..., None]), x)


def test_preprocess_float_passthrough_jit_and_dtype(images):
  xf = images.astype(np.float32) / 255
  np.testing.assert_array_equal(M.preprocess(xf), xf[..., None])
  xj = jax.jit(M.preprocess)(images)
  np.testing.assert_allclose(xj, M.preprocess(images), rtol=1e-6)
  xb = jax.jit(M.preprocess, static_argnums=1)(images, jnp.bfloat16)
  assert xb.dtype == jnp.bfloat16 and xb.shape == (B, 28, 28, 1)


def test_preprocess_bad_shape():
  with pytest.raises(errors.UserError, match=r'28, 28'):
    M.preprocess(np.zeros((2, 32, 32, 3), np.uint8))


# --------------------------------------------------------------------------- registry


def test_unknown_model_names_choices():
  with pytest.raises(errors.UserError) as e:
    M.create('resnet', num_classes=10, rngs=rngs())
  msg = str(e.value)
  assert "'resnet'" in msg
  for name in M.MODELS:
    assert name in msg


def test_unknown_kwarg_names_kwarg_and_choices():
  with pytest.raises(errors.UserError) as e:
    M.create('cnn', num_classes=10, rngs=rngs(), width=8)
  msg = str(e.value)
  assert "'width'" in msg and "'cnn'" in msg
  for k in ('widths', 'dense', 'dropout'):
    assert k in msg
  with pytest.raises(errors.UserError, match=r"'dropout'.*accepted arguments: none"):
    M.create('logreg', num_classes=10, rngs=rngs(), dropout=0.5)
  with pytest.raises(errors.UserError, match='dropout'):
    M.create('mlp', num_classes=10, rngs=rngs(), dropout=1.5)


def test_model_kwargs():
  assert M.model_kwargs('preact_resnet18') == {'width': 64}
  cnn = M.model_kwargs('cnn')
  assert {k: cnn[k] for k in ('widths', 'dense', 'dropout')} == {
      'widths': (32, 64), 'dense': 256, 'dropout': 0.3}
  assert M.model_kwargs('keras_cnn') == {}
  for name in M.MODELS:  # the arguments every model takes are not model kwargs
    assert not {'num_classes', 'rngs', 'bn_axis_name', 'dtype'} & set(M.model_kwargs(name))


def test_keras_cnn_param_count_matches_keras():
  assert M.param_count(M.create('keras_cnn', num_classes=10, rngs=rngs())) == 1_199_882


def test_full_size_param_counts():
  # eval_shape: count without allocating the 11M-parameter ResNet.
  def count(name, **kw):
    return M.param_count(nnx.eval_shape(
        lambda: M.create(name, num_classes=10, rngs=rngs(), **kw)))
  assert count('logreg') == 7_850
  assert count('mlp') == 669_706
  assert count('mlp', hidden_sizes=(256,)) == 784 * 256 + 256 + 2570
  assert count('cnn') == 824_810  # the default (experiments/configs/kmnist_cnn.py)
  assert count('cnn', depth=2) == 871_082
  # PreActResNet-18 with a 1-channel stem and the final BN (kuangliu's CIFAR
  # count 11,171,146 - 2*576 stem weights + 1,024 final BN).
  assert count('preact_resnet18') == 11_171_018


def test_param_count_of_params_pytree():
  m = small('cnn')
  _, params, rest = M.split(m)
  assert M.param_count(params) == M.param_count(m)
  assert jax.tree.leaves(rest)  # BN stats are not params
  assert M.param_count(m) == sum(a.size for a in jax.tree.leaves(params))


# --------------------------------------------------------------------------- every model


@pytest.mark.parametrize('name', sorted(SMALL))
def test_shapes_head_features_and_49_classes(name, x):
  m = small(name, num_classes=49)
  assert isinstance(m, M.Model) and m.num_classes == 49
  assert isinstance(m.head, nnx.Linear)
  g, p, r = M.split(m)
  key = jax.random.key(3)

  @jax.jit  # one compile for all the calls (eager op-by-op is slower on 2 cores)
  def outputs(p, r, x):
    m = nnx.merge(g, p, r, copy=True)
    logits, feats = m(x), m.features(x)
    out, _ = M.apply(g, p, r, x, train=True, key=key)
    f, _ = M.apply(g, p, r, x, train=True, key=key, method='features')
    h, _ = M.apply(g, p, r, f, train=True, method='head')
    return logits, feats, m.head(feats), out, h

  logits, feats, head_of_feats, out, h = outputs(p, r, x)
  assert logits.shape == (B, 49) and logits.dtype == jnp.float32
  assert feats.shape == (B, FEATURE_DIM[name]) and feats.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  np.testing.assert_allclose(head_of_feats, logits, rtol=1e-6, atol=1e-6)
  # Train mode through the functional view: features then head == __call__.
  assert out.shape == (B, 49) and out.dtype == jnp.float32
  np.testing.assert_allclose(h, out, rtol=1e-6, atol=1e-6)


def test_eager_call_and_head_replacement(x):
  m = small('cnn')
  logits = m(x)
  np.testing.assert_allclose(m.head(m.features(x)), logits, rtol=1e-6, atol=1e-6)
  # Transfer learning: a new head changes the classes and keeps the features.
  feats = m.features(x)
  m.head = nnx.Linear(FEATURE_DIM['cnn'], 5, rngs=rngs(1))
  g, p, r = M.split(m)
  out, _ = M.apply(g, p, r, x, train=False)
  assert out.shape == (B, 5) and out.dtype == jnp.float32
  np.testing.assert_array_equal(M.apply(g, p, r, x, train=False, method='features')[0], feats)


@pytest.mark.parametrize('name', sorted(SMALL))
def test_bfloat16_compute(name, images):
  g16, p, r = M.split(small(name, dtype=jnp.bfloat16))
  g32, p32, _ = M.split(small(name))
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(p))  # params stay float32
  assert M.param_count(p) == M.param_count(p32)

  @jax.jit
  def run(p, r, imgs):
    x16 = M.preprocess(imgs, jnp.bfloat16)
    train16, _ = M.apply(g16, p, r, x16, train=True, key=jax.random.key(0))
    eval16, _ = M.apply(g16, p, r, x16, train=False)
    eval32, _ = M.apply(g32, p, r, M.preprocess(imgs), train=False)
    return train16, eval16, eval32

  train16, eval16, eval32 = run(p, r, images)
  for logits in (train16, eval16):
    assert logits.dtype == jnp.float32 and logits.shape == (B, 10)
    assert np.isfinite(np.asarray(logits)).all()
  # Same parameters in float32 give nearly the same logits.
  scale = float(jnp.abs(eval32).max())
  np.testing.assert_allclose(eval16, eval32, atol=0.1 * scale + 0.05)


@pytest.mark.parametrize('name', sorted(SMALL))
def test_train_key_required_iff_dropout(name, x):
  # eval_shape traces without compiling: the check happens at trace time.
  def trace(model, **kw):
    g, p, r = M.split(model)
    return jax.eval_shape(lambda p, r: M.apply(g, p, r, x, **kw), p, r)
  m = small(name)
  if name in HAS_DROPOUT:
    with pytest.raises(ValueError, match='key'):
      trace(m, train=True)
    with pytest.raises(ValueError, match='key'):
      m(x, train=True)  # eager too (raises before any computation)
    if name != 'keras_cnn':  # dropout rate 0 needs no key
      trace(small(name, dropout=0.0), train=True)
  else:
    trace(m, train=True)
  trace(m, train=False)  # eval never needs a key


def test_conv_impls_agree(x, name='cnn'):
  """Whole model, 'xla' vs the CPU formulations (tests/test_convs.py checks each conv
  configuration): same parameters, same outputs and gradients."""
  impls = ('xla', 'im2col', 'fwdconv')
  states = {impl: M.split(small(name, conv_impl=impl)) for impl in impls}
  for impl in impls[1:]:
    for a, b in zip(jax.tree.leaves(states['xla'][1]), jax.tree.leaves(states[impl][1])):
      np.testing.assert_array_equal(a, b)

  def loss_and_grad(impl):
    g, p, r = states[impl]
    def loss(p):
      out, _ = M.apply(g, p, r, x, train=True, key=jax.random.key(0))
      return jnp.mean(out ** 2)
    return jax.jit(jax.value_and_grad(loss))(p)

  lx, gx = loss_and_grad('xla')
  for impl in impls[1:]:
    li, gi = loss_and_grad(impl)
    np.testing.assert_allclose(li, lx, rtol=1e-4)
    for a, b in zip(jax.tree.leaves(gx), jax.tree.leaves(gi)):
      np.testing.assert_allclose(b, a, rtol=2e-3, atol=1e-5 * float(np.abs(a).max()) + 1e-7)
  with pytest.raises(errors.UserError, match='im2col'):
    M.create(name, num_classes=10, rngs=rngs(), conv_impl='fft')


@pytest.mark.parametrize('name', sorted(SMALL))
def test_adam_overfits_tiny_batch(name, images):
  labels = jnp.arange(B) % 10
  m = small(name)
  g, p, r = M.split(m)
  tx = optax.adam(3e-3)
  o = tx.init(p)

  @jax.jit
  def step(p, r, o, imgs, key):
    def loss_fn(p):
      logits, new_r = M.apply(g, p, r, M.preprocess(imgs), train=True, key=key)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new_r
    (loss, r), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
    updates, o = tx.update(grads, o, p)
    return optax.apply_updates(p, updates), r, o, loss

  @jax.jit  # one compile (eager op-by-op compiles each operation of the model)
  def eval_loss(p, r):
    logits, _ = M.apply(g, p, r, M.preprocess(images), train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  first = None
  for i in range(25):
    p, r, o, loss = step(p, r, o, images, jax.random.key(i))
    first = float(loss) if first is None else first
  assert float(loss) < 0.5 * first, (first, float(loss))
  assert float(eval_loss(p, r)) < first


# --------------------------------------------------------------------------- functional view


def test_apply_is_pure_and_jits(x):
  m = small('cnn')
  g, p, r = M.split(m)
  before = bn_stats(r)
  key = jax.random.key(0)
  out1, r1 = M.apply(g, p, r, x, train=True, key=key)
  out2, r2 = M.apply(g, p, r, x, train=True, key=key)
  np.testing.assert_array_equal(out1, out2)
  for a, b in zip(bn_stats(r1), bn_stats(r2)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(before, bn_stats(r)):  # caller's state untouched
    np.testing.assert_array_equal(a, b)
  for a, b in zip(before, bn_stats(nnx.state(m, nnx.BatchStat))):  # and the model's
    np.testing.assert_array_equal(a, b)

  fn = jax.jit(M.apply, static_argnames=('train', 'method'))
  out3, r3 = fn(g, p, r, x, train=True, key=key)
  np.testing.assert_allclose(out3, out1, rtol=1e-5, atol=1e-5)
  for a, b in zip(bn_stats(r1), bn_stats(r3)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert jax.tree.structure(r3) == jax.tree.structure(r)


def test_batch_stats_change_only_in_train(x):
  g, p, r = M.split(small('preact_resnet18'))
  # Under jit: one compile per mode (op by op, each of the ResNet's operations compiles).
  jit_apply = jax.jit(M.apply, static_argnames=('train', 'method'))
  _, r_eval = jit_apply(g, p, r, x, train=False)
  for a, b in zip(bn_stats(r), bn_stats(r_eval)):
    np.testing.assert_array_equal(a, b)
  _, r_train = jit_apply(g, p, r, x, train=True)
  changed = [not np.array_equal(a, b) for a, b in zip(bn_stats(r), bn_stats(r_train))]
  assert all(changed)
  # Eval uses running averages: after a train step the eval output moves.
  e0, _ = jit_apply(g, p, r, x, train=False)
  e1, _ = jit_apply(g, p, r_train, x, train=False)
  assert not np.allclose(e0, e1)


@pytest.mark.parametrize('name', ['mlp', 'keras_cnn', 'cnn'])
def test_dropout_depends_on_key_and_is_off_in_eval(name, x):
  # dropout=0 where configurable so BN is the only other train/eval difference.
  g, p, r = M.split(small(name))
  a, _ = M.apply(g, p, r, x, train=True, key=jax.random.key(0))
  b, _ = M.apply(g, p, r, x, train=True, key=jax.random.key(1))
  c, _ = M.apply(g, p, r, x, train=True, key=jax.random.key(0))
  assert not np.allclose(a, b)
  np.testing.assert_array_equal(a, c)
  e1, _ = M.apply(g, p, r, x, train=False, key=jax.random.key(0))
  e2, _ = M.apply(g, p, r, x, train=False, key=jax.random.key(1))
  e3, _ = M.apply(g, p, r, x, train=False)
  np.testing.assert_array_equal(e1, e2)
  np.testing.assert_array_equal(e1, e3)
  if name in ('mlp', 'keras_cnn'):  # no BN: eval == train without dropout
    d, _ = M.apply(g, p, r, x, train=True, key=jax.random.key(0), method='features')
    f, _ = M.apply(g, p, r, x, train=False, method='features')
    assert (np.asarray(d) == 0).mean() > (np.asarray(f) == 0).mean()


def test_apply_unknown_method(x):
  g, p, r = M.split(small('logreg'))
  with pytest.raises(errors.UserError, match='features'):
    M.apply(g, p, r, x, train=False, method='forward')


# --------------------------------------------------------------------------- BN across devices


def _bn_sync_reference(x):
  g, p, r = M.split(small('cnn', dropout=0.0))
  return g, p, r, M.apply(g, p, r, x, train=True)


def _assert_same_update(ref, logits, rest):
  ref_logits, ref_rest = ref
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
  for a, b in zip(bn_stats(ref_rest), bn_stats(rest)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bn_axis_name_under_vmap_matches_full_batch(x):
  """vmap over examples with a named axis: BN statistics are taken across it."""
  _, p, r, ref = _bn_sync_reference(x)
  g_ax, _, _ = M.split(small('cnn', dropout=0.0, bn_axis_name='batch'))

  def one(xi):
    out, rest = M.apply(g_ax, p, r, xi[None], train=True)
    return out[0], rest
  logits, rest = jax.jit(jax.vmap(one, axis_name='batch'))(x)
  _assert_same_update(ref, logits, jax.tree.map(lambda a: a[0], rest))


@pytest.mark.skipif(jax.device_count() < 2, reason='needs XLA_FLAGS=--xla_force_host_platform_device_count>=2')
def test_bn_axis_name_under_pmap_matches_full_batch(x):
  n = 4 if jax.device_count() >= 4 else 2
  _, p, r, ref = _bn_sync_reference(x)
  g_ax, _, _ = M.split(small('cnn', dropout=0.0, bn_axis_name='devices'))

  step = jax.pmap(lambda p, r, xs: M.apply(g_ax, p, r, xs, train=True),
                  axis_name='devices', in_axes=(None, None, 0))
  logits, rest = step(p, r, x.reshape(n, B // n, 28, 28, 1))
  for leaf in jax.tree.leaves(rest):  # every replica holds the same stats
    np.testing.assert_allclose(leaf, np.broadcast_to(leaf[0], leaf.shape), rtol=1e-6)
  _assert_same_update(ref, np.asarray(logits).reshape(B, -1), jax.tree.map(lambda a: a[0], rest))


@pytest.mark.parametrize('shape', [(2, 8, 8, 3), (2, 7, 9, 2)])
def test_max_pool_matches_reduce_window(shape):
  """The reshape + max pool: the values of nnx.max_pool (VALID, odd edges dropped) and,
  without ties, the same gradient."""
  from flax import nnx
  x = normal(1, shape)
  def ref(x):
    return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding='VALID')
  np.testing.assert_array_equal(M._max_pool(x), ref(x))
  def loss(f):
    return lambda x: jnp.sum(jnp.sin(f(x)))
  np.testing.assert_allclose(jax.grad(loss(M._max_pool))(x), jax.grad(loss(ref))(x),
                             rtol=1e-6)


def test_max_pool_gradient_is_autodiffs_bit_for_bit():
  """models._max_pool's hand-written gradient equals autodiff's rule for reshape + max,
  ties (split evenly) included."""
  x = normal(0, (3, 9, 8, 5))
  x = jnp.where(np.random.default_rng(1).random(x.shape) < 0.5, 0.0,
                jnp.round(x))  # many ties: zeros and repeated integers
  g = normal(2, (3, 4, 4, 5))

  def autodiff(x):
    return x[:, :8, :8].reshape(3, 4, 2, 4, 2, 5).max(axis=(2, 4))
  want, want_vjp = jax.vjp(jax.jit(autodiff), x)
  got, got_vjp = jax.vjp(jax.jit(M._max_pool), x)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(got_vjp(g)[0], want_vjp(g)[0])
  assert float(jnp.max(jnp.abs(got_vjp(g)[0]))) > 0


def _bn_layer(features, axis_name=None):
  bn = M._bn(features, axis_name, jnp.float32, rngs())
  bn.scale[...] = normal(5, (features,))
  bn.bias[...] = normal(6, (features,))
  return bn


def _flax_bn_relu(bn, x, *, train):
  return nnx.relu(bn(x, use_running_average=not train))


@pytest.mark.parametrize('shape', [(4, 6, 6, 5), (8, 7)])
def test_bn_relu_equals_nnx_batchnorm_then_relu(shape):
  """The hand-written BatchNorm+ReLU backward: nnx.BatchNorm's forward values and running
  statistics bit for bit, its autodiff gradients to float32 rounding."""
  x = normal(0, shape) * 2 + 0.5
  g = normal(1, shape)
  graphdef, state = nnx.split(_bn_layer(shape[-1]))

  def run(fn):
    def f(state, x):
      bn = nnx.merge(graphdef, state)
      y = fn(bn, x, train=True)
      return jnp.sum(y * g), (y, nnx.state(bn, nnx.BatchStat))
    (_, (y, stats)), grads = jax.jit(jax.value_and_grad(f, (0, 1), has_aux=True))(state, x)
    return y, stats, grads
  y, stats, grads = run(M._bn_relu)
  y0, stats0, grads0 = run(_flax_bn_relu)
  np.testing.assert_array_equal(y, y0)
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(stats0)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads0)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(grads[1]).max()) > 0.01


def test_bn_relu_synchronised_over_pmap_matches_nnx():
  """Under pmap with a BatchNorm axis name: the statistics are pmean'd and the gradients
  (per device, before the train step averages them) equal autodiff's through
  nnx.BatchNorm's pmean."""
  n = 2
  x = normal(0, (n, 3, 5, 5, 4)) + 0.3
  g = normal(1, x.shape)
  graphdef, state = nnx.split(_bn_layer(4, 'd'))

  def run(fn):
    def f(state, x, g):
      bn = nnx.merge(graphdef, state)
      return jnp.sum(fn(bn, x, train=True) * g), nnx.state(bn, nnx.BatchStat)
    step = jax.pmap(jax.value_and_grad(f, (0, 1), has_aux=True), axis_name='d',
                    in_axes=(None, 0, 0))
    return step(state, x, g)
  (_, stats), grads = run(M._bn_relu)
  (_, stats0), grads0 = run(_flax_bn_relu)
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(stats0)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads0)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_cnn_training_gradients_with_the_fused_bn_relu_match_autodiff(x, monkeypatch):
  y = jnp.arange(x.shape[0]) % 10
  def loss_and_grads():
    graphdef, params, rest = M.split(small('cnn', conv_impl='auto'))
    def loss(p):
      logits, new_rest = M.apply(graphdef, p, rest, x, train=True, key=jax.random.key(3))
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_rest
    return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  (loss_v, rest), grads = loss_and_grads()
  monkeypatch.setattr(M, '_bn_relu', _flax_bn_relu)
  (loss_v0, rest0), grads0 = loss_and_grads()
  np.testing.assert_array_equal(loss_v, loss_v0)
  for a, b in zip(jax.tree.leaves(rest), jax.tree.leaves(rest0)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads0)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
