"""Checks the script tests share: one `error:` line, a study rerun that trains nothing.
Light (no JAX): test files that never train import it too."""

import csv
import os


def one_error_line(p, *, quiet_stdout: bool = False) -> str:
  """The one `error:` line of a refused script run: exit status 2, no traceback (and
  nothing on stdout when `quiet_stdout`)."""
  assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-3000:])
  assert "Traceback" not in p.stderr, p.stderr[-3000:]
  errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, p.stderr[-3000:]
  if quiet_stdout:
    assert not p.stdout.strip(), p.stdout[-2000:]
  return errors[0]


def assert_rerun_trains_nothing(rerun, records, finished: int, table, rows) -> None:
  """A study's same command again (`rerun()` -> CompletedProcess) finds its `finished`
  runs, rewrites none of their `records` and writes the same `table` (csv) rows."""
  mtimes = [os.path.getmtime(r) for r in records]
  p = rerun()
  assert p.returncode == 0, p.stderr[-3000:]
  assert f"{finished} finished before, 0 to run" in p.stdout, p.stdout[-2000:]
  assert [os.path.getmtime(r) for r in records] == mtimes
  assert list(csv.DictReader(open(table))) == rows
