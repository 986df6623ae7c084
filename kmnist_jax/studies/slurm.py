r"""A study's unfinished runs as SLURM job arrays: one run per array task.

Each array task runs ``python -m kmnist_jax.studies.worker --plan=<workdir>/plan.json
--run_index=$SLURM_ARRAY_TASK_ID``: the same plan, the same cache keys and run folders
as a local run, so a study can be started on a laptop, continued on a cluster and
reported anywhere the study folder is (the report step is the study command again,
with ``--report_only``). Runs built on other runs (transfer runs on their source
models) go into a second array that starts after the first succeeded
(``--dependency=afterok:<job>``, and SLURM cancels it if the first fails:
``--kill-on-invalid-dep=yes``); array indices are the runs' positions in the plan.

Preemption and time limits: every task asks for SLURM's warning signal
(``--signal=B:TERM@<WARN_S>``: SIGTERM that long before the time limit) and may be
requeued (``--requeue``). The script ``exec`` s the worker, so the worker is the batch
step's only process and gets each SIGTERM once: from that warning, from a preemption,
from ``scancel --batch --signal=TERM``. Training then saves at its next chunk, the
worker asks SLURM to requeue the task (``scontrol requeue``, with ``--requeue``) and
exits with the preemption code (75); the requeued task resumes from the checkpoint and
ends with the record an uninterrupted run writes. Its log (``--open-mode=append``) holds
every attempt.

Submission is all or nothing: when SLURM refuses an array (bad ``--slurm_args``, an
unreachable controller), the arrays already accepted are cancelled and nothing is
recorded. Each accepted submission is appended to ``<workdir>/slurm/jobs.json`` (job
ids and the plan indices of each array): re-submitting the study command submits only
the runs without a record, and refuses while earlier tasks are still queued or running.
``--report_only`` names every task that ended without a record, with its log
``<workdir>/slurm/<study>-<job>_<index>.out`` (:func:`failures`).

The workdir must be on a file system the compute nodes share; the Python that runs
the study command is the one the tasks use. Extra sbatch options (partition, time,
GPUs, CPUs, another ``--signal``) come from ``--slurm_args`` and override the script's.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

from kmnist_jax import io
from kmnist_jax.errors import UserError
from kmnist_jax.studies import plan as plan_lib

JOBS = "jobs.json"
# Seconds of warning before a time limit (sbatch --signal=B:TERM@WARN_S). SLURM sends it
# up to a minute earlier than asked (it checks time limits periodically); a run needs
# one chunk to save, so two minutes leave room for slow chunks.
WARN_S = 120
# squeue states of a task that will still run (or runs).
ACTIVE = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED",
                    "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "STOPPED",
                    "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"})


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
      "#SBATCH --requeue",
      "#SBATCH --open-mode=append",
      f"#SBATCH --signal=B:TERM@{WARN_S}",
      "# One run of the study per array task (kmnist_jax.studies.slurm). The worker",
      "# replaces this shell (exec): SLURM's SIGTERM (time limit warning, preemption,",
      "# scancel --batch --signal=TERM) reaches it once; it saves at the next chunk,",
      "# requeues the task and exits 75; the requeued task resumes.",
      "set -euo pipefail",
      f"cd {shlex.quote(io.REPO)}",
      f"exec {shlex.quote(python)} -m kmnist_jax.studies.worker "
      f"--plan={shlex.quote(plan_path)} --run_index=\"$SLURM_ARRAY_TASK_ID\" --requeue",
      ""])


def commands(plan, todo, *, extra_args: str = "") -> tuple[str, list[list[str]]]:
  """(script path, sbatch argv per stage; stage k > 0 depends on ``$JOB<k-1>``)."""
  path = os.path.join(os.path.abspath(plan.workdir), "slurm", f"{plan.study}.sbatch")
  try:
    extra = shlex.split(extra_args)
  except ValueError as e:
    raise UserError(f"--slurm_args={extra_args!r}: {e}") from None
  out = []
  for k, idx in enumerate(stages(plan, todo)):
    cmd = ["sbatch", "--parsable", f"--array={ranges(idx)}"]
    if k:
      cmd += [f"--dependency=afterok:$JOB{k - 1}", "--kill-on-invalid-dep=yes"]
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


# ---- Talking to SLURM -------------------------------------------------------------------

def _slurm(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
  """`cmd` (a SLURM command), its output captured; a missing command or no answer in
  `timeout` seconds is one UserError line."""
  try:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
  except FileNotFoundError:
    raise UserError(f"--slurm: {cmd[0]} is not on PATH (run on a SLURM login node, or "
                    "see the commands with --dry_run)") from None
  except subprocess.TimeoutExpired:
    raise UserError(f"--slurm: {cmd[0]} did not answer within {timeout:.0f} s (is the "
                    "SLURM controller reachable? `sinfo` tells)") from None


def message(p: subprocess.CompletedProcess) -> str:
  """SLURM's own words from a failed command: its stderr lines on one line."""
  lines = [ln.strip() for ln in (p.stderr or p.stdout or "").splitlines() if ln.strip()]
  text = "; ".join(lines) or f"exit code {p.returncode}, no message"
  return text[:400]


def log_path(plan, job: str, index: int) -> str:
  """The log of array task `index` of job `job` (the script's --output)."""
  return os.path.join(os.path.abspath(plan.workdir), "slurm",
                      f"{plan.study}-{job}_{index}.out")


def _jobs_file(plan) -> str:
  return os.path.join(os.path.abspath(plan.workdir), "slurm", JOBS)


def submissions(plan) -> list[dict]:
  """The accepted submissions, oldest first: [{'jobs': [id per array], 'arrays':
  [[plan indices] per array]}] (empty: never submitted)."""
  path = _jobs_file(plan)
  if not os.path.exists(path):
    return []
  return list(io.read_json(path).get("submissions", []))


def latest_tasks(plan) -> dict[int, str]:
  """{plan index: the job id of the array that ran it last}."""
  out: dict[int, str] = {}
  for sub in submissions(plan):
    for job, idx in zip(sub["jobs"], sub["arrays"]):
      for i in idx:
        out[int(i)] = str(job)
  return out


def queue() -> dict[tuple[str, int], tuple[str, str]]:
  """This user's array tasks SLURM still holds: {(array job id, task index): (state,
  reason)}."""
  p = _slurm(["squeue", "--me", "--noheader", "--array", "--format=%F|%K|%T|%r"])
  if p.returncode != 0:
    raise UserError(f"--slurm: squeue failed: {message(p)}")
  out = {}
  for line in p.stdout.splitlines():
    parts = line.strip().split("|")
    if len(parts) == 4 and parts[1].isdigit():
      out[(parts[0], int(parts[1]))] = (parts[2], parts[3])
  return out


def waiting(plan) -> dict[int, tuple[str, str]]:
  """{plan index: (job, state)} of the runs whose latest task SLURM still holds and
  will run (not those waiting for a failed task: they never start)."""
  latest = latest_tasks(plan)
  if not latest:
    return {}
  held = queue()
  out = {}
  for i, job in latest.items():
    state, reason = held.get((job, i), ("", ""))
    if state in ACTIVE and reason != "DependencyNeverSatisfied":
      out[i] = (job, state)
  return out


def _cancel(jobs: list[str]) -> str:
  """Cancels `jobs`; '' or what went wrong."""
  if not jobs:
    return ""
  p = _slurm(["scancel", *jobs])
  return "" if p.returncode == 0 else message(p)


def submit(plan, todo, *, extra_args: str = "", dry_run: bool = False, log=print
           ) -> list[str]:
  """Submits the arrays (or, dry run, prints the commands and the script). Returns the
  job ids (the placeholders ``$JOB<k>`` in a dry run). All or nothing: when SLURM
  refuses an array, the ones it accepted are cancelled and UserError says so."""
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
  busy = {i: v for i, v in waiting(plan).items() if i in set(todo)}
  if busy:
    jobs = sorted({job for job, _ in busy.values()}, key=int)
    held = "; ".join(f"job {j}: tasks {ranges(i for i, v in busy.items() if v[0] == j)}"
                     for j in jobs)
    raise UserError(
        f"{len(busy)} unfinished run(s) of {plan.study} are still in SLURM's queue "
        f"({held}); wait for them (squeue --me) or cancel them (scancel "
        f"{' '.join(jobs)}), then submit again")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  io.atomic_write(path, text)
  jobs: list[str] = []
  for k, cmd in enumerate(cmds):
    cmd = [a.replace(f"$JOB{k - 1}", jobs[-1]) if k else a for a in cmd]
    p = _slurm(cmd)
    job = p.stdout.strip().split(";")[0] if p.returncode == 0 else ""
    if not job.isdigit():
      what = f"array {k + 1} of {len(cmds)}" if len(cmds) > 1 else "the array"
      undo = _cancel(jobs)
      done = (f"; the {len(jobs)} array(s) it had accepted (job {', '.join(jobs)}) "
              + (f"could not be cancelled ({undo}): cancel them by hand" if undo else
                 "were cancelled") if jobs else "")
      raise UserError(f"sbatch refused {what}: {message(p)}; nothing was submitted"
                      f"{done}")
    jobs.append(job)
    log(f"submitted {shlex.join(cmd)} -> job {job}")
  subs = submissions(plan)
  subs.append({"jobs": jobs, "arrays": stages(plan, todo)})
  io.write_json(_jobs_file(plan), {"submissions": subs})
  log("when the jobs are done (squeue --me), write the report with the same command "
      "and --report_only")
  return jobs


def _last_line(path: str) -> str:
  try:
    with open(path, errors="replace") as f:
      lines = [ln.strip() for ln in f.read()[-20000:].splitlines() if ln.strip()]
  except OSError:
    return ""
  lines = [ln for ln in lines if not ln.startswith("slurmstepd")] or lines
  return lines[-1][:300] if lines else ""


def failures(plan, log=print) -> dict[str, str]:
  """{run name: why} of the submitted runs whose task ended without a record (each
  with its log); runs whose tasks SLURM still holds are logged as waiting. Empty when
  the study was never submitted."""
  latest = latest_tasks(plan)
  todo = [i for i in sorted(latest) if not plan_lib.is_finished(plan.runs[i])]
  if not todo:
    return {}
  try:
    held = queue()
  except UserError as e:
    log(f"warning: the state of {len(todo)} unfinished SLURM task(s) is unknown: {e}")
    return {}
  out = {}
  for i in todo:
    job, run = latest[i], plan.runs[i]
    state, reason = held.get((job, i), ("", ""))
    path = log_path(plan, job, i)
    if state in ACTIVE and reason != "DependencyNeverSatisfied":
      log(f"waiting: {run.name}: SLURM task {job}_{i} is {state.lower()}")
      continue
    if not os.path.exists(path):
      out[run.name] = (f"SLURM task {job}_{i} ended without running (no log {path}; "
                       "cancelled, or a run it is built on failed)")
      continue
    last = _last_line(path)
    out[run.name] = (f"SLURM task {job}_{i} ended without a record; log {path}"
                     + (f" (last line: {last})" if last else ""))
  return out


def requeue(log=print) -> bool:
  """Inside a SLURM job: ask SLURM to requeue this job (or array task); it starts
  again when resources allow. False (and a warning) when not in a job or refused."""
  job = os.environ.get("SLURM_JOB_ID")
  if not job:
    return False
  if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
    job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
  try:
    p = _slurm(["scontrol", "requeue", job], timeout=60)
  except UserError as e:
    log(f"warning: could not requeue SLURM job {job}: {e}; submit again to continue")
    return False
  if p.returncode != 0:
    log(f"warning: could not requeue SLURM job {job}: {message(p)}; submit again to "
        "continue")
    return False
  log(f"requeued SLURM job {job}: it starts again (from its checkpoint, if it saved "
      "one) when SLURM schedules it")
  return True
