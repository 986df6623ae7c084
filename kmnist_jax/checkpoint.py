"""Orbax checkpoints of a training run: state, full config and metrics history together.

Layout: ``<workdir>/checkpoints/<step>/{state,config,history}``. The state is saved as
one host copy (never the per-device replicas), so a checkpoint restores onto any device
count and any parallel mode. Kept: the latest ``keep`` checkpoints plus the best one by
validation accuracy (Orbax preservation policies). Nothing here unpickles: the state is
Orbax/TensorStore, config and history are JSON.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as ocm

from kmnist_jax.errors import UserError

BEST_METRIC = "val_accuracy"
ITEMS = ("state", "config", "history")


def checkpoint_dir(workdir: str) -> str:
  """<workdir>/checkpoints, absolute; a gs:// (or other URL) workdir is kept as is."""
  if "://" not in str(workdir):
    workdir = os.path.abspath(workdir)
  return str(epath.Path(workdir) / "checkpoints")


class Checkpoints:
  """A CheckpointManager over ``<workdir>/checkpoints``."""

  def __init__(self, workdir: str, *, keep: int = 2, read_only: bool = False):
    self.directory = checkpoint_dir(workdir)
    if read_only and not epath.Path(self.directory).is_dir():
      raise UserError(f"no checkpoints in {workdir!r}: {self.directory} does not exist "
                      "(train with experiments/train.py --workdir first)")
    policy = ocm.AnyPreservationPolicy([
        ocm.LatestN(n=keep),
        ocm.BestN(get_metric_fn=lambda m: m[BEST_METRIC], n=1,
                  keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        create=not read_only, read_only=read_only, preservation_policy=policy,
        enable_async_checkpointing=False)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=ITEMS)

  def steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, config: dict, history: list[dict],
           metrics: dict | None = None) -> None:
    """Saves a host copy of `state` (numpy leaves) with config and history."""
    self.manager.save(
        int(step),
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            config=ocp.args.JsonSave(config),
            history=ocp.args.JsonSave(history)),
        metrics=metrics, force=True)
    self.manager.wait_until_finished()

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

  def restore_meta(self, step: int | None = None) -> tuple[int, dict, list[dict]]:
    """(step, config, history) without touching the state."""
    step = self._check_step(step)
    out = self.manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore(), history=ocp.args.JsonRestore()))
    return step, dict(out["config"]), list(out["history"])

  def restore(self, target_state: Any, step: int | None = None
              ) -> tuple[int, Any, dict, list[dict]]:
    """(step, state, config, history); `target_state` gives structure, shapes, dtypes."""
    step = self._check_step(step)
    device = jax.local_devices()[0]
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                       sharding=jax.sharding.SingleDeviceSharding(device)),
        target_state)
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), config=ocp.args.JsonRestore(),
          history=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(f"checkpoint {self.directory}/{step} does not match this model "
                      f"(different model or config?): {str(e).splitlines()[0]}") from None
    return step, out["state"], dict(out["config"]), list(out["history"])

  def close(self):
    self.manager.close()
