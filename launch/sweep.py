r"""Runs a grid of training runs on this machine, N side by side: a study of the runner.

  python launch/sweep.py --sweep launch/sweeps/lr_x_seed.py \
      [--workdir workdirs/sweeps/lr_x_seed] [--parallel 2] [--dry_run]

A sweep file is a Python file (or JSON) whose ``get_sweep()`` returns::

  {"config": "experiments/configs/kmnist_cnn.py",   # the config file every run starts from
   "fixed": {"num_epochs": 1},                      # overrides shared by every run
   "product": [{"learning_rate": [1e-3, 3e-3]},     # the cartesian product of groups;
               {"seed": [0, 1]}]}                   # keys within one group are zipped

so ``{"model": [...], "learning_rate": [...]}`` as ONE group pairs its lists element by
element (zip) and separate groups multiply (product). Keys are config fields, dotted for
nested ones (``model_kwargs.widths``). Every key is checked against the config file and
every run's config validated before any run starts.

The runs are ``train`` runs of :mod:`kmnist_jax.studies.plan`, with its cache rule:
each lives in ``<workdir>/runs/<name from its swept values>-<key[:12]>/`` (key: the
SHA-256 of its full resolved config) with the training outputs, ``log.txt`` and
``record.json``. Re-running the same command skips finished runs (a record with the
run's key) and resumes interrupted ones from their checkpoints; a changed setting is a
new key, so a new run. ``--dry_run`` prints each run as the one ``experiments/train.py``
command that does the same training in the same folder. A failed run does not stop the
others; the sweep then exits 1. The status line is the runner's; at the end a table,
``<workdir>/results.csv`` and ``results.md`` hold one row per run: swept values, test
accuracy, epochs, time. The sweep holds ``<workdir>``'s lock, each run its own.

``--parallel=N`` runs N worker processes (on CPU each pinned to cores // N cores, with
``--xla_force_host_platform_device_count`` to match; on GPU one device each); 0 picks
the backend's default (:data:`kmnist_jax.studies.execute.DEFAULT_PARALLEL`). A bad
sweep file exits 2 with one ``error:`` line.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import io
import itertools
import json
import os
import re
import sys

from absl import flags

from kmnist_jax import cli, lock
from kmnist_jax import config as config_lib
from kmnist_jax.errors import UserError
from kmnist_jax.io import atomic_write
from kmnist_jax.studies import execute as execute_lib
from kmnist_jax.studies import plan as plan_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def run_config(config_file: str, overrides: dict, where: str):
  """The run's ConfigDict: the config file with the overrides, validated."""
  cfg = config_lib.load_file(config_file)
  for key, value in overrides.items():
    node, leaf = config_lib.resolve_field(cfg, key, where)
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
  command: list               # the same run as one experiments/train.py command
  num_epochs: int
  status: str = "pending"     # pending | done | cached | failed
  wall_s: float = 0.0
  message: str = ""
  result: dict | None = None


def plan(sweep_file: str, workdir: str, *, python: str = sys.executable
         ) -> tuple[dict, list]:
  """Loads and checks the whole sweep; nothing is started or written. Each run's
  workdir is the study runner's ``<workdir>/runs/<name>-<key[:12]>``."""
  sweep, runs, _ = _plan(sweep_file, workdir, python=python)
  return sweep, runs


def _plan(sweep_file: str, workdir: str, *, python: str = sys.executable):
  from kmnist_jax import train  # deferred: JAX loads only once the sweep file is good
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
  fixed.setdefault("progress", False)  # runs log to files: no progress bars
  specs, names = [], {}
  for swept in expand(sweep):
    overrides = {**fixed, **swept}
    name = run_name(swept)
    cfg = run_config(config_file, overrides, f"{where}, run {name}")
    if name in names:
      raise UserError(f"{where}: runs {names[name]} and {swept} get the same folder "
                      f"name {name!r}; a key is listed twice")
    names[name] = swept
    specs.append((name, swept, overrides, cfg))
  if not specs:
    raise UserError(f"{where} describes no runs")
  rplan = plan_lib.Plan("sweep", workdir, [
      plan_lib.Run(name=name, kind="train", config=train.resolved_config(cfg),
                 seed=int(cfg.seed), info={"swept": swept})
      for name, swept, _, cfg in specs])
  runs = []
  for (name, swept, overrides, cfg), r in zip(specs, rplan.runs):
    cmd = [python, TRAIN, f"--config={config_file}", f"--workdir={r.workdir}"]
    cmd += [f"--config.{k}={flag_value(v)}" for k, v in overrides.items()]
    runs.append(Run(name=name, swept=swept, workdir=r.workdir, command=cmd,
                    num_epochs=int(cfg.num_epochs_stop or cfg.num_epochs)))
  return sweep, runs, rplan


# ---- Running --------------------------------------------------------------------------

def table(runs: list[Run]) -> str:
  """The status table, each failed run's error under it, and the counts."""
  head = f"{'run':<40} {'status':<8} {'epochs':>7} {'time':>8} {'test acc':>9}"
  lines = [head, "-" * len(head)]
  for r in runs:
    acc = (r.result or {}).get("test_accuracy")
    epochs = f"{(r.result or {}).get('epochs', 0)}/{r.num_epochs}"
    lines.append(f"{r.name[:40]:<40} {r.status:<8} {epochs:>7} {r.wall_s:>7.0f}s "
                 f"{'' if acc is None else f'{100 * acc:.2f}%':>9}")
  lines += [f"{r.name}: {r.message}" for r in runs if r.message]
  counts = {s: sum(r.status == s for r in runs)
            for s in ("done", "cached", "pending", "failed")}
  lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
  return "\n".join(lines)


def execute(runs: list[Run], rplan, *, parallel: int = 1, log=print) -> list[Run]:
  """Runs every unfinished run with the study runner (the cache rule: a record with
  the run's key is finished; an interrupted run resumes), `parallel` at once."""
  cached = {r.name for r in rplan.runs if plan_lib.is_finished(r)}
  failures = execute_lib.execute(rplan, parallel=parallel, log=log)
  for r, rr in zip(runs, rplan.runs):
    rec = plan_lib.read_record(rr)
    if r.name in failures:
      r.status, r.message = "failed", failures[r.name]
    elif rec is not None:
      r.status = "cached" if r.name in cached else "done"
      r.result, r.wall_s = rec["results"], float(rec.get("wall_s") or 0.0)
  log(table(runs))
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
               dry_run: bool = False, log=print) -> list[Run]:
  if parallel < 0:
    raise UserError(f"--parallel={parallel} must be >= 0 (0: the backend's default)")
  workdir = workdir or os.path.join(
      "workdirs", "sweeps", os.path.splitext(os.path.basename(sweep_file))[0])
  workdir = os.path.abspath(workdir)
  sweep, runs, rplan = _plan(sweep_file, workdir)
  if dry_run:
    for r in runs:
      log(" ".join(_quote(a) for a in r.command))
    return runs
  with lock.WorkdirLock(workdir):
    atomic_write(os.path.join(workdir, "sweep.json"),
                 json.dumps({"sweep_file": os.path.abspath(sweep_file), **sweep,
                             "runs": [r.name for r in runs]}, indent=1, default=str))
    log(f"{len(runs)} runs of {sweep['config']} in {workdir}")
    execute(runs, rplan, parallel=parallel, log=log)
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
  flags.DEFINE_integer("parallel", 1, "Runs at once (side by side; 0: the backend's "
                       "default, kmnist_jax.studies.execute.DEFAULT_PARALLEL).")
  flags.DEFINE_bool("dry_run", False, "Print each run's command and exit.")


def main(argv):
  del argv
  runs = sweep_main(FLAGS.sweep, FLAGS.workdir, parallel=FLAGS.parallel,
                    dry_run=FLAGS.dry_run)
  failed = [r.name for r in runs if r.status == "failed"]
  if failed:
    print(f"error: {len(failed)} run(s) failed: {', '.join(failed)} (see their "
          "log.txt)", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["sweep"])
  cli.run(main, write_flag="--workdir")
