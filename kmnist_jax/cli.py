"""Console scripts: `kmnist-train ...` runs experiments/train.py with the same arguments.

The scripts define their own absl flags; this module only finds the file and hands the
process over to it (`os.execv`, so signals, exit codes and `--help` are the script's).
experiments/ is found beside the package in a checkout (or an editable install), else
inside the installed wheel (kmnist_jax/experiments/, see setup.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

from kmnist_jax.errors import EXIT_USER_ERROR

SCRIPTS = {
    "train": "train.py",
    "evaluate": "evaluate.py",
    "analyze": "analyze.py",
    "embed": "embed.py",
    "robustness": "robustness.py",
    "make_corrupted": "make_corrupted.py",
    "augmentation_study": "augmentation_study.py",
    "transfer_study": "transfer_study.py",
}

_PKG = os.path.dirname(os.path.abspath(__file__))


def experiments_dir() -> str:
  """The folder holding the scripts and configs/: <checkout>/experiments, else the
  copy installed with the package."""
  for d in (os.path.join(os.path.dirname(_PKG), "experiments"),
            os.path.join(_PKG, "experiments")):
    if os.path.isfile(os.path.join(d, "_bootstrap.py")):
      return d
  raise FileNotFoundError(f"no experiments/ folder beside or inside {_PKG}")


def script_path(name: str) -> str:
  if name not in SCRIPTS:
    raise KeyError(f"unknown script {name!r}; valid: {', '.join(sorted(SCRIPTS))}")
  return os.path.join(experiments_dir(), SCRIPTS[name])


def run(name: str, argv: list[str] | None = None) -> None:
  """Replaces this process by `python experiments/<script>.py argv...`."""
  argv = sys.argv[1:] if argv is None else argv
  try:
    path = script_path(name)
  except (KeyError, FileNotFoundError) as e:
    print(f"error: {e.args[0]}", file=sys.stderr)
    sys.exit(2)
  if not os.path.isfile(path):
    print(f"error: {path} is missing from this installation", file=sys.stderr)
    sys.exit(2)
  cmd = [sys.executable, path, *argv]
  sys.stdout.flush()
  sys.stderr.flush()
  if os.name == "posix":
    os.execv(sys.executable, cmd)
  sys.exit(subprocess.call(cmd))  # pragma: no cover - Windows


def _entry(name: str):
  def main() -> None:
    run(name)
  main.__name__ = name
  main.__doc__ = f"kmnist-{name.replace('_', '-')}: experiments/{SCRIPTS[name]}"
  return main


train = _entry("train")
evaluate = _entry("evaluate")
analyze = _entry("analyze")
embed = _entry("embed")
robustness = _entry("robustness")
make_corrupted = _entry("make_corrupted")
augmentation_study = _entry("augmentation_study")
transfer_study = _entry("transfer_study")


# ---- One command-line convention (every script: absl flags, one `error:` line) --------



def exit_now(code: int):
  """Flushes stdout / stderr and ends the process at once. After a failed restore of a
  damaged checkpoint, TensorStore reads may still be in flight; a normal interpreter
  shutdown then prints their "Event loop is closed" tracebacks after our one line.
  Callers have already left their `with` blocks (temporary folders removed, locks
  released; the kernel drops the flock anyway)."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(code)


def fail(message: str):
  """One `error:` line on stderr, exit 2 (a command-line layer's last word)."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  exit_now(EXIT_USER_ERROR)


def first_line(e: BaseException) -> str:
  """A one-line form of an exception's message (first and last lines of a long one)."""
  lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
  text = " ".join(lines[:1] + lines[-1:] if len(lines) > 1 else lines) or repr(e)
  if isinstance(e, (AttributeError, KeyError)) and text.strip("\"'") != text:
    text = (f"the config has no setting {text.strip(chr(34))} (a --config.X override "
            "names a setting that does not exist)")
  return text


def parse_flags(argv):
  """absl flag parsing where any error (unknown flag, bad value, unreadable --config
  file, bad --config.X override) is one `error:` line and exit 2."""
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # noqa: BLE001 - flag parsing: every failure is the user's
    fail(first_line(e))
