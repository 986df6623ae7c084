"""SIGTERM / SIGINT as a request to stop cleanly: the one handler training and the
study runner share.

The first signal is recorded (``signame``), announced in one line on stderr and passed
to ``on_signal`` (the study runner forwards it to its workers); the process then stops
at its next safe point (training: the next chunk boundary, after a checkpoint). A
second signal gets the default action: exit at once. Handlers are installed only in
the main thread (Python delivers signals there) and the previous ones come back on
exit from the ``with`` block.

Code with no handler of its own (a transfer run between its compiled chunks) asks
:func:`requested`: the name of the signal any active handler has received, or None.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

_ACTIVE: list["StopOnSignal"] = []


def requested() -> str | None:
  """The signal an active :class:`StopOnSignal` has received (None: none yet)."""
  return next((h.signame for h in _ACTIVE if h.signame is not None), None)


class StopOnSignal:
  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, message: str, on_signal: Callable[[], None] | None = None):
    self.message, self.on_signal = message, on_signal
    self.signame: str | None = None
    self._old: dict = {}

  def _handle(self, signum, frame):
    del frame
    if self.signame is not None:
      return
    self.signame = signal.Signals(signum).name
    print(f"received {self.signame}: {self.message} (send it again to exit at once)",
          file=sys.stderr, flush=True)
    for sig in self.SIGNALS:   # a second signal: the default action (exit at once)
      signal.signal(sig, signal.SIG_DFL)
    if self.on_signal is not None:
      self.on_signal()

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._old[sig] = signal.signal(sig, self._handle)
    _ACTIVE.append(self)
    return self

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    self._old = {}
    if self in _ACTIVE:
      _ACTIVE.remove(self)
