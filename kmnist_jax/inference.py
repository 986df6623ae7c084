"""The one inference path: labels, probabilities, logits, features or layer activations
of any model (a restored checkpoint or a bare ``models.Model``) on uint8 images.

    from kmnist_jax import inference
    probs = inference.predict(restored, images, output="probs")   # float32 [N, C]
    acts = inference.predict(model, images, output="activations")  # {layer: [N, ...]}

How it runs:

* **Padded, fixed-shape batches.** The images go through one jit-compiled function in
  batches of one shape: ``batch_size``, or for fewer images the next power of two
  (at most 2x padding, at most log2(batch_size) shapes for small inputs). The pad rows
  are zeros and are dropped from the result. The compiled function is cached per
  (graphdef, output, batch, dtype, conv formulation), so a model evaluated on many sets
  (corruptions, attacks, epochs) compiles once per batch shape.
* **Fastest conv formulation for inference.** A model trained with ``conv_impl='auto'``
  carries im2col / fwdconv convolutions on CPU (they make *gradients* fast inside
  ``scan``, see :mod:`kmnist_jax.convs`). For a forward pass alone XLA's own
  convolution is faster on every backend (about 3x on the CPU:
  ``benchmarks/eval_throughput.py``, results/eval_throughput/), so :func:`predict`
  swaps every ``nnx.Conv`` to ``lax.conv_general_dilated`` (same parameters, same
  function) unless ``conv_impl`` says otherwise.
  (Gradients are another matter: attacks keep the training formulation,
  ``conv_impl='keep'``.)
* **dtype-aware.** ``dtype=None`` computes in the dtype the model was built with (a
  checkpoint's ``config.dtype``); ``'float32'`` / ``'bfloat16'`` rebuild the conv,
  dense and BatchNorm layers in that dtype (the head stays float32, as in training).
  Outputs are float32 whatever the compute dtype (labels: int32).

Code that must stay inside a parallel training step (the in-training evaluator) pads
with the same :func:`pad_to_multiple` but keeps its own compiled, sharded loop; it
gets the same fast forward convolution from :func:`forward_graphdef`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from kmnist_jax import models
from kmnist_jax.convs import conv_fn
from kmnist_jax.errors import UserError, unknown

OUTPUTS = ("labels", "probs", "logits", "features", "activations")
DTYPES = ("float32", "bfloat16")
INFERENCE_CONV = "xla"  # the fastest forward convolution on CPU, GPU and TPU

# Trace counter (tests assert "compiled once per shape"): incremented inside the traced
# function, so it counts traces, not calls.
TRACES = {"count": 0}


def pad_to_multiple(multiple: int, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
  """`arrays` (same length N along axis 0) padded with zero rows to the next multiple
  of `multiple` (at least one multiple). Returns them unchanged when N already is."""
  n = len(arrays[0])
  total = max(multiple, math.ceil(n / multiple) * multiple)
  if total == n:
    return tuple(arrays)
  return tuple(np.concatenate([a, np.zeros((total - n,) + a.shape[1:], a.dtype)])
               for a in arrays)


def batch_shape(n: int, batch_size: int) -> int:
  """The batch used for `n` examples: `batch_size`, or the next power of two >= n when
  smaller (so few images are not padded to a full batch, with few distinct shapes)."""
  if batch_size < 1:
    raise UserError(f"batch_size must be >= 1, got {batch_size}")
  if n >= batch_size:
    return int(batch_size)
  return int(min(batch_size, 1 << max(0, math.ceil(math.log2(max(n, 1))))))


def _as_model(restored_or_model) -> tuple[Any, str | None]:
  """(nnx model, its config dtype or None) of a train.Restored or a bare model."""
  if isinstance(restored_or_model, nnx.Module):
    return restored_or_model, None
  model = getattr(restored_or_model, "model", None)
  if not isinstance(model, nnx.Module):
    raise UserError(f"predict: expected a restored checkpoint (train.Restored) or a "
                    f"model, got {type(restored_or_model).__name__}")
  cfg = getattr(restored_or_model, "config", None)
  return model, (cfg.get("dtype") if cfg is not None else None)


def _layers(model):
  """The conv / dense / BatchNorm layers of `model` other than its head."""
  head = getattr(model, "head", None)
  for _, m in nnx.iter_graph(model):
    if isinstance(m, (nnx.Conv, nnx.Linear, nnx.BatchNorm)) and m is not head:
      yield m


def model_dtype(model) -> str:
  """'bfloat16' if the model's layers compute in bfloat16, else 'float32'."""
  for m in _layers(model):
    if getattr(m, "dtype", None) == jnp.bfloat16:
      return "bfloat16"
  return "float32"


def prepare(restored_or_model, *, dtype: str | None = None, conv_impl: str | None = None):
  """(graphdef, params, rest, dtype): the model with its convolutions set to
  `conv_impl` (default :data:`INFERENCE_CONV`; 'keep' leaves them) and its layers in
  `dtype` (default: as built). The caller's model is not modified."""
  model, cfg_dtype = _as_model(restored_or_model)
  dt = dtype or cfg_dtype or model_dtype(model)
  if dt not in DTYPES:
    raise unknown("dtype", dt, DTYPES)
  conv_impl = conv_impl or INFERENCE_CONV
  graphdef, state = nnx.split(model)
  copy = nnx.merge(graphdef, state)  # new module objects sharing the arrays
  jdt = jnp.bfloat16 if dt == "bfloat16" else jnp.float32
  fn = None if conv_impl == "keep" else conv_fn(conv_impl)
  for m in _layers(copy):
    if dtype is not None:
      m.dtype = jdt
    if fn is not None and isinstance(m, nnx.Conv):
      m.conv_general_dilated = fn
  graphdef, params, rest = models.split(copy)
  return graphdef, params, rest, dt


def forward_graphdef(graphdef, params, rest, *, conv_impl: str | None = None):
  """The graphdef of the model ``merge(graphdef, params, rest)`` with its convolutions
  set to `conv_impl` (default :data:`INFERENCE_CONV`): for forward-only code that
  keeps its own compiled loop (the in-training evaluator). The params / rest trees it
  takes are the same as the training graphdef's."""
  return prepare(nnx.merge(graphdef, params, rest), conv_impl=conv_impl)[0]


@functools.lru_cache(maxsize=64)
def compiled(graphdef, output: str, batch: int, dtype: str):
  """jit(params, rest, uint8 images [batch, 28, 28]) -> the `output` of one batch.

  One per (graphdef, output, batch, dtype); the batch is part of the key because the
  function is only ever called with that shape (one trace each)."""
  jdt = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
  method = {"features": "features", "activations": "activations"}.get(output, "__call__")

  names: list[str] = []  # activations: jit returns dicts key-sorted; keep layer order

  def fn(params, rest, x):
    TRACES["count"] += 1
    out, _ = models.apply(graphdef, params, rest, models.preprocess(x, jdt),
                          train=False, method=method)
    if output == "activations":
      names[:] = list(out)
      return tuple(v.astype(jnp.float32) for v in out.values())
    out = out.astype(jnp.float32)
    if output == "labels":
      return jnp.argmax(out, -1).astype(jnp.int32)
    if output == "probs":
      return jax.nn.softmax(out, -1)
    return out

  jitted = jax.jit(fn)
  jitted.layer_names = names
  return jitted


def _check_images(images) -> np.ndarray:
  x = np.asarray(images)
  if x.ndim == 4 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
    raise UserError(f"images must be uint8 [N, 28, 28], got {x.dtype}{list(x.shape)}")
  return x


def predict(restored_or_model, images, *, output: str = "labels", batch_size: int = 1000,
            dtype: str | None = None, conv_impl: str | None = None,
            progress: str | None = None):
  """`output` of the model on uint8 `images` [N, 28, 28] (eval mode), as numpy:

  ``labels`` int32 [N]; ``probs`` / ``logits`` float32 [N, C]; ``features`` float32
  [N, D] (the head's input); ``activations`` {layer: float32 [N, ...]} in the model's
  layer order, ending with ``features``. `progress`: a tqdm description (shown for
  more than 10 batches). See the module docstring for batching, dtype and conv_impl.
  """
  if output not in OUTPUTS:
    raise unknown("inference output", output, OUTPUTS)
  x = _check_images(images)
  graphdef, params, rest, dt = prepare(restored_or_model, dtype=dtype,
                                       conv_impl=conv_impl)
  n = len(x)
  batch = batch_shape(n, int(batch_size))
  fn = compiled(graphdef, output, batch, dt)
  (xp,) = pad_to_multiple(batch, x)
  starts = range(0, len(xp), batch)
  if progress and len(starts) > 10:
    from tqdm.auto import tqdm
    starts = tqdm(starts, desc=progress, unit="batch", leave=False)
  outs = [fn(params, rest, xp[i:i + batch]) for i in starts]  # dispatched async
  outs = jax.device_get(outs)
  if output == "activations":
    if not outs:  # no images: one shape-only trace gives the layers and their shapes
      shapes = jax.eval_shape(fn, params, rest, jax.ShapeDtypeStruct(
          (batch, 28, 28), jnp.uint8))
      outs = [tuple(np.zeros((0,) + s.shape[1:], s.dtype) for s in shapes)]
    return {k: np.concatenate([o[j] for o in outs])[:n]
            for j, k in enumerate(fn.layer_names)}
  if not outs:
    shape = jax.eval_shape(fn, params, rest, jax.ShapeDtypeStruct((batch, 28, 28),
                                                                  jnp.uint8))
    return np.zeros((0,) + shape.shape[1:], shape.dtype)
  return np.concatenate(outs)[:n]


__all__ = ["predict", "prepare", "compiled", "pad_to_multiple", "batch_shape",
           "model_dtype", "OUTPUTS", "DTYPES", "INFERENCE_CONV"]
