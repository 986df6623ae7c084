r"""A study end to end: plan it, run what is unfinished (here, side by side, or as a SLURM
job array), write its report.

A study module (:mod:`kmnist_jax.studies.augmentation`, :mod:`kmnist_jax.studies.transfer`)
provides ``plan(cfg, workdir) -> Plan``, ``summarize(records, plan) -> summary`` and
``render(summary, report)``; it builds its plan with :mod:`kmnist_jax.studies.plan` and
registers its run kinds there. Calls go one way: this module and the command line
(:func:`kmnist_jax.cli.study_script`) call the study module, the study module calls
:mod:`~kmnist_jax.studies.plan`; :mod:`~kmnist_jax.studies.execute` and
:mod:`~kmnist_jax.studies.slurm` run plans and never see a study module.
"""

from __future__ import annotations

import os

from kmnist_jax import io, lock
from kmnist_jax.errors import UserError
from kmnist_jax.reports import base as report_lib
from kmnist_jax.studies import execute as execute_lib
from kmnist_jax.studies import plan as plan_lib
from kmnist_jax.studies import slurm as slurm_lib


def run_study(study, cfg, workdir: str, *, out: str = "", parallel: int = 0,
              slurm: bool = False, slurm_args: str = "", dry_run: bool = False,
              report_only: bool = False, data_dir: str = "",
              compilation_cache: bool = True, records_dir: str = "",
              max_minutes: float = 0.0, log=print) -> dict:
  """One study: plans (every bad input fails here, before anything loads), runs what is
  not finished (here, side by side, or as a SLURM array), then writes the report into
  `out` (default <workdir>/report), replaced whole. Returns the summary."""
  plan = study.plan(cfg, workdir)
  if data_dir:
    plan.options["data_dir"] = data_dir
  plan.options["compilation_cache"] = bool(compilation_cache)
  if records_dir:
    plan.set_records_dir(records_dir)
  out = out or os.path.join(workdir, "report")
  check_out(out, workdir, records_dir)
  if slurm or dry_run:
    todo = plan_lib.to_run(plan)
    if not dry_run:
      plan.save()
    slurm_lib.submit(plan, todo, extra_args=slurm_args, dry_run=dry_run, log=log)
    return {}
  failures, where = {}, "see their log.txt"
  with lock.WorkdirLock(workdir):
    if not report_only:
      failures = execute_lib.execute(plan, parallel=parallel, max_minutes=max_minutes,
                                     log=log)
    else:   # runs submitted to SLURM whose tasks ended without a record
      failures, where = slurm_lib.failures(plan, log=log), "their SLURM logs above"
      for name, msg in failures.items():
        log(f"failed: {name}: {msg}")
    summary = study.summarize(plan_lib.records(plan), plan)
    summary["failed"] = failures
    write_report(study.render, summary, out)
  log(f"report in {out}")
  if failures:
    raise UserError(f"{len(failures)} run(s) failed: {', '.join(failures)} ({where}); "
                    "the report shows the others")
  return summary


def _inside(path: str, folder: str) -> bool:
  path, folder = os.path.realpath(path), os.path.realpath(folder)
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_out(out: str, workdir: str, records_dir: str) -> None:
  """The report folder is replaced whole: it must not hold the workdir or the records."""
  for what, path in (("--workdir", workdir), ("--records", records_dir)):
    if path and _inside(path, out):
      raise UserError(f"{what}={path} lies inside --out={out}, which the report "
                      "replaces whole; put it beside the report (e.g. "
                      f"--records={out.rstrip(os.sep)}_runs) or the report elsewhere")


def write_report(render, summary: dict, out: str) -> None:
  """`render(summary, report)` into the folder `out`, replaced whole."""
  with io.atomic_dir(out) as tmp:
    rep = report_lib.Report(tmp)
    render(summary, rep)
    rep.write()
