"""The workdir lock: one holder, a refusal naming it, stale takeover, races."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from kmnist_jax import lock
from kmnist_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOLD = textwrap.dedent("""
    import sys, time
    from kmnist_jax import lock
    l = lock.WorkdirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    if sys.argv[3] == "release":
      l.release()
""")


def hold(workdir, seconds=60.0, end="release"):
  """A subprocess that takes the lock and says so (then sleeps)."""
  p = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir), str(seconds), end],
                       cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
  assert p.stdout.readline().strip() == "locked", p.stderr.read()
  return p


def test_lock_is_held_and_released(tmp_path):
  wd = tmp_path / "w"
  assert lock.holder(wd) is None
  with lock.WorkdirLock(wd):
    assert wd.is_dir()             # created
    rec = lock.holder(wd)
    assert rec["pid"] == os.getpid() and rec["host"] == socket.gethostname()
    with lock.WorkdirLock(wd):     # re-entrant within a process
      pass
    assert lock.holder(wd)["pid"] == os.getpid()
  assert lock.holder(wd) is None
  assert (wd / ".lock").read_text() == ""   # a clean release leaves no record


def test_second_process_is_refused_naming_the_holder(tmp_path):
  p = hold(tmp_path)
  try:
    t0 = time.monotonic()
    with pytest.raises(lock.WorkdirLocked) as e:
      lock.WorkdirLock(tmp_path).acquire()
    assert time.monotonic() - t0 < 5
    msg = str(e.value)
    assert isinstance(e.value, UserError) and "\n" not in msg
    assert f"pid {p.pid}" in msg and socket.gethostname() in msg
    assert "started 20" in msg and "-c" in msg and "another --workdir" in msg
    assert lock.holder(tmp_path)["pid"] == p.pid
  finally:
    p.kill()
    p.wait()


def test_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path, capfd):
  p = hold(tmp_path)
  os.kill(p.pid, signal.SIGKILL)
  p.wait()
  assert lock.holder(tmp_path) is None    # the kernel released the flock
  with lock.WorkdirLock(tmp_path):
    err = capfd.readouterr().err
    assert "stale lock" in err and f"pid {p.pid}" in err and "no longer running" in err
    assert lock.holder(tmp_path)["pid"] == os.getpid()


def test_racing_processes_exactly_one_wins(tmp_path):
  code = textwrap.dedent("""
      import sys, time
      from kmnist_jax import lock
      time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
      try:
        lock.WorkdirLock(sys.argv[1]).acquire()
        print("won", flush=True)
        time.sleep(3)
      except lock.WorkdirLocked:
        print("refused", flush=True)
  """)
  go = time.time() + 1.5
  ps = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(go)],
                         cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(4)]
  outs = sorted(p.communicate(timeout=60)[0].strip() for p in ps)
  assert outs == ["refused", "refused", "refused", "won"], outs


def test_workdir_that_is_a_file(tmp_path):
  f = tmp_path / "f"
  f.write_text("x")
  with pytest.raises(UserError, match="is a file, not a folder"):
    lock.WorkdirLock(f).acquire()


def test_gcs_workdir_is_a_no_op():
  with lock.WorkdirLock("gs://bucket/run") as lk:
    assert not lk.active
  assert lock.holder("gs://bucket/run") is None
