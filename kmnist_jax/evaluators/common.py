"""What every evaluator needs: a restored checkpoint with its workdir, the step flag,
the dataset / split of a checkpoint (big_vision's evaluators/common.py)."""

from __future__ import annotations

import os
import re

import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax.errors import UserError, unknown

STEP_CHOICES = "best, latest or a step number"


# ---- A checkpoint to evaluate ----------------------------------------------------------

class Checkpoint:
  """A restored checkpoint (``train.Restored``: model, config, history, step, state)
  and the workdir it came from (``workdir``). Attribute access falls through to the
  restored object, so it goes wherever a ``train.Restored`` does."""

  def __init__(self, restored, workdir: str, step_requested="best"):
    self.restored = restored
    self.workdir = os.path.abspath(workdir) if "://" not in str(workdir) else workdir
    self.step_requested = str(step_requested)

  def __getattr__(self, name):
    if name == "restored":  # not set yet (copy / unpickling): no recursion
      raise AttributeError(name)
    return getattr(self.restored, name)

  @property
  def name(self) -> str:
    return os.path.basename(os.path.normpath(str(self.workdir))) or str(self.workdir)


def parse_step(step) -> int | str:
  """'best' | 'latest' | an int, from a flag value (one-line error otherwise)."""
  if isinstance(step, (int, np.integer)) and not isinstance(step, bool):
    return int(step)
  s = str(step).strip().lower()
  if s in ("best", "latest"):
    return s
  if re.fullmatch(r"\d+", s):
    return int(s)
  raise UserError(f"--step={step!r} is not valid; use {STEP_CHOICES}")


def resolve_workdir(path: str, step) -> tuple[str, int | str]:
  """(workdir, step): a training workdir, or a ``<workdir>/checkpoints/<step>`` folder
  (which fixes the step)."""
  p = os.path.normpath(str(path))
  if not os.path.exists(p):
    raise UserError(f"workdir {path!r} does not exist (expected a training workdir "
                    "holding checkpoints/, or a checkpoints/<step> folder)")
  head, tail = os.path.split(os.path.abspath(p))
  if tail.isdigit() and os.path.basename(head) == "checkpoints":
    return os.path.dirname(head), int(tail)
  return p, parse_step(step)


def restore(path: str, step="best") -> Checkpoint:
  """The :class:`Checkpoint` of `path` (a workdir or a checkpoints/<step> folder) at
  `step` ('best': highest validation accuracy, 'latest', or a number)."""
  from kmnist_jax import train
  requested = str(step)
  workdir, step = resolve_workdir(path, step)
  return Checkpoint(train.restore_model(workdir, step), workdir, requested)


# ---- Data of a checkpoint --------------------------------------------------------------

def check_dataset(restored, dataset: str | None = None):
  """The DatasetInfo to evaluate `restored` on (default: its own); UserError if its
  classes do not fit the model's head."""
  name = dataset or restored.config.dataset
  info = data_lib.get_info(name)
  head = int(restored.model.head.out_features)
  if info.num_classes != head:
    fits = sorted(n for n, i in data_lib.DATASETS.items() if i.num_classes == head)
    where = getattr(restored, "workdir", None) or "the checkpoint"
    raise UserError(
        f"dataset {name!r} has {info.num_classes} classes but the model in {where} "
        f"(step {restored.step}, trained on {restored.config.dataset}) has a "
        f"{head}-class head; expected a dataset with {head} classes: {', '.join(fits)}")
  return info


SPLITS = ("test", "validation", "train")


def load_split(dataset: str, split: str = "test", *, cfg=None, data_dir=None,
               source: str = "", limit: int = 0, where: str = "the checkpoint"):
  """(images uint8 [N,28,28], labels int64 [N]) of `dataset`'s `split`. With a
  checkpoint's `cfg`, validation / train are its own carve (its val_size / val_seed)
  and its data_dir / data_source are the defaults. `limit`: the first N only."""
  get = (lambda k: cfg.get(k)) if cfg is not None else (lambda k: None)
  if split not in SPLITS:
    raise unknown("split", split, SPLITS)
  val_size = int(get("val_size") or 0) if split != "test" else 0
  if split == "validation" and val_size <= 0:
    raise UserError(f"{where} was trained with val_size=0, so it has no "
                    "validation split; use --split=test")
  ds = data_lib.load(dataset, data_dir=data_dir or get("data_dir") or None,
                     source=source or get("data_source") or "auto",
                     val_size=val_size, val_seed=int(get("val_seed") or 0),
                     tfds_dir=get("tfds_dir") or None)
  s = ds.splits[split]
  images, labels = s.images, s.labels.astype(np.int64)
  if limit and limit > 0:
    images, labels = images[:limit], labels[:limit]
  return images, labels


def same_setting(records, keys, evaluator: str) -> dict:
  """The first of `records` (one setting over seeds), after checking that all agree on
  `keys`; UserError (one line) for no records or a mismatch."""
  if not records:
    raise UserError(f"{evaluator}.summarize: no records")
  r0 = records[0]
  for r in records[1:]:
    for k in keys:
      if r[k] != r0[k]:
        raise UserError(f"{evaluator} records differ in {k} ({r0[k]} vs {r[k]}); "
                        "summarize one setting at a time")
  return r0
