r"""The study runner: a plan of runs, each cached under the key of its full config.

A study is a :class:`Plan`: a list of :class:`Run` s (config overrides x seeds, each
with the evaluators of ``config.evals``) plus the study folder. Each run lives in
``<study_workdir>/runs/<readable-name>-<key[:12]>/`` and ends with ``record.json``
(key, resolved config, seed, the run's results, its evaluator records, io.run_meta()).

The cache rule (one rule for every study, sweep and benchmark):

* a run's **key** is the SHA-256 of its kind, its full resolved config (every field
  after overrides and validation, model defaults filled in; only the fields in
  :data:`KEY_EXCLUDED`, which say where data is read from and how progress is shown or
  saved, are left out) and the keys of the runs it is built on (``deps``: a transfer
  run's source model; ``after`` only orders: a baseline an evaluator compares with). Changing a source setting changes the source's key, so the
  source and every run built on it are redone, and nothing else;
* a run whose ``record.json`` holds its key is finished and skipped; an evaluator
  whose settings changed is re-run on the kept checkpoint, without retraining;
* an interrupted run resumes from its checkpoints (``train.train_and_evaluate``);
* every run holds its workdir's lock (:mod:`kmnist_jax.lock`) while it runs, and a
  study holds the study folder's lock.

Execution (:func:`execute`): ``parallel=1`` runs the plan in this process; ``N > 1``
runs N worker processes side by side (``python -m kmnist_jax.studies.runner --plan=P
--worker``), each taking runs from a queue as their sources finish: on CPU worker k is
pinned to cores/N cores (``sched_setaffinity``; XLA's thread pool and the BLAS threads
follow) with ``--xla_force_host_platform_device_count=cores/N``; on GPU each worker
gets one device (``CUDA_VISIBLE_DEVICES``; several workers per device share it).
``parallel=0`` picks the measured default of the backend, :data:`DEFAULT_PARALLEL`.
A SLURM job array runs the same plan, one run per array task
(``--run_index=$SLURM_ARRAY_TASK_ID``; :mod:`kmnist_jax.studies.slurm`).

Sequential vs side by side on this project's 2-core CPU: see :data:`DEFAULT_PARALLEL`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence

from kmnist_jax import config as config_lib
from kmnist_jax import io, lock, metrics, stopping
from kmnist_jax.errors import EXIT_PREEMPTED, EXIT_USER_ERROR, Preempted, UserError

RUNS = "runs"
RECORD = "record.json"
PLAN = "plan.json"

# Fields that say where the data is read from and how progress is shown or saved:
# they cannot change a number, so they stay out of the key (a study committed under
# results/ continues on another machine with another data folder).
KEY_EXCLUDED = frozenset({
    "data_dir", "tfds_dir", "data_source", "progress", "progress_updates_per_epoch",
    "tensorboard", "checkpoint_every", "keep_checkpoints", "allow_config_mismatch",
})

# Side by side or one at a time, per backend (--parallel=0 picks this). Measured on the
# 2-core AMD EPYC box (lscpu: "AMD EPYC", 2 cores) with the augmentation study script:
# the same 4 runs (kmnist x {none, affine} x seeds {0, 1}, CNN widths 8,16), a fresh
# workdir and compilation cache each time, the whole command timed, in both orders.
# Other sessions' jobs were running throughout (load average in brackets):
#   2 epochs on 4,096 images:  one at a time 90 s (10), 99 s (12), 34 s (4.5);
#                              two side by side 157 s (8), 158 s (10), 47 s (4.5);
#   4 epochs on 10,000 images (augment_study_reduced's runs):
#                              one at a time 79 s (5), 77 s (2.5);
#                              two side by side 77 s (7), 72 s (4).
# One process already keeps both cores busy (XLA's intra-op threads) and each worker
# pays its own start-up and first compilations on one core: side by side loses on
# small runs and gains 3-6% (within the noise of a shared machine) at the reduced
# study's run size.
# At the real budget, on a quiet 2-core AMD EPYC Zen 3 (family 25 model 1, AVX2 only),
# augment_robustness.py's runs (the default CNN on 55,000 images, its 20x5 corruption
# and PGD evaluators): the same 4 runs + baseline at 1 epoch, one at a time 341 s (1
# device) and ~same with 2 devices (pmap), two side by side 290 s; at 6 epochs each
# side-by-side worker trains at 715-812 img/s (1,500-1,600 together) against 1,285-1,371
# img/s for one process with 2 devices (pmap or sharded): side by side is 11-15% faster
# there, so the real-budget study commands use --parallel=2. The default stays one at a
# time (the small runs of tests and reduced studies lose side by side). On GPU: one
# worker per device (not measured: no GPU was lent to this task).
DEFAULT_PARALLEL = {"cpu": 1, "gpu": "devices"}

# Run kinds: "module:function" executing one run -> its results dict.
KINDS = {
    "train": "kmnist_jax.studies.runner:train_run",
    "transfer": "kmnist_jax.studies.transfer:transfer_run",
    "cka": "kmnist_jax.studies.transfer:cka_run",
    "external": "kmnist_jax.studies.runner:external_run",
}


# ---- Runs and plans ---------------------------------------------------------------------

@dataclasses.dataclass
class Run:
  """One unit of work. `config` is JSON-able and complete (it is what the key hashes);
  `info` holds the study's labels of the run (dataset, policy, ...), not in the key;
  `evals` the evaluator settings (``config.evals``), cached per evaluator."""
  name: str
  kind: str
  config: dict
  seed: int = 0
  deps: tuple = ()
  evals: dict = dataclasses.field(default_factory=dict)
  info: dict = dataclasses.field(default_factory=dict)
  after: tuple = ()        # runs this one waits for without them entering its key
  key: str = ""
  workdir: str = ""
  eval_keys: dict = dataclasses.field(default_factory=dict)
  mirror: str = ""         # a copy of record.json elsewhere (e.g. under results/)

  @property
  def waits_for(self) -> tuple:
    return tuple(self.deps) + tuple(self.after)


def key_config(config: dict) -> dict:
  """What a run's key hashes: `config` less KEY_EXCLUDED, and less the fields added
  later (config.LATER_FIELDS) while at their defaults, so older records keep their key."""
  later = config_lib.later_defaults()
  return {k: v for k, v in config.items()
          if k not in KEY_EXCLUDED and not (k in later and v == later[k])}


def digest(obj) -> str:
  return hashlib.sha256(io.dumps_json(obj).encode()).hexdigest()


def run_key(run: Run, dep_keys: dict) -> str:
  return digest({"kind": run.kind, "config": key_config(run.config),
                 "deps": {d: dep_keys[d] for d in run.deps}})


REF = "@run:"      # in an evaluator setting: the workdir of that run of the plan


def map_refs(obj, fn):
  """`obj` with every string '@run:<name>' replaced by fn(name), recursively."""
  if isinstance(obj, dict):
    return {k: map_refs(v, fn) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [map_refs(v, fn) for v in obj]
  if isinstance(obj, str) and obj.startswith(REF):
    return fn(obj[len(REF):])
  return obj


def safe_name(name: str) -> str:
  out = "".join(c if c.isalnum() or c in "._+=,-" else "_" for c in name)
  return out[:80]


@dataclasses.dataclass
class Plan:
  study: str
  workdir: str
  runs: list
  options: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    keys, names = {}, set()
    for r in self.runs:
      if r.kind not in KINDS:
        raise UserError(f"run {r.name!r}: unknown run kind {r.kind!r}; valid choices: "
                        f"{', '.join(KINDS)}")
      if r.name in names:
        raise UserError(f"two runs of study {self.study} are named {r.name!r}")
      for d in r.waits_for:
        if d not in keys:
          raise UserError(f"run {r.name!r} is built on {d!r}, which is not an earlier "
                          "run of the plan")
      names.add(r.name)
      r.key = run_key(r, keys)
      keys[r.name] = r.key
      r.workdir = os.path.join(os.path.abspath(self.workdir), RUNS,
                               f"{safe_name(r.name)}-{r.key[:12]}")

      def ref_key(name, r=r):
        if name not in r.waits_for:
          raise UserError(f"run {r.name!r}: an evaluator names {REF}{name}, which the "
                          "run neither is built on nor waits for")
        return keys[name]
      # An evaluator's key: its settings, a referenced run by that run's key.
      r.eval_keys = {n: digest(map_refs(c, ref_key))[:16] for n, c in r.evals.items()}
    self.set_records_dir(self.options.get("records_dir", ""))

  def set_records_dir(self, path: str) -> None:
    """Keep a copy of every record in `path` (``<name>-<key[:12]>.json``) and count a
    record found there as finished: a study committed with its records continues on
    another machine. A run built on a train run found there only trains that run again
    (same key, same numbers) for its checkpoint."""
    self.options["records_dir"] = os.path.abspath(path) if path else ""
    for r in self.runs:
      r.mirror = (os.path.join(self.options["records_dir"],
                               os.path.basename(r.workdir) + ".json") if path else "")

  def by_name(self, name: str) -> Run:
    return next(r for r in self.runs if r.name == name)

  def index(self, name: str) -> int:
    return next(i for i, r in enumerate(self.runs) if r.name == name)

  def to_json(self) -> dict:
    return {"study": self.study, "workdir": os.path.abspath(self.workdir),
            "options": self.options, "runs": [dataclasses.asdict(r) for r in self.runs]}

  @classmethod
  def from_json(cls, d: dict) -> "Plan":
    runs = [Run(**{k: v for k, v in r.items()
                   if k not in ("key", "workdir", "eval_keys", "mirror")})
            for r in d["runs"]]
    for r in runs:
      r.deps, r.after = tuple(r.deps), tuple(r.after)
    p = cls(d["study"], d["workdir"], runs, d.get("options", {}))
    for r, saved in zip(p.runs, d["runs"]):
      if r.key != saved["key"]:
        raise UserError(f"plan file: run {r.name} has key {saved['key'][:12]} but its "
                        f"config hashes to {r.key[:12]} (another version wrote it?); "
                        "re-run the study command to rewrite the plan")
    return p

  def save(self) -> str:
    os.makedirs(self.workdir, exist_ok=True)
    return io.write_json(os.path.join(self.workdir, PLAN), self.to_json())


def load_plan(path: str) -> Plan:
  if not os.path.isfile(path):
    raise UserError(f"plan file {path!r} does not exist (a study command writes "
                    f"<workdir>/{PLAN})")
  return Plan.from_json(io.read_json(path))


def training_config(cfg, blocks: Sequence[str] = ("study", "transfer", "evals")):
  """A study config's training config: the study's own blocks removed."""
  from kmnist_jax import config as config_lib
  d = config_lib.to_dict(cfg)
  for b in blocks:
    d.pop(b, None)
  return config_lib.from_dict(d)


def resolve_key(cfg, key: str, where: str):
  """(parent ConfigDict, leaf name) of dotted `key` in `cfg`, or one UserError line
  naming the valid keys at that level."""
  import difflib
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


def check_override_flags(argv: Sequence[str], config_file: str, flag: str = "config"):
  """Refuses ``--config.<key>=...`` naming a key the config file does not have, before
  absl does (one line, with the valid keys)."""
  from kmnist_jax import config as config_lib
  cfg = None
  prefix = f"--{flag}."
  for arg in argv[1:]:
    if arg.startswith(prefix):
      if cfg is None:
        cfg = config_lib.load_file(config_file)
      resolve_key(cfg, arg[len(prefix):].split("=", 1)[0], arg.split("=", 1)[0])


def evals_dict(cfg) -> dict:
  """``config.evals`` as a plain dict {name: {type: ..., **kwargs}} (empty if none),
  every entry checked by the evaluator registry when it exists."""
  if "evals" not in cfg or not cfg.evals:
    return {}
  from kmnist_jax import config as config_lib
  evals = config_lib.to_dict(cfg)["evals"]
  try:
    from kmnist_jax import evaluators
  except ImportError:
    evaluators = None
  if evaluators is not None and hasattr(evaluators, "from_config"):
    # Unknown type / bad setting -> UserError. A baseline the study provides (one of
    # its own runs, filled in per run) is checked when the plan fills it in.
    evaluators.from_config({n: {k: v for k, v in e.items()
                                if not (k == "baseline" and v == "study")}
                            for n, e in evals.items()})
  return evals


# ---- Records ----------------------------------------------------------------------------

def record_path(run: Run) -> str:
  return os.path.join(run.workdir, RECORD)


def read_record(run: Run, *, local: bool = False) -> dict | None:
  """The run's record if it holds the run's key (else None: not finished): the one in
  its workdir, else (unless `local`) its copy in the plan's records folder."""
  for path in [record_path(run)] + ([run.mirror] if run.mirror and not local else []):
    try:
      rec = io.read_json(path)
    except (OSError, ValueError):
      continue
    if rec.get("key") == run.key:
      return rec
  return None


def missing_evals(run: Run, rec: dict | None) -> list[str]:
  have = (rec or {}).get("evals", {})
  return [n for n in run.evals if have.get(n, {}).get("key") != run.eval_keys[n]]


def is_finished(run: Run, *, local: bool = False) -> bool:
  rec = read_record(run, local=local)
  return rec is not None and not missing_evals(run, rec)


def to_run(plan: Plan) -> list[int]:
  """Indices of the runs to execute: the unfinished ones, and the train runs they wait
  for whose record is only a copy (their checkpoint is needed here)."""
  todo = {i for i, r in enumerate(plan.runs) if not is_finished(r)}
  for i in list(todo):
    for d in plan.runs[i].waits_for:     # sources, and baselines evaluators compare to
      dep = plan.by_name(d)
      if dep.kind == "train" and not is_finished(dep, local=True):
        todo.add(plan.index(d))
  return sorted(todo)


# ---- Statistics over seeds --------------------------------------------------------------

def mean_std(values) -> dict:
  """{'mean', 'std'} over seeds (std: sample std, ddof=1; None for < 2 values)."""
  v = [float(x) for x in values if x is not None]
  if not v:
    return {"mean": None, "std": None}
  mean, std = metrics.mean_std(v)
  return {"mean": float(mean), "std": float(std) if len(v) > 1 else None}


# Two-sided 5% critical values of Student's t by degrees of freedom (n - 1 seeds).
# Beyond 30, the df-30 value (slightly conservative).
T_CRIT_5PCT = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
               2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
               2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def paired(values, base) -> dict:
  """Paired differences values[i] - base[i] (same seed): {'mean', 'std', 'n',
  'significant', 't_test'}. significant = n >= 2 and |mean| > std (the change is
  larger than its spread over seeds: the studies' rule, a lenient one -- with 3 seeds
  it is a paired t of 1.73, p ~ 0.22); t_test = the paired t-test rejects "no
  difference" at 5% two-sided (|mean| > t_crit(n - 1) std / sqrt(n); 3 seeds: |mean|
  > 2.48 std)."""
  d = [float(a) - float(b) for a, b in zip(values, base)]
  out = {**mean_std(d), "n": len(d)}
  n, mean, std = len(d), out["mean"], out["std"]
  out["significant"] = bool(n >= 2 and abs(mean) > std)
  crit = T_CRIT_5PCT[min(n - 1, len(T_CRIT_5PCT)) - 1] if n >= 2 else 0.0
  out["t_test"] = bool(n >= 2 and mean != 0 and
                       (std == 0 or abs(mean) > crit * std / math.sqrt(n)))
  return out


def significance_mark(significant, t_test) -> str:
  """The reports' mark of a paired difference: '**' confirmed by the t-test, '*'
  significant by the screening rule only, '' neither."""
  return ("**" if t_test else "*") if significant else ""


# ---- Executing one run ------------------------------------------------------------------

def _kind_fn(kind: str) -> Callable:
  import importlib
  mod, fn = KINDS[kind].split(":")
  return getattr(importlib.import_module(mod), fn)


def _train_cfg(run: Run, plan: Plan):
  from kmnist_jax import config as config_lib
  cfg = config_lib.from_dict(run.config)
  cfg.progress = False
  if plan.options.get("data_dir"):
    cfg.data_dir = plan.options["data_dir"]
  return cfg


def train_run(run: Run, plan: Plan, log) -> dict:
  """kind 'train': ``train.train_and_evaluate`` in the run's workdir (resumes)."""
  from kmnist_jax import train
  return train.train_and_evaluate(_train_cfg(run, plan), run.workdir, log=log)


def external_run(run: Run, plan: Plan, log) -> dict:
  """kind 'external': a training workdir given by the user (its key: its saved config
  and checkpoint step); nothing trains."""
  del plan, log
  path = os.path.join(run.config["workdir"], "results.json")
  return io.read_json(path) if os.path.exists(path) else {}


def _evaluate(run: Run, plan: Plan, names: list[str], log) -> dict:
  from kmnist_jax.studies import evaluate as evaluate_lib
  evals = map_refs({n: run.evals[n] for n in names}, lambda r: plan.by_name(r).workdir)
  log(f"{run.name}: evaluating {', '.join(names)}")
  recs = evaluate_lib.evaluate(run.workdir, evals, step=plan.options.get("eval_step",
                                                                           "latest"),
                               data_dir=plan.options.get("data_dir") or
                               run.config.get("data_dir") or None)
  return {n: {"key": run.eval_keys[n], "record": recs[n]} for n in names}


def execute_one(plan: Plan, run: Run, *, log=print) -> tuple[dict, bool]:
  """(record, did_work): trains (or resumes) the run and evaluates it, unless its
  record is complete. Holds the run's workdir lock."""
  rec = read_record(run, local=True)
  if rec is not None and not missing_evals(run, rec):
    return rec, False
  for d in run.waits_for:
    if read_record(plan.by_name(d)) is None:
      raise UserError(f"run {run.name} is built on {d}, which has not finished; run "
                      "the study (or that array task) first")
  with lock.WorkdirLock(run.workdir):
    t0 = time.time()
    log(f"== run {run.name} (key {run.key[:12]}), started "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    rec = read_record(run, local=True)
    if rec is None:
      results = _kind_fn(run.kind)(run, plan, log)
      rec = {"key": run.key, "name": run.name, "kind": run.kind, "seed": run.seed,
             "info": run.info, "deps": {d: plan.by_name(d).key for d in run.deps},
             "config": run.config, "results": results, "evals": {},
             "wall_s": time.time() - t0}
    todo = missing_evals(run, rec)
    if todo:
      rec["evals"] = {**{n: v for n, v in rec.get("evals", {}).items()
                         if n in run.evals}, **_evaluate(run, plan, todo, log)}
    rec["meta"] = io.run_meta()
    io.write_json(record_path(run), rec)
    if run.mirror:
      os.makedirs(os.path.dirname(run.mirror), exist_ok=True)
      io.write_json(run.mirror, rec)
  return rec, True


# ---- Executing a plan -------------------------------------------------------------------

@dataclasses.dataclass
class Status:
  total: int
  cached: int = 0
  done: int = 0
  failed: int = 0
  running: int = 0
  t0: float = dataclasses.field(default_factory=time.time)

  def line(self) -> str:
    pending = self.total - self.cached - self.done - self.failed - self.running
    parts = [f"{self.done + self.cached}/{self.total} finished"
             f" ({self.cached} cached)", f"{self.running} running", f"{pending} pending"]
    if self.failed:
      parts.append(f"{self.failed} failed")
    return ", ".join(parts) + f", {time.time() - self.t0:.0f} s"


def backend() -> tuple[str, int]:
  """('gpu', n) when nvidia-smi lists GPUs (CUDA_VISIBLE_DEVICES respected), else
  ('cpu', cores this process may use). Never starts a JAX backend."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None and visible.strip() in ("", "-1"):
    return "cpu", len(os.sched_getaffinity(0))
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                         timeout=20).stdout
    n = sum(line.startswith("GPU ") for line in out.splitlines())
  except (OSError, subprocess.SubprocessError):
    n = 0
  if n and visible:
    n = min(n, len([v for v in visible.split(",") if v.strip()]))
  return ("gpu", n) if n else ("cpu", len(os.sched_getaffinity(0)))


def default_parallel() -> int:
  kind, n = backend()
  d = DEFAULT_PARALLEL[kind]
  return n if d == "devices" else int(d)


def worker_env(k: int, n_workers: int, plan: Plan) -> tuple[dict, list | None]:
  """(environment, CPU cores to pin to or None) of worker k of n."""
  import re
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (io.REPO, env.get("PYTHONPATH")) if p)
  kind, n = backend()
  xla = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
               env.get("XLA_FLAGS", "")).strip()
  if kind == "gpu":
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES",
                                                 ",".join(map(str, range(n)))).split(",")]
    env["CUDA_VISIBLE_DEVICES"] = visible[k % n]
    per_device = -(-n_workers // n)
    if per_device > 1:
      env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
      env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / per_device:.2f}"
    env["XLA_FLAGS"] = xla
    return env, None
  cores = sorted(os.sched_getaffinity(0))
  share = max(1, len(cores) // n_workers)
  start = (k * share) % len(cores)
  mine = [cores[(start + i) % len(cores)] for i in range(share)]
  env["XLA_FLAGS"] = f"{xla} --xla_force_host_platform_device_count={share}".strip()
  for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    env[var] = str(share)
  return env, mine


def _enable_compilation_cache(plan: Plan) -> None:
  if not plan.options.get("compilation_cache", True):
    return
  workdir = plan.workdir
  import jax
  jax.config.update("jax_compilation_cache_dir",
                    os.path.join(os.path.abspath(workdir), "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _run_logger(run: Run):
  os.makedirs(run.workdir, exist_ok=True)
  path = os.path.join(run.workdir, "log.txt")

  def log(msg):
    with open(path, "a") as f:
      f.write(str(msg) + "\n")
  return log


def _sequential(plan: Plan, todo: list[int], status: Status, show,
                deadline: float | None = None) -> dict:
  failures = {}
  _enable_compilation_cache(plan)
  for i in todo:
    run = plan.runs[i]
    if deadline is not None and time.time() > deadline:
      break
    bad = [d for d in run.waits_for if plan.index(d) in failures]
    if bad:
      failures[i] = f"not run: {bad[0]} failed"
      status.failed += 1
      continue
    status.running = 1
    show(status.line() + f" | {run.name}")
    try:
      with stopping.StopOnSignal(_STOP_MESSAGE):
        execute_one(plan, run, log=_run_logger(run))
      status.done += 1
    except UserError as e:
      failures[i] = str(e)
      status.failed += 1
    status.running = 0
    show(status.line())
  return failures


class _Worker:
  def __init__(self, k: int, n: int, plan_path: str, plan: Plan):
    env, cores = worker_env(k, n, plan)
    log_dir = os.path.join(plan.workdir, "workers")
    os.makedirs(log_dir, exist_ok=True)
    self.err = open(os.path.join(log_dir, f"worker{k}.log"), "a")
    if cores:     # the worker pins itself before JAX starts (no fork hook here)
      env[CPUS_ENV] = ",".join(map(str, cores))
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "kmnist_jax.studies.runner", f"--plan={plan_path}",
         "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
        env=env, cwd=io.REPO, text=True, bufsize=1)
    self.current: int | None = None
    self.buf = b""

  def lines(self) -> list[str] | None:
    """Complete lines the worker wrote since the last call (None: it exited)."""
    data = os.read(self.proc.stdout.fileno(), 65536)
    if not data:
      return None
    self.buf += data
    *done, self.buf = self.buf.split(b"\n")
    return [d.decode(errors="replace") for d in done]

  def give(self, i: int):
    self.current = i
    self.proc.stdin.write(f"{i}\n")
    self.proc.stdin.flush()

  def close(self):
    if self.proc.poll() is None:
      try:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
      except (OSError, subprocess.TimeoutExpired):
        self.proc.terminate()
    self.err.close()


_MARK = "@@runner "
# What a run does on SIGTERM / SIGINT (training installs its own, finer handler).
_STOP_MESSAGE = ("stopping the run at its next safe point (training: the next chunk, "
                 "after a checkpoint; a transfer run: its next chunk, redone later)")
_PREEMPTED = "preempted: "
CPUS_ENV = "KMNIST_JAX_WORKER_CPUS"


def pin_from_env() -> None:
  """A side-by-side worker's share of the cores (set before JAX starts: XLA's thread
  pool sizes itself from the affinity mask)."""
  cpus = os.environ.get(CPUS_ENV)
  if cpus:
    os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])


def _side_by_side(plan: Plan, todo: list[int], n: int, status: Status, show,
                  deadline: float | None = None) -> dict:
  plan_path = plan.save()
  pending = list(todo)
  finished = {i for i, r in enumerate(plan.runs) if i not in todo}
  failures: dict[int, str] = {}
  workers = [_Worker(k, n, plan_path, plan) for k in range(min(n, len(todo)))]
  sel = selectors.DefaultSelector()
  for w in workers:
    sel.register(w.proc.stdout, selectors.EVENT_READ, w)

  def ready(i):
    return all(plan.index(d) in finished for d in plan.runs[i].waits_for)

  def forward():
    for w in workers:
      if w.proc.poll() is None:
        w.proc.send_signal(signal.SIGTERM)

  # SIGTERM / SIGINT: start no new run and pass SIGTERM on to every worker (each saves
  # its run at the next chunk boundary and exits); then Preempted below.
  stop = stopping.StopOnSignal("the running runs stop at their next safe point",
                               on_signal=forward)
  with stop:
    try:
      while pending or any(w.current is not None for w in workers):
        if (deadline is not None and time.time() > deadline) or stop.signame:
          pending.clear()                  # start nothing new; let the running finish
        for i in [i for i in pending
                  if any(plan.index(d) in failures for d in plan.runs[i].waits_for)]:
          pending.remove(i)
          failures[i] = "not run: a run it is built on failed"
          status.failed += 1
        for w in workers:
          if w.current is None and w.proc.poll() is None:
            i = next((i for i in pending if ready(i)), None)
            if i is not None:
              pending.remove(i)
              w.give(i)
              status.running += 1
        if not any(w.current is not None for w in workers):
          if pending:   # nothing runnable and nothing running: workers died
            for i in pending:
              failures[i] = "not run: every worker process exited"
            status.failed += len(pending)
          break
        show(status.line())
        for sk, _ in sel.select(timeout=1.0):
          w = sk.data
          lines = w.lines()
          if lines is None:                  # the worker died
            sel.unregister(w.proc.stdout)
            if w.current is not None:
              failures[w.current] = (f"worker exited (code {w.proc.wait()}); see "
                                     f"{plan.workdir}/workers/")
              status.failed += 1
              status.running -= 1
              w.current = None
            continue
          for line in lines:
            if not line.startswith(_MARK):
              continue
            msg = json.loads(line[len(_MARK):])
            status.running -= 1
            if msg["ok"]:
              finished.add(msg["index"])
              status.done += 1
            elif msg["error"].startswith(_PREEMPTED) and stop.signame:
              pass                           # stopped on request: not a failure
            else:
              failures[msg["index"]] = msg["error"]
              status.failed += 1
            w.current = None
    finally:
      for w in workers:
        w.close()
  show(status.line())
  if stop.signame:
    raise Preempted(f"the study stopped on {stop.signame}: its running runs stopped "
                    "at their next safe point (training runs saved a checkpoint); the "
                    "same command continues them")
  return failures


def execute(plan: Plan, *, parallel: int = 0, max_minutes: float = 0.0, log=print,
            show=None) -> dict:
  """Runs every unfinished run of `plan` (parallel: runs at once; 0: the backend's
  default; max_minutes > 0: start no run after that long, so that a lent accelerator's
  time is never overrun; the same call later continues). Returns {run name: error} of
  the runs that failed."""
  deadline = time.time() + 60 * max_minutes if max_minutes else None
  if parallel < 0:
    raise UserError(f"--parallel={parallel} must be >= 0 (0: the backend's default)")
  parallel = parallel or default_parallel()
  plan.save()
  todo = to_run(plan)
  status = Status(total=len(plan.runs), cached=len(plan.runs) - len(todo))
  show = show or _Display(log)
  log(f"{plan.study}: {len(plan.runs)} runs, {status.cached} finished before, "
      f"{len(todo)} to run{f', {parallel} at a time' if todo else ''}, in "
      f"{plan.workdir}")
  if not todo:
    return {}
  if parallel == 1 or len(todo) == 1:
    failures = _sequential(plan, todo, status, show, deadline)
  else:
    failures = _side_by_side(plan, todo, parallel, status, show, deadline)
  show(status.line(), force=True)
  out = {plan.runs[i].name: msg for i, msg in sorted(failures.items())}
  for name, msg in out.items():
    log(f"failed: {name}: {msg}")
  late = [r.name for i, r in enumerate(plan.runs)
          if i in todo and plan.runs[i].name not in out and not is_finished(r)]
  if late:
    log(f"not started (max_minutes={max_minutes:g}): {', '.join(late)}; run the same "
        "command again to continue")
  return out


class _Display:
  """The status line: redrawn in place on a terminal, else printed when it changes."""

  def __init__(self, log):
    self.log, self.tty = log, sys.stdout.isatty() and log is print
    self.last = None

  def __call__(self, text: str, force: bool = False):
    import re
    # On a terminal every change; in a log only when a run finishes or fails.
    key = (re.sub(r", \d+ s\b.*", "", text) if self.tty else
           " ".join(re.findall(r"\d+/\d+ finished|\d+ failed", text)))
    if key == self.last and not force:
      return
    self.last = key
    if self.tty:
      sys.stdout.write("\r\x1b[K" + text)
      sys.stdout.flush()
      if force:
        sys.stdout.write("\n")
    else:
      self.log(text)


def records(plan: Plan) -> list[dict | None]:
  """The finished runs' records, in plan order (None: not finished)."""
  return [read_record(r) for r in plan.runs]


# ---- The study command ------------------------------------------------------------------

def run_study(study, cfg, workdir: str, *, out: str = "", parallel: int = 0,
              slurm: bool = False, slurm_args: str = "", dry_run: bool = False,
              report_only: bool = False, data_dir: str = "",
              compilation_cache: bool = True, records_dir: str = "",
              max_minutes: float = 0.0, log=print) -> dict:
  """One study end to end: `study` is a module with ``plan(cfg, workdir)``,
  ``summarize(records, plan)`` and ``render(summary, report)``. Plans (every bad input
  fails here, before anything loads), runs what is not finished (here, side by side, or
  as a SLURM array), then writes the report into `out` (default <workdir>/report),
  replaced whole. Returns the summary."""
  plan = study.plan(cfg, workdir)
  if data_dir:
    plan.options["data_dir"] = data_dir
  plan.options["compilation_cache"] = bool(compilation_cache)
  if records_dir:
    plan.set_records_dir(records_dir)
  out = out or os.path.join(workdir, "report")
  _check_out(out, workdir, records_dir)
  if slurm or dry_run:
    from kmnist_jax.studies import slurm as slurm_lib
    todo = to_run(plan)
    if not dry_run:
      plan.save()
    slurm_lib.submit(plan, todo, extra_args=slurm_args, dry_run=dry_run, log=log)
    return {}
  failures, where = {}, "see their log.txt"
  with lock.WorkdirLock(workdir):
    if not report_only:
      failures = execute(plan, parallel=parallel, max_minutes=max_minutes, log=log)
    else:   # runs submitted to SLURM whose tasks ended without a record
      from kmnist_jax.studies import slurm as slurm_lib
      failures, where = slurm_lib.failures(plan, log=log), "their SLURM logs above"
      for name, msg in failures.items():
        log(f"failed: {name}: {msg}")
    summary = study.summarize(records(plan), plan)
    summary["failed"] = failures
    write_report(study, summary, out)
  log(f"report in {out}")
  if failures:
    raise UserError(f"{len(failures)} run(s) failed: {', '.join(failures)} ({where}); "
                    "the report shows the others")
  return summary


def _inside(path: str, folder: str) -> bool:
  path, folder = os.path.realpath(path), os.path.realpath(folder)
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_out(out: str, workdir: str, records_dir: str) -> None:
  """The report folder is replaced whole: it must not hold the workdir or the records."""
  for what, path in (("--workdir", workdir), ("--records", records_dir)):
    if path and _inside(path, out):
      raise UserError(f"{what}={path} lies inside --out={out}, which the report "
                      "replaces whole; put it beside the report (e.g. "
                      f"--records={out.rstrip(os.sep)}_runs) or the report elsewhere")


def write_report(study, summary: dict, out: str) -> None:
  from kmnist_jax import report as report_lib
  with io.atomic_dir(out) as tmp:
    rep = report_lib.Report(tmp)
    study.render(summary, rep)
    rep.write()


# ---- The study scripts (experiments/*_study.py) -----------------------------------------

def _config_arg(argv: Sequence[str], flag: str = "config") -> str | None:
  for i, a in enumerate(argv):
    if a.startswith(f"--{flag}="):
      return a.split("=", 1)[1]
    if a == f"--{flag}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def study_script(study, *, default_config: str, sources_flag: bool = False) -> None:
  """The whole of a thin study script: its flags, then :func:`run_study`. Bad input ->
  one ``error:`` line, exit code 2."""
  from absl import app, flags, logging
  from ml_collections import config_flags
  try:     # before the config flag: ml_collections reads the overrides at definition
    check_override_flags(sys.argv, _config_arg(sys.argv) or default_config)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  config_flags.DEFINE_config_file("config", default_config, "Study config.",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Study folder: runs/<name>-<key>/ (checkpoints, "
                      "record.json), plan.json, the compilation cache.")
  flags.DEFINE_string("out", "", "Report folder, replaced whole (default "
                      "<workdir>/report).")
  flags.DEFINE_integer("parallel", 0, "Runs side by side (0: the backend's measured "
                       f"default, {DEFAULT_PARALLEL}).")
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
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    F = flags.FLAGS
    try:
      cfg = F.config
      if sources_flag:
        cfg = study.with_sources(cfg, F.sources)
      run_study(study, cfg, F.workdir, out=F.out, parallel=F.parallel, slurm=F.slurm,
                slurm_args=F.slurm_args, dry_run=F.dry_run, report_only=F.report_only,
                compilation_cache=F.compilation_cache, records_dir=F.records,
                max_minutes=F.max_minutes)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(EXIT_USER_ERROR)
    except Preempted as e:
      print(f"preempted: {e}", file=sys.stderr)
      sys.exit(EXIT_PREEMPTED)

  app.run(main)


# ---- Worker / array-task entry point ----------------------------------------------------

def _worker_loop(plan: Plan) -> None:
  _enable_compilation_cache(plan)
  out = sys.stdout
  sys.stdout = sys.stderr           # stray prints go to the worker log, not the pipe
  for line in sys.stdin:
    i = int(line)
    run = plan.runs[i]
    msg = {"index": i, "ok": True}
    try:
      with stopping.StopOnSignal(_STOP_MESSAGE):
        execute_one(plan, run, log=_run_logger(run))
    except UserError as e:
      msg = {"index": i, "ok": False, "error": str(e)}
    except Preempted as e:          # SIGTERM passed on by the study: report and end
      _run_logger(run)(f"{_PREEMPTED}{e}")
      out.write(_MARK + json.dumps({"index": i, "ok": False,
                                    "error": f"{_PREEMPTED}{e}"}) + "\n")
      out.flush()
      return
    except Exception as e:  # noqa: BLE001 - report it, keep serving the queue
      traceback.print_exc()
      msg = {"index": i, "ok": False, "error": f"{type(e).__name__}: {e}"}
    out.write(_MARK + json.dumps(msg) + "\n")
    out.flush()


def cli_main(argv=None) -> None:
  """``python -m kmnist_jax.studies.runner --plan=P (--run_index=I | --worker)``."""
  from absl import app, flags
  flags.DEFINE_string("plan", None, "The study's plan file (<workdir>/plan.json).")
  flags.DEFINE_integer("run_index", None, "Run this run of the plan (an array task).")
  flags.DEFINE_bool("worker", False, "Serve run indices from stdin (side by side).")
  flags.DEFINE_bool("requeue", False, "With --run_index in a SLURM job: when the run is "
                    "preempted (SIGTERM), requeue the job (scontrol requeue) before "
                    "exiting with the preemption code.")
  flags.mark_flag_as_required("plan")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    FLAGS = flags.FLAGS
    try:
      plan = load_plan(FLAGS.plan)
      if FLAGS.worker:
        _worker_loop(plan)
        return
      if FLAGS.run_index is None or not 0 <= FLAGS.run_index < len(plan.runs):
        raise UserError(f"--run_index={FLAGS.run_index} must be in 0..{len(plan.runs) - 1}")
      # A SIGTERM before training installs its own handler (a SLURM warning or a
      # preemption while Python starts) stops the run before it starts.
      with stopping.StopOnSignal(_STOP_MESSAGE) as stop:
        _enable_compilation_cache(plan)
        run = plan.runs[FLAGS.run_index]
        _kind_fn(run.kind)
        from kmnist_jax import train  # noqa: F401 - every kind trains or loads with it
        if stop.signame:
          raise Preempted(f"stopped by {stop.signame} before the run started")
        rec, did = execute_one(plan, run, log=print)
      print(f"{run.name}: {'done' if did else 'finished before'} ({record_path(run)})")
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    except Preempted as e:
      print(f"preempted: {e}", file=sys.stderr, flush=True)
      if FLAGS.requeue:
        from kmnist_jax.studies import slurm as slurm_lib
        slurm_lib.requeue(log=lambda m: print(m, file=sys.stderr, flush=True))
      sys.exit(EXIT_PREEMPTED)

  app.run(main, argv=argv)


if __name__ == "__main__":
  pin_from_env()
  from kmnist_jax.studies import runner as _runner  # the one module object
  _runner.cli_main()
