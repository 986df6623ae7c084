"""What `experiments/train.py` does around :func:`kmnist_jax.train.train_and_evaluate`:
the workdir lock, signals before training starts, multi-host start-up. The script runs
it under :func:`kmnist_jax.cli.run` (exit codes: 0 done, 2 a user error or a refused
write, one ``error:`` line; 75 preempted, resumable).

Imports nothing heavy at module level, so a busy workdir is refused before JAX loads.
"""

from __future__ import annotations

import contextlib
import signal
import sys

from kmnist_jax import lock
from kmnist_jax.errors import EXIT_PREEMPTED


def _stopped_early(signum, frame):
  del frame
  print(f"preempted: stopped by {signal.Signals(signum).name} before training started "
        "(nothing to save); run the same command to start", file=sys.stderr, flush=True)
  sys.exit(EXIT_PREEMPTED)


def run(cfg, workdir: str, *, coordinator_address: str = "", num_processes: int = 0,
        process_id: int = -1) -> None:
  """Trains `cfg` into `workdir` (resuming); UserError / Preempted / OSError reach the
  caller (:func:`kmnist_jax.cli.run` turns them into one line and an exit code)."""
  distributed = bool(cfg.distributed or coordinator_address or num_processes
                     or process_id >= 0)
  # Until training installs its own handlers (stop at the next chunk, save), a signal
  # ends the run at once: nothing has been computed.
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, _stopped_early)
  # A busy workdir is refused before the slow imports (JAX, Orbax). Multi-host runs
  # lock inside train_and_evaluate, once the process ids are known (process 0 locks).
  with contextlib.nullcontext() if distributed else lock.WorkdirLock(workdir):
    from kmnist_jax import parallel, train  # deferred: see the module docstring
    if distributed:
      parallel.initialize_distributed(coordinator_address, num_processes, process_id)
    train.train_and_evaluate(cfg, workdir)
