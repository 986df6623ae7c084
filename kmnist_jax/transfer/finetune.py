"""Transfer learning between datasets: source backbone + new head, trained three ways.

Why this module: the question "do MNIST features help KMNIST?" needs a source model's
backbone under a head sized for the target's classes, trained with part of it frozen,
on a few labelled examples per class, against a from-scratch model on the same subset
with the same budget. Everything here is a function of (source checkpoint, target data,
mode, k, seed); :mod:`kmnist_jax.studies.transfer` runs the grid.

Modes (:data:`MODES`):

* ``linear_probe``: only the new head trains. The backbone runs in eval mode
  (BatchNorm uses the source's running statistics, dropout off) under
  ``stop_gradient``, so backbone parameters *and* BatchNorm statistics stay
  bit-identical: a probe of exactly the source's features.
* ``finetune``: everything trains; the backbone with ``backbone_lr``, the head with
  ``head_lr`` (per-part learning rates).
* ``finetune_last``: the last ``last_n`` backbone blocks and the head train, the
  earlier blocks are frozen. The whole network runs in train mode, so the frozen
  blocks' BatchNorm running statistics adapt to the target (their parameters do not;
  the common PyTorch default).
* ``scratch`` (:data:`SCRATCH`, the baseline): the same architecture from its random
  initialisation, every part with ``head_lr``.

Freezing is an ``optax.multi_transform`` over parameter labels ``head`` / ``tune`` /
``frozen`` (from the parameter paths, :func:`param_labels`); ``frozen`` maps to
``optax.set_to_zero()``, so no update, no weight decay and no optimizer state touches
those parameters. Blocks (:func:`block_of`) per model: ``cnn`` its conv stages then
the dense layer; ``keras_cnn`` conv1, conv2, dense; ``mlp`` its hidden layers;
``preact_resnet18`` the stem, the 4 stages (the final BatchNorm with the last one).
``logreg`` has no backbone (its features are the pixels) and is refused.

Budget: few-shot subsets are tiny, so training is a fixed number of steps (the same
for transfer and scratch), each a batch drawn *with replacement* from the subset
(``randint`` from (seed, step)); a compiled ``lax.scan`` runs the steps in chunks of
up to ``chunk_steps`` (500), and SIGTERM / SIGINT (:func:`kmnist_jax.stopping.requested`)
stop a run between chunks with :class:`~kmnist_jax.errors.Preempted` (a transfer run
keeps no checkpoint: it is redone from the start). Chunking does not change a number:
each step's key comes from the step count in the state (tested). The subset is a padded
index array and its size a traced scalar, so every k and seed reuses the same compiled
function (one compilation per mode, step count and chunk length).

Randomness: one seed gives the root key; the few-shot subset, the head's
initialisation (``train.init_model``: the same head for transfer and scratch) and the
batches come from separate streams of it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from kmnist_jax import config as config_lib
from kmnist_jax import inference, metrics, models, optim, parallel, stopping, train
from kmnist_jax.errors import Preempted, UserError

MODES = ("linear_probe", "finetune", "finetune_last")
SCRATCH = "scratch"
ALL = "all"                      # k = every training example
HEAD, TUNE, FROZEN = "head", "tune", "frozen"

# Streams of the root key (train.py uses 0-2 for init, shuffle, step).
_SUBSET, _BATCH = 10, 11


def check_mode(mode: str, *, scratch: bool = True) -> str:
  valid = MODES + ((SCRATCH,) if scratch else ())
  if mode not in valid:
    raise UserError(f"unknown transfer mode {mode!r}; valid choices: {', '.join(valid)}")
  return mode


def parse_shots(k) -> int | None:
  """k examples per class: a positive int, or 'all' (None: every example)."""
  if isinstance(k, str) and k.strip().lower() == ALL:
    return None
  try:
    value = int(k)
  except (TypeError, ValueError):
    value = 0
  if isinstance(k, bool) or value < 1 or str(value) != str(k).strip():
    raise UserError(f"shots must be a positive number of examples per class or "
                    f"'{ALL}', got {k!r}")
  return value


def shots_label(k) -> str:
  k = parse_shots(k)
  return ALL if k is None else str(k)


# ---- Few-shot subsets ------------------------------------------------------------------

def few_shot_indices(labels, k, num_classes: int, seed: int) -> np.ndarray:
  """Sorted indices of exactly k examples of each class (all examples for 'all').

  One permutation of all examples, ``permutation(fold_in(key(seed), SUBSET), N)``,
  orders every class; each class contributes its first k examples in that order:
  deterministic from the seed, and the same subset for every mode (scratch included).
  k larger than a class is refused.
  """
  labels = np.asarray(labels)
  k = parse_shots(k)
  if k is None:
    return np.arange(len(labels), dtype=np.int64)
  sizes = np.bincount(labels, minlength=num_classes)
  if k > sizes.min():
    c = int(np.argmin(sizes))
    raise UserError(f"shots k={k} is larger than class {c} ({int(sizes[c])} training "
                    f"examples); use k <= {int(sizes.min())} or '{ALL}'")
  root = jax.random.fold_in(train.root_key(seed), _SUBSET)
  order = np.asarray(jax.random.permutation(root, len(labels)))
  out = [order[labels[order] == c][:k] for c in range(num_classes)]
  return np.sort(np.concatenate(out)).astype(np.int64)


# ---- Blocks and labels -----------------------------------------------------------------

def _top(path) -> tuple[str, int | None]:
  keys = [getattr(p, "key", getattr(p, "name", getattr(p, "idx", None))) for p in path]
  name = str(keys[0])
  index = keys[1] if len(keys) > 1 and isinstance(keys[1], int) else None
  return name, index


def num_blocks(model: models.Model) -> int:
  """The number of backbone blocks of `model` (see the module docstring)."""
  if isinstance(model, models.CNN):
    return len(model.convs) // model.depth + (model.dense is not None)
  if isinstance(model, models.KerasCNN):
    return 3
  if isinstance(model, models.MLP):
    return len(model.layers)
  if isinstance(model, models.PreActResNet18):
    return 5
  if isinstance(model, models.LogReg):
    return 0
  raise UserError(f"transfer: no block definition for {type(model).__name__}")


def block_of(model: models.Model, path) -> int | None:
  """Backbone block index of the parameter at `path` (None for the head)."""
  name, index = _top(path)
  if name == "head":
    return None
  if isinstance(model, models.CNN):
    if name == "convs":
      return index // model.depth
    return len(model.convs) // model.depth           # dense, dense_bn
  if isinstance(model, models.KerasCNN):
    return {"conv1": 0, "conv2": 1, "dense": 2}[name]
  if isinstance(model, models.MLP):
    return index
  if isinstance(model, models.PreActResNet18):
    if name == "stem":
      return 0
    if name == "blocks":
      return 1 + index // 2
    return 4                                          # final bn
  raise UserError(f"transfer: no block definition for {type(model).__name__}")


def check_has_features(model: models.Model, where: str = "") -> None:
  if num_blocks(model) == 0:
    name = type(model).__name__
    raise UserError(
        f"the source model{(' in ' + where) if where else ''} ({name}) has no "
        f"features to probe (its features are the raw pixels); use a model with a "
        f"backbone: {', '.join(n for n in models.MODELS if n != 'logreg')}")


def param_labels(model: models.Model, params, mode: str, last_n: int = 1):
  """A tree like `params` of 'head' / 'tune' / 'frozen' for `mode`."""
  check_mode(mode)
  n = num_blocks(model)
  if mode == "finetune_last" and not 1 <= last_n <= n:
    raise UserError(f"last_n={last_n} blocks: {type(model).__name__} here has {n} "
                    f"backbone blocks; use 1 <= last_n <= {n}")

  def label(path, _):
    b = block_of(model, path)
    if b is None:
      return HEAD
    if mode in ("finetune", SCRATCH):
      return TUNE
    if mode == "finetune_last" and b >= n - last_n:
      return TUNE
    return FROZEN

  return jax.tree_util.tree_map_with_path(label, params)


def _part_tx(cfg, lr: float, steps: int) -> optax.GradientTransformation:
  part = config_lib.from_dict(config_lib.to_dict(cfg))
  part.learning_rate = float(lr)
  part.num_epochs = 1
  return optim.create(part, max(1, steps))


def make_optimizer(cfg, labels, *, head_lr: float, backbone_lr: float, steps: int
                   ) -> optax.GradientTransformation:
  """cfg's optimizer and schedule (over `steps`) per part; frozen parts get zero."""
  return optax.multi_transform(
      {HEAD: _part_tx(cfg, head_lr, steps), TUNE: _part_tx(cfg, backbone_lr, steps),
       FROZEN: optax.set_to_zero()}, labels)


# ---- Models ----------------------------------------------------------------------------

@dataclasses.dataclass
class Source:
  model: models.Model
  config: Any                   # the training config of the source
  dataset: str
  workdir: str
  test_accuracy: float | None = None


def load_source(workdir: str, step: int | str | None = None) -> Source:
  """The source model of a training workdir; refused when it has no backbone."""
  if not os.path.isdir(workdir):
    raise UserError(f"source checkpoint {workdir!r} does not exist (a training "
                    f"--workdir of experiments/train.py is expected)")
  restored = train.restore_model(workdir, step)
  check_has_features(restored.model, workdir)
  acc = None
  res = os.path.join(workdir, "results.json")
  if os.path.exists(res):
    with open(res) as f:
      acc = json.load(f).get("test_accuracy")
  return Source(model=restored.model, config=restored.config,
                dataset=restored.config.dataset, workdir=workdir, test_accuracy=acc)


def target_config(source_cfg, seed: int):
  cfg = config_lib.from_dict(config_lib.to_dict(source_cfg))
  cfg.seed = int(seed)
  return cfg


def transfer_model(source: models.Model, source_cfg, num_classes: int, seed: int
                   ) -> models.Model:
  """The source architecture with `num_classes` outputs: the source's backbone
  parameters and BatchNorm statistics, a new head initialised from `seed`."""
  check_has_features(source)
  target = train.init_model(target_config(source_cfg, seed), num_classes)
  graphdef, t_params, t_rest = models.split(target)
  _, s_params, s_rest = models.split(source)

  def pick(path, t, s):
    if block_of(target, path) is None:
      return t
    if np.shape(t) != np.shape(s):
      raise UserError(f"transfer: source parameter {jax.tree_util.keystr(path)} has "
                      f"shape {np.shape(s)}, the target model {np.shape(t)}")
    return jnp.asarray(s)

  params = jax.tree_util.tree_map_with_path(pick, t_params, s_params)
  rest = jax.tree.map(jnp.asarray, s_rest)
  return nnx.merge(graphdef, params, rest)


def scratch_model(source_cfg, num_classes: int, seed: int) -> models.Model:
  return train.init_model(target_config(source_cfg, seed), num_classes)


# ---- Training --------------------------------------------------------------------------

def make_train_fn(graphdef, tx, num_classes: int, *, probe: bool, batch_size: int,
                  num_steps: int, label_smoothing: float = 0.0) -> Callable:
  """fn(state, images, labels, subset, n, root) -> (state, losses, correct).

  Runs `num_steps` steps (one chunk) in one scan, from ``state.step`` on; each step's
  batch is `batch_size` draws with replacement from ``subset[:n]`` (indices into images
  / labels). Returns each step's loss and number of correct training predictions.
  """

  def loss_fn(params, rest, x, targets, key):
    if probe:
      feats, _ = models.apply(graphdef, params, rest, x, train=False, method="features")
      logits, _ = models.apply(graphdef, params, rest, jax.lax.stop_gradient(feats),
                               train=False, method="head")
      new_rest = rest
    else:
      logits, new_rest = models.apply(graphdef, params, rest, x, train=True, key=key)
    loss = optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()
    return loss, (logits, new_rest)

  def fn(state, images, labels, subset, n, root):
    batch_root = jax.random.fold_in(root, _BATCH)

    def body(state, _):
      key = jax.random.fold_in(batch_root, state.step)
      k_idx, k_drop = jax.random.split(key)
      idx = subset[jax.random.randint(k_idx, (batch_size,), 0, n)]
      y = labels[idx].astype(jnp.int32)
      x = models.preprocess(images[idx], jnp.float32)
      targets = optax.smooth_labels(jax.nn.one_hot(y, num_classes), label_smoothing)
      (loss, (logits, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          state.params, state.rest, x, targets, k_drop)
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      correct = jnp.sum(jnp.argmax(logits, -1) == y)
      return state.replace(step=state.step + 1, params=params, rest=new_rest,
                           opt_state=opt_state), (loss, correct)

    return jax.lax.scan(body, state, None, length=num_steps)

  return fn


@functools.partial(jax.jit, static_argnums=2)
def _train_summary(losses, correct, batch_size: int):
  return jnp.mean(losses), jnp.sum(correct) / (losses.shape[0] * batch_size)


class Trainer:
  """Trains and evaluates transfer / scratch runs on one target dataset, compiling
  each (mode, step count, chunk length) once: the state, subset and its size are
  arguments."""

  def __init__(self, train_split, test_split, num_classes: int, *, cfg, steps: int,
               batch_size: int, head_lr: float, backbone_lr: float, last_n: int,
               eval_batch: int = 1000, chunk_steps: int = 500):
    if chunk_steps < 1:
      raise UserError(f"transfer: chunk_steps={chunk_steps} must be >= 1")
    self.chunk_steps = int(chunk_steps)
    self.C = num_classes
    self.cfg = cfg
    self.steps, self.batch_size = int(steps), int(batch_size)
    self.head_lr, self.backbone_lr, self.last_n = head_lr, backbone_lr, int(last_n)
    self.eval_batch = eval_batch
    self.par = parallel.create("single")
    self.n_train = len(train_split.labels)
    self.train_arrays = jax.device_put((train_split.images, train_split.labels))
    images, labels = inference.pad_to_multiple(eval_batch, test_split.images,
                                               test_split.labels)
    self.n_test = len(test_split.labels)
    self.test_arrays = jax.device_put((images, labels))
    self._fns: dict = {}

  def chunks(self, steps: int) -> list[int]:
    """The scan lengths of a `steps`-step run: full chunks, then the rest."""
    full, rest = divmod(int(steps), self.chunk_steps)
    return [self.chunk_steps] * full + ([rest] if rest else [])

  def _compiled(self, model, mode: str, params, steps: int):
    graphdef = nnx.graphdef(model)
    key = (graphdef, mode, steps)
    if key not in self._fns:
      labels = param_labels(model, params, mode, self.last_n)
      backbone_lr = self.head_lr if mode == SCRATCH else self.backbone_lr
      tx = make_optimizer(self.cfg, labels, head_lr=self.head_lr,
                          backbone_lr=backbone_lr, steps=steps)
      fns = {n: jax.jit(make_train_fn(graphdef, tx, self.C, probe=mode == "linear_probe",
                                      batch_size=self.batch_size, num_steps=n,
                                      label_smoothing=self.cfg.label_smoothing))
             for n in set(self.chunks(steps))}
      ev = train.make_eval_fn(inference.forward_graphdef(*models.split(model)), self.cfg,
                              self.C, self.par, self.eval_batch)  # forward only: fast conv
      self._fns[key] = (tx, fns, jax.jit(ev))
    return self._fns[key]

  def initial_state(self, model, mode: str, steps: int | None = None):
    steps = self.steps if steps is None else int(steps)
    graphdef, params, rest = models.split(model)
    tx, fns, ev = self._compiled(model, mode, params, steps)
    state = train.TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest,
                             opt_state=tx.init(params))
    return state, fns, ev

  def run(self, model, mode: str, subset: np.ndarray, seed: int,
          steps: int | None = None) -> tuple[dict, train.TrainState]:
    """Trains `model` (already holding the source backbone, or fresh for scratch) on
    ``train[subset]`` and evaluates it on the test split."""
    check_mode(mode)
    t0 = time.perf_counter()
    steps = self.steps if steps is None else int(steps)
    state, fns, ev = self.initial_state(model, mode, steps)
    padded = np.zeros(self.n_train, np.int32)
    padded[:len(subset)] = subset
    args = (*self.train_arrays, jnp.asarray(padded), jnp.int32(len(subset)),
            train.root_key(seed))
    losses, correct, done = [], [], 0
    for n in self.chunks(steps):
      signame = stopping.requested()
      if signame:
        raise Preempted(f"transfer run ({mode}, seed {seed}) stopped by {signame} after "
                        f"{done} of {steps} steps; it keeps no checkpoint and is redone "
                        "from the start by the same command")
      state, (chunk_loss, chunk_correct) = fns[n](state, *args)
      chunk_loss.block_until_ready()   # dispatch is asynchronous: wait, so a stop is seen
      losses.append(chunk_loss)
      correct.append(chunk_correct)
      done += n
    loss, acc = _train_summary(jnp.concatenate(losses), jnp.concatenate(correct),
                               self.batch_size)
    if not np.isfinite(float(loss)):
      raise train.TrainingDiverged(f"transfer ({mode}, seed {seed}): the loss became "
                                   "NaN/inf; lower the learning rates")
    sums = ev(state, *self.test_arrays, self.n_test)
    summary = train.summarize_eval(jax.device_get(sums), self.n_test)
    result = {
        "test_accuracy": summary["accuracy"],
        "test_balanced_accuracy": summary["balanced_accuracy"],
        "test_loss": summary["loss"],
        "test_confusion": summary["confusion"],
        # A class absent from the test split counts 0 (the gains need a number).
        "per_class_accuracy": np.nan_to_num(
            metrics.per_class(summary["confusion"])["accuracy"]).tolist(),
        "train_loss": float(loss), "train_accuracy": float(acc),
        "steps": int(state.step), "train_examples": int(len(subset)),
        "wall_s": time.perf_counter() - t0,
    }
    return result, state


def layer_activations(model: models.Model, images, batch: int = 500) -> dict[str, np.ndarray]:
  """``model.activations`` (eval mode) of uint8 images, as host float arrays, in layer
  order: :func:`kmnist_jax.inference.predict` with ``output='activations'``."""
  return inference.predict(model, images, output="activations", batch_size=batch)


def subset_sizes(labels, subset: Sequence[int], num_classes: int) -> list[int]:
  return np.bincount(np.asarray(labels)[np.asarray(subset)], minlength=num_classes).tolist()
