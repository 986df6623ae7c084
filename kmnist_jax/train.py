"""Training and evaluation: one straight line from arrays to checkpoints.

arrays (uint8, host) -> devices once (:meth:`Parallel.replicate`) -> compiled training
calls, each a ``lax.scan`` over many steps (shuffle from (seed, epoch) and per-step
keys from (seed, step), all on device) -> per-epoch metrics -> Orbax checkpoint.

The core is functional: a model is split once into ``graphdef`` (static) and arrays
(:class:`TrainState`); ``train_step(state, images, labels, key)`` is pure and runs
unchanged under ``jit``, ``pmap`` and sharded ``jit`` (see :mod:`kmnist_jax.parallel`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from flax import nnx

from kmnist_jax import checkpoint as ckpt_lib
from kmnist_jax import config as config_lib
from kmnist_jax import data as data_lib
from kmnist_jax import inference, io, lock, models, optim, parallel, stopping
from kmnist_jax.errors import Preempted, UserError
from kmnist_jax.io import atomic_write
from kmnist_jax.robustness import adversarial_training as adv_lib

# Streams folded into the root key: each use of randomness has its own. A step's key
# is split into its dropout key and its augmentation key; the adversary folds its own
# stream into it (adversarial_training.ADVERSARY). _CHECK: the overfitting guard's PGD.
_INIT, _SHUFFLE, _STEP, _CHECK = 0, 1, 2, 3


class TrainingDiverged(UserError):
  """The loss became NaN/inf; the last good checkpoint is kept."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array      # int32 scalar: global step
  params: Any          # trainable (nnx.Param)
  rest: Any            # other model state (BatchNorm statistics)
  opt_state: Any


def root_key(seed: int) -> jax.Array:
  return jax.random.key(seed)


def init_model(cfg, num_classes: int, *, bn_axis_name: str | None = None,
               compiled: bool = True):
  """The model for `cfg`, initialised from (seed, 'init'); `compiled=False` builds it
  op by op (slower, the same values)."""
  dtype = jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32
  kwargs = dict(cfg.model_kwargs)

  def build():
    key = jax.random.fold_in(root_key(cfg.seed), _INIT)
    return models.create(cfg.model, num_classes=num_classes, rngs=nnx.Rngs(key),
                         bn_axis_name=bn_axis_name, dtype=dtype,
                         conv_impl=cfg.conv_impl, **kwargs)

  # One compiled program for the whole initialisation: op by op, each initializer
  # compiles on its own, which takes longer than one program (docs/performance.md).
  # The values are bit-identical (tests/test_train.py).
  if not compiled:
    return build()
  graphdef, _ = nnx.split(nnx.eval_shape(build))
  return nnx.merge(graphdef, run_once(lambda: nnx.split(build())[1]))


# XLA's LLVM optimisation level for programs that run once (initialisation), whose
# compile time dominates their run time: level 1 compiles them faster than the default
# (docs/performance.md) with bit-identical values (tests/test_train.py); level 0
# changes the last bits of the normal initialisers.
RUN_ONCE_OPT_LEVEL = 1


def run_once(fn):
  """``jax.jit(fn)()`` for a program that runs once: compiled at
  :data:`RUN_ONCE_OPT_LEVEL` (its compile time dominates its run time)."""
  return jax.jit(fn).lower().compile(
      compiler_options={"xla_backend_optimization_level": RUN_ONCE_OPT_LEVEL})()


def resolved_config(cfg) -> dict:
  """The config as saved with checkpoints: JSON-safe, with the model's default kwargs
  filled in, so that a later change of a model default cannot change what a
  checkpoint's config means."""
  d = config_lib.to_dict(cfg)
  d["model_kwargs"] = io.jsonable({**models.model_kwargs(cfg.model),
                                            **d["model_kwargs"]})
  return d


def init_state(cfg, num_classes: int, steps_per_epoch: int, *,
               bn_axis_name: str | None = None):
  """(graphdef, tx, TrainState at step 0), built as one compiled program."""
  tx = optim.create(cfg, steps_per_epoch)

  def model():
    return init_model(cfg, num_classes, bn_axis_name=bn_axis_name, compiled=False)

  def build():
    _, params, rest = models.split(model())
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest,
                      opt_state=tx.init(params))

  return models.split(nnx.eval_shape(model))[0], tx, run_once(build)


# ---- Pure functions --------------------------------------------------------------------

def make_train_step(graphdef, tx, cfg, num_classes: int, par: parallel.Parallel,
                    augmenter: Callable | None = None,
                    adversary: adv_lib.Adversary | None = None) -> Callable:
  """train_step(state, images uint8 [b,28,28], labels [b], key) -> (state, metrics).

  `augmenter(key, x, targets) -> (x, targets)` (from :mod:`kmnist_jax.augment`) runs
  on device on the scaled batch x [b,28,28,1] in [0,1] and its soft targets [b,C].
  `adversary` (:mod:`kmnist_jax.robustness.adversarial_training`) then replaces the
  batch by its adversarial examples (TRADES: trains on both), on device.
  Metrics: the global mean ``loss`` and, under pmap, this replica's ``correct`` count
  on the inputs trained on (adversarial ones under an adversary). The chunk sums the
  counts over replicas once, after its scan: one cross-device sync fewer per step,
  the same counts (measured in docs/performance.md).
  """
  dtype = jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32
  smoothing = cfg.label_smoothing

  trades = adversary is not None and adversary.method == "trades"

  def forward(params, rest, x, key):
    logits, new_rest = models.apply(graphdef, params, rest, x.astype(dtype), train=True,
                                    key=key)
    return logits.astype(jnp.float32), new_rest

  def loss_fn(params, rest, x, x_adv, targets, key):
    if trades:  # two passes, each updating the batch statistics, as the reference does
      clean_key, key = jax.random.split(key)
      clean, rest = forward(params, rest, x, clean_key)
      logits, new_rest = forward(params, rest, x_adv, key)
      return adv_lib.trades_loss(clean, logits, targets, adversary.beta), (logits,
                                                                           new_rest)
    logits, new_rest = forward(params, rest, x_adv, key)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    return loss, (logits, new_rest)

  def train_step(state: TrainState, images, labels, key):
    step_key, key = key, par.replica_key(key)
    dropout_key, augment_key = jax.random.split(key)
    x = models.preprocess(images, jnp.float32)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), smoothing)
    if augmenter is not None:
      x, targets = augmenter(augment_key, x, targets)
    x_adv = x
    if adversary is not None:
      # Keys per example of the global batch (the same attack in every parallel mode).
      keys = adv_lib.example_keys(step_key, cfg.batch_size, par.local_indices)
      attack_key = jax.random.fold_in(dropout_key, adv_lib.ADVERSARY)
      x_adv = adversary.perturb(state.params, state.rest, x, labels, keys, state.step,
                                attack_key)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (logits, new_rest)), grads = grad_fn(state.params, state.rest, x, x_adv,
                                                targets, dropout_key)
    grads, loss = par.mean((grads, loss))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    correct = jnp.sum(jnp.argmax(logits, -1) == labels)   # this replica's count
    new_state = state.replace(step=state.step + 1, params=params, rest=new_rest,
                              opt_state=opt_state)
    return new_state, {"loss": loss, "correct": correct}

  return train_step


def make_train_chunk(train_step, *, n_train: int, batch_size: int, chunk_steps: int,
                     par: parallel.Parallel) -> Callable:
  """chunk(state, images, labels, root, epoch, start) -> (state, summed metrics).

  Runs steps [start, start + chunk_steps) of `epoch` as one scan. The epoch's order
  is ``permutation(fold_in(root, SHUFFLE, epoch))``; step keys are
  ``fold_in(root, STEP, global_step)``: both depend on (seed, epoch/step) only, so a
  resumed run repeats an uninterrupted one exactly.
  """
  steps_per_epoch = n_train // batch_size

  def chunk(state, images, labels, root, epoch, start):
    shuffle_key = jax.random.fold_in(jax.random.fold_in(root, _SHUFFLE), epoch)
    order = jax.random.permutation(shuffle_key, n_train)
    order = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)
    order = jax.lax.dynamic_slice_in_dim(order, start, chunk_steps)
    step_root = jax.random.fold_in(root, _STEP)

    def body(state, idx):
      key = jax.random.fold_in(step_root, state.step)
      idx = par.local_indices(idx)
      state, m = train_step(state, images[idx], labels[idx].astype(jnp.int32), key)
      bad = ~jnp.isfinite(m["loss"])
      return state, (m["loss"], m["correct"], bad, state.step)

    state, (loss, correct, bad, steps) = jax.lax.scan(body, state, order)
    first_bad = jnp.min(jnp.where(bad, steps, jnp.iinfo(jnp.int32).max))
    return state, {"loss_sum": jnp.sum(loss), "correct": par.sum(jnp.sum(correct)),
                   "first_bad_step": first_bad}

  return chunk


def make_eval_fn(graphdef, cfg, num_classes: int, par: parallel.Parallel,
                 eval_batch: int) -> Callable:
  """eval(state, images, labels, n_valid) -> sums of loss / correct and the confusion.

  `images` is padded to a multiple of `eval_batch`; rows >= n_valid are masked out.
  """
  dtype = jnp.bfloat16 if cfg.dtype == "bfloat16" else jnp.float32

  def evaluate(state, images, labels, n_valid):
    nb = images.shape[0] // eval_batch

    def body(carry, b):
      idx = par.local_indices(b * eval_batch + jnp.arange(eval_batch))
      y = labels[idx].astype(jnp.int32)
      mask = (idx < n_valid).astype(jnp.float32)
      logits, _ = models.apply(graphdef, state.params, state.rest,
                               models.preprocess(images[idx], dtype), train=False)
      logits = logits.astype(jnp.float32)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
      pred = jnp.argmax(logits, -1)
      conf = jnp.zeros((num_classes, num_classes), jnp.float32).at[y, pred].add(mask)
      out = {"loss_sum": jnp.sum(loss * mask), "confusion": conf}
      return jax.tree.map(jnp.add, carry, par.sum(out)), None

    zero = {"loss_sum": jnp.zeros(()),
            "confusion": jnp.zeros((num_classes, num_classes))}
    sums, _ = jax.lax.scan(body, zero, jnp.arange(nb))
    return sums

  return evaluate


def summarize_eval(sums: dict, n: int) -> dict:
  """Host-side: accuracy, balanced accuracy and loss from eval sums."""
  conf = np.asarray(sums["confusion"]).round().astype(np.int64)
  per_class_total = conf.sum(1)
  recall = np.divide(np.diag(conf), per_class_total,
                     out=np.zeros(len(conf)), where=per_class_total > 0)
  present = per_class_total > 0
  return {
      "accuracy": float(np.trace(conf) / max(n, 1)),
      "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
      "loss": float(sums["loss_sum"]) / max(n, 1),
      "confusion": conf.tolist(),
  }


# ---- Driver ----------------------------------------------------------------------------

def chunk_steps_per_call(steps_per_epoch: int, updates: int) -> int:
  """The divisor of steps_per_epoch closest to steps_per_epoch / updates."""
  target = max(1, steps_per_epoch / max(1, updates))
  divisors = [d for d in range(1, steps_per_epoch + 1) if steps_per_epoch % d == 0]
  best = min(divisors, key=lambda d: (abs(math.log(d / target)), d))
  # Very short chunks (prime step counts) cost a host round trip each: use the epoch.
  return best if best >= min(8, steps_per_epoch) else steps_per_epoch


class _Evaluator:
  """Evaluates one split, placed on device once, compiled once."""

  def __init__(self, eval_fn, par, split: data_lib.Split, eval_batch: int):
    # The padding inference uses; the evaluation itself stays a compiled, sharded loop
    # under the training parallel mode (make_eval_fn), on device.
    images, labels = inference.pad_to_multiple(eval_batch, split.images, split.labels)
    self.n = len(split.labels)
    self.par = par
    self.arrays = par.replicate((images, labels))
    self.fn = par.compile(eval_fn, num_replicated=3, donate_state=False)

  def __call__(self, state) -> dict:
    sums = self.fn(state, *self.arrays, self.n)
    return summarize_eval(self.par.fetch(sums), self.n)


def _load_data(cfg) -> data_lib.Dataset:
  limit = {}
  if cfg.train_limit:
    limit["train"] = cfg.train_limit
  if cfg.test_limit:
    limit["test"] = cfg.test_limit
  return data_lib.load(cfg.dataset, data_dir=cfg.data_dir or None,
                       source=cfg.data_source, val_size=cfg.val_size,
                       val_seed=cfg.val_seed, tfds_dir=cfg.tfds_dir or None,
                       limit=limit or None)


class _MetricLog:
  """metrics.jsonl (rewritten from the checkpoint history on resume), config.json and
  env.json (written at the start), and TensorBoard (:mod:`kmnist_jax.tensorboard`:
  per-chunk loss, per-epoch metrics, config as hparams, validation confusion image)."""

  def __init__(self, workdir: str, history: list[dict], tensorboard: bool,
               config: dict | None = None):
    # Process 0 writes (multi-host); the whole file is rewritten each epoch, since
    # gs:// objects cannot be appended to.
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self.lines = [json.dumps(h) + "\n" for h in history]
    self.primary = jax.process_index() == 0
    self.config, self.env = config, io.run_meta()
    if self.primary:
      atomic_write(self.path, "".join(self.lines))
      if config is not None:
        io.write_json(epath.Path(workdir) / "config.json", config)
      io.write_json(epath.Path(workdir) / "env.json", self.env)
    self.tb = None
    if tensorboard and self.primary:
      try:
        from kmnist_jax import tensorboard as tb_lib
        self.tb = tb_lib.TrainLog(str(epath.Path(workdir) / "tensorboard"), config)
      except (ImportError, OSError) as e:
        logging.warning("TensorBoard disabled: %s", e)

  def chunk(self, step: int, loss: float, accuracy: float) -> None:
    if self.tb is not None:
      self.tb.chunk(step, loss, accuracy)

  def write(self, record: dict):
    self.lines.append(json.dumps(record) + "\n")
    if self.primary:
      atomic_write(self.path, "".join(self.lines))
    if self.tb is not None:
      self.tb.epoch(record)

  def results(self, step: int, results: dict) -> dict:
    """`results` with the run's config and env; the final test metrics to TensorBoard."""
    if self.tb is not None:
      self.tb.final(step, results)
      self.tb.close()
    return dict(results, config=self.config, env=self.env)


# Fields that may differ between the processes of one multi-host run (where each host
# finds its copy of the data; the data themselves are compared by fingerprint).
_PER_PROCESS_FIELDS = frozenset({"data_dir", "tfds_dir", "data_source", "progress",
                                 "tensorboard", "distributed"})


def _check_processes_agree(cfg, workdir: str, ds: data_lib.Dataset) -> None:
  """Multi-host: every process must hold the same config, workdir and data."""
  if jax.process_count() == 1:
    return
  parts = {f"config.{k}": json.dumps(v, sort_keys=True)
           for k, v in resolved_config(cfg).items() if k not in _PER_PROCESS_FIELDS}
  parts["workdir"] = str(workdir)
  for name, split in ds.splits.items():
    parts[f"data {name}"] = data_lib.fingerprint(split.images, split.labels)
  parallel.check_processes_agree(parts)


class _StopFlag(stopping.StopOnSignal):
  """SIGTERM / SIGINT -> stop at the next chunk boundary (:mod:`kmnist_jax.stopping`).

  On multi-host every process must stop at the same step: :meth:`agreed` gathers every
  process's flag at each chunk boundary (a JAX collective), so all of them see the stop
  at the same chunk.
  """

  def __init__(self):
    super().__init__("saving a checkpoint at the next chunk boundary and stopping")

  def agreed(self) -> bool:
    local = self.signame is not None
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.int32(local))
    if np.any(flags) and self.signame is None:
      self.signame = "a signal to another process"
    return bool(np.any(flags))


def train_and_evaluate(cfg, workdir: str, *, log: Callable[[str], None] = print,
                       on_chunk: Callable[[int], None] | None = None) -> dict:
  """Trains `cfg` in `workdir` (resuming from its newest intact checkpoint) and returns
  the final results (also written to ``<workdir>/results.json``).

  Holds the workdir's lock (:mod:`kmnist_jax.lock`) throughout: a second run on the
  same workdir is refused. SIGTERM / SIGINT stop the run at the next chunk boundary
  after saving a checkpoint of that step: :class:`~kmnist_jax.errors.Preempted`.
  `on_chunk(step)` is called after each compiled chunk with the global step reached.
  """
  t_start = time.perf_counter()  # elapsed_s: data loading and compilation included
  config_lib.validate(cfg)
  if cfg.distributed:
    parallel.initialize_distributed()
  with lock.WorkdirLock(workdir), _StopFlag() as stop:
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    return _train_and_evaluate(cfg, workdir, log, stop, t_start, on_chunk)


def _restore(ckpts, state, cfg, saved_cfg, workdir: str, log):
  """The newest intact checkpoint (damaged newer ones are set aside), or None."""
  if ckpts.latest_step() is None:
    return None

  def check_config(old_cfg):
    diffs = config_lib.differences(old_cfg, saved_cfg)
    if diffs and not cfg.allow_config_mismatch:
      raise UserError(
          f"workdir {workdir} holds a checkpoint of a different config ("
          + "; ".join(diffs) + "); use another --workdir, or "
          "--config.allow_config_mismatch=True to resume anyway")

  r = ckpts.restore_verified(jax.device_get(state), check_config=check_config)
  if r.skipped:
    # Out of the way of the steps this run will save again (process 0 moves them).
    if jax.process_index() == 0:
      moved = ckpts.set_aside([s for s, _ in r.skipped])
      if moved:
        print(f"warning: moved {len(moved)} damaged checkpoint(s) to "
              f"{os.path.dirname(moved[0])}", file=sys.stderr)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("kmnist_jax: damaged checkpoints set aside")
      ckpts.manager.reload()
  where = (f"epoch {r.progress['epoch'] + 1}, step {r.progress['start']} of the epoch"
           if r.progress else f"epoch {len(r.history)}")
  log(f"Resuming from {ckpts.directory}/{r.step} ({where}).")
  return r


def _train_and_evaluate(cfg, workdir: str, log, stop: _StopFlag, t_start: float,
                        on_chunk) -> dict:
  par = parallel.create(cfg.parallel)
  par.check_batch(cfg.batch_size)
  par.check_batch(cfg.eval_batch_size, "config.eval_batch_size")

  ds = _load_data(cfg)
  train, test = ds.splits["train"], ds.splits["test"]
  val = ds.splits.get("validation")
  _check_processes_agree(cfg, workdir, ds)
  n_train, C = len(train.labels), ds.info.num_classes
  if n_train < cfg.batch_size:
    raise UserError(f"config.batch_size={cfg.batch_size} is larger than the training "
                    f"set ({n_train} examples)")
  steps_per_epoch = n_train // cfg.batch_size
  chunk_steps = chunk_steps_per_call(steps_per_epoch, cfg.progress_updates_per_epoch)

  graphdef, tx, state = init_state(cfg, C, steps_per_epoch, bn_axis_name=par.axis_name)
  eval_graphdef = inference.forward_graphdef(graphdef, state.params, state.rest)
  saved_cfg = resolved_config(cfg)
  ckpts = ckpt_lib.Checkpoints(workdir, keep=cfg.keep_checkpoints)
  history: list[dict] = []
  start_epoch, progress, last_saved = 0, None, None
  restored = _restore(ckpts, state, cfg, saved_cfg, workdir, log)
  if restored is not None:
    state, history, last_saved = restored.state, restored.history, restored.step
    start_epoch = len(history)
    progress = restored.progress
    if progress is not None:
      # Mid-epoch (preempted): the same chunking as the run that saved it, so the
      # epoch's sums (train loss) are bit-identical to an uninterrupted run's.
      chunk_steps = int(progress["chunk_steps"])

  state = par.replicate(state)
  train_arrays = par.replicate((train.images, train.labels))
  root = root_key(cfg.seed)
  augmenter = None
  if cfg.augment:
    from kmnist_jax import augment  # validate() checked that it exists
    augmenter = augment.build(cfg.augment, num_classes=C)
  adversary = adv_lib.build(cfg, graphdef, steps_per_epoch)
  check = None
  if adversary is not None and cfg.adversarial.check_every_epoch:
    check = adv_lib.Check(graphdef, cfg, val.images, val.labels,
                          jax.random.fold_in(root, _CHECK))
  train_step = make_train_step(graphdef, tx, cfg, C, par, augmenter, adversary)
  chunk_fn = par.compile(
      make_train_chunk(train_step, n_train=n_train, batch_size=cfg.batch_size,
                       chunk_steps=chunk_steps, par=par), num_replicated=3)
  # The evaluator runs forward only: XLA's own convolution (inference.INFERENCE_CONV),
  # ~3x faster than the training formulation on CPU.
  eval_fn = make_eval_fn(eval_graphdef, cfg, C, par, cfg.eval_batch_size)
  evaluators = {name: _Evaluator(eval_fn, par, split, cfg.eval_batch_size)
                for name, split in (("val", val), ("test", test)) if split is not None}
  lr_at = jax.jit(optim.schedule(cfg, steps_per_epoch))  # one compile, not one per op
  mlog = _MetricLog(workdir, history, cfg.tensorboard, saved_cfg)

  end_epoch = cfg.num_epochs
  if cfg.num_epochs_stop:
    end_epoch = min(end_epoch, cfg.num_epochs_stop)
  if (cfg.stop_at_test_accuracy and history
      and history[-1].get("test_accuracy", 0.0) >= cfg.stop_at_test_accuracy):
    end_epoch = start_epoch  # a resumed run that had reached its target
  if cfg.adversarial.stop_on_collapse and any(h.get("adv_collapse") for h in history):
    end_epoch = start_epoch  # a resumed run that stopped at a collapse
  log(f"{cfg.model} on {cfg.dataset} ({ds.source}): {n_train} train examples, "
      f"{steps_per_epoch} steps/epoch, {par.describe()}, "
      f"{sum(np.size(x) for x in jax.tree.leaves(par.fetch(state.params))):,} params"
      + (f", adversarial training: {_describe_adversary(adversary)}"
         if adversary is not None else ""))

  def preempt(epoch: int, start: int, sums: tuple[float, float, float]):
    """Saves this exact step (unless saved already) and raises Preempted."""
    nonlocal last_saved
    step = epoch * steps_per_epoch + start
    if step == 0:   # the initial state comes from the seed: nothing to keep
      ckpts.close()
      raise Preempted(f"stopped by {stop.signame} before the first training step "
                      "(nothing to save); run the same command to start", step=0)
    if last_saved != step:
      mid = None
      if start:
        mid = {"epoch": epoch, "start": start, "chunk_steps": chunk_steps,
               "loss_sum": sums[0], "correct": sums[1], "train_time_s": sums[2]}
      metrics = best_metrics(history[-1]) if not start and history else None
      ckpts.save(step, par.fetch(state), saved_cfg, history, metrics, progress=mid)
      last_saved = step
    ckpts.close()
    raise Preempted(
        f"stopped by {stop.signame} at step {step} (epoch {epoch + 1}, step {start}/"
        f"{steps_per_epoch} of the epoch); checkpoint {ckpts.directory}/{step}; run the "
        "same command to resume", step=step)

  first = progress["start"] if progress else 0
  bar = _progress(cfg, total=(end_epoch - start_epoch) * steps_per_epoch - first)
  try:
    for epoch in range(start_epoch, end_epoch):
      t0 = time.perf_counter()
      loss_sum = correct = time_before = 0.0
      first = 0
      if progress is not None and epoch == progress["epoch"]:
        first = int(progress["start"])
        loss_sum, correct = float(progress["loss_sum"]), float(progress["correct"])
        time_before = float(progress["train_time_s"])
      for start in range(first, steps_per_epoch, chunk_steps):
        if stop.agreed():
          preempt(epoch, start, (loss_sum, correct,
                                 time_before + time.perf_counter() - t0))
        state, m = chunk_fn(state, *train_arrays, root, epoch, start)
        m = par.fetch(m)
        bad = int(m["first_bad_step"])
        if bad != np.iinfo(np.int32).max:
          last = ckpts.latest_step()
          raise TrainingDiverged(
              f"loss became NaN/inf at step {bad} (epoch {epoch + 1}); stopped. "
              + (f"Last good checkpoint: {ckpts.directory}/{last}." if last is not None
                 else "No checkpoint was saved yet.")
              + " Lower config.learning_rate or set config.grad_clip.")
        loss_sum += float(m["loss_sum"])
        mlog.chunk(epoch * steps_per_epoch + start + chunk_steps,
                   float(m["loss_sum"]) / chunk_steps,
                   float(m["correct"]) / (chunk_steps * cfg.batch_size))
        correct += float(m["correct"])
        if on_chunk is not None:
          on_chunk(epoch * steps_per_epoch + start + chunk_steps)
        if bar is not None:
          done = start + chunk_steps
          bar.update(chunk_steps)
          bar.set_postfix(epoch=f"{epoch + 1}/{end_epoch}",
                          loss=f"{loss_sum / done:.4f}",
                          acc=f"{correct / (done * cfg.batch_size):.4f}")
      jax.block_until_ready(state)
      train_time = time_before + time.perf_counter() - t0
      n_seen = steps_per_epoch * cfg.batch_size
      step = (epoch + 1) * steps_per_epoch
      record = {
          "epoch": epoch + 1, "step": step,
          "lr": float(lr_at(step - 1)),
          "train_loss": loss_sum / steps_per_epoch,
          "train_accuracy": correct / n_seen,
          "epoch_time_s": train_time,
          "train_img_per_s": n_seen / train_time,
      }
      if "val" in evaluators:
        v = evaluators["val"](state)
        record.update(val_loss=v["loss"], val_accuracy=v["accuracy"],
                      val_balanced_accuracy=v["balanced_accuracy"],
                      val_confusion=v["confusion"])
      collapsed = None
      if adversary is not None:
        record["adv_eps"] = float(adversary.epsilon(step - 1))
      if check is not None:
        host = par.fetch(state)
        record["val_pgd_accuracy"] = check(host.params, host.rest)
        if epoch + 1 > cfg.adversarial.eps_warmup_epochs:
          scores = [h["val_pgd_accuracy"] for h in history] + [record["val_pgd_accuracy"]]
          collapsed = adv_lib.collapse(scores, cfg.adversarial.collapse_ratio, 1.0 / C)
          record["adv_collapse"] = collapsed is not None
      record["elapsed_s"] = time.perf_counter() - t_start
      reached = False
      if ((cfg.eval_test_every_epoch or cfg.stop_at_test_accuracy)
          and epoch + 1 >= cfg.eval_test_from_epoch):
        t = evaluators["test"](state)
        record.update(test_accuracy=t["accuracy"], test_loss_epoch=t["loss"])
        reached = (cfg.stop_at_test_accuracy > 0
                   and t["accuracy"] >= cfg.stop_at_test_accuracy)
      history.append(record)
      mlog.write(record)
      msg = (f"epoch {epoch + 1}/{end_epoch}: train loss {record['train_loss']:.4f} "
             f"acc {record['train_accuracy']:.4f}")
      if "val_accuracy" in record:
        msg += f", val acc {record['val_accuracy']:.4f}"
      if "val_pgd_accuracy" in record:
        msg += f", val PGD-{check.steps} acc {record['val_pgd_accuracy']:.4f}"
      msg += f" ({record['train_img_per_s']:.0f} img/s)"
      if "test_accuracy" in record:
        msg += f", test acc {record['test_accuracy']:.4f}"
      if reached:
        msg += (f" >= {cfg.stop_at_test_accuracy} after {record['elapsed_s']:.1f} s: "
                "target reached, stopping")
      (bar.write if bar is not None else log)(msg)
      stop_collapsed = collapsed is not None and cfg.adversarial.stop_on_collapse
      if ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == end_epoch
          or reached or stop_collapsed):
        ckpts.save(step, par.fetch(state), saved_cfg, history, best_metrics(record))
        last_saved = step
      if collapsed is not None:
        best = history[collapsed]
        (bar.write if bar is not None else log)(
            f"warning: catastrophic overfitting at epoch {epoch + 1}: "
            f"{check.describe()} fell to {record['val_pgd_accuracy']:.4f}, below "
            f"{cfg.adversarial.collapse_ratio:g} x its best {best['val_pgd_accuracy']:.4f} "
            f"(epoch {best['epoch']}); "
            + ("stopping; " if stop_collapsed else "")
            + f"the best checkpoint is kept: restore_model({workdir!r}, step='best')")
      if reached or stop_collapsed:
        break
  finally:
    if bar is not None:
      bar.close()

  results = {"dataset": cfg.dataset, "model": cfg.model, "epochs": len(history),
             "finished": len(history) == cfg.num_epochs, "parallel": par.mode,
             "elapsed_s": time.perf_counter() - t_start,
             "devices": par.num_replicas, "adversarial": cfg.adversarial.method}
  collapses = [h["epoch"] for h in history if h.get("adv_collapse")]
  if collapses:
    results["adv_collapse_epoch"] = collapses[0]
  test_metrics = evaluators["test"](state)
  results.update({f"test_{k}": v for k, v in test_metrics.items()})
  if history:
    # Throughput of the epochs this call trained (all of them when it trained none:
    # a finished run run again); train_s: the training time of every epoch, summed
    # across resumptions (elapsed_s is this call's wall-clock only).
    ran = history[start_epoch:] or history
    results.update(train_loss=history[-1]["train_loss"],
                   val_accuracy=history[-1].get("val_accuracy"),
                   train_img_per_s=float(np.median([h["train_img_per_s"] for h in ran])),
                   train_s=float(sum(h.get("epoch_time_s", 0.0) for h in history)))
  results = mlog.results(len(history) * steps_per_epoch, results)
  if jax.process_index() == 0:
    io.write_json(epath.Path(workdir) / "results.json", results)
  ckpts.close()
  log(f"Test accuracy: {results['test_accuracy']:.4f} "
      f"(balanced {results['test_balanced_accuracy']:.4f}, loss "
      f"{results['test_loss']:.4f}) after {len(history)} epochs; results in "
      f"{epath.Path(workdir) / 'results.json'}")
  return results


def _describe_adversary(a: adv_lib.Adversary) -> str:
  what = {"fgsm_rs": "FGSM-RS", "pgd": f"PGD-{a.steps} ({a.loss})",
          "trades": f"TRADES-{a.steps} (beta {a.beta:g})"}[a.method]
  warm = f", eps warm-up {a.warmup_steps} steps" if a.warmup_steps else ""
  return f"{what} at eps {a.eps:g}, step {a.alpha:g}, BatchNorm {a.bn_mode}{warm}"


def _progress(cfg, total: int):
  if not cfg.progress or total <= 0 or jax.process_index() != 0:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=total, unit="step", dynamic_ncols=True, smoothing=0.1)


# ---- Restoring a trained model (analysis, transfer) ------------------------------------

@flax.struct.dataclass
class Restored:
  model: Any            # the nnx model, ready to call (model(x, train=False))
  config: Any           # ml_collections.ConfigDict the run was trained with
  history: list         # per-epoch metrics records
  step: int             # the step restored (see `skipped` when it is not the asked one)
  state: TrainState     # host copy of the full training state
  # False: a checkpoint saved before digests existed (restored unverified).
  verified: bool = flax.struct.field(pytree_node=False, default=True)
  # ((step, reason), ...): damaged checkpoints passed over to reach `step`.
  skipped: tuple = flax.struct.field(pytree_node=False, default=())


# What "best" means: the robust validation accuracy of the overfitting guard where a
# run has it (adversarial training), else the validation accuracy.
SELECTION_METRICS = ("val_pgd_accuracy", "val_accuracy")


def selection_score(record: dict) -> float | None:
  """The epoch record's score for keeping the best checkpoint (None: not scored)."""
  for k in SELECTION_METRICS:
    if record.get(k) is not None:
      return record[k]
  return None


def best_metrics(record: dict) -> dict | None:
  """The metrics a checkpoint is saved with: its selection score, under the name the
  checkpoint manager keeps the best by."""
  score = selection_score(record)
  return None if score is None else {ckpt_lib.BEST_METRIC: score}


def best_step(workdir: str) -> int:
  """The kept checkpoint with the best :func:`selection_score` (latest if none)."""
  ckpts = ckpt_lib.Checkpoints(workdir, read_only=True)
  steps = set(ckpts.steps())
  _, _, history = ckpts.restore_meta()
  scored = [(selection_score(h), h["step"]) for h in history
            if h["step"] in steps and selection_score(h) is not None]
  return max(scored)[1] if scored else max(steps)


def restore_model(workdir: str, step: int | str | None = None) -> Restored:
  """Rebuilds the model of any training workdir from its checkpoint alone.

  `step`: an int, 'best' (highest validation accuracy), or None / 'latest'. The
  checkpoint is verified against its digest; for 'best' / 'latest' a damaged one is
  reported on stderr and the newest intact one is used instead (`Restored.step`,
  `Restored.skipped` say which). An explicit step is never replaced: UserError.
  """
  ckpts = ckpt_lib.Checkpoints(workdir, read_only=True)
  order = None
  if step == "best":
    first = best_step(workdir)
    order = [first] + sorted((s for s in ckpts.steps() if s != first), reverse=True)
    step = first
  elif step in (None, "latest"):
    step = None
  quiet = lambda _: None  # noqa: E731 - restore_verified below reports the damage
  _, saved, _ = ckpts.restore_meta(step, fallback=order is not None or step is None,
                                   warn=quiet)
  cfg = config_lib.from_dict(saved)
  if cfg.model not in models.MODELS:
    raise UserError(f"checkpoint in {workdir} is of model {cfg.model!r}, unknown to this "
                    f"version; known models: {', '.join(sorted(models.MODELS))}")
  if cfg.dataset not in data_lib.DATASETS:
    raise UserError(f"checkpoint in {workdir} was trained on unknown dataset "
                    f"{cfg.dataset!r}; known: {', '.join(sorted(data_lib.DATASETS))}")
  num_classes = data_lib.get_info(cfg.dataset).num_classes
  # Only shapes and dtypes are needed to restore: build them without computing (or
  # compiling) an initialisation.
  model = nnx.eval_shape(lambda: init_model(cfg, num_classes))
  graphdef, params, rest = models.split(model)
  target = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=params, rest=rest,
                      opt_state=jax.eval_shape(optim.create(cfg, 1).init, params))
  r = ckpts.restore_verified(target, step, order=order)
  ckpts.close()
  model = nnx.merge(graphdef, r.state.params, r.state.rest)
  return Restored(model=model, config=cfg, history=r.history, step=int(r.step),
                  state=r.state, verified=r.verified, skipped=tuple(r.skipped))
