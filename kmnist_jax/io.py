"""Output helpers shared by training, evaluators, studies and reports (no jax import).

One way to do each thing:
- :func:`atomic_write`: a file written through a temporary file and a rename.
- :func:`write_json` / :func:`dumps_json`: the one JSON writer (numpy -> plain Python,
  nan/inf -> null, lists of numbers on one line so a confusion row is one line).
- :func:`atomic_dir`: an output folder built beside its target and swapped in whole;
  a folder left by a killed process is cleaned up (or put back) by the next call.
- :func:`run_meta`: the run-metadata block (versions, devices, git commit, command) that
  every results file carries.

Paths of single files go through `etils.epath`, so the same call writes a local file or
a ``gs://`` object (a training workdir may be either); folders are local.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
from etils import epath

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def atomic_path(path) -> Iterator[str]:
  """Yields a temporary local path beside `path` to write; on success it replaces
  `path` (a rename), on any error it is deleted and `path` is untouched: the rule for
  a local binary file written by another library (a figure, a download). Text goes
  through :func:`atomic_write` (epath: local or gs://)."""
  path = os.path.abspath(os.fspath(path))
  base, ext = os.path.splitext(path)
  tmp = f"{base}.tmp-{os.getpid()}{ext}"  # same suffix: writers that infer a format
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)


def atomic_write(path, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename: never half-written.
  A failed write (disk full, read-only folder) removes the temporary file. Through
  `etils.epath`, so a ``gs://`` workdir works the same (tests/test_multihost.py)."""
  path = epath.Path(path)
  tmp = path.parent / (path.name + f".tmp{os.getpid()}")
  try:
    tmp.write_text(text)
    tmp.replace(path)
  except BaseException:
    with contextlib.suppress(Exception):
      tmp.unlink()
    raise


# ---- JSON ------------------------------------------------------------------------------

def jsonable(x):
  """numpy -> plain Python, tuples -> lists, nan/inf -> None (strict JSON), recursively."""
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return jsonable(x.tolist())
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  return x


def _flat(x) -> bool:
  return isinstance(x, list) and all(not isinstance(v, (list, dict)) for v in x)


def _dump(x, indent: int, level: int) -> str:
  pad, inner = " " * (indent * level), " " * (indent * (level + 1))
  if isinstance(x, dict) and x:
    items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_dump(v, indent, level + 1)}"
             for k, v in x.items()]
    return "{\n" + ",\n".join(items) + "\n" + pad + "}"
  if isinstance(x, list) and x and not _flat(x):
    return "[\n" + ",\n".join(inner + _dump(v, indent, level + 1) for v in x) + "\n" + pad + "]"
  return json.dumps(x, ensure_ascii=False, allow_nan=False)


def dumps_json(obj, indent: int = 1) -> str:
  """Strict JSON text, indented, with every list of scalars on one line."""
  return _dump(jsonable(obj), indent, 0) + "\n"


def write_json(path, obj) -> str:
  """Writes `obj` as JSON (see :func:`dumps_json`) atomically; returns the path."""
  atomic_write(path, dumps_json(obj))
  return str(path)


def read_json(path):
  return json.loads(epath.Path(path).read_text())


# ---- Output folders replaced whole ------------------------------------------------------

def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except OSError:
    return True
  return True


def recover_dir(out: str) -> None:
  """Cleans up after a writer of `out` that was killed: deletes its temporary folder,
  and puts back the complete old folder if it died between the two renames."""
  out = os.path.abspath(out)
  parent, base = os.path.split(out)
  if not os.path.isdir(parent):
    return
  for entry in sorted(os.listdir(parent)):
    for kind in ("tmp", "old"):
      prefix = f".{base}.{kind}-"
      if not (entry.startswith(prefix) and entry[len(prefix):].isdigit()):
        continue
      pid, path = int(entry[len(prefix):]), os.path.join(parent, entry)
      if pid != os.getpid() and _alive(pid):
        continue  # another writer is running
      if kind == "old" and not os.path.exists(out):
        os.rename(path, out)
      else:
        shutil.rmtree(path, ignore_errors=True)


def swap_in(tmp: str, out: str) -> None:
  """Renames the finished folder `tmp` to `out`; an old `out` is moved aside first and
  deleted only after the new one is in place."""
  out = os.path.abspath(out)
  parent, base = os.path.split(out)
  old = None
  if os.path.lexists(out):
    old = os.path.join(parent, f".{base}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(out, old)
  os.rename(tmp, out)
  if old:
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out: str) -> Iterator[str]:
  """Yields an empty temporary folder beside `out`; on success it replaces `out` whole,
  on any error (or Ctrl-C) it is deleted and `out` is untouched."""
  out = os.path.abspath(out)
  parent, base = os.path.split(out)
  os.makedirs(parent, exist_ok=True)
  recover_dir(out)
  tmp = os.path.join(parent, f".{base}.tmp-{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  swap_in(tmp, out)


def is_disk_full(e: BaseException) -> bool:
  """Whether `e`, or an exception it was raised from, is a full disk or quota (also
  when a library re-raised it as another type, e.g. TensorStore's errors)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    text = str(e)
    if "No space left on device" in text or "Disk quota exceeded" in text:
      return True
    e = e.__cause__ or e.__context__
  return False


# ---- Run metadata -----------------------------------------------------------------------

def _git(*args: str) -> str | None:
  try:
    out = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True,
                         timeout=10, check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip()


def _microarch(vendor: str | None, family: int, model: int) -> str | None:
  """AMD's microarchitecture from (family, model): the "AMD EPYC" of lscpu is a Zen 3 on
  some of this project's machines and a Zen 4 on others, and they train this project's
  CNNs at about half and full speed (README, Performance)."""
  if vendor != "AuthenticAMD":
    return None
  if family == 23:
    return "Zen 2" if model >= 0x30 else "Zen / Zen+"
  if family == 25:
    zen4 = 0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model <= 0xAF
    return "Zen 4" if zen4 else "Zen 3"
  if family == 26:
    return "Zen 5"
  return None


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
  """The CPU as figures should name it: /proc/cpuinfo's model name, plus family / model,
  the microarchitecture where known and whether it has AVX-512, e.g.
  'AMD EPYC (family 25, model 1: Zen 3; AVX2, no AVX-512)'."""
  from kmnist_jax import xla_cpu  # no JAX import
  info = xla_cpu.cpu_info(cpuinfo)
  name = info.get("model name") or platform.processor() or platform.machine()
  if "cpu family" not in info:
    return name
  try:
    fam, mod = int(info["cpu family"]), int(info.get("model", "-1"))
  except ValueError:
    return name
  arch = _microarch(info.get("vendor_id"), fam, mod)
  flags = info.get("flags", "").split()
  vec = ("AVX-512" if "avx512f" in flags else
         "AVX2, no AVX-512" if "avx2" in flags else "no AVX2")
  return f"{name} (family {fam}, model {mod}{f': {arch}' if arch else ''}; {vec})"


def _versions() -> dict:
  from importlib import metadata
  out = {"python": platform.python_version()}
  for dist in ("kmnist-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint",
               "numpy"):
    try:
      out[dist] = metadata.version(dist)
    except metadata.PackageNotFoundError:
      pass
  return out


def run_meta(*, devices: bool = True) -> dict:
  """The run-metadata block of every results file: versions, devices, host, CPU,
  git commit (with a dirty flag), command line and time. Devices only if jax is
  already imported (this never starts a backend by itself) or `devices` forces it."""
  meta = {
      "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
      "host": socket.gethostname(),
      "cpu": cpu_model(),
      "cpu_count": os.cpu_count(),
      "versions": _versions(),
  }
  commit = _git("rev-parse", "HEAD")
  if commit:
    meta["git"] = {"commit": commit, "dirty": bool(_git("status", "--porcelain", "-uno"))}
  if devices and "jax" in sys.modules:
    import jax
    ds = jax.devices()
    meta["devices"] = {"backend": jax.default_backend(), "count": len(ds),
                       "kind": ds[0].device_kind, "processes": jax.process_count()}
  return meta
