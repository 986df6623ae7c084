r"""A study's plan: its runs, their cache keys, their records, and the registry of run kinds.

A study is a :class:`Plan`: a list of :class:`Run` s (config overrides x seeds, each
with the evaluators of ``config.evals``) plus the study folder. Each run lives in
``<study_workdir>/runs/<readable-name>-<key[:12]>/`` and ends with ``record.json``
(key, resolved config, seed, the run's results, its evaluator records, io.run_meta()).

The cache rule (one rule for every study, sweep and benchmark):

* a run's **key** is the SHA-256 of its kind, its full resolved config (every field
  after overrides and validation, model defaults filled in; only the result-neutral
  fields, :data:`kmnist_jax.config.RESULT_NEUTRAL`, are left out) and the keys of the
  runs it is built on (``deps``: a transfer run's source model; ``after`` only orders:
  a baseline an evaluator compares with). Changing a source setting changes the
  source's key, so the source and every run built on it are redone, and nothing else;
* a run whose ``record.json`` holds its key is finished and skipped; an evaluator
  whose settings changed is re-run on the kept checkpoint, without retraining.

Run kinds: :data:`KINDS` maps a kind to the function that executes one run of it
(``fn(run, plan, log) -> results dict``). ``train`` and ``external`` are defined here;
a study module registers its own with :func:`run_kind` when it is imported, so the
study modules call this module and never the other way round. A plan loads anywhere
(its file is data); a process that executes its runs imports the study modules first
(:mod:`kmnist_jax.studies.worker`).

Execution: :mod:`kmnist_jax.studies.execute` (here, side by side) and
:mod:`kmnist_jax.studies.slurm` (SLURM job arrays).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence

from kmnist_jax import config as config_lib
from kmnist_jax import io
from kmnist_jax.errors import UserError

RUNS = "runs"
RECORD = "record.json"
PLAN = "plan.json"
REF = "@run:"      # in an evaluator setting: the workdir of that run of the plan

# Run kind -> fn(run, plan, log) -> the run's results (a JSON-able dict).
KINDS: dict[str, Callable] = {}


def run_kind(name: str) -> Callable:
  """Decorator: registers `fn` as the executor of runs of kind `name`."""
  def register(fn: Callable) -> Callable:
    KINDS[name] = fn
    return fn
  return register


def kind_fn(kind: str) -> Callable:
  """The executor of `kind`; one UserError line naming the registered kinds if none."""
  if kind not in KINDS:
    raise UserError(f"unknown run kind {kind!r}; valid choices: {', '.join(KINDS)} (a "
                    "study module registers its kinds when imported)")
  return KINDS[kind]


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
  """What a run's key hashes: `config` less the result-neutral fields, and less the
  fields added later (config.LATER_FIELDS) while at their defaults, so older records
  keep their key."""
  later = config_lib.later_defaults()
  return {k: v for k, v in config.items()
          if k not in config_lib.RESULT_NEUTRAL and not (k in later and v == later[k])}


def digest(obj) -> str:
  return hashlib.sha256(io.dumps_json(obj).encode()).hexdigest()


def run_key(run: Run, dep_keys: dict) -> str:
  return digest({"kind": run.kind, "config": key_config(run.config),
                 "deps": {d: dep_keys[d] for d in run.deps}})


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
    for r in self.runs:   # a run's kind is looked up when it executes (kind_fn)
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
      # An evaluator's key: its settings, a referenced run by that run's key, and the
      # checkpoint it reads when that is not the default (the last one).
      step = self.eval_step
      r.eval_keys = {n: digest(map_refs(c, ref_key) if step == "latest" else
                               {"settings": map_refs(c, ref_key), "step": step})[:16]
                     for n, c in r.evals.items()}
    self.set_records_dir(self.options.get("records_dir", ""))

  @property
  def eval_step(self) -> str:
    """The checkpoint every evaluator of the plan reads (option ``eval_step``)."""
    return self.options.get("eval_step", "latest")

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
  d = config_lib.to_dict(cfg)
  for b in blocks:
    d.pop(b, None)
  return config_lib.from_dict(d)


def evals_dict(cfg) -> dict:
  """``config.evals`` as a plain dict {name: {type: ..., **kwargs}} (empty if none),
  every entry checked by the evaluator registry."""
  if "evals" not in cfg or not cfg.evals:
    return {}
  # Deferred: the evaluators import JAX; a study without evaluators plans without it.
  from kmnist_jax import evaluators
  evals = config_lib.to_dict(cfg)["evals"]
  # Unknown type / bad setting -> UserError. A baseline the study provides (one of its
  # own runs, filled in per run) is checked when the plan fills it in.
  evaluators.from_config({n: {k: v for k, v in e.items()
                              if not (k == "baseline" and v == "study")}
                          for n, e in evals.items()})
  return evals


STUDY_BASELINE = "study"     # corruption evaluator baseline: the study's own runs


def baseline_runs(study, base, evals) -> list[Run]:
  """The mCE baselines (``study.baseline_config``, e.g. '{dataset}_logreg'): one train
  run ``baseline-<dataset>`` per dataset of ``study.datasets``, when a corruption
  evaluator asks for the study's baseline (``baseline='study'``); `base` gives the data
  source fields."""
  # Deferred: the training loop imports JAX; this only needs its config resolver.
  from kmnist_jax import train
  wants = [n for n, e in evals.items() if e.get("type", n) == "corruption"
           and e.get("baseline", STUDY_BASELINE) == STUDY_BASELINE]
  template = study.get("baseline_config", "")
  if not wants:
    return []
  if not template:
    raise UserError(f"config.evals.{wants[0]}: baseline '{STUDY_BASELINE}' needs "
                    "config.study.baseline_config (e.g. '{dataset}_logreg')")
  runs = []
  for ds in study.datasets:
    b = config_lib.load_file(template.format(dataset=ds))
    for f in ("data_dir", "data_source", "tfds_dir"):
      b[f] = base[f]
    b.dataset, b.progress, b.tensorboard = ds, False, False
    config_lib.validate(b)
    runs.append(Run(name=f"baseline-{ds}", kind="train",
                    config=train.resolved_config(b), seed=int(b.seed),
                    info={"role": "baseline", "dataset": ds}))
  return runs


def with_baseline(evals: dict, dataset: str, after: tuple) -> dict:
  """`evals` with each study-baseline corruption evaluator pointed at the run
  ``after[0]`` (that dataset's baseline run)."""
  out = {}
  for n, e in evals.items():
    e = dict(e)
    if (e.get("type", n) == "corruption" and after
        and e.get("baseline", STUDY_BASELINE) == STUDY_BASELINE):
      e["baseline"] = {dataset: REF + after[0]}
    out[n] = e
  return out


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


def eval_record(rec: dict | None, name: str) -> dict:
  """The record of evaluator `name` in a run's record ({} if absent)."""
  return ((rec or {}).get("evals", {}).get(name) or {}).get("record") or {}


def records(plan: Plan) -> list[dict | None]:
  """The finished runs' records, in plan order (None: not finished)."""
  return [read_record(r) for r in plan.runs]


# ---- The built-in run kinds -------------------------------------------------------------

@run_kind("train")
def train_run(run: Run, plan: Plan, log) -> dict:
  """kind 'train': ``train.train_and_evaluate`` in the run's workdir (resumes)."""
  # Deferred: the training loop imports JAX, Flax and Orbax; planning never needs them.
  from kmnist_jax import train
  cfg = config_lib.from_dict(run.config)
  cfg.progress = False
  if plan.options.get("data_dir"):
    cfg.data_dir = plan.options["data_dir"]
  return train.train_and_evaluate(cfg, run.workdir, log=log)


@run_kind("external")
def external_run(run: Run, plan: Plan, log) -> dict:
  """kind 'external': a training workdir given by the user (its key: its saved config
  and checkpoint step); nothing trains."""
  del plan, log
  path = os.path.join(run.config["workdir"], "results.json")
  return io.read_json(path) if os.path.exists(path) else {}
