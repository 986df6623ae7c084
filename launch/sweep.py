r"""Runs a grid of training runs on this machine: one process per run, N at a time.

  python launch/sweep.py --sweep launch/sweeps/lr_x_seed.py \
      [--workdir workdirs/sweeps/lr_x_seed] [--parallel 2] [--dry_run]

Why a separate process per run (not a loop in one process): each run is exactly the
command a user would type (``experiments/train.py --config C --workdir W
--config.k=v ...``), so a run from a sweep can be re-run, resumed or analysed alone, a
crash stays in its run, and the concurrency limit is just the number of live children.

A sweep file is a Python file (or JSON) whose ``get_sweep()`` returns::

  {"config": "experiments/configs/kmnist_cnn.py",   # the config file every run starts from
   "fixed": {"num_epochs": 1},                      # overrides shared by every run
   "product": [{"learning_rate": [1e-3, 3e-3]},     # the cartesian product of groups;
               {"seed": [0, 1]}]}                   # keys within one group are zipped

so ``{"model": [...], "learning_rate": [...]}`` as ONE group pairs its lists element by
element (zip) and separate groups multiply (product). Keys are config fields, dotted for
nested ones (``model_kwargs.widths``). Every key is checked against the config file and
every run's config validated before any run starts.

Each run gets ``<workdir>/<name from its swept values>/`` with the training outputs and
``log.txt`` (the child's stdout and stderr). Re-running the same command skips finished
runs (``results.json`` present, same command) and resumes interrupted ones (``train.py``
resumes from its latest checkpoint, and refuses a changed config by name). A failed run
does not stop the others; the sweep then exits 1. While it runs, a status table is redrawn in place (printed on
change when stdout is not a terminal); at the end ``<workdir>/results.csv`` and
``results.md`` hold one row per run: swept values, test accuracy, epochs, time.

On CPU each child gets ``--xla_force_host_platform_device_count=cores // parallel`` (so
``parallel=auto`` spreads a run over its share of the cores) unless $XLA_FLAGS already
sets a device count. A bad sweep file exits 2 with one ``error:`` line.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import importlib.util
import io
import itertools
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from kmnist_jax import config as config_lib  # noqa: E402
from kmnist_jax.errors import UserError  # noqa: E402
from kmnist_jax.io import atomic_write  # noqa: E402

SWEEP_KEYS = ("config", "fixed", "product")
TRAIN = os.path.join(ROOT, "experiments", "train.py")


# ---- Sweep file -> runs ---------------------------------------------------------------

def load_sweep(path: str) -> dict:
  """The dict of a sweep file (.py with get_sweep(), or .json), shape-checked."""
  if not os.path.isfile(path):
    sweeps = os.path.join(ROOT, "launch", "sweeps")
    have = sorted(os.listdir(sweeps)) if os.path.isdir(sweeps) else []
    raise UserError(f"sweep file {path!r} does not exist; examples in launch/sweeps/: "
                    f"{', '.join(have) or 'none'}")
  if path.endswith(".json"):
    with open(path) as f:
      try:
        sweep = json.load(f)
      except json.JSONDecodeError as e:
        raise UserError(f"sweep file {path} is not valid JSON: {e}") from None
  elif path.endswith(".py"):
    spec = importlib.util.spec_from_file_location("_sweep", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "get_sweep"):
      raise UserError(f"sweep file {path} defines no get_sweep() (it must return a dict "
                      f"with keys {', '.join(SWEEP_KEYS)})")
    sweep = mod.get_sweep()
  else:
    raise UserError(f"sweep file {path!r} must end in .py (with get_sweep()) or .json")
  if not isinstance(sweep, dict):
    raise UserError(f"sweep file {path}: get_sweep() must return a dict, got "
                    f"{type(sweep).__name__}")
  extra = sorted(set(sweep) - set(SWEEP_KEYS))
  if extra:
    raise UserError(f"sweep file {path}: unknown top-level key(s) {', '.join(extra)}; "
                    f"valid keys: {', '.join(SWEEP_KEYS)}")
  if "config" not in sweep:
    raise UserError(f"sweep file {path} names no 'config' (e.g. "
                    "'experiments/configs/kmnist_cnn.py')")
  sweep.setdefault("fixed", {})
  sweep.setdefault("product", [])
  if not isinstance(sweep["fixed"], dict):
    raise UserError(f"sweep file {path}: 'fixed' must be a dict of config overrides")
  groups = sweep["product"]
  if isinstance(groups, dict):
    groups = [groups]
  if not isinstance(groups, list) or not all(isinstance(g, dict) and g for g in groups):
    raise UserError(f"sweep file {path}: 'product' must be a list of non-empty dicts "
                    "{key: [values]} (keys within one dict are zipped)")
  for g in groups:
    lengths = {k: len(v) if isinstance(v, (list, tuple)) else -1 for k, v in g.items()}
    if any(n <= 0 for n in lengths.values()):
      bad = next(k for k, n in lengths.items() if n <= 0)
      raise UserError(f"sweep file {path}: {bad!r} must map to a non-empty list of values")
    if len(set(lengths.values())) > 1:
      raise UserError(f"sweep file {path}: the zipped keys of one group need lists of "
                      f"one length, got {lengths}")
  sweep["product"] = groups
  return sweep


def expand(sweep: dict) -> list[dict]:
  """The swept overrides of every run: the product of the groups, each group zipped."""
  axes = [[dict(zip(g, values)) for values in zip(*g.values())] for g in sweep["product"]]
  return [{k: v for part in combo for k, v in part.items()}
          for combo in itertools.product(*axes)]


def _resolve(cfg, key: str, where: str):
  """(parent ConfigDict, leaf name) of a dotted key, or a UserError naming it."""
  node, parts = cfg, key.split(".")
  for i, part in enumerate(parts):
    keys = list(node.keys()) if hasattr(node, "keys") else []
    if part not in keys:
      prefix = ".".join(parts[:i])
      choices = [f"{prefix}.{k}" if prefix else k for k in keys]
      close = difflib.get_close_matches(key, choices, n=3)
      hint = f" (did you mean {', '.join(close)}?)" if close else ""
      raise UserError(f"unknown config key {key!r} in {where}{hint}; valid keys"
                      + (f" under {prefix}" if prefix else "")
                      + f": {', '.join(sorted(choices)) or 'none'}")
    if i < len(parts) - 1:
      node = node[part]
  return node, parts[-1]


def run_config(config_file: str, overrides: dict, where: str):
  """The run's ConfigDict: the config file with the overrides, validated."""
  cfg = config_lib.load_file(config_file)
  for key, value in overrides.items():
    node, leaf = _resolve(cfg, key, where)
    try:
      node[leaf] = tuple(value) if isinstance(value, list) else value
    except (TypeError, ValueError) as e:
      raise UserError(f"{where}: {key}={value!r} does not fit the field "
                      f"({str(e).splitlines()[0]})") from None
  try:
    config_lib.validate(cfg)
  except UserError as e:
    raise UserError(f"{where}: {e}") from None
  return cfg


def flag_value(value) -> str:
  """A value as ml_collections' --config.k=v parser reads it."""
  if isinstance(value, (list, tuple)):
    inner = ",".join(flag_value(v) for v in value)
    return f"({inner},)" if len(value) == 1 else f"({inner})"
  return str(value)


def run_name(swept: dict) -> str:
  """A folder name from the swept values: 'learning_rate=0.001,seed=0'."""
  if not swept:
    return "run"
  def short(v):
    return "-".join(map(short, v)) if isinstance(v, (list, tuple)) else str(v)
  name = ",".join(f"{k.split('.')[-1]}={short(v)}" for k, v in swept.items())
  name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)
  if len(name) > 120:
    digest = hashlib.sha256(json.dumps(swept, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{name[:100]}-{digest}"
  return name


@dataclasses.dataclass
class Run:
  name: str
  swept: dict
  workdir: str
  command: list
  num_epochs: int
  status: str = "pending"     # pending | running | done | cached | failed
  proc: subprocess.Popen | None = None
  started: float = 0.0
  wall_s: float = 0.0         # over all invocations (sweep_run.json)
  message: str = ""
  result: dict | None = None


def plan(sweep_file: str, workdir: str, *, python: str = sys.executable
         ) -> tuple[dict, list]:
  """Loads and checks the whole sweep; nothing is started or written."""
  sweep = load_sweep(sweep_file)
  config_file = sweep["config"]
  if not config_file.endswith(".py"):      # a name: experiments/configs/<name>.py
    config_lib.load_file(config_file)      # unknown name -> error with the choices
    config_file = os.path.join(config_lib.CONFIG_DIR, f"{config_file}.py")
  elif not os.path.exists(config_file) and not os.path.isabs(config_file):
    config_file = os.path.join(ROOT, config_file)  # relative to the repository
  config_file = os.path.abspath(config_file)
  where = f"sweep file {sweep_file}"
  fixed = dict(sweep["fixed"])
  fixed.setdefault("progress", False)  # children log to files: no progress bars
  runs, names = [], {}
  for swept in expand(sweep):
    overrides = {**fixed, **swept}
    name = run_name(swept)
    cfg = run_config(config_file, overrides, f"{where}, run {name}")
    if name in names:
      raise UserError(f"{where}: runs {names[name]} and {swept} get the same folder "
                      f"name {name!r}; a key is listed twice")
    names[name] = swept
    wd = os.path.join(workdir, name)
    cmd = [python, TRAIN, f"--config={config_file}", f"--workdir={wd}"]
    cmd += [f"--config.{k}={flag_value(v)}" for k, v in overrides.items()]
    runs.append(Run(name=name, swept=swept, workdir=wd, command=cmd,
                    num_epochs=int(cfg.num_epochs_stop or cfg.num_epochs)))
  if not runs:
    raise UserError(f"{where} describes no runs")
  return sweep, runs


# ---- Running --------------------------------------------------------------------------

def _read_json(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def _epochs_done(run: Run) -> int:
  try:
    with open(os.path.join(run.workdir, "metrics.jsonl")) as f:
      return sum(1 for line in f if line.strip())
  except OSError:
    return 0


def _last_error(run: Run) -> str:
  try:
    with open(os.path.join(run.workdir, "log.txt"), errors="replace") as f:
      lines = [line.strip() for line in f.readlines()[-200:] if line.strip()]
  except OSError:
    return ""
  errors = [line for line in lines if line.startswith("error:")]
  return (errors or lines or [""])[-1][:200]


def child_env(parallel: int) -> dict:
  env = dict(os.environ)
  flags_ = env.get("XLA_FLAGS", "")
  if "xla_force_host_platform_device_count" not in flags_:
    per_run = max(1, (os.cpu_count() or 1) // max(1, parallel))
    env["XLA_FLAGS"] = f"{flags_} --xla_force_host_platform_device_count={per_run}".strip()
  env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
  return env


def _start(run: Run, env: dict) -> None:
  os.makedirs(run.workdir, exist_ok=True)
  log = open(os.path.join(run.workdir, "log.txt"), "a")
  log.write(f"\n$ {' '.join(_quote(a) for a in run.command)}\n")
  log.flush()
  run.proc = subprocess.Popen(run.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                              cwd=ROOT)
  log.close()  # the child holds its own descriptor
  run.status, run.started = "running", time.time()


def _finish(run: Run, rc: int) -> None:
  elapsed = time.time() - run.started
  marker = os.path.join(run.workdir, "sweep_run.json")
  prev = _read_json(marker) or {}
  run.wall_s = float(prev.get("wall_s", 0.0)) + elapsed
  run.result = _read_json(os.path.join(run.workdir, "results.json"))
  if rc == 0 and run.result is not None:
    run.status = "done"
  else:
    run.status = "failed"
    run.message = f"exit {rc}: {_last_error(run)}"
  atomic_write(marker, json.dumps({"command": run.command, "swept": run.swept,
                                   "wall_s": run.wall_s, "returncode": rc}, indent=1))
  run.proc = None


def table(runs: list[Run]) -> str:
  """The status table, each failed run's error under it, and the counts."""
  head = f"{'run':<40} {'status':<8} {'epoch':>7} {'time':>8} {'test acc':>9}"
  lines = [head, "-" * len(head)]
  for r in runs:
    t = r.wall_s + (time.time() - r.started if r.status == "running" else 0.0)
    acc = (r.result or {}).get("test_accuracy")
    epochs = f"{_epochs_done(r)}/{r.num_epochs}"
    line = (f"{r.name[:40]:<40} {r.status:<8} {epochs:>7} {t:>7.0f}s "
            f"{'' if acc is None else f'{100 * acc:.2f}%':>9}")
    lines.append(line)
  lines += [f"{r.name}: {r.message}" for r in runs if r.message]
  counts = {s: sum(r.status == s for r in runs)
            for s in ("done", "cached", "running", "pending", "failed")}
  lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
  return "\n".join(lines)


class _Display:
  """Redraws the table in place on a terminal; otherwise prints it when it changes."""

  def __init__(self, stream=sys.stdout):
    self.stream, self.tty = stream, stream.isatty()
    self.shown, self.last = 0, None

  def __call__(self, text: str, *, force: bool = False):
    key = re.sub(r" *\d+s ", " ", text)  # elapsed seconds alone are not a change
    if not self.tty and key == self.last and not force:
      return
    self.last = key
    if self.tty and self.shown:
      self.stream.write(f"\x1b[{self.shown}F\x1b[J")
    self.stream.write(text + "\n")
    self.stream.flush()
    self.shown = text.count("\n") + 1


def execute(runs: list[Run], *, parallel: int = 1, refresh_s: float = 1.0,
            display=None) -> list[Run]:
  """Runs every unfinished run, at most `parallel` at once; returns the runs."""
  display = display or _Display()
  for r in runs:
    prev = _read_json(os.path.join(r.workdir, "sweep_run.json")) or {}
    r.wall_s = float(prev.get("wall_s", 0.0))
    r.result = _read_json(os.path.join(r.workdir, "results.json"))
    # Finished, with the same command (else train.py resumes it, or names what
    # changed if the config did).
    same = "command" not in prev or prev["command"][1:] == r.command[1:]
    if r.result is not None and same:
      r.status = "cached"
  env = child_env(parallel)
  pending = [r for r in runs if r.status == "pending"]
  running: list[Run] = []
  try:
    while pending or running:
      while pending and len(running) < parallel:
        r = pending.pop(0)
        _start(r, env)
        running.append(r)
      for r in list(running):
        rc = r.proc.poll()
        if rc is not None:
          _finish(r, rc)
          running.remove(r)
      display(table(runs))
      if running:
        time.sleep(refresh_s)
  finally:
    for r in running:  # interrupted: stop our children (they resume next time)
      if r.proc is not None and r.proc.poll() is None:
        r.proc.terminate()
        try:
          r.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
          r.proc.kill()
  display(table(runs), force=True)
  return runs


# ---- Results --------------------------------------------------------------------------

RESULT_FIELDS = ("test_accuracy", "test_balanced_accuracy", "val_accuracy", "epochs")


def write_results(runs: list[Run], workdir: str) -> tuple[str, str]:
  """<workdir>/results.csv and results.md: one row per run."""
  keys = list(dict.fromkeys(k for r in runs for k in r.swept))
  header = ["run", *keys, "status", *RESULT_FIELDS, "wall_s"]
  rows = []
  for r in runs:
    res = r.result or {}
    rows.append([r.name, *[flag_value(r.swept.get(k, "")) for k in keys],
                 "done" if r.status == "cached" else r.status,
                 *[res.get(f) for f in RESULT_FIELDS], round(r.wall_s, 1)])
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(header)
  w.writerows([["" if v is None else v for v in row] for row in rows])
  csv_path = os.path.join(workdir, "results.csv")
  atomic_write(csv_path, buf.getvalue())

  def cell(f, v):
    if v is None or v == "":
      return ""
    if f.endswith("accuracy"):
      return f"{100 * float(v):.2f}%"
    if f == "wall_s":
      return f"{float(v):.0f} s"
    return str(v)
  md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    md.append("| " + " | ".join(cell(f, v) for f, v in zip(header, row)) + " |")
  md_path = os.path.join(workdir, "results.md")
  atomic_write(md_path, "\n".join(md) + "\n")
  return csv_path, md_path


def sweep_main(sweep_file: str, workdir: str = "", *, parallel: int = 1,
               dry_run: bool = False, refresh_s: float = 1.0, display=None,
               log=print) -> list[Run]:
  if parallel < 1:
    raise UserError(f"--parallel={parallel} must be >= 1")
  workdir = workdir or os.path.join(
      "workdirs", "sweeps", os.path.splitext(os.path.basename(sweep_file))[0])
  workdir = os.path.abspath(workdir)
  sweep, runs = plan(sweep_file, workdir)
  if dry_run:
    for r in runs:
      log(" ".join(_quote(a) for a in r.command))
    return runs
  os.makedirs(workdir, exist_ok=True)
  atomic_write(os.path.join(workdir, "sweep.json"),
               json.dumps({"sweep_file": os.path.abspath(sweep_file), **sweep,
                           "runs": [r.name for r in runs]}, indent=1, default=str))
  log(f"{len(runs)} runs of {sweep['config']} in {workdir}, {parallel} at a time")
  execute(runs, parallel=parallel, refresh_s=refresh_s, display=display)
  csv_path, md_path = write_results(runs, workdir)
  log(f"results: {csv_path}, {md_path}")
  return runs


def _quote(arg: str) -> str:
  return arg if re.fullmatch(r"[A-Za-z0-9_./=:,+-]+", arg) else "'" + arg.replace(
      "'", "'\\''") + "'"


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("sweep", None, "Sweep file (.py with get_sweep(), or .json).")
  flags.DEFINE_string("workdir", "", "Folder of the sweep's runs "
                      "(default workdirs/sweeps/<sweep file name>).")
  flags.DEFINE_integer("parallel", 1, "Runs at once.")
  flags.DEFINE_bool("dry_run", False, "Print each run's command and exit.")
  flags.DEFINE_float("refresh", 2.0, "Seconds between status updates.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    runs = sweep_main(FLAGS.sweep, FLAGS.workdir, parallel=FLAGS.parallel,
                      dry_run=FLAGS.dry_run, refresh_s=FLAGS.refresh)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  failed = [r.name for r in runs if r.status == "failed"]
  if failed:
    print(f"error: {len(failed)} run(s) failed: {', '.join(failed)} (see their "
          "log.txt)", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["sweep"])
  app.run(main)
