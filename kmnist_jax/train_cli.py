"""What `experiments/train.py` does around :func:`kmnist_jax.train.train_and_evaluate`:
the workdir lock, signals before training starts, multi-host start-up, and turning
every user error or fault into one line and an exit code.

Exit codes: 0 done, 2 a user error (one ``error:`` line), 75 preempted (resumable).
Imports nothing heavy at module level, so a busy workdir is refused before JAX loads.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys

from kmnist_jax import config as config_lib
from kmnist_jax import lock
from kmnist_jax.cli import fail
from kmnist_jax.errors import EXIT_PREEMPTED, Preempted, UserError

# Failed writes that are the user's to fix (full disk, read-only or foreign folder).
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def check_argv(argv: list[str]) -> None:
  """Checks --config and every --config.x.y override before absl parses them."""
  try:
    config_lib.check_override_flags(argv)
  except UserError as e:
    fail(str(e))


def _stopped_early(signum, frame):
  del frame
  print(f"preempted: stopped by {signal.Signals(signum).name} before training started "
        "(nothing to save); run the same command to start", file=sys.stderr, flush=True)
  sys.exit(EXIT_PREEMPTED)


def run(cfg, workdir: str, *, coordinator_address: str = "", num_processes: int = 0,
        process_id: int = -1) -> None:
  """Trains `cfg` into `workdir` (resuming), exiting with the codes above."""
  distributed = bool(cfg.distributed or coordinator_address or num_processes
                     or process_id >= 0)
  # Until training installs its own handlers (stop at the next chunk, save), a signal
  # ends the run at once: nothing has been computed.
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, _stopped_early)
  try:
    # A busy workdir is refused before the slow imports (JAX, Orbax). Multi-host runs
    # lock inside train_and_evaluate, once the process ids are known (process 0 locks).
    with contextlib.nullcontext() if distributed else lock.WorkdirLock(workdir):
      from kmnist_jax import parallel, train
      if distributed:
        parallel.initialize_distributed(coordinator_address, num_processes, process_id)
      train.train_and_evaluate(cfg, workdir)
  except UserError as e:
    fail(str(e))
  except Preempted as e:
    print(f"preempted: {e}", file=sys.stderr, flush=True)
    sys.exit(EXIT_PREEMPTED)
  except OSError as e:
    if e.errno not in WRITE_ERRNOS:
      raise
    fail(f"cannot write {e.filename or workdir}: {e.strerror}"
         + ("; free some space and run the same command again to resume"
            if e.errno in (errno.ENOSPC, errno.EDQUOT) else
            "; give a --workdir you can write to"))
