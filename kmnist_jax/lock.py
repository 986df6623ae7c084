"""One writer per workdir: an exclusive, OS-level lock on ``<workdir>/.lock``.

  with lock.WorkdirLock(workdir):     # or .acquire() / .release()
    ...                               # train, run a study, launch a sweep

The lock is ``fcntl.flock`` on ``<workdir>/.lock``, so of two processes racing for it
exactly one wins, and the kernel releases it when its holder dies (even by kill -9).
The file also holds a JSON record of the holder (host, pid, start time, command),
which the refusal names. A record left behind by a process that died without
releasing is stale: the next run takes the lock over with a warning on stderr.

Within one process the lock is re-entrant (a study runner that holds a workdir may call
the training loop on it). On ``gs://`` (and other non-local) workdirs locking is a
no-op: there, as in every multi-host run, process 0 owns the writes; in a multi-host
run only process 0 locks. No jax import unless jax is already loaded.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import threading
import time

from kmnist_jax.errors import UserError

LOCK_NAME = ".lock"

_held: dict[str, list] = {}   # realpath -> [fd, depth]; re-entrant within a process
_mutex = threading.Lock()


class WorkdirLocked(UserError):
  """Another live process holds the workdir; the message names it."""


def _is_local(workdir) -> bool:
  return "://" not in str(workdir)


def _is_primary() -> bool:
  """Process 0 of a multi-host run (jax only consulted when already imported)."""
  jax = sys.modules.get("jax")
  if jax is None:
    return True
  try:
    return jax.process_index() == 0
  except Exception:  # noqa: BLE001 - no backend yet: a single process
    return True


def _record() -> dict:
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "start_time": datetime.datetime.now(datetime.timezone.utc)
          .isoformat(timespec="seconds"),
          "command": shlex.join([os.path.basename(sys.executable)] + sys.argv)}


def describe(rec: dict) -> str:
  """'host H, pid P, started T, command C' of a holder record."""
  return (f"host {rec.get('host', '?')}, pid {rec.get('pid', '?')}, started "
          f"{rec.get('start_time', '?')}, command: {rec.get('command', '?')}")


def _read(fd: int) -> dict | None:
  os.lseek(fd, 0, os.SEEK_SET)
  data = b""
  while chunk := os.read(fd, 65536):
    data += chunk
  if not data.strip():
    return None
  try:
    rec = json.loads(data)
  except ValueError:
    return {"host": "?", "pid": "?", "start_time": "?",
            "command": f"<unreadable lock record {data[:60]!r}>"}
  return rec if isinstance(rec, dict) else None


def _pid_alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, ValueError, TypeError):
    return True
  return True


def _prepare(workdir: str) -> str:
  """Creates `workdir` (one-line errors for a file, or a folder we cannot write)."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f"workdir {workdir!r} is a file, not a folder; give a folder "
                    "(it is created if missing) as --workdir")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create workdir {workdir!r}: {e.strerror}; give a folder "
                    "you can write to as --workdir") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise UserError(f"workdir {workdir!r} is not writable (read-only or not yours); "
                    "give a folder you can write to as --workdir, or make it writable")
  return os.path.realpath(path)


class WorkdirLock:
  """Exclusive lock on a workdir for the lifetime of a run (see the module doc)."""

  def __init__(self, workdir, *, wait_s: float = 0.0):
    self.workdir = str(workdir)
    self.wait_s = wait_s        # >0: retry that long before refusing
    self._key = None

  @property
  def active(self) -> bool:
    return _is_local(self.workdir) and _is_primary()

  def acquire(self) -> "WorkdirLock":
    if self._key is not None:
      raise RuntimeError(f"WorkdirLock({self.workdir!r}) acquired twice")
    if not self.active:
      self._key = ""
      return self
    key = _prepare(self.workdir)
    with _mutex:
      if key in _held:            # re-entrant within this process
        _held[key][1] += 1
        self._key = key
        return self
      fd = self._lock_fd(key)
      _held[key] = [fd, 1]
    self._key = key
    return self

  def _lock_fd(self, key: str) -> int:
    path = os.path.join(key, LOCK_NAME)
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise UserError(f"cannot create the lock file {path}: {e.strerror}; give a "
                      "folder you can write to as --workdir") from None
    deadline = time.monotonic() + self.wait_s
    while True:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
          os.close(fd)
          raise
        if time.monotonic() < deadline:
          time.sleep(0.2)
          continue
        rec = None
        for _ in range(10):      # the winner may not have written its record yet
          rec = _read(fd)
          if rec is not None:
            break
          time.sleep(0.1)
        os.close(fd)
        who = describe(rec) if rec else "a process that has not written its record"
        raise WorkdirLocked(
            f"workdir {self.workdir} is in use by another run ({who}); wait for it to "
            f"finish or use another --workdir (lock file {path})") from None
    old = _read(fd)
    if old is not None:
      alive = (old.get("host") == socket.gethostname() and _pid_alive(old.get("pid")))
      why = ("its lock was released" if alive else "that process is no longer running")
      print(f"warning: taking over the stale lock of workdir {self.workdir} "
            f"({describe(old)}; {why})", file=sys.stderr)
    data = json.dumps(_record()).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
    return fd

  def release(self) -> None:
    key, self._key = self._key, None
    if not key:
      return
    with _mutex:
      entry = _held.get(key)
      if entry is None:
        return
      entry[1] -= 1
      if entry[1] > 0:
        return
      del _held[key]
      fd = entry[0]
    try:
      os.ftruncate(fd, 0)   # a clean exit leaves no record (nothing stale)
    except OSError:
      pass
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def holder(workdir) -> dict | None:
  """The record of the live process holding `workdir`'s lock, or None (free / stale)."""
  if not _is_local(workdir):
    return None
  path = os.path.join(os.path.realpath(os.path.abspath(str(workdir))), LOCK_NAME)
  key = os.path.dirname(path)
  with _mutex:
    if key in _held:
      return _read(_held[key][0])
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
      return _read(fd) or {}
    fcntl.flock(fd, fcntl.LOCK_UN)
    return None
  finally:
    os.close(fd)
