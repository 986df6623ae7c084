"""The robustness report of several checkpoints (what experiments/robustness.py runs):
the corruption and attack evaluators on each workdir, its dataset's logistic-regression
baseline, one folder of tables and figures.

  from kmnist_jax.robustness import study
  study.run(["workdirs/mnist_cnn", "workdirs/kmnist_cnn"],
            baseline={"mnist": "workdirs/mnist_logreg",
                      "kmnist": "workdirs/kmnist_logreg"},
            out="workdirs/robustness")

Writes `out` whole (:func:`kmnist_jax.io.atomic_dir`, never half-written): report.md,
metrics.json (every number, with the run metadata), table.csv / table.md / table.json
(models x corruptions), attack.csv / .md / .json, corruption_grid_<ds>.png,
error_vs_severity_<ds>.png, per_class_corruption_<model>.png, accuracy_vs_epsilon.png,
robust_per_class_<model>.png, and corrupted/ (the sets built on first use, carried
from one report to the next).

Measured on the shared 2-core AMD EPYC CPU (load 6-10): kmnist_cnn + kmnist_logreg,
--limit=1000 --adv_limit=500 with prebuilt sets, 176 s (the same numbers as
experiments/configs/evals/robustness.py, which runs these evaluators).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

from kmnist_jax import data as data_lib
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.evaluators import attack as attack_eval
from kmnist_jax.evaluators import common
from kmnist_jax.evaluators import corruption as corruption_eval
from kmnist_jax.robustness import attacks as attacks_lib
from kmnist_jax.robustness import sets


def model_names(workdirs: Sequence[str]) -> list[str]:
  """Folder names, made unique with -<index>."""
  base = [os.path.basename(os.path.normpath(w)) or w for w in workdirs]
  return [b if base.count(b) == 1 else f"{b}-{i}" for i, b in enumerate(base)]


def _trained_on(path: str, step) -> str:
  return common.restore(path, step).config.dataset


def _check(workdirs, limit, adv_limit, seed, batch_size, grid_examples, dataset, out):
  if not [w for w in workdirs if w]:
    raise UserError("--workdirs is empty; give one or more training workdirs")
  for flag, v in (("limit", limit), ("adv_limit", adv_limit)):
    if isinstance(v, bool) or int(v) != v or v < 0:
      raise UserError(f"--{flag}={v!r} must be a non-negative integer (0: all)")
  if seed < 0:
    raise UserError(f"--seed={seed} must be >= 0")
  if batch_size < 1 or grid_examples < 1:
    raise UserError("--batch_size and --grid_examples must be positive")
  if dataset and dataset not in data_lib.DATASETS:
    raise unknown("dataset", dataset, data_lib.DATASETS)
  if os.path.isfile(out):
    raise UserError(f"--out {out} is a file; give a folder")


def run(workdirs: Sequence[str], *, baseline=(), out: str = "", step="best",
        dataset: str = "", corruption_names="all", severities="1,2,3,4,5",
        corrupted_dir=(), limit: int = 0, seed: int = 0, attacks="fgsm,pgd",
        epsilons=attacks_lib.DEFAULT_EPSILONS, pgd_steps: int = 10,
        pgd_step_size: float = 0.0, adv_limit: int = 1000,
        per_class_epsilon: float = 0.1, data_dir: str = "", batch_size: int = 1000,
        grid_examples: int = 3, cjk_font="auto", progress: bool = True,
        log=print) -> dict:
  """Evaluates every workdir (and its dataset's baseline) and writes `out`; returns
  metrics.json's content plus 'out' and 'seconds'. Every setting is checked before
  anything loads; `baseline` / `corrupted_dir`: 'DATASET=DIR' entries (a dict, a list
  or a comma-separated string; a bare baseline DIR names the dataset it was trained on).
  """
  t0 = time.perf_counter()
  workdirs = [w for w in workdirs if w]
  out = os.path.abspath(out or os.path.join(
      os.path.dirname(os.path.abspath(workdirs[0].rstrip("/"))) if workdirs else ".",
      "robustness"))
  _check(workdirs, limit, adv_limit, seed, batch_size, grid_examples, dataset, out)
  step = common.parse_step(step)
  ccfg = corruption_eval.check_config(
      corruptions=sets.parse_corruptions(corruption_names), severities=severities,
      limit=int(limit), seed=seed, batch_size=batch_size, progress=progress,
      cache_dir=os.path.join(out, "corrupted"), baseline_step=step)
  acfg = attack_eval.check_config(
      attacks=attacks, epsilons=epsilons, pgd_steps=pgd_steps,
      pgd_step_size=pgd_step_size, limit=int(adv_limit), seed=seed,
      batch_size=min(batch_size, 500), per_class_epsilon=per_class_epsilon,
      progress=progress)
  data_dir = data_dir or data_lib.default_data_dir()

  base = corruption_eval.parse_dataset_dirs(
      baseline, "--baseline", infer=lambda p: _trained_on(p, step))
  runs = []
  for w, name in zip(workdirs, model_names(workdirs)):
    ckpt = common.restore(w, step)
    runs.append((name, ckpt, common.check_dataset(ckpt, dataset or None).name))
  evaluated = list(dict.fromkeys(ds for _, _, ds in runs))
  for ds, path in base.items():
    trained = _trained_on(path, step)
    if trained != ds:
      raise UserError(f"baseline {path} was trained on {trained}, not {ds}; give a "
                      f"{ds} logreg checkpoint as --baseline={ds}=DIR")
    if ds not in evaluated:
      raise UserError(f"baseline {path} is for {ds} but the models are evaluated on "
                      f"{', '.join(evaluated)}; give a baseline trained on "
                      f"{' / '.join(evaluated)}")
  pre = {}
  for ds, path in corruption_eval.parse_dataset_dirs(
      corrupted_dir, "--corrupted_dir", infer=lambda p: sets.read_manifest(p)["dataset"]
  ).items():
    holds = sets.read_manifest(path)["dataset"]
    if holds != ds:
      raise UserError(f"--corrupted_dir {ds}={path}: {path} holds {holds} sets, not {ds}")
    if ds not in evaluated:
      raise UserError(f"--corrupted_dir {path} holds {ds} sets but the models are "
                      f"evaluated on {', '.join(evaluated)}")
    pre[ds] = os.path.abspath(path)
  ccfg["baseline"], ccfg["corrupted_dir"] = base, pre

  named_c, named_a, models = [], [], []
  for name, restored, ds in runs:
    c = corruption_eval.run(restored, data_dir=data_dir, **{**ccfg, "dataset": ds})
    log(f"{name} on {ds}: clean error {100 * c['clean_error']:.2f}%, mean corruption "
        f"error {100 * c['mean_corruption_error']:.2f}%"
        + (f", mCE {100 * c['mce']:.1f}%, relative mCE {100 * c['relative_mce']:.1f}%"
           if c.get("mce") is not None else ""))
    a = attack_eval.run(restored, data_dir=data_dir, **{**acfg, "dataset": ds})
    for k, d in a["attacks"].items():
      log(f"{k.upper()} {name}: " + ", ".join(
          f"eps {e:g} {100 * v:.1f}%" for e, v in zip(a["epsilons"], d["accuracy"])))
    named_c.append((name, corruption_eval.summarize([c])))
    named_a.append((name, attack_eval.summarize([a])))
    models.append({"name": name, "workdir": restored.workdir, "corruption": c,
                   "attack": a})

  result = {"settings": {"corruptions": list(ccfg["corruptions"]),
                         "severities": list(ccfg["severities"]), "seed": seed,
                         "limit": limit or None, "attacks": list(acfg["attacks"]),
                         "epsilons": list(acfg["epsilons"]), "pgd_steps": pgd_steps,
                         "pgd_step_size": pgd_step_size or "2.5 * eps / steps",
                         "adv_limit": adv_limit or None, "step": str(step)},
            "datasets": {ds: {"baseline": base.get(ds), "examples": next(
                m["corruption"]["examples"] for m in models
                if m["corruption"]["dataset"] == ds)} for ds in evaluated},
            "models": models}
  _write(out, result, named_c, named_a, grid_examples, cjk_font)
  result["seconds"] = round(time.perf_counter() - t0, 1)
  result["out"] = out
  log(f"robustness report of {len(runs)} models in {result['seconds']} s: "
      f"{os.path.join(out, 'report.md')}")
  return result


def _write(out, result, named_c, named_a, grid_examples, cjk_font):
  from kmnist_jax import io, reports
  from kmnist_jax.reports import Report
  cache = os.path.join(out, "corrupted")
  with io.atomic_dir(out) as tmp:
    report = Report(tmp, title="Robustness report")
    reports.corruption.render_many(named_c, report, cjk_font=cjk_font, table="table",
                                   grid_examples=grid_examples)
    reports.attack.render_many(named_a, report, cjk_font=cjk_font)
    report.metrics.update(result)
    report.write()
    if os.path.isdir(cache):  # the corrupted-set cache is carried into the new folder
      os.rename(cache, os.path.join(tmp, "corrupted"))


def settings_from_flags(flags: Mapping) -> dict:
  """run()'s keyword arguments from the script's flag values."""
  f = dict(flags)
  return {"workdirs": f["workdirs"] or [], "baseline": f["baseline"], "out": f["out"],
          "step": f["step"],
          "dataset": f["dataset"], "corruption_names": f["corruptions"],
          "severities": f["severities"], "corrupted_dir": f["corrupted_dir"],
          "limit": f["limit"], "seed": f["seed"], "attacks": f["adversarial"],
          "epsilons": f["epsilons"], "pgd_steps": f["pgd_steps"],
          "pgd_step_size": f["pgd_step_size"], "adv_limit": f["adv_limit"],
          "per_class_epsilon": f["per_class_epsilon"], "data_dir": f["data_dir"],
          "batch_size": f["batch_size"], "grid_examples": f["grid_examples"],
          "cjk_font": None if f["cjk_font"].lower() == "none" else f["cjk_font"]}
