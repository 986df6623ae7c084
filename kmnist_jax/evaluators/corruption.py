"""Corruption evaluator: MNIST-C / KMNIST-C errors per corruption and severity, CE /
mCE / relative mCE against a baseline, per-class accuracy x corruption.

  config.evals.corruption = dict(
      type="corruption",
      corruptions="all",            # or "fog,rotate" / a tuple; "identity" = clean copy
      severities=(1, 2, 3, 4, 5),
      limit=1000,                   # first N test images (0: all 10,000)
      seed=0,                       # of the corruptions
      baseline={"kmnist": "workdirs/kmnist_logreg", "mnist": "workdirs/mnist_logreg"},
      cache_dir="",                 # sets built here (default: sets.default_cache_dir())
      corrupted_dir={},             # prebuilt sets per dataset (make_corrupted.py)
  )

`baseline` maps a dataset to a logistic-regression workdir (evaluated on the same sets,
once per process and step), to a JSON file holding an earlier record of this
evaluator, or to precomputed errors ``{"clean_error": e, "errors": {name: [S]}}``.
:func:`check_checkpoints` checks the baselines and prebuilt sets against the
checkpoints before anything is evaluated (``strict``: an entry for a dataset none of
them is evaluated on is an error, as for baselines given by hand). The
corrupted sets are built once with :func:`kmnist_jax.robustness.sets.build` (verified
by SHA-256, reused across runs) and read through
:class:`kmnist_jax.robustness.sets.Suite`.
The metrics are :mod:`kmnist_jax.robustness.mce`'s (definitions there). Predictions come
from :func:`kmnist_jax.inference.predict` (the fast conv formulation).

Cost and results: docs/robustness.md, results/robustness/.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence

import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax import io, metrics
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.evaluators import common
from kmnist_jax.robustness import mce, sets
from kmnist_jax.robustness.corruptions import IDENTITY

DEFAULTS = {"dataset": "", "corruptions": "all", "severities": (1, 2, 3, 4, 5),
            "limit": 0, "seed": 0, "baseline": None, "baseline_step": "best",
            "cache_dir": "", "corrupted_dir": None, "batch_size": 1000,
            "progress": False, "strict": False}


# ---- Settings --------------------------------------------------------------------------

def parse_dataset_dirs(spec, what: str = "--baseline", *, infer=None) -> dict[str, str]:
  """{dataset: DIR} from 'kmnist=DIR,mnist=DIR', a list of 'DATASET=DIR' entries or a
  dict. The older 'DATASET:DIR' form is read the same way; a bare 'DIR' needs `infer`
  (DIR -> dataset, e.g. the dataset a checkpoint was trained on)."""
  if not spec:
    return {}
  if isinstance(spec, Mapping):
    items = [(str(k), v) for k, v in spec.items()]
  else:
    entries = spec.split(",") if isinstance(spec, str) else list(spec)
    items = []
    for e in (str(x).strip() for x in entries):
      if not e:
        continue
      head, sep, tail = e.partition("=")
      if not sep:
        head, sep, tail = e.partition(":")
        if sep and ("/" in head or os.path.exists(e)):
          sep = ""
      if not sep:
        if infer is None:
          raise UserError(f"{what} entry {e!r} names no dataset; write DATASET=DIR "
                          f"(datasets: {', '.join(sorted(data_lib.DATASETS))})")
        head, tail = infer(e), e
      items.append((head.strip(), tail.strip() if isinstance(tail, str) else tail))
  out: dict[str, str] = {}
  for ds, path in items:
    if ds not in data_lib.DATASETS:
      raise UserError(f"{what} {ds}={path}: unknown dataset {ds!r}; valid choices: "
                      f"{', '.join(sorted(data_lib.DATASETS))} (write DATASET=DIR)")
    if ds in out:
      raise UserError(f"{what} names two entries for {ds}: {out[ds]} and {path}; give "
                      "one per dataset")
    out[ds] = path
  return out


def _count(v, name: str, *, positive: bool = False) -> int:
  if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < int(positive):
    kind = "a positive integer" if positive else "a non-negative integer (0: all)"
    raise UserError(f"corruption evaluator: {name}={v!r} must be {kind}")
  return int(v)


def check_config(**cfg) -> dict:
  """The settings with defaults filled in and every value checked (one-line errors), so
  a study can refuse a bad config before anything loads."""
  bad = sorted(set(cfg) - set(DEFAULTS))
  if bad:
    raise unknown("corruption evaluator setting", bad[0], DEFAULTS)
  c = {**DEFAULTS, **cfg}
  c["corruptions"] = sets.parse_corruptions(c["corruptions"], allow_identity=True)
  if set(c["corruptions"]) == {IDENTITY}:
    raise UserError("corruption evaluator: give at least one corruption besides "
                    "'identity' (the clean images again, a sanity column)")
  c["severities"] = sets.parse_severities(c["severities"])
  for k in ("limit", "seed"):
    c[k] = _count(c[k], k)
  c["batch_size"] = _count(c["batch_size"], "batch_size", positive=True)
  if c["dataset"] and c["dataset"] not in data_lib.DATASETS:
    raise unknown("dataset", c["dataset"], data_lib.DATASETS)
  base = c["baseline"]
  if isinstance(base, Mapping) and all(isinstance(v, Mapping) for v in base.values()):
    c["baseline"] = {str(k): v for k, v in base.items()}
    for ds in c["baseline"]:
      if ds not in data_lib.DATASETS:
        raise unknown("baseline dataset", ds, data_lib.DATASETS)
  else:
    c["baseline"] = parse_dataset_dirs(base, "baseline")
  c["corrupted_dir"] = parse_dataset_dirs(c["corrupted_dir"], "corrupted_dir")
  return c


def check_checkpoints(checkpoints, **cfg) -> None:
  """Before anything is evaluated, the settings against the datasets `checkpoints` are
  evaluated on: each baseline workdir of such a dataset trained on it, each prebuilt
  folder holding its dataset's sets; with ``strict``, no baseline or prebuilt folder
  for a dataset none of them is evaluated on. One-line UserError otherwise."""
  c = check_config(**cfg)
  evaluated = list(dict.fromkeys(c["dataset"] or ck.config.dataset for ck in checkpoints))
  for ds, entry in c["baseline"].items():
    if ds not in evaluated and not c["strict"]:
      continue
    if isinstance(entry, str) and not entry.endswith(".json"):
      try:
        trained = common.restore(entry, c["baseline_step"]).config.dataset
      except UserError as e:
        raise UserError(f"baseline {ds}={entry}: {e}") from None
      if trained != ds:
        raise UserError(f"baseline {entry} was trained on {trained}, not {ds}; give a "
                        f"{ds} logreg checkpoint as baseline {ds}=DIR")
    if ds not in evaluated:
      raise UserError(f"baseline {entry} is for {ds} but the models are evaluated on "
                      f"{', '.join(evaluated)}; give a baseline trained on "
                      f"{' / '.join(evaluated)}")
  for ds, path in c["corrupted_dir"].items():
    if ds not in evaluated and not c["strict"]:
      continue
    holds = sets.read_manifest(path)["dataset"]
    if holds != ds:
      raise UserError(f"corrupted_dir {ds}={path}: {path} holds {holds} sets, not {ds}")
    if ds not in evaluated:
      raise UserError(f"corrupted_dir {path} holds {ds} sets but the models are "
                      f"evaluated on {', '.join(evaluated)}")


# ---- Running ---------------------------------------------------------------------------

def ce_metrics(table: dict, clean: float, base: dict | None = None) -> dict:
  """mce.summary over the real corruptions; 'identity' (a sanity column: the clean
  images again) is reported beside them but kept out of every mean and CE."""
  real = {n: v for n, v in table.items() if n != IDENTITY}
  if not real:
    raise UserError("corruption evaluator: give at least one corruption besides "
                    "'identity'")
  out = mce.summary(real, clean, None if base is None else
                    {n: v for n, v in base["errors"].items() if n != IDENTITY},
                    None if base is None else base["clean_error"])
  if IDENTITY in table:
    ident = [float(x) for x in np.atleast_1d(table[IDENTITY])]
    out["errors"] = {IDENTITY: ident, **out["errors"]}
    out["corruption_errors"] = {IDENTITY: float(np.mean(ident)),
                                **out["corruption_errors"]}
  return out


def _summary(evaluated: dict, labels, num_classes: int) -> dict:
  clean, table = mce.error_table(evaluated, labels)
  out = ce_metrics(table, clean)
  out["per_class"] = mce.per_class_accuracy(evaluated, labels, num_classes)
  return out


def _with_baseline(rec: dict, base: dict | None) -> dict:
  if base is None:
    return {**rec, "baseline": None}
  full = ce_metrics(rec["errors"], rec["clean_error"], base)
  return {**rec, **full, "per_class": rec["per_class"], "baseline": base}


@functools.lru_cache(maxsize=8)
def _baseline_record(path: str, step, dataset: str, data_dir, c_items: tuple):
  """A baseline workdir evaluated on a suite (cached per process: every seed of a
  study uses it)."""
  from kmnist_jax.evaluators import common
  try:
    restored = common.restore(path, step)
  except UserError as e:
    raise UserError(f"baseline {dataset}={path}: {e}") from None
  trained = restored.config.dataset
  if trained != dataset:
    raise UserError(f"baseline {path} was trained on {trained}, not {dataset}; give a "
                    f"{dataset} logreg checkpoint as baseline {dataset}=DIR")
  c = dict(c_items)
  c["corrupted_dir"] = dict(c["corrupted_dir"])
  suite = _suite(dataset, c, data_dir)
  ev = mce.evaluate(restored, suite.labels, suite.get, names=c["corruptions"],
                    severities=c["severities"], clean=suite.images,
                    batch_size=c["batch_size"], progress=c["progress"],
                    desc=f"baseline on {dataset}-C")
  rec = _summary(ev, suite.labels, data_lib.get_info(dataset).num_classes)
  return {"workdir": restored.workdir, "step": int(restored.step),
          "model": restored.config.model, **rec}


def _suite(dataset: str, c: dict, data_dir) -> sets.Suite:
  return sets.Suite(dataset, names=c["corruptions"], severities=c["severities"],
                    limit=c["limit"], seed=c["seed"], data_dir=data_dir or None,
                    prebuilt=c["corrupted_dir"].get(dataset),
                    cache_dir=c["cache_dir"] or None, progress=c["progress"])


def _given_baseline(entry, dataset: str, c: dict) -> dict:
  if isinstance(entry, str) and entry.endswith(".json"):
    if not os.path.isfile(entry):
      raise UserError(f"baseline {dataset}={entry}: no such file")
    entry = io.read_json(entry)
  if not (isinstance(entry, Mapping) and "errors" in entry and "clean_error" in entry):
    raise UserError(f"baseline for {dataset} must be a workdir, a JSON record of this "
                    "evaluator or {'clean_error': e, 'errors': {corruption: [S]}}")
  for k in ("examples", "seed"):
    want = c["limit"] if k == "examples" else c["seed"]
    if k in entry and entry[k] is not None and want and entry[k] != want:
      raise UserError(f"the given {dataset} baseline was measured with {k}={entry[k]}, "
                      f"this evaluation uses {want}; use the same settings")
  errors = {n: list(v) for n, v in entry["errors"].items()}
  if entry.get("severities") is not None:
    have = list(entry["severities"])
    lacking = [s for s in c["severities"] if s not in have]
    if lacking:
      raise UserError(f"the given {dataset} baseline has no errors at severity "
                      f"{lacking[0]}; it has {have}")
    errors = {n: [v[have.index(s)] for s in c["severities"]] for n, v in errors.items()}
  return {**{k: v for k, v in entry.items() if k != "errors"}, "errors": errors}


def run(restored, *, data_dir=None, **cfg) -> dict:
  """The record of one restored checkpoint: settings, clean error, errors [S] per
  corruption, E_c, mean corruption error, per-class accuracy x corruption, and with a
  baseline for the dataset CE_c, relative CE_c, mCE, relative mCE and the baseline's
  own numbers."""
  c = check_config(**cfg)
  ds = c["dataset"] or restored.config.dataset
  info = data_lib.get_info(ds)
  suite = _suite(ds, c, data_dir)
  ev = mce.evaluate(restored, suite.labels, suite.get, names=c["corruptions"],
                    severities=c["severities"], clean=suite.images,
                    batch_size=c["batch_size"], progress=c["progress"],
                    desc=f"{restored.config.model} on {ds}-C")
  rec = {"dataset": ds, "examples": suite.n, "corruptions": list(c["corruptions"]),
         "severities": list(c["severities"]), "seed": c["seed"],
         "corrupted_dir": suite.folder, "step": int(restored.step),
         "model": restored.config.model, "trained_on": restored.config.dataset,
         "workdir": getattr(restored, "workdir", None), "data_dir": data_dir,
         **_summary(ev, suite.labels, info.num_classes)}
  rec["clean_accuracy"] = 1.0 - rec["clean_error"]
  entry = c["baseline"].get(ds)
  base = None
  if isinstance(entry, str) and not entry.endswith(".json"):
    items = tuple(sorted((k, v) for k, v in c.items()
                         if k not in ("baseline", "corrupted_dir")))
    items += (("corrupted_dir", tuple(sorted(c["corrupted_dir"].items()))),)
    base = _baseline_record(entry, c["baseline_step"], ds, data_dir, items)
  elif entry is not None:
    base = _given_baseline(entry, ds, c)
  return io.jsonable(_with_baseline(rec, base))


# ---- Across seeds ----------------------------------------------------------------------

def _ms(values) -> dict:
  v = np.asarray([np.nan if x is None else x for x in values], np.float64)
  mean, std = metrics.mean_std(v)
  return {"mean": mean.tolist() if mean.ndim else float(mean),
          "std": std.tolist() if std.ndim else float(std)}


SCALARS = ("clean_error", "clean_accuracy", "mean_corruption_error", "mce",
           "relative_mce")


def summarize(records: Sequence[dict]) -> dict:
  """Mean and std (ddof=1) across `records` (seeds of one setting): the scalars, E_c,
  CE_c, errors per severity and per-class accuracy; the per-seed values are kept (for
  paired differences), the baseline is the first record's."""
  r0 = common.same_setting(records, ("dataset", "corruptions", "severities", "examples"),
                           "corruption")
  for r in records[1:]:
    if (r.get("mce") is None) != (r0.get("mce") is None):
      raise UserError("corruption records differ in baseline (some were evaluated "
                      "without one); summarize one setting at a time")
  names = r0["corruptions"]
  out = {"runs": len(records), **{k: r0.get(k) for k in ("dataset", "corruptions",
                                                         "severities", "examples",
                                                         "model", "workdir",
                                                         "corrupted_dir", "data_dir")},
         "per_seed": {k: [r.get(k) for r in records] for k in SCALARS}}
  for k in SCALARS:
    out[k] = _ms(out["per_seed"][k])
  out["errors"] = {n: _ms([r["errors"][n] for r in records]) for n in names}
  out["corruption_errors"] = {n: _ms([r["corruption_errors"][n] for r in records])
                              for n in names}
  if r0.get("mce") is not None:
    real = [n for n in names if n != IDENTITY]
    out["ce"] = {n: _ms([r["ce"][n] for r in records]) for n in real}
    out["relative_ce"] = {n: _ms([r["relative_ce"][n] for r in records]) for n in real}
  pc = [np.asarray(r["per_class"]["accuracy"], np.float64) for r in records]
  out["per_class"] = {"columns": r0["per_class"]["columns"], **_ms(pc)}
  out["baseline"] = r0.get("baseline")
  return io.jsonable(out)
