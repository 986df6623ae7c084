r"""A study's unfinished runs as SLURM job arrays: one run per array task.

Each array task runs ``python -m kmnist_jax.studies.runner --plan=<workdir>/plan.json
--run_index=$SLURM_ARRAY_TASK_ID``: the same plan, the same cache keys and run folders
as a local run, so a study can be started on a laptop, continued on a cluster and
reported anywhere the study folder is (the report step is the study command again,
with ``--report_only``). Runs built on other runs (transfer runs on their source
models) go into a second array that starts after the first succeeded
(``--dependency=afterok:<job>``); array indices are the runs' positions in the plan.

The workdir must be on a file system the compute nodes share; the Python that runs
the study command is the one the tasks use. Extra sbatch options (partition, time,
GPUs, CPUs) come from ``--slurm_args``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

from kmnist_jax import io
from kmnist_jax.errors import UserError


def ranges(indices) -> str:
  """'0-3,7,9-10' from sorted indices (the --array syntax)."""
  out, idx = [], sorted(indices)
  i = 0
  while i < len(idx):
    j = i
    while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
      j += 1
    out.append(str(idx[i]) if i == j else f"{idx[i]}-{idx[j]}")
    i = j + 1
  return ",".join(out)


def stages(plan, todo) -> list[list[int]]:
  """`todo` (plan indices) split by dependency depth among the unfinished runs."""
  todo = sorted(todo)
  pending = set(todo)
  depth: dict[int, int] = {}
  for i in todo:                                  # the plan is in dependency order
    deps = [plan.index(d) for d in plan.runs[i].waits_for]
    depth[i] = 1 + max([depth[d] for d in deps if d in pending], default=-1)
  out: list[list[int]] = []
  for i in todo:
    while len(out) <= depth[i]:
      out.append([])
    out[depth[i]].append(i)
  return out


def script(plan, *, python: str = sys.executable) -> str:
  wd = os.path.abspath(plan.workdir)
  plan_path = os.path.join(wd, "plan.json")
  return "\n".join([
      "#!/bin/bash",
      f"#SBATCH --job-name={plan.study}",
      f"#SBATCH --output={wd}/slurm/%x-%A_%a.out",
      "#SBATCH --ntasks=1",
      "# One run of the study per array task (kmnist_jax.studies.slurm).",
      "set -euo pipefail",
      f"cd {shlex.quote(io.REPO)}",
      f"exec {shlex.quote(python)} -m kmnist_jax.studies.runner "
      f"--plan={shlex.quote(plan_path)} --run_index=\"$SLURM_ARRAY_TASK_ID\"", ""])


def commands(plan, todo, *, extra_args: str = "") -> tuple[str, list[list[str]]]:
  """(script path, sbatch argv per stage; stage k > 0 depends on ``$JOB<k-1>``)."""
  path = os.path.join(os.path.abspath(plan.workdir), "slurm", f"{plan.study}.sbatch")
  extra = shlex.split(extra_args)
  out = []
  for k, idx in enumerate(stages(plan, todo)):
    cmd = ["sbatch", "--parsable", f"--array={ranges(idx)}"]
    if k:
      cmd.append(f"--dependency=afterok:$JOB{k - 1}")
    out.append(cmd + extra + [path])
  return path, out


def render(cmd: list[str]) -> str:
  """A shell line of `cmd`, with the ``$JOB<k>`` placeholders left for the shell."""
  out = []
  for a in cmd:
    if a.startswith("--dependency=afterok:$JOB"):
      out.append(a.replace("$JOB", '"$JOB') + '"')
    else:
      out.append(shlex.quote(a))
  return " ".join(out)


def submit(plan, todo, *, extra_args: str = "", dry_run: bool = False, log=print
           ) -> list[str]:
  """Submits the arrays (or, dry run, prints the commands and the script). Returns the
  job ids (the placeholders ``$JOB<k>`` in a dry run)."""
  if not todo:
    log(f"{plan.study}: every run has finished; nothing to submit (write the report "
        "with --report_only)")
    return []
  path, cmds = commands(plan, todo, extra_args=extra_args)
  text = script(plan)
  if dry_run:
    log(f"# {len(todo)} runs in {len(cmds)} array(s); script {path}:")
    for k, cmd in enumerate(cmds):
      log(f"JOB{k}=$({render(cmd)})")
    log("# ---- " + path)
    log(text)
    return [f"$JOB{k}" for k in range(len(cmds))]
  if shutil.which("sbatch") is None:
    raise UserError("--slurm: sbatch is not on PATH (run on a SLURM login node, or see "
                    "the commands with --dry_run)")
  os.makedirs(os.path.join(os.path.dirname(path)), exist_ok=True)
  io.atomic_write(path, text)
  jobs: list[str] = []
  for k, cmd in enumerate(cmds):
    cmd = [a.replace(f"$JOB{k - 1}", jobs[-1]) if k else a for a in cmd]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
      raise UserError(f"sbatch failed ({p.returncode}): {p.stderr.strip()[:300]}")
    jobs.append(p.stdout.strip().split(";")[0])
    log(f"submitted {shlex.join(cmd)} -> job {jobs[-1]}")
  log("when the jobs are done, write the report with the same command and "
      "--report_only")
  return jobs
