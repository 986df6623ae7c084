"""Orbax checkpoints of a training run: state, full config and metrics history together,
each verified on restore.

Layout: ``<workdir>/checkpoints/<step>/{state,config,history,manifest}``. The state is
saved as one host copy (never the per-device replicas), so a checkpoint restores onto
any device count and any parallel mode. Kept: the latest ``keep`` checkpoints plus the
best one by validation accuracy (Orbax preservation policies). Nothing here unpickles:
the state is Orbax/TensorStore, config, history and manifest are JSON.

The manifest, written with each checkpoint, records a SHA-256 digest of the state's
arrays (their bytes, shapes and dtypes, in leaf order), whether they are all finite, the
digests of the config and history, and -- for a checkpoint taken in the middle of an
epoch (preemption) -- where in the epoch it stopped. :meth:`Checkpoints.restore_verified`
checks all of it: a checkpoint that cannot be read, does not match its digest or holds
NaN/inf is reported in one line and the next older one is tried. Checkpoints written
before manifests existed restore with a warning, unverified (but still checked finite).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as ocm

from kmnist_jax import io
from kmnist_jax.errors import UserError

BEST_METRIC = "val_accuracy"
ITEMS = ("state", "config", "history", "manifest")
REQUIRED_ITEMS = ("state", "config", "history")  # old checkpoints have no manifest
MANIFEST_FORMAT = 1
_TMP = ".orbax-checkpoint-tmp"


class Damaged(Exception):
  """A checkpoint that cannot be used (unreadable, digest mismatch, NaN/inf)."""


class DiskFull(UserError):
  """Not enough space to save a checkpoint; nothing half-written is left."""


def _warn(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def checkpoint_dir(workdir: str) -> str:
  """<workdir>/checkpoints, absolute; a gs:// (or other URL) workdir is kept as is."""
  if "://" not in str(workdir):
    workdir = os.path.abspath(workdir)
  return str(epath.Path(workdir) / "checkpoints")


# ---- Digests ---------------------------------------------------------------------------

def _host(x) -> np.ndarray:
  return np.asarray(jax.device_get(x))


def state_digest(state: Any) -> dict:
  """{'sha256', 'finite', 'leaves': [[path, shape, dtype], ...]} of a state tree."""
  h = hashlib.sha256()
  finite = True
  leaves = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    a = np.asarray(_host(leaf), order="C")
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    if np.issubdtype(a.dtype, np.inexact):
      finite = finite and bool(np.isfinite(a).all())
    leaves.append([jax.tree_util.keystr(path), list(a.shape), a.dtype.name])
  return {"sha256": h.hexdigest(), "finite": finite, "leaves": leaves}


def json_digest(x) -> str:
  return hashlib.sha256(json.dumps(x, sort_keys=True).encode()).hexdigest()


def _nbytes(state) -> int:
  return int(sum(np.dtype(getattr(x, "dtype", np.float32)).itemsize * int(np.prod(
      np.shape(x))) for x in jax.tree.leaves(state)))


def _abandoned_read(exc, obj=None) -> bool:
  """An exception left behind by an Orbax / TensorStore read that was abandoned when a
  damaged checkpoint failed to restore (the damage is already reported in one line):
  a coroutine of theirs, or TensorStore's callback finding Orbax's event loop closed."""
  if isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc):
    return True
  name = getattr(getattr(obj, "cr_code", None), "co_filename", "")
  return "orbax" in name or "tensorstore" in name


def quiet_abandoned_reads() -> None:
  """Installs (once) unraisable-exception and excepthook filters that drop
  :func:`_abandoned_read` reports (Python would print them as tracebacks around the
  one-line warnings) and pass every other one to the previous hook."""
  if getattr(sys.unraisablehook, "_kmnist_jax_quiet", False):
    return
  previous_unraisable, previous_except = sys.unraisablehook, sys.excepthook

  def unraisable_hook(u):
    if not _abandoned_read(u.exc_value, u.object):
      previous_unraisable(u)

  def except_hook(kind, value, tb):
    if not _abandoned_read(value):
      previous_except(kind, value, tb)

  unraisable_hook._kmnist_jax_quiet = True
  sys.unraisablehook, sys.excepthook = unraisable_hook, except_hook

def _mb(n: int) -> str:
  return f"{n / 2**20:.1f} MB"


@dataclasses.dataclass
class Restore:
  """What :meth:`Checkpoints.restore_verified` found."""
  step: int
  state: Any
  config: dict
  history: list
  progress: dict | None          # mid-epoch position, None at an epoch's end
  verified: bool                 # False: an old checkpoint without a manifest
  skipped: list                  # [(step, reason)] of newer, damaged checkpoints


class _DropReadOnlyNotice(logging.Filter):
  """Orbax warns 'Given directory is read only=...' on every read-only open (each
  evaluation, each transfer source): what was asked for, not a problem; dropped while
  the manager opens."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Given directory is read only")


class _DropOrbaxOrphanReads(logging.Filter):
  """asyncio's 'Task exception was never retrieved' for Orbax's own read tasks.

  When several arrays of a damaged checkpoint fail to read (a truncated OCDBT data
  file holds many), Orbax raises the first failure, which :meth:`Checkpoints.
  restore_verified` reports in one line; the sibling read tasks that failed too can be
  garbage-collected later, and asyncio then prints each with a full traceback on
  stderr. Whether that happens depends on timing (seen in loaded test runs). Only
  those records are dropped: a task or future whose exception went unretrieved and
  was raised in Orbax's code (a task's coroutine frame is in that traceback too), or
  is TensorStore's read error, which its C++ sets on the future without any Python
  frame (e.g. 'OUT_OF_RANGE: Error reading "params..." in OCDBT database ...')."""

  def filter(self, record: logging.LogRecord) -> bool:
    first = record.getMessage().split("\n", 1)[0]
    return not (first.endswith("exception was never retrieved")
                and (_raised_in_orbax(record.exc_info)
                     or _tensorstore_read_error(record.exc_info)))


def _raised_in_orbax(exc_info) -> bool:
  exc = exc_info[1] if exc_info else None
  tb = exc.__traceback__ if exc is not None else None
  while tb is not None:
    if "/orbax/" in tb.tb_frame.f_code.co_filename:
      return True
    tb = tb.tb_next
  return False


_TENSORSTORE_READ_ERROR = re.compile(r"^[A-Z_]+: Error (reading|opening) .* OCDBT database")


def _tensorstore_read_error(exc_info) -> bool:
  exc = exc_info[1] if exc_info else None
  return (exc is not None and exc.__traceback__ is None
          and bool(_TENSORSTORE_READ_ERROR.match(str(exc))))


logging.getLogger("asyncio").addFilter(_DropOrbaxOrphanReads())


class Checkpoints:
  """A CheckpointManager over ``<workdir>/checkpoints``."""

  def __init__(self, workdir: str, *, keep: int = 2, read_only: bool = False):
    self.workdir = str(workdir)
    self.directory = checkpoint_dir(workdir)
    if read_only and not epath.Path(self.directory).is_dir():
      raise UserError(f"no checkpoints in {workdir!r}: {self.directory} does not exist "
                      "(train with experiments/train.py --workdir first)")
    self.keep = keep
    self.read_only = read_only
    self._open()

  def _open(self):
    policy = ocm.AnyPreservationPolicy([
        ocm.LatestN(n=self.keep),
        ocm.BestN(get_metric_fn=lambda m: m[BEST_METRIC], n=1,
                  keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        create=not self.read_only, read_only=self.read_only,
        preservation_policy=policy, enable_async_checkpointing=False,
        # The workdir lock makes this process the only writer: temporary folders
        # left by a killed run are its own and can go.
        cleanup_tmp_directories=not self.read_only,
        **({"save_interval_steps": 0} if self.read_only else {}))
    quiet = _DropReadOnlyNotice()
    logging.getLogger("absl").addFilter(quiet)
    try:
      self.manager = ocp.CheckpointManager(self.directory, options=options,
                                           item_names=ITEMS)
    except OSError as e:
      raise UserError(f"cannot open checkpoints in {self.directory}: {e.strerror or e}"
                      "; give a --workdir you can write to") from None
    finally:
      logging.getLogger("absl").removeFilter(quiet)

  def steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  # ---- Saving ----------------------------------------------------------------------
  def save(self, step: int, state: Any, config: dict, history: list[dict],
           metrics: dict | None = None, *, progress: dict | None = None) -> None:
    """Saves a host copy of `state` (numpy leaves) with config, history and a manifest.

    `progress` marks a mid-epoch checkpoint (see :mod:`kmnist_jax.train`). A full disk
    raises :class:`DiskFull` (one line: folder, space needed) and leaves nothing
    half-written.
    """
    state = jax.tree.map(_host, state)
    manifest = {"format": MANIFEST_FORMAT, **state_digest(state),
                "config_sha256": json_digest(config),
                "history_sha256": json_digest(history), "progress": progress}
    manifest["progress_sha256"] = json_digest(progress)
    needed = _nbytes(state) + len(json.dumps([config, history, manifest])) + (1 << 20)
    self._check_space(step, needed)
    try:
      self.manager.save(
          int(step),
          args=ocp.args.Composite(
              state=ocp.args.StandardSave(state),
              config=ocp.args.JsonSave(config),
              history=ocp.args.JsonSave(history),
              manifest=ocp.args.JsonSave(manifest)),
          metrics=metrics, force=True)
      self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - only a full disk is turned into a line
      if not io.is_disk_full(e):
        raise
      self._remove_partial(step)
      raise DiskFull(self._disk_full_message(step, needed)) from None

  def _free(self) -> int | None:
    if "://" in self.directory:
      return None
    try:
      return shutil.disk_usage(self.directory).free
    except OSError:
      return None

  def _disk_full_message(self, step: int, needed: int) -> str:
    free = self._free()
    return (f"disk full: cannot save checkpoint {step} in {self.directory} (needs about "
            f"{_mb(needed)}, {_mb(free) if free is not None else 'unknown'} free); free "
            "some space and run the same command again to resume from the last "
            "checkpoint")

  def _check_space(self, step: int, needed: int) -> None:
    free = self._free()
    if free is not None and free < needed:
      raise DiskFull(self._disk_full_message(step, needed))

  def _remove_partial(self, step: int) -> None:
    """Deletes the temporary (or uncommitted) folders of a failed save of `step`."""
    if "://" in self.directory:
      return
    for name in os.listdir(self.directory):
      if name == str(step) or name.startswith(f"{step}{_TMP}"):
        path = os.path.join(self.directory, name)
        if name != str(step) or not os.path.exists(
            os.path.join(path, "commit_success.txt")):
          shutil.rmtree(path, ignore_errors=True)
    self.manager.reload()

  # ---- Restoring -------------------------------------------------------------------
  def _check_step(self, step: int | None) -> int:
    steps = self.steps()
    if not steps:
      raise UserError(f"no checkpoint found in {self.directory}")
    if step is None:
      return max(steps)
    if step not in steps:
      raise UserError(f"no checkpoint at step {step} in {self.directory}; "
                      f"available steps: {', '.join(map(str, steps))}")
    return step

  def _candidates(self, step: int | None, fallback: bool) -> list[int]:
    first = self._check_step(step)
    older = sorted((s for s in self.steps() if s < first), reverse=True)
    return [first] + (older if fallback else [])

  def _read_meta(self, step: int) -> tuple[dict, list, dict | None]:
    """(config, history, manifest or None) of `step`; Damaged if unreadable."""
    path = epath.Path(self.directory) / str(step)
    for item in REQUIRED_ITEMS:
      if not (path / item).is_dir():
        raise Damaged(f"its {item}/ folder is missing")
    items = dict(config=ocp.args.JsonRestore(), history=ocp.args.JsonRestore())
    has_manifest = (path / "manifest").is_dir()
    if has_manifest:
      items["manifest"] = ocp.args.JsonRestore()
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(**items))
      config, history = dict(out["config"]), list(out["history"])
      manifest = dict(out["manifest"]) if has_manifest else None
    except Exception as e:  # noqa: BLE001 - any failure to read is damage
      raise Damaged(f"config/history/manifest cannot be read: {_first_line(e)}"
                    ) from None
    if manifest is not None:
      if manifest.get("format") != MANIFEST_FORMAT:
        raise Damaged(f"unknown manifest format {manifest.get('format')!r}")
      if manifest.get("config_sha256") != json_digest(config):
        raise Damaged("its config does not match the digest recorded at save")
      if manifest.get("history_sha256") != json_digest(history):
        raise Damaged("its history does not match the digest recorded at save")
      if manifest.get("progress_sha256") != json_digest(manifest.get("progress")):
        raise Damaged("its mid-epoch position does not match the digest recorded")
    return config, history, manifest

  def restore_meta(self, step: int | None = None, *, fallback: bool | None = None,
                   warn: Callable[[str], None] = _warn) -> tuple[int, dict, list[dict]]:
    """(step, config, history) without touching the state (verified against the
    manifest; the newest readable one when `step` is None)."""
    fallback = step is None if fallback is None else fallback
    reasons = []
    for s in self._candidates(step, fallback):
      try:
        config, history, _ = self._read_meta(s)
        return s, config, history
      except Damaged as e:
        reasons.append((s, str(e)))
        warn(f"warning: checkpoint {self.directory}/{s} is damaged ({e})")
    raise self._none_intact(reasons)

  def _none_intact(self, reasons) -> UserError:
    return UserError(
        f"no intact checkpoint in {self.directory}: "
        + "; ".join(f"step {s}: {r}" for s, r in reasons)
        + " (delete the damaged step folders to start over, or use another --workdir)")

  def _restore_one(self, step: int, target_state: Any,
                   check_config: Callable[[dict], None] | None) -> Restore:
    config, history, manifest = self._read_meta(step)
    if check_config is not None:
      check_config(config)  # a UserError (another config) is no damage: propagates
    one_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=one_device),
        target_state)
    if manifest is not None:
      want = [[list(np.shape(x)), np.dtype(x.dtype).name]
              for x in jax.tree.leaves(abstract)]
      have = [leaf[1:] for leaf in manifest.get("leaves", [])]
      if want != have:
        raise UserError(
            f"checkpoint {self.directory}/{step} does not match this model (different "
            f"model or config?): it holds {len(have)} arrays, this model has "
            f"{len(want)}" + ("" if len(have) != len(want) else " of other shapes"))
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))
      state = out["state"]
    except Exception as e:  # noqa: BLE001
      if manifest is None and isinstance(e, (ValueError, KeyError, TypeError)):
        raise Damaged(f"its arrays cannot be read (damaged, or of a different model?): "
                      f"{_first_line(e)}") from None
      raise Damaged(f"its arrays cannot be read: {_first_line(e)}") from None
    digest = state_digest(state)
    if manifest is not None and digest["sha256"] != manifest.get("sha256"):
      raise Damaged("its arrays do not match the SHA-256 digest recorded at save")
    if not digest["finite"]:
      raise Damaged("its arrays hold NaN/inf values")
    progress = manifest.get("progress") if manifest else None
    return Restore(step=step, state=state, config=config, history=history,
                   progress=progress, verified=manifest is not None, skipped=[])

  def restore_verified(self, target_state: Any, step: int | None = None, *,
                       fallback: bool | None = None,
                       check_config: Callable[[dict], None] | None = None,
                       order: list[int] | None = None,
                       warn: Callable[[str], None] = _warn) -> Restore:
    """The newest intact checkpoint at or before `step` (latest when None).

    `target_state` gives structure, shapes and dtypes. Each damaged checkpoint is
    reported with one `warn` line and the next older one is tried (`fallback`, by
    default only when `step` is None); none intact -> one-line UserError.
    `check_config(config)` may refuse a checkpoint's config (a UserError, raised as is).
    `order`: the steps to try, in order (instead of `step` and older ones).
    """
    fallback = step is None if fallback is None else fallback
    quiet_abandoned_reads()
    reasons = []
    if order is not None:
      for s in order:
        self._check_step(s)
    for s in order if order is not None else self._candidates(step, fallback):
      try:
        r = self._restore_one(s, target_state, check_config)
      except Damaged as e:
        reasons.append((s, str(e)))
        warn(f"warning: checkpoint {self.directory}/{s} is damaged ({e})")
        continue
      if reasons:
        warn(f"warning: using checkpoint {self.directory}/{s}, the newest intact one")
      if not r.verified:
        warn(f"warning: checkpoint {self.directory}/{s} has no digest (saved by an "
             "older version): restored unverified")
      r.skipped = reasons
      return r
    raise self._none_intact(reasons)

  def restore(self, target_state: Any, step: int | None = None
              ) -> tuple[int, Any, dict, list[dict]]:
    """(step, state, config, history), verified; see :meth:`restore_verified`."""
    r = self.restore_verified(target_state, step)
    return r.step, r.state, r.config, r.history

  def set_aside(self, steps, workdir: str | None = None) -> list[str]:
    """Moves damaged step folders to ``<workdir>/damaged_checkpoints/`` (kept for
    inspection, out of the manager's way); returns the new paths."""
    moved = []
    if "://" in self.directory or self.read_only:
      return moved
    dest_root = os.path.join(os.path.dirname(self.directory), "damaged_checkpoints")
    for s in steps:
      src = os.path.join(self.directory, str(s))
      if not os.path.exists(src):
        continue
      os.makedirs(dest_root, exist_ok=True)
      dest, i = os.path.join(dest_root, str(s)), 1
      while os.path.exists(dest):
        dest, i = os.path.join(dest_root, f"{s}.{i}"), i + 1
      os.rename(src, dest)
      moved.append(dest)
    if moved:
      self.manager.reload()
    return moved

  def close(self):
    self.manager.close()


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return (text[0] if text else type(e).__name__)[:300]
