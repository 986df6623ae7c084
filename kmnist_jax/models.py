"""Models for 28x28 grayscale classification (MNIST / Kuzushiji-MNIST), in Flax NNX.

Every model is a :class:`Model`: ``model(x, train=..., key=...)`` gives float32
logits ``[B, num_classes]`` and equals ``model.head(model.features(x, ...))``,
where ``model.head`` is a single ``nnx.Linear`` (swap it out for transfer
learning).  ``x`` is what :func:`preprocess` returns: float ``[B, 28, 28, 1]``
in ``[0, 1]``.

Train/eval behaviour is chosen per call, never through NNX's
``model.train()`` / ``model.eval()`` switches:

* ``train=True``: dropout is on (needs ``key``; several dropouts split it) and
  BatchNorm normalises with batch statistics and updates its running averages.
* ``train=False``: dropout is the identity and BatchNorm uses running averages.

The training loop uses the pure functional view::

    graphdef, params, rest = split(model)       # rest: BatchStat etc.
    logits, rest = apply(graphdef, params, rest, x, train=True, key=key)

which works under ``jax.jit``, ``jax.pmap`` (create the model with
``bn_axis_name`` equal to the pmap axis name so that batch statistics are
averaged across devices) and ``jax.vmap``.

Registry: :data:`MODELS` / :func:`create` -- ``logreg``, ``mlp``,
``keras_cnn``, ``cnn`` (the default), ``preact_resnet18``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from kmnist_jax import convs as ops
from kmnist_jax import errors

IMAGE_SHAPE = (28, 28, 1)
NUM_PIXELS = 28 * 28

# PyTorch-style BatchNorm (torch momentum 0.1 == flax momentum 0.9): running
# averages settle within ~a hundred steps, which matters for few-epoch runs.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

he_normal = nnx.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')
glorot_uniform = nnx.initializers.xavier_uniform()  # Keras' default kernel init


# --------------------------------------------------------------------------
# Input


def preprocess(images: jax.Array, dtype=jnp.float32) -> jax.Array:
  """uint8 ``[B,28,28]`` / ``[B,28,28,1]`` (or float in [0,1]) -> ``dtype [B,28,28,1]`` in [0,1].

  Integer input is scaled by 1/255; float input is only cast.  Meant to run
  on device, inside ``jit``, so the host ships uint8.
  """
  images = jnp.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
    raise errors.UserError(
        f'preprocess: expected images of shape [B, 28, 28] or [B, 28, 28, 1], '
        f'got {list(images.shape)}')
  if jnp.issubdtype(images.dtype, jnp.integer) or images.dtype == jnp.bool_:
    # Scale in float32 (exact for uint8), then cast: x/255 in bf16 would round twice.
    return (images.astype(jnp.float32) * (1.0 / 255.0)).astype(dtype)
  return images.astype(dtype)


# --------------------------------------------------------------------------
# Base class


def _check_key(name: str, train: bool, key: jax.Array | None, n: int) -> list[Any]:
  """Returns ``n`` dropout keys (``None`` each when not needed)."""
  if not train or n == 0:
    return [None] * n
  if key is None:
    raise ValueError(
        f'{name}: train=True uses dropout, so a PRNG key is needed: '
        f'call model(x, train=True, key=key)')
  return list(jax.random.split(key, n)) if n > 1 else [key]


class Model(nnx.Module):
  """Protocol every model follows (see the module docstring).

  Subclasses set ``num_classes`` and ``head`` (an ``nnx.Linear(D, C)``) and
  implement :meth:`features`.  The head is computed in float32 whatever the
  model's computation dtype, so ``head(features(x)) == __call__(x)`` exactly
  and logits are float32.
  """

  num_classes: int
  head: nnx.Linear

  def features(self, x: jax.Array, *, train: bool = False,
               key: jax.Array | None = None) -> jax.Array:
    """Penultimate features, float32 ``[B, D]``."""
    raise NotImplementedError

  def __call__(self, x: jax.Array, *, train: bool = False,
               key: jax.Array | None = None) -> jax.Array:
    """Float32 logits ``[B, num_classes]``."""
    return self.head(self.features(x, train=train, key=key)).astype(jnp.float32)

  def activations(self, x: jax.Array) -> dict[str, jax.Array]:
    """Named float32 activations ``{layer: [B, ...]}`` in eval mode, input to output,
    ending with ``'features'`` (representation similarity, :mod:`kmnist_jax.transfer.cka`).
    Models without an override give ``'features'`` only."""
    return {"features": self.features(x, train=False)}


def _head(in_features: int, num_classes: int, rngs: nnx.Rngs, **kw) -> nnx.Linear:
  return nnx.Linear(in_features, num_classes, dtype=jnp.float32, rngs=rngs, **kw)


def _bn(features: int, axis_name: str | None, dtype, rngs: nnx.Rngs) -> nnx.BatchNorm:
  return nnx.BatchNorm(features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                       axis_name=axis_name, dtype=dtype, rngs=rngs)


def _bn_relu(bn: nnx.BatchNorm, x: jax.Array, *, train: bool) -> jax.Array:
  """relu(bn(x)) with nnx.BatchNorm's semantics; in training (float32) by
  :func:`_bn_relu_train`, whose backward pass is written by hand, and with the running
  statistics updated as nnx.BatchNorm updates them. Any BatchNorm not built as
  :func:`_bn` builds it (scale, bias, last-axis features, fast variance, no index
  groups) takes nnx.BatchNorm's own path."""
  if (not train or x.dtype != jnp.float32 or bn.dtype not in (None, jnp.float32)
      or not (bn.use_scale and bn.use_bias and bn.use_fast_variance)
      or bn.axis not in (-1, x.ndim - 1) or bn.axis_index_groups is not None):
    return nnx.relu(bn(x, use_running_average=not train))
  y, mean, var = _bn_relu_train(x, bn.scale[...], bn.bias[...], bn.axis_name,
                                float(bn.epsilon))
  m = bn.momentum
  bn.mean[...] = m * bn.mean[...] + (1 - m) * jax.lax.stop_gradient(mean)
  bn.var[...] = m * bn.var[...] + (1 - m) * jax.lax.stop_gradient(var)
  return y


def _bn_axes(x) -> tuple[int, ...]:
  """The reduction axes: all but the (last) feature axis."""
  return tuple(range(x.ndim - 1))


def _bn_stats(x, axis_name):
  """nnx.BatchNorm's batch statistics (use_fast_variance: E[x^2] - E[x]^2, clipped at
  0; one pmean of both over `axis_name`)."""
  axes = _bn_axes(x)
  mu, mu2 = x.mean(axes), (x * x).mean(axes)
  if axis_name is not None:
    mu, mu2 = jax.lax.pmean(jnp.stack([mu, mu2]), axis_name)
  return mu, jnp.maximum(0.0, mu2 - mu * mu)


def _bn_pre_relu(x, mu, var, scale, bias, epsilon):
  """nnx.BatchNorm's normalisation, in its order of operations, with its two derived
  terms ``(x - mu, rsqrt(var + epsilon))`` (the backward pass reuses them)."""
  xc, invstd = x - mu, jax.lax.rsqrt(var + epsilon)
  return xc * (invstd * scale) + bias, (xc, invstd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _bn_relu_train(x, scale, bias, axis_name, epsilon):
  """(relu(batchnorm(x)), batch mean, batch variance) over all axes but the last, the
  statistics synchronised over `axis_name` (pmap) when given.

  The forward pass is nnx.BatchNorm's, operation for operation (the same values). The
  backward pass is the textbook one, written out: dz = dy where z > 0 (z recomputed
  from x, not stored), then in one pass over the map the two per-channel sums
  sum(dz) and sum(dz * (x - mean)) (pmean'd over `axis_name`, as autodiff's transpose
  of the forward pmean gives), and dx in a second; autodiff's graph of the same layer
  took XLA:CPU more full-size passes. The mean / variance outputs feed only the running
  averages and are not differentiated (:func:`_bn_relu` stops their gradient).
  """
  return _bn_relu_train_fwd(x, scale, bias, axis_name, epsilon)[0]


def _bn_relu_train_fwd(x, scale, bias, axis_name, epsilon):
  mu, var = _bn_stats(x, axis_name)
  y = nnx.relu(_bn_pre_relu(x, mu, var, scale, bias, epsilon)[0])
  return (y, mu, var), (x, mu, var, scale, bias)


def _bn_relu_train_bwd(axis_name, epsilon, res, cts):
  x, mu, var, scale, bias = res
  g = cts[0]
  axes = _bn_axes(x)
  n = x.size // x.shape[-1]                              # this device's count
  z, (xc, invstd) = _bn_pre_relu(x, mu, var, scale, bias, epsilon)
  dz = jnp.where(z > 0, g, 0.0)
  sums = jnp.stack([dz.sum(axes), (dz * xc).sum(axes)])
  dbias, dscale_raw = sums                               # this device's share
  if axis_name is not None:
    sums = jax.lax.pmean(sums, axis_name)
  dx = (scale * invstd) * (dz - sums[0] / n - xc * (invstd * invstd) * (sums[1] / n))
  return dx, dscale_raw * invstd, dbias


_bn_relu_train.defvjp(_bn_relu_train_fwd, _bn_relu_train_bwd)


def _flatten(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1)


def _max_pool(x: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2 (VALID: an odd last row / column is dropped).

  Written as a reshape + max rather than ``lax.reduce_window``: the same values, but
  its gradient is a fused compare-and-select instead of XLA's ``select_and_scatter``,
  which costs XLA:CPU ~12% of a keras_cnn training step (benchmarks/README.md).
  Where a window holds several equal maxima the gradient is shared between them
  (``reduce_window`` gives it to one); after a ReLU that happens only for all-zero
  windows, whose gradient is zero either way.
  """
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2, :]
  return _pool_windows(x.reshape(b, h // 2, 2, w // 2, 2, c))


@jax.custom_vjp
def _pool_windows(x6):
  """max over axes 2 and 4 of [b, h/2, 2, w/2, 2, c], with JAX's own gradient rule for
  ``max`` (the gradient split evenly between tied maxima) written out by hand.

  Autodiff's rule counts each window's maxima with a reduce_sum in the forward pass,
  which XLA:CPU runs as a slow YNNPACK reduction (benchmarks/profile_step.py); here the
  count is four adds of the window's indicator slices in the backward pass. The same
  values and the same gradients bit for bit (tested), and faster training
  (docs/performance.md).
  """
  return x6.max(axis=(2, 4))


def _pool_windows_fwd(x6):
  m = x6.max(axis=(2, 4))
  return m, (x6, m)


def _pool_windows_bwd(res, g):
  x6, m = res
  ind = (x6 == m[:, :, None, :, None, :]).astype(g.dtype)
  counts = ind[:, :, 0, :, 0] + ind[:, :, 0, :, 1] + ind[:, :, 1, :, 0] + ind[:, :, 1, :, 1]
  return ((g / counts)[:, :, None, :, None, :] * ind,)


_pool_windows.defvjp(_pool_windows_fwd, _pool_windows_bwd)


# --------------------------------------------------------------------------
# Models


class LogReg(Model):
  """Multinomial logistic regression on raw pixels: flatten -> Linear(784, C)."""

  def __init__(self, *, num_classes: int, rngs: nnx.Rngs,
               bn_axis_name: str | None = None, dtype=jnp.float32,
               conv_impl: str = 'auto'):
    del bn_axis_name, dtype, conv_impl  # no BN, no conv; a single float32 matmul
    self.num_classes = num_classes
    self.head = _head(NUM_PIXELS, num_classes, rngs)

  def features(self, x, *, train=False, key=None):
    del train, key
    return _flatten(x).astype(jnp.float32)


class MLP(Model):
  """flatten -> [Linear(h) relu dropout] * len(hidden_sizes) -> head."""

  def __init__(self, *, num_classes: int, rngs: nnx.Rngs,
               bn_axis_name: str | None = None, dtype=jnp.float32,
               conv_impl: str = 'auto', hidden: int = 512, hidden_sizes: Sequence[int] | None = None,
               dropout: float = 0.2):
    del bn_axis_name, conv_impl  # no BN, no conv
    if hidden_sizes is None:
      hidden_sizes = (hidden, hidden)
    elif hidden != 512:
      raise errors.UserError('mlp: give hidden (two layers of that size) or hidden_sizes, not both')
    hidden_sizes = tuple(int(h) for h in hidden_sizes)
    if not hidden_sizes or min(hidden_sizes) < 1:
      raise errors.UserError(f'mlp: hidden_sizes must be positive, got {hidden_sizes}')
    _check_rate('mlp', dropout)
    self.num_classes = num_classes
    self.dropout = dropout
    sizes = (NUM_PIXELS,) + hidden_sizes
    self.layers = nnx.List([
        nnx.Linear(a, b, dtype=dtype, kernel_init=he_normal, rngs=rngs)
        for a, b in zip(sizes[:-1], sizes[1:])])
    self.drop = nnx.Dropout(dropout)
    self.head = _head(sizes[-1], num_classes, rngs)

  def features(self, x, *, train=False, key=None):
    keys = _check_key('mlp', train and self.dropout > 0, key, len(self.layers))
    h = _flatten(x)
    for layer, k in zip(self.layers, keys):
      h = self.drop(nnx.relu(layer(h)), deterministic=not train, rngs=k)
    return h.astype(jnp.float32)


class KerasCNN(Model):
  """The Keras "simple CNN" of the rois-codh/kmnist benchmark, layer for layer.

  Conv32 3x3 VALID relu -> Conv64 3x3 VALID relu -> MaxPool 2x2 -> Dropout .25
  -> Flatten (9216, HWC order like Keras) -> Dense128 relu -> Dropout .5 ->
  Dense C.  Glorot-uniform kernels and zero biases (Keras defaults).
  1,199,882 parameters for 10 classes.
  """

  def __init__(self, *, num_classes: int, rngs: nnx.Rngs,
               bn_axis_name: str | None = None, dtype=jnp.float32,
               conv_impl: str = 'auto'):
    del bn_axis_name
    kw = dict(dtype=dtype, kernel_init=glorot_uniform, rngs=rngs)
    conv = ops.conv_fn(conv_impl)
    self.num_classes = num_classes
    self.conv1 = nnx.Conv(1, 32, (3, 3), padding='VALID', conv_general_dilated=conv, **kw)
    self.conv2 = nnx.Conv(32, 64, (3, 3), padding='VALID', conv_general_dilated=conv, **kw)
    self.drop1 = nnx.Dropout(0.25)
    self.dense = nnx.Linear(12 * 12 * 64, 128, **kw)
    self.drop2 = nnx.Dropout(0.5)
    self.head = _head(128, num_classes, rngs, kernel_init=glorot_uniform)

  def features(self, x, *, train=False, key=None):
    k1, k2 = _check_key('keras_cnn', train, key, 2)
    x = nnx.relu(self.conv1(x))
    x = _max_pool(nnx.relu(self.conv2(x)))
    x = self.drop1(x, deterministic=not train, rngs=k1)
    x = nnx.relu(self.dense(_flatten(x)))
    x = self.drop2(x, deterministic=not train, rngs=k2)
    return x.astype(jnp.float32)


class ConvBN(nnx.Module):
  """conv3x3 (no bias) -> BatchNorm -> relu."""

  def __init__(self, cin: int, cout: int, *, bn_axis_name, dtype, conv_impl,
               rngs: nnx.Rngs):
    self.conv = nnx.Conv(cin, cout, (3, 3), padding='SAME', use_bias=False,
                         dtype=dtype, kernel_init=he_normal,
                         conv_general_dilated=ops.conv_fn(conv_impl), rngs=rngs)
    self.bn = _bn(cout, bn_axis_name, dtype, rngs)

  def __call__(self, x, *, train: bool):
    return _bn_relu(self.bn, self.conv(x), train=train)


class CNN(Model):
  """The project default: a small VGG-style CNN with BatchNorm.

  For each width w: [conv3x3-BN-relu(w) x depth, maxpool 2x2] (28 -> 14 -> 7 with
  the default widths=(32, 64)), then flatten -> Dense(dense)-BN-relu ->
  dropout -> head.  ``dense=0`` uses global average pooling instead of the
  dense layer (features = last width).
  """

  def __init__(self, *, num_classes: int, rngs: nnx.Rngs,
               bn_axis_name: str | None = None, dtype=jnp.float32,
               conv_impl: str = 'auto', widths: Sequence[int] = (32, 64), depth: int = 1,
               dense: int = 256, dropout: float = 0.3):
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1 or len(widths) > 4:
      raise errors.UserError(
          f'cnn: widths must be 1 to 4 positive ints (one per 2x2-pooled stage), got {widths}')
    if dense < 0:
      raise errors.UserError(f'cnn: dense must be >= 0 (0 = global average pool), got {dense}')
    _check_rate('cnn', dropout)
    self.num_classes = num_classes
    self.dropout = dropout
    kw = dict(bn_axis_name=bn_axis_name, dtype=dtype, conv_impl=conv_impl, rngs=rngs)
    convs, cin = [], 1
    if depth < 1:
      raise errors.UserError(f'cnn: depth (convs per stage) must be >= 1, got {depth}')
    self.depth = depth
    for w in widths:
      convs += [ConvBN(cin if i == 0 else w, w, **kw) for i in range(depth)]
      cin = w
    self.convs = nnx.List(convs)
    side = 28
    for _ in widths:
      side //= 2
    if dense:
      self.dense = nnx.Linear(side * side * cin, dense, use_bias=False, dtype=dtype,
                              kernel_init=he_normal, rngs=rngs)
      self.dense_bn = _bn(dense, bn_axis_name, dtype, rngs)
      feat = dense
    else:
      self.dense = self.dense_bn = None
      feat = cin
    self.drop = nnx.Dropout(dropout)
    self.head = _head(feat, num_classes, rngs)

  def features(self, x, *, train=False, key=None):
    (k,) = _check_key('cnn', train and self.dropout > 0, key, 1)
    for i, conv in enumerate(self.convs):
      x = conv(x, train=train)
      if i % self.depth == self.depth - 1:
        x = _max_pool(x)
    if self.dense is not None:
      x = _bn_relu(self.dense_bn, self.dense(_flatten(x)), train=train)
    else:
      x = jnp.mean(x, axis=(1, 2))
    x = self.drop(x, deterministic=not train, rngs=k)
    return x.astype(jnp.float32)

  def activations(self, x):
    out = {}
    for i, conv in enumerate(self.convs):
      x = conv(x, train=False)
      if i % self.depth == self.depth - 1:
        x = _max_pool(x)
        out[f"stage{i // self.depth + 1}"] = x.astype(jnp.float32)
    out["features"] = self._head_input(x)
    return out

  def _head_input(self, x):
    """features() from the last stage's pooled output (eval mode)."""
    if self.dense is not None:
      x = nnx.relu(self.dense_bn(self.dense(_flatten(x)), use_running_average=True))
    else:
      x = jnp.mean(x, axis=(1, 2))
    return x.astype(jnp.float32)


class PreActBlock(nnx.Module):
  """Pre-activation basic block: BN-relu-conv3x3-BN-relu-conv3x3 + shortcut.

  When the shape changes the shortcut is a 1x1 (strided) conv applied to the
  pre-activated input, as in He et al. 2016 ("Identity Mappings").
  """

  def __init__(self, cin: int, cout: int, stride: int, *, bn_axis_name, dtype,
               conv_impl, rngs: nnx.Rngs):
    conv = dict(use_bias=False, dtype=dtype, kernel_init=he_normal,
                conv_general_dilated=ops.conv_fn(conv_impl), rngs=rngs)
    pad = ((1, 1), (1, 1))  # symmetric like PyTorch's padding=1: 7 -> 4 at stride 2
    self.bn1 = _bn(cin, bn_axis_name, dtype, rngs)
    self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, padding=pad, **conv)
    self.bn2 = _bn(cout, bn_axis_name, dtype, rngs)
    self.conv2 = nnx.Conv(cout, cout, (3, 3), padding=pad, **conv)
    if stride != 1 or cin != cout:
      self.shortcut = nnx.Conv(cin, cout, (1, 1), strides=stride, padding='VALID', **conv)
    else:
      self.shortcut = None

  def __call__(self, x, *, train: bool):
    out = nnx.relu(self.bn1(x, use_running_average=not train))
    shortcut = x if self.shortcut is None else self.shortcut(out)
    out = self.conv1(out)
    out = self.conv2(nnx.relu(self.bn2(out, use_running_average=not train)))
    return out + shortcut


class PreActResNet18(Model):
  """PreActResNet-18 for 28x28x1: 3x3 stem (stride 1, no pool), 4 stages of 2
  pre-activation blocks, widths w*(1,2,4,8), strides (1,2,2,2): 28->28->14->7->4,
  final BN-relu, global average pool -> features (8w) -> head."""

  def __init__(self, *, num_classes: int, rngs: nnx.Rngs,
               bn_axis_name: str | None = None, dtype=jnp.float32,
               conv_impl: str = 'auto', width: int = 64):
    if width < 1:
      raise errors.UserError(f'preact_resnet18: width must be >= 1, got {width}')
    kw = dict(bn_axis_name=bn_axis_name, dtype=dtype, conv_impl=conv_impl, rngs=rngs)
    self.num_classes = num_classes
    self.stem = nnx.Conv(1, width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                         dtype=dtype, kernel_init=he_normal,
                         conv_general_dilated=ops.conv_fn(conv_impl), rngs=rngs)
    blocks, cin = [], width
    for mult, stride in zip((1, 2, 4, 8), (1, 2, 2, 2)):
      cout = width * mult
      blocks += [PreActBlock(cin, cout, stride, **kw), PreActBlock(cout, cout, 1, **kw)]
      cin = cout
    self.blocks = nnx.List(blocks)
    self.bn = _bn(cin, bn_axis_name, dtype, rngs)
    self.head = _head(cin, num_classes, rngs)

  def features(self, x, *, train=False, key=None):
    del key  # no dropout
    x = self.stem(x)
    for block in self.blocks:
      x = block(x, train=train)
    x = nnx.relu(self.bn(x, use_running_average=not train))
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def _check_rate(name: str, rate: float):
  if not 0.0 <= rate < 1.0:
    raise errors.UserError(f'{name}: dropout must be in [0, 1), got {rate}')


# --------------------------------------------------------------------------
# Registry

MODELS: dict[str, Callable[..., Model]] = {
    'logreg': LogReg,
    'mlp': MLP,
    'keras_cnn': KerasCNN,
    'cnn': CNN,
    'preact_resnet18': PreActResNet18,
}

_COMMON = ('num_classes', 'rngs', 'bn_axis_name', 'dtype', 'conv_impl')


def model_kwargs(name: str) -> dict[str, Any]:
  """The model-specific keyword arguments of ``name`` and their defaults."""
  if name not in MODELS:
    raise errors.unknown('model', name, MODELS)
  ctor = MODELS[name]
  # Module classes hide their signature behind NNX's metaclass: read __init__.
  params = inspect.signature(ctor.__init__ if isinstance(ctor, type) else ctor).parameters
  return {p.name: p.default for p in params.values()
          if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
          and p.name not in _COMMON + ('self',)}


def create(name: str, *, num_classes: int, rngs: nnx.Rngs,
           bn_axis_name: str | None = None, dtype=jnp.float32, conv_impl: str = 'auto',
           **kwargs) -> Model:
  """Builds registry model ``name``.

  ``bn_axis_name``: axis name given to every BatchNorm so batch statistics are
  averaged across devices under ``jax.pmap(..., axis_name=...)`` (a model built
  with it must then be called with train=True only inside that pmap/vmap).
  ``dtype``: computation dtype of conv/dense layers (params stay float32,
  logits and features are float32).
  ``conv_impl``: 'xla', 'im2col' or 'auto' (see :mod:`kmnist_jax.convs`); the
  parameters are the same whichever is used.
  """
  ops.resolve_conv_impl(conv_impl)  # raises for an unknown name
  accepted = model_kwargs(name)  # raises for an unknown name
  for k in kwargs:
    if k not in accepted:
      choices = ', '.join(f'{a}={v!r}' for a, v in accepted.items()) or 'none'
      raise errors.UserError(
          f'model {name!r} got unknown argument {k!r}; accepted arguments: {choices}')
  if int(num_classes) < 1:
    raise errors.UserError(f'num_classes must be >= 1, got {num_classes}')
  return MODELS[name](num_classes=int(num_classes), rngs=rngs,
                      bn_axis_name=bn_axis_name, dtype=dtype, conv_impl=conv_impl,
                      **kwargs)


def param_count(model) -> int:
  """Number of trainable parameters (``nnx.Param``) of a model, or of a params pytree."""
  tree = nnx.state(model, nnx.Param) if isinstance(model, nnx.Module) else model
  return int(sum(x.size for x in jax.tree.leaves(tree)))


# --------------------------------------------------------------------------
# Pure functional view


def split(model: nnx.Module):
  """``(graphdef, params, rest)``: trainable ``nnx.Param`` state and everything else
  (BatchNorm ``BatchStat``...).  All three are pytrees / static for jit."""
  return nnx.split(model, nnx.Param, ...)


def apply(graphdef, params, rest, x, *, train: bool, key: jax.Array | None = None,
          method: str = '__call__'):
  """Pure call of ``method`` on the model ``merge(graphdef, params, rest)``.

  Returns ``(out, new_rest)``; ``new_rest`` holds the updated batch statistics
  when ``train=True`` (unchanged otherwise).  The inputs are never mutated.
  ``method`` is ``'__call__'`` or ``'features'`` (take ``train``/``key``),
  ``'head'`` (``x`` are features) or ``'activations'`` (eval mode, a dict).
  """
  # copy=True: merge would otherwise share Variable objects with `rest`, and a
  # BatchNorm update in eager mode would silently write into the caller's state.
  model = nnx.merge(graphdef, params, rest, copy=True)
  if method == 'head':
    out = model.head(x)
  elif method in ('__call__', 'features'):
    out = getattr(model, method)(x, train=train, key=key)
  elif method == 'activations':
    out = model.activations(x)
  else:
    raise errors.UserError(
        f"apply: unknown method {method!r}; valid choices: __call__, features, head, "
        "activations")
  _, _, new_rest = nnx.split(model, nnx.Param, ...)
  return out, new_rest
