"""The command-line layer: console scripts, the one exit convention, the study flags.

Console scripts: `kmnist-train ...` runs experiments/train.py with the same arguments.
This module only finds the file and hands the process over to it (`os.execv`, so
signals, exit codes and `--help` are the script's). experiments/ is found beside the
package in a checkout (or an editable install), else inside the installed wheel
(kmnist_jax/experiments/, see setup.py).

Every script ends with :func:`run` (one `error:` line and exit 2 for a user error or a
refused write, exit 75 for a preemption). The flags of the study scripts and of the
study worker processes are defined here (:func:`study_script`, :func:`worker_script`);
library modules define none.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

# kmnist_jax.config imports this module when it loads (experiments_dir): the functions
# below import config and the studies when called, not here.
from kmnist_jax import stopping
from kmnist_jax.errors import EXIT_PREEMPTED, EXIT_USER_ERROR, Preempted, UserError

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


def exec_script(name: str, argv: list[str] | None = None) -> None:
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
    exec_script(name)
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


# ---- One command-line convention ------------------------------------------------------
#
# Every script in experiments/, benchmarks/ and launch/ ends with ``cli.run(main)``: a
# user error is one ``error:`` line and exit 2, a preemption one ``preempted:`` line
# and exit 75 (the same command resumes), a write refused by the file system (full
# disk, read-only or foreign folder) one ``error:`` line and exit 2.

# Failed writes that are the user's to fix: full disk or quota, read-only file system,
# a folder the user may not write to.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                          errno.EPERM})


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
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # noqa: BLE001 - flag parsing: every failure is the user's
    fail(first_line(e))


def last_overrides(argv: Sequence[str], flag: str = "config") -> list[str]:
  """`argv` with only the last of repeated ``--<flag>.x`` overrides (absl's rule for a
  flag given twice: the last value). ml_collections would otherwise join the values of
  a tuple field given twice into one tuple."""
  argv = list(argv)
  spans, i = [], 1           # (start, length, field) of each override
  while i < len(argv):
    a = argv[i]
    if a.startswith(f"--{flag}."):
      name, eq, _ = a[len(flag) + 3:].partition("=")
      n = 1 if eq or i + 1 >= len(argv) else 2
      spans.append((i, n, name))
      i += n
    else:
      i += 1
  last = {name: start for start, _, name in spans}
  drop = {j for start, n, name in spans if last[name] != start
          for j in range(start, start + n)}
  return [a for j, a in enumerate(argv) if j not in drop]


def check_config_argv(flag: str = "config", default: str | None = None) -> None:
  """sys.argv's ``--<flag>`` file and ``--<flag>.x`` overrides checked (one `error:`
  line naming the valid fields), repeated overrides reduced to the last. Runs before
  the config flag is defined where it has a default: ml_collections then loads the file
  and applies the overrides at definition."""
  sys.argv[:] = last_overrides(sys.argv, flag)
  with user_errors():
    # Deferred: kmnist_jax.config imports this module (experiments_dir) on import.
    from kmnist_jax import config as config_lib
    config_lib.check_override_flags(sys.argv, flag, default)


def _flag_value(flag: str):
  """The parsed value of '--name' (None if no such flag or not parsed yet)."""
  name = flag.lstrip("-").split(" ")[0]
  try:
    return flags.FLAGS[name].value if name in flags.FLAGS else None
  except flags.UnparsedFlagAccessError:
    return None


@contextlib.contextmanager
def user_errors(write_flag: str = "--out", on_preempted=None):
  """UserError -> one `error:` line, exit 2; Preempted -> one `preempted:` line, then
  `on_preempted()` (e.g. a SLURM requeue), exit 75; a refused write (WRITE_ERRNOS)
  -> one `error:` line naming the file, exit 2."""
  try:
    yield
  except UserError as e:
    fail(str(e))
  except Preempted as e:
    print(f"preempted: {e}", file=sys.stderr, flush=True)
    if on_preempted is not None:
      on_preempted()
    sys.exit(EXIT_PREEMPTED)
  except OSError as e:
    if e.errno not in WRITE_ERRNOS:
      raise
    fail(f"cannot write {e.filename or _flag_value(write_flag) or write_flag}: "
         f"{e.strerror}"
         + ("; free some space and run the same command again"
            if e.errno in (errno.ENOSPC, errno.EDQUOT) else
            f"; give {write_flag} a folder you can write to"))


def no_arguments(argv: Sequence[str]) -> None:
  """One `error:` line, exit 2, when argv holds more than the program name."""
  if len(argv) > 1:
    fail(f"unexpected arguments {' '.join(argv[1:])!r}; flags are --name=value "
         "(--help lists them)")


def run(main, *, config_flag: str | None = None, config_default: str | None = None,
        write_flag: str = "--out", on_preempted=None, argv=None) -> None:
  """absl's app.run(main) under the one convention: stray arguments, flag errors,
  bad ``--config.x`` overrides (with `config_flag`: checked against the config file,
  `config_default` when none is given), UserError, Preempted and refused writes each
  end in one line and the exit codes above; ``--config.x`` given twice takes the last
  value. `main(argv)` returns None or an exit code."""
  if config_flag:
    check_config_argv(config_flag, config_default)
  argv = list(sys.argv if argv is None else argv)

  def wrapped(args):
    no_arguments(args)
    with user_errors(write_flag, on_preempted):
      return main(args)

  app.run(wrapped, argv=argv, flags_parser=parse_flags)


# ---- The study scripts (experiments/*_study.py) and their worker processes -------------

def study_script(study, *, default_config: str, sources_flag: bool = False) -> None:
  """The whole of a study script: its flags, then
  :func:`kmnist_jax.studies.study.run_study` under :func:`run`."""
  from kmnist_jax.studies import execute
  from kmnist_jax.studies import study as study_lib
  check_config_argv("config", default_config)
  config_flags.DEFINE_config_file("config", default_config, "Study config.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Study folder: runs/<name>-<key>/ (checkpoints, "
                      "record.json), plan.json, the compilation cache.")
  flags.DEFINE_string("out", "", "Report folder, replaced whole (default "
                      "<workdir>/report).")
  flags.DEFINE_integer("parallel", 0, "Runs side by side (0: the backend's default, "
                       f"{execute.DEFAULT_PARALLEL}).")
  flags.DEFINE_bool("slurm", False, "Submit the unfinished runs as a SLURM job array "
                    "instead of running them here; re-run with --report_only after.")
  flags.DEFINE_string("slurm_args", "", "Extra sbatch options, e.g. "
                      "'--partition=gpu --gpus=1 --time=1:00:00'.")
  flags.DEFINE_bool("dry_run", False, "Print the sbatch commands and script; submit "
                    "and run nothing.")
  flags.DEFINE_bool("report_only", False, "Write the report from the finished runs.")
  flags.DEFINE_string("records", "", "Also keep each run's record.json in this folder "
                      "(e.g. results/augmentation_study/runs, small enough to commit) and "
                      "count the records found there as finished runs.")
  flags.DEFINE_float("max_minutes", 0.0, "Start no run after this long (0: no limit); "
                     "the report shows what is missing, the same command continues.")
  flags.DEFINE_bool("compilation_cache", True, "Persistent XLA compilation cache in "
                    "<workdir>/jax_cache: runs that differ only in seed or dataset reuse "
                    "the compiled training step.")
  if sources_flag:
    flags.DEFINE_string("sources", "", "Use these training workdirs as source models: "
                        "DATASET=DIR[,DATASET=DIR...].")
  flags.mark_flags_as_required(["workdir"])

  def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    F = flags.FLAGS
    cfg = study.with_sources(F.config, F.sources) if sources_flag else F.config
    study_lib.run_study(study, cfg, F.workdir, out=F.out, parallel=F.parallel,
                        slurm=F.slurm, slurm_args=F.slurm_args, dry_run=F.dry_run,
                        report_only=F.report_only, compilation_cache=F.compilation_cache,
                        records_dir=F.records, max_minutes=F.max_minutes)

  run(main, write_flag="--workdir")


def worker_script() -> None:
  """``python -m kmnist_jax.studies.worker --plan=P (--run_index=I [--requeue] |
  --worker)``: one run of the plan (a SLURM array task), or serve run indices from
  stdin (a side-by-side worker)."""
  from kmnist_jax.studies import execute, slurm
  from kmnist_jax.studies import plan as plan_lib
  flags.DEFINE_string("plan", None, "The study's plan file (<workdir>/plan.json).")
  flags.DEFINE_integer("run_index", None, "Run this run of the plan (an array task).")
  flags.DEFINE_bool("worker", False, "Serve run indices from stdin (side by side).")
  flags.DEFINE_bool("requeue", False, "With --run_index in a SLURM job: when the run is "
                    "preempted (SIGTERM), requeue the job (scontrol requeue) before "
                    "exiting with the preemption code.")
  flags.mark_flag_as_required("plan")
  F = flags.FLAGS

  def requeue():
    if F.requeue:
      # The run is saved and this process is exiting: the SIGTERM that SLURM's requeue
      # sends the task must not cut the line that says it was requeued.
      for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
      slurm.requeue(log=lambda m: print(m, file=sys.stderr, flush=True))

  def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    plan = plan_lib.load_plan(F.plan)
    if F.worker:
      execute.serve(plan)
      return
    if F.run_index is None or not 0 <= F.run_index < len(plan.runs):
      raise UserError(f"--run_index={F.run_index} must be in 0..{len(plan.runs) - 1}")
    # A SIGTERM before training installs its own handler (a SLURM warning or a
    # preemption while Python starts) stops the run before it starts.
    with stopping.StopOnSignal(execute.STOP_MESSAGE) as stop:
      execute.enable_compilation_cache(plan)
      run_ = plan.runs[F.run_index]
      plan_lib.kind_fn(run_.kind)
      from kmnist_jax import train  # noqa: F401 - every kind trains or loads with it
      if stop.signame:
        raise Preempted(f"stopped by {stop.signame} before the run started")
      _, did = execute.execute_one(plan, run_, log=print)
    print(f"{run_.name}: {'done' if did else 'finished before'} "
          f"({plan_lib.record_path(run_)})")

  run(main, write_flag="--plan", on_preempted=requeue)
