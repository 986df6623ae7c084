"""Where parallelism is decided: one object, three modes, the same training math.

* ``single``  -- ``jax.jit`` on one device.
* ``pmap``    -- ``jax.pmap`` over the local devices; gradients and batch statistics are
  averaged with ``lax.pmean`` over the axis ``'batch'``.
* ``sharded`` -- ``jax.jit`` over a 1-D ``Mesh(('data',))``: state and dataset replicated,
  each global batch sharded along ``'data'`` with ``NamedSharding``; XLA inserts the
  all-reduces.
* ``auto``    -- ``single`` on one device; with more, on CPU in one process ``pmap``,
  except ``sharded`` on AMD CPUs without AVX-512 (Zen 3 and earlier), and ``sharded``
  everywhere else (GPU, TPU, several processes). The CPU rule is the faster mode on each
  of this project's 2-core CPU kinds, measured side by side
  (``benchmarks/cpu_variants.py --variants=default,pmap --repeats=6``; figures in
  docs/performance.md and results/cpu_variants/): pmap on Intel and AMD Zen 4, sharded
  on AMD Zen 3; two devices beat one on all three. Accelerators were not compared:
  ``sharded`` is the mode that spans hosts.

The dataset lives on every device (MNIST-sized data is ~47 MB), so no process ever feeds
batches: each step's global batch indices come from (seed, epoch) on device and every
device gathers its own slice of them. The same holds across hosts after
``jax.distributed.initialize()``: every process loads the same files and builds the same
replicated arrays, and the mesh spans all processes' devices.

The training code never branches on the mode: it calls :meth:`Parallel.compile`,
:meth:`Parallel.local_indices`, :meth:`Parallel.mean` and :meth:`Parallel.sum`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from kmnist_jax import config as config_lib
from kmnist_jax import xla_cpu
from kmnist_jax.errors import UserError

AXIS = "batch"      # pmap axis name (also the BatchNorm axis_name under pmap)
MESH_AXIS = "data"  # mesh axis of the sharded mode


def initialize_distributed(coordinator: str = "", num_processes: int = 0,
                           process_id: int = -1) -> None:
  """`jax.distributed.initialize`, with arguments only where given.

  Each argument falls back to the environment ($JAX_COORDINATOR_ADDRESS,
  $JAX_NUM_PROCESSES, $JAX_PROCESS_ID); with none, plain ``initialize()`` lets JAX
  detect the cluster (Cloud TPU VMs, SLURM, Open MPI). A second call does nothing.
  """
  if jax.distributed.is_initialized():
    return
  env = os.environ
  coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS", "")
  try:
    num_processes = num_processes or int(env.get("JAX_NUM_PROCESSES") or 0)
    if process_id < 0 and env.get("JAX_PROCESS_ID", "") != "":
      process_id = int(env["JAX_PROCESS_ID"])
  except ValueError:
    raise UserError(f"$JAX_NUM_PROCESSES={env.get('JAX_NUM_PROCESSES')!r} / "
                    f"$JAX_PROCESS_ID={env.get('JAX_PROCESS_ID')!r} must be integers"
                    ) from None
  if num_processes < 0:
    raise UserError(f"num_processes={num_processes} must be >= 1")
  if num_processes and not -1 <= process_id < num_processes:
    raise UserError(f"process_id={process_id} must be in 0..{num_processes - 1} "
                    f"(num_processes={num_processes})")
  if coordinator and ":" not in coordinator:
    raise UserError(f"coordinator address {coordinator!r} must be HOST:PORT "
                    "(e.g. 10.0.0.2:1234, the address of process 0)")
  kwargs = {}
  if coordinator:
    kwargs["coordinator_address"] = coordinator
  if num_processes:
    kwargs["num_processes"] = num_processes
  if process_id >= 0:
    kwargs["process_id"] = process_id
  if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
    # Cross-process collectives on CPU devices need an implementation (gloo is jax
    # 0.10's default; without one a multi-process CPU run fails at its first psum).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)


def check_processes_agree(parts: dict[str, str]) -> None:
  """Refuses to start when the processes of a multi-host run disagree.

  `parts` maps a name ('config.learning_rate', 'data train') to its value as a
  string; every process hashes each value and all hashes are gathered, so every
  process raises the same one-line UserError naming what differs (instead of
  training different models, or hanging in a collective much later).
  """
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils

  names = sorted(parts)
  local = np.stack([np.frombuffer(hashlib.sha256(parts[n].encode()).digest()[:8],
                                  np.uint32) for n in names])
  every = np.asarray(multihost_utils.process_allgather(local))  # [P, F, 2]
  differs = (every != every[:1]).any(axis=2)                      # [P, F]
  if differs.any():
    fields = [n for n, d in zip(names, differs.any(axis=0)) if d]
    procs = [str(p) for p in range(len(every)) if differs[p].any()]
    raise UserError(
        f"the {len(every)} processes disagree on {', '.join(fields)} (process "
        f"{', '.join(procs)} vs process 0); every process must run the same config on "
        "the same data: refusing to start")


@dataclasses.dataclass
class Parallel:
  mode: str
  devices: list

  def __post_init__(self):
    self.mesh = Mesh(np.array(self.devices), (MESH_AXIS,))

  @property
  def num_replicas(self) -> int:
    return 1 if self.mode == "single" else len(self.devices)

  @property
  def axis_name(self) -> str | None:
    """Collective axis inside compiled functions (pmap only; jit needs none)."""
    return AXIS if self.mode == "pmap" else None

  def describe(self) -> str:
    kinds = sorted({d.platform for d in self.devices})
    return f"{self.mode} on {self.num_replicas} {'/'.join(kinds)} device(s)"

  def check_batch(self, batch_size: int, what: str = "config.batch_size") -> None:
    if batch_size % self.num_replicas:
      raise UserError(f"{what}={batch_size} must be divisible by the number of devices "
                      f"({self.num_replicas}, parallel={self.mode})")

  # ---- Placement -----------------------------------------------------------------
  def replicate(self, tree: Any) -> Any:
    """A full copy of `tree` on every device, in the layout `compile`d functions take."""
    if self.mode == "single":
      return jax.device_put(tree, self.devices[0])
    if self.mode == "sharded":
      sharding = NamedSharding(self.mesh, P())
      return jax.tree.map(
          lambda x: jax.make_array_from_callback(np.shape(x), sharding,
                                                 lambda idx, x=x: np.asarray(x)[idx]),
          jax.device_get(tree))
    # pmap: a leading axis of size n, one slice per local device.
    local = [d for d in self.devices if d.process_index == jax.process_index()]
    sharding = NamedSharding(Mesh(np.array(local), (AXIS,)), P(AXIS))

    def put(x):
      x = np.asarray(jax.device_get(x))
      shards = [jax.device_put(x[None], d) for d in local]
      return jax.make_array_from_single_device_arrays((len(local),) + x.shape,
                                                      sharding, shards)
    return jax.tree.map(put, tree)

  def fetch(self, tree: Any) -> Any:
    """One copy of a replicated tree as host numpy (checkpoints, metrics, eval)."""
    def get(x):
      x = np.asarray(x.addressable_shards[0].data)
      return x[0] if self.mode == "pmap" else x
    return jax.tree.map(get, tree)

  # ---- Compilation -----------------------------------------------------------------
  def compile(self, fn: Callable, *, num_replicated: int, donate_state: bool = True
              ) -> Callable:
    """Compiles fn(*replicated_args, *broadcast_args).

    The first `num_replicated` arguments were placed with :meth:`replicate` (state,
    dataset); the rest (keys, step offsets) are small values broadcast to all devices.
    Outputs come back replicated (state) or identical on every device (metrics).
    """
    donate = (0,) if donate_state else ()
    if self.mode in ("single", "sharded"):
      return jax.jit(fn, donate_argnums=donate)

    cache = {}

    def call(*args):
      if "pmapped" not in cache:
        in_axes = (0,) * num_replicated + (None,) * (len(args) - num_replicated)
        cache["pmapped"] = jax.pmap(fn, axis_name=AXIS, in_axes=in_axes,
                                    donate_argnums=donate)
      return cache["pmapped"](*args)
    return call

  # ---- Inside compiled functions -----------------------------------------------------
  def local_indices(self, idx: jax.Array) -> jax.Array:
    """Global batch indices [B] -> the indices this replica computes on."""
    if self.mode == "pmap":
      n = self.num_replicas
      return idx.reshape(n, idx.shape[0] // n)[jax.lax.axis_index(AXIS)]
    if self.mode == "sharded":
      return jax.lax.with_sharding_constraint(idx, NamedSharding(self.mesh, P(MESH_AXIS)))
    return idx

  def replica_key(self, key: jax.Array) -> jax.Array:
    """Per-replica randomness (dropout) under pmap; the global key otherwise."""
    if self.mode == "pmap":
      return jax.random.fold_in(key, jax.lax.axis_index(AXIS))
    return key

  def mean(self, tree):
    return jax.lax.pmean(tree, AXIS) if self.mode == "pmap" else tree

  def sum(self, tree):
    return jax.lax.psum(tree, AXIS) if self.mode == "pmap" else tree


def auto_mode(devices: list) -> str:
  """What ``parallel='auto'`` runs on these devices (the measured choice, module doc)."""
  if len(devices) <= 1:
    return "single"
  if devices[0].platform != "cpu" or jax.process_count() != 1:
    return "sharded"
  if xla_cpu.is_intel_cpu() or xla_cpu.cpu_has("avx512f"):
    return "pmap"
  return "sharded"                       # AMD without AVX-512: Zen 3 measured sharded



def create(mode: str = "auto", devices: list | None = None) -> Parallel:
  if mode not in config_lib.PARALLEL_MODES:
    raise UserError(f"unknown parallel mode {mode!r}; valid choices: "
                    f"{', '.join(config_lib.PARALLEL_MODES)}")
  devices = list(devices) if devices is not None else jax.devices()
  if mode == "auto":
    mode = auto_mode(devices)
  if mode == "single":
    devices = devices[:1]
  return Parallel(mode, devices)
