"""SLURM for real: a one-node cluster on localhost (launch/slurm_local.sh: munged,
slurmctld, slurmd) runs what users run on a cluster.

* a tiny augmentation study submitted with --slurm: its array tasks run the plan; one
  task preempted by ``scancel --batch --signal=TERM``, the other by its time limit
  (SLURM's warning signal): both save at the next chunk, exit 75, are requeued and
  resume; --report_only then gives the records a local run of the same plan gives;
* a tiny transfer study: the transfer run waits for its source (afterok); a task that
  fails is reported with its log and its dependants are never started; the same
  command again submits only the unfinished runs;
* launch/slurm.sbatch: two processes of one run under srun (JAX's distributed runtime
  on the coordinator SLURM names) stopped by SIGTERM at the same step, requeued,
  resumed: the numbers equal one process with the same global batch, bit for bit;
* bad input: a refused sbatch option, an unreachable controller, a second array
  refused after the first was accepted (it is cancelled): one error line, nothing left
  submitted, no submission recorded.

The cluster: brought up by CI (.ci/run) before the tests, else by the fixture when this
runs as root with SLURM installed (and taken down after). Elsewhere (not root, SLURM not
installed, or .ci/run could not start it: $KMNIST_JAX_SLURM_SKIP) the tests skip and
say why; under CI as root they must run. All tests are in this one file (one xdist
worker).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from script_checks import one_error_line

from kmnist_jax import xla_cpu
from kmnist_jax.studies import plan as plan_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLURM_DIR = os.environ.get("KMNIST_JAX_SLURM_DIR", "/tmp/kmnist_jax_slurm")
CONF = os.path.join(SLURM_DIR, "slurm.conf")
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])



def slurm_env(**extra) -> dict:
  env = dict(os.environ, SLURM_CONF=CONF, PYTHONPATH=REPO, XLA_FLAGS="")
  env.update(extra)
  return env


def cmd(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
  return subprocess.run(list(args), cwd=REPO, env=env or slurm_env(),
                        capture_output=True, text=True, timeout=timeout)


def node_up(env) -> bool:
  """Whether the cluster answers with its node up (idle, or busy with earlier jobs)."""
  if not os.path.exists(env["SLURM_CONF"]):   # not up (sinfo would retry for seconds)
    return False
  try:
    p = cmd("sinfo", "--noheader", "--format=%T", env=env, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return False
  return p.returncode == 0 and any(s in p.stdout for s in ("idle", "mix", "alloc"))


@pytest.fixture(scope="module")
def cluster():
  """The local cluster's environment (SLURM_CONF); brings it up if needed."""
  env = slurm_env()
  started = False
  if not node_up(env):
    why = os.environ.get("KMNIST_JAX_SLURM_SKIP", "")   # .ci/run: `up` failed, and why
    if why:
      print(f"skipping the SLURM cluster tests: {why}", file=sys.stderr)
      pytest.skip(why)
    if os.geteuid() != 0:
      why = ("not root: `sudo bash launch/slurm_local.sh up` starts a one-node SLURM "
             "cluster here")
    elif not shutil.which("slurmctld", path=SBIN) and not os.environ.get("CI"):
      why = ("SLURM is not installed: `bash launch/slurm_local.sh up` (root) installs "
             "slurm-wlm and munge and starts the cluster")
    if why:
      if os.environ.get("CI") and os.geteuid() == 0:
        pytest.fail(f"CI must run the SLURM tests: {why}")
      print(f"skipping the SLURM cluster tests: {why}", file=sys.stderr)
      pytest.skip(why)
    p = cmd("bash", "launch/slurm_local.sh", "up", timeout=600)
    if p.returncode != 0:
      msg = f"launch/slurm_local.sh up failed: {p.stderr.strip()[-1000:]}"
      if os.environ.get("CI"):
        pytest.fail(msg)
      pytest.skip(msg)
    started = True
  yield env
  if started:
    cmd("bash", "launch/slurm_local.sh", "down", timeout=300)


def study(name, *args, env, timeout=300) -> subprocess.CompletedProcess:
  return cmd(sys.executable, f"experiments/{name}", *args, env=env, timeout=timeout)


def job_ids(stdout: str) -> list[str]:
  return re.findall(r"-> job (\d+)", stdout)


def held(env) -> set[str]:
  """Array job ids (and plain job ids) SLURM still holds."""
  p = cmd("squeue", "--me", "--noheader", "--format=%F", env=env)
  assert p.returncode == 0, p.stderr
  return set(p.stdout.split())


def wait_for(pred, what: str, timeout: float, every: float = 0.2):
  t0 = time.time()
  while time.time() - t0 < timeout:
    v = pred()
    if v:
      return v
    time.sleep(every)
  raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_jobs(jobs, env, timeout=400):
  wait_for(lambda: not (set(jobs) & held(env)), f"jobs {jobs} to end", timeout, 1.0)


def checkpoint_steps(workdir) -> list[int]:
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def text(path) -> str:
  return open(path).read() if os.path.exists(path) else ""


def task_pid(workdir, index: int) -> int | None:
  """The process of array task `index` of the study in `workdir` (its worker), if up."""
  plan = f"--plan={os.path.abspath(os.path.join(workdir, 'plan.json'))}"
  for d in os.listdir("/proc"):
    if not d.isdigit():
      continue
    try:
      argv = open(f"/proc/{d}/cmdline", "rb").read().decode().split("\0")
    except OSError:
      continue
    if plan in argv and f"--run_index={index}" in argv and "--requeue" in argv:
      return int(d)
  return None


def elapsed_s(job: str, env) -> int:
  """Seconds job `job` has run (squeue's [days-][hours:]minutes:seconds)."""
  p = cmd("squeue", "--noheader", "--format=%M", f"--jobs={job}", env=env)
  assert p.returncode == 0 and p.stdout.strip(), p.stdout + p.stderr
  days, _, hms = p.stdout.strip().rpartition("-")
  secs = 0
  for part in hms.split(":"):
    secs = 60 * secs + int(part)
  return secs + 86400 * int(days or 0)


def sigterm_pending(pid: int) -> bool:
  """Whether SIGTERM waits (pending) for process `pid` (e.g. while it is stopped)."""
  try:
    lines = open(f"/proc/{pid}/status").readlines()
  except OSError:   # it has ended
    return False
  for line in lines:
    if line.startswith(("ShdPnd:", "SigPnd:")) and int(line.split()[1], 16) & (
        1 << (signal.SIGTERM - 1)):
      return True
  return False


NUMBERS = ("test_accuracy", "test_balanced_accuracy", "test_loss", "test_confusion",
           "train_loss", "epochs", "finished")


def same_records(a: dict, b: dict, what: str):
  assert a["key"] == b["key"], what
  for k in NUMBERS:
    assert a["results"].get(k) == b["results"].get(k), (what, k)
  assert a["evals"].keys() == b["evals"].keys(), what


TIMING = re.compile(r"time|elapsed|_s$|per_s|wall")


def numbers(obj):
  """`obj` less its timings and environment: what must be equal run to run."""
  if isinstance(obj, dict):
    return {k: numbers(v) for k, v in obj.items()
            if not TIMING.search(k) and k not in ("env", "meta")}
  if isinstance(obj, list):
    return [numbers(v) for v in obj]
  return obj


def history(workdir) -> list[dict]:
  drop = {"epoch_time_s", "train_img_per_s", "time_s", "elapsed_s", "wall_s"}
  return [{k: v for k, v in json.loads(line).items() if k not in drop and "time" not in k}
          for line in open(os.path.join(workdir, "metrics.jsonl"))]


def local_reference(plan_path: str, workdir: str) -> subprocess.Popen:
  """The same plan run here, one run at a time, in `workdir` (a background process)."""
  code = ("import sys; from kmnist_jax import io\n"
          "from kmnist_jax.studies import augmentation, execute, plan, transfer\n"
          "d = io.read_json(sys.argv[1]); d['workdir'] = sys.argv[2]\n"
          "f = execute.execute(plan.Plan.from_json(d), parallel=1, log=print)\n"
          "sys.exit(1 if f else 0)\n")
  env = slurm_env()
  xla_cpu.apply(env)     # the XLA devices a study script (and so its tasks) gets
  return subprocess.Popen([sys.executable, "-c", code, plan_path, workdir], cwd=REPO,
                          env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


# ---- A study's array: preemption, time limit, requeue, report ---------------------------

REDUCED = "experiments/configs/augment_study_reduced.py"
# Two runs of a small CNN, a checkpoint every epoch: each is stopped after its first.
AUG = ["--config.train_limit=4096", "--config.test_limit=500", "--config.batch_size=64",
       "--config.eval_batch_size=250", "--config.num_epochs=12",
       "--config.parallel=single", "--config.progress_updates_per_epoch=4",
       "--config.model_kwargs.widths=(8,16)",
       "--config.study.datasets=('kmnist',)", "--config.study.grid_examples=2",
       "--config.study.seeds=(0,)", "--config.study.measure_costs=False",
       "--config.study.policies=('none','crop(pad=2)')"]


@pytest.mark.slow   # real SLURM jobs (with real, tiny, training runs)
def test_study_array_preempted_and_time_limited_tasks_resume(cluster, data_dir,
                                                             tmp_path):
  env = slurm_env(KMNIST_JAX_DATA_DIR=data_dir)
  wd = str(tmp_path / "aug")
  p = study("augmentation_study.py", f"--config={REDUCED}", f"--workdir={wd}", *AUG,
            "--slurm", env=env)
  assert p.returncode == 0, p.stderr[-3000:]
  (job,) = job_ids(p.stdout)
  assert "--array=0-1" in p.stdout
  plan = plan_lib.load_plan(os.path.join(wd, "plan.json"))
  subs = json.load(open(os.path.join(wd, "slurm", "jobs.json")))["submissions"]
  assert subs == [{"jobs": [job], "arrays": [[0, 1]]}]
  ref = local_reference(os.path.join(wd, "plan.json"), str(tmp_path / "local"))
  try:
    logs = [os.path.join(wd, "slurm", f"augmentation_study-{job}_{i}.out")
            for i in range(2)]
    runs = plan.runs
    # Task 0: preempted by hand once its first checkpoint is written.
    wait_for(lambda: checkpoint_steps(runs[0].workdir), "task 0's first checkpoint", 240)
    p = cmd("scancel", "--batch", "--signal=TERM", f"{job}_0", env=env)
    assert p.returncode == 0, p.stderr
    # Task 1: its time limit. Once it trains (a first checkpoint), it is frozen
    # (SIGSTOP, so that it cannot finish first) and given a limit less than the
    # script's warning time (--signal=B:TERM@120) away: SLURM's next time check (every
    # 30 s) sends the warning (with SIGCONT, which thaws it). Once the task has it, the
    # limit is lifted (so that the requeued task is not warned again); the task stops
    # mid-training at its next chunk.
    wait_for(lambda: checkpoint_steps(runs[1].workdir), "task 1's first checkpoint", 240)
    pid = wait_for(lambda: task_pid(wd, 1), "task 1's process", 30)
    os.kill(pid, signal.SIGSTOP)
    try:
      used = elapsed_s(f"{job}_1", env)
      p = cmd("scontrol", "update", f"JobId={job}_1", f"TimeLimit={used // 60 + 2}",
              env=env)
      assert p.returncode == 0, p.stderr
      wait_for(lambda: sigterm_pending(pid) or "received SIGTERM" in text(logs[1]),
               "SLURM's time limit warning to task 1", 180)
      p = cmd("scontrol", "update", f"JobId={job}_1", "TimeLimit=UNLIMITED", env=env)
      assert p.returncode == 0, p.stderr
    finally:
      with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
    wait_jobs([job], env)
    assert ref.wait(timeout=600) == 0, ref.stdout.read()[-3000:]
  finally:
    if ref.poll() is None:
      ref.kill()
      ref.wait()
  for i, log in enumerate(logs):
    out = text(log)
    stop = [int(s) for s in re.findall(r"stopped by SIGTERM at step (\d+) \(epoch", out)]
    assert stop and 0 < stop[-1] < 12 * 64, out[-3000:]
    assert f"requeued SLURM job {job}_{i}" in out
    assert f"Resuming from {runs[i].workdir}/checkpoints/{stop[-1]}" in out, out[-3000:]
    assert out.rstrip().endswith(f"{runs[i].name}: done ({plan_lib.record_path(runs[i])})")
  # The records, and every epoch's numbers, are those of the uninterrupted local run.
  local = plan_lib.Plan.from_json({**plan.to_json(), "workdir": str(tmp_path / "local")})
  for r, lr in zip(plan.runs, local.runs):
    same_records(plan_lib.read_record(r), plan_lib.read_record(lr), r.name)
    assert history(r.workdir) == history(lr.workdir), r.name
  p = study("augmentation_study.py", f"--config={REDUCED}", f"--workdir={wd}", *AUG,
            "--report_only", env=env)
  assert p.returncode == 0, p.stderr[-3000:]
  table = open(os.path.join(wd, "report", "table.csv")).read()
  assert "none" in table and "crop" in table


# ---- Runs built on runs: afterok, a failed task, re-submission --------------------------

TRANSFER = ["--config.train_limit=512", "--config.transfer.directions=('mnist->kmnist',)",
            "--config.transfer.seeds=(0,)", "--config.transfer.shots=('5',)",
            "--config.transfer.gain_shots=5", "--config.transfer.cka_models=()",
            "--config.transfer.modes=('linear_probe',)", "--config.model=mlp",
            "--config.model_kwargs={'hidden_sizes': (16,)}", "--config.transfer.steps=10",
            "--config.transfer.test_limit=200"]


@pytest.mark.slow   # real SLURM jobs (with real, tiny, training runs)
def test_transfer_study_waits_for_sources_reports_failures_and_resubmits(
    cluster, data_dir, tmp_path):
  env = slurm_env(KMNIST_JAX_DATA_DIR=data_dir)
  wd = str(tmp_path / "transfer")
  # Submitted held, so that the source's run folder can be blocked (a file where the
  # folder goes) before any task starts: its task fails.
  p = study("transfer_study.py", f"--workdir={wd}", *TRANSFER, "--slurm",
            "--slurm_args=--hold", env=env)
  assert p.returncode == 0, p.stderr[-3000:]
  first, second = job_ids(p.stdout)
  assert "--array=0-1 --hold" in p.stdout
  assert f"--array=2 --dependency=afterok:{first} --kill-on-invalid-dep=yes" in p.stdout
  plan = plan_lib.load_plan(os.path.join(wd, "plan.json"))
  src, scratch, probe = plan.runs
  assert src.kind == "train" and probe.deps == (src.name,) and not scratch.deps
  os.makedirs(os.path.dirname(src.workdir), exist_ok=True)
  open(src.workdir, "w").close()
  p = cmd("scontrol", "release", first, second, env=env)
  assert p.returncode == 0, p.stderr
  wait_jobs([first, second], env)
  src_log = os.path.join(wd, "slurm", f"transfer_study-{first}_0.out")
  assert plan_lib.is_finished(scratch) and not plan_lib.is_finished(src)
  assert not plan_lib.is_finished(probe)
  assert not os.path.exists(os.path.join(wd, "slurm", f"transfer_study-{second}_2.out"))
  # --report_only: the failed task with its log, the run built on it never started.
  p = study("transfer_study.py", f"--workdir={wd}", *TRANSFER, "--report_only", env=env)
  assert p.returncode == 2, p.stdout + p.stderr
  failed = [ln for ln in p.stdout.splitlines() if ln.startswith("failed: ")]
  assert len(failed) == 2, p.stdout
  assert failed[0].startswith(f"failed: {src.name}: SLURM task {first}_0 ended without "
                              f"a record; log {src_log} (last line: ")
  assert failed[1].startswith(f"failed: {probe.name}: SLURM task {second}_2 ended "
                              "without running")
  errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
  assert errors == [f"error: 2 run(s) failed: {src.name}, {probe.name} (their SLURM "
                    "logs above); the report shows the others"], p.stderr[-2000:]
  assert "Traceback" not in p.stderr
  assert os.path.exists(os.path.join(wd, "report", "report.md"))
  # Unblocked, the same command submits only the unfinished runs, in dependency order.
  os.remove(src.workdir)
  ref = local_reference(os.path.join(wd, "plan.json"), str(tmp_path / "local"))
  try:
    p = study("transfer_study.py", f"--workdir={wd}", *TRANSFER, "--slurm", env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    third, fourth = job_ids(p.stdout)
    assert "--array=0 " in p.stdout
    assert f"--array=2 --dependency=afterok:{third} " in p.stdout
    subs = json.load(open(os.path.join(wd, "slurm", "jobs.json")))["submissions"]
    assert subs[1] == {"jobs": [third, fourth], "arrays": [[0], [2]]}
    # While they are queued, submitting again is refused in one line.
    p = study("transfer_study.py", f"--workdir={wd}", *TRANSFER, "--slurm", env=env)
    if held(env) & {third, fourth}:
      assert p.returncode == 2, p.stdout + p.stderr
      assert p.stderr.strip().splitlines()[-1].startswith(
          "error: "), p.stderr[-2000:]
      assert "still in SLURM's queue" in p.stderr and "scancel" in p.stderr
    wait_jobs([third, fourth], env)
    assert ref.wait(timeout=600) == 0, ref.stdout.read()[-3000:]
  finally:
    if ref.poll() is None:
      ref.kill()
      ref.wait()
  local = plan_lib.Plan.from_json({**plan.to_json(), "workdir": str(tmp_path / "local")})
  for r, lr in zip(plan.runs, local.runs):
    assert plan_lib.is_finished(r), r.name
    a, b = plan_lib.read_record(r), plan_lib.read_record(lr)
    assert a["key"] == b["key"] and a["deps"] == b["deps"], r.name
    assert numbers(a["results"]) == numbers(b["results"]), r.name
  p = study("transfer_study.py", f"--workdir={wd}", *TRANSFER, "--report_only", env=env)
  assert p.returncode == 0, p.stdout + p.stderr


# ---- One run over two processes (launch/slurm.sbatch) -----------------------------------

MLP = ["--config.train_limit=4096", "--config.test_limit=200", "--config.val_size=128",
       "--config.num_epochs=5", "--config.model_kwargs.hidden_sizes=(64,)",
       "--config.batch_size=32", "--config.eval_batch_size=200",
       "--config.parallel=sharded", "--config.progress=False",
       "--config.tensorboard=False", "--config.data_source=files",
       "--config.progress_updates_per_epoch=4"]


@pytest.mark.slow   # real SLURM jobs (with real, tiny, training runs)
def test_two_process_run_under_srun_stops_together_and_resumes_bit_identically(
    cluster, data_dir, tmp_path):
  """Two srun tasks (one CPU device each) train one model; SIGTERM to the job's
  processes stops both at the same step, the job requeues itself and resumes; every
  epoch's numbers equal one process with two devices (the same global batch), bit for
  bit (two-way sums are exact in either order)."""
  wd, log = str(tmp_path / "two"), str(tmp_path / "job.out")
  one = str(tmp_path / "one")
  cfg = "--config=experiments/configs/kmnist_mlp.py"
  env = slurm_env(KMNIST_JAX_DATA_DIR=data_dir,
                  XLA_FLAGS="--xla_force_host_platform_device_count=1")
  p = cmd("bash", "launch/slurm.sbatch", "--nodes", "1", "--gpus-per-node", "0",
          "--tasks-per-node", "2", "--cpus-per-task", "1", "--output", log,
          "--config", cfg.split("=")[1], "--workdir", wd, "--", *MLP, env=env)
  assert p.returncode == 0, p.stderr
  job = re.search(r"Submitted batch job (\d+)", p.stdout).group(1)
  ref = subprocess.Popen(
      [sys.executable, "experiments/train.py", cfg, f"--workdir={one}", *MLP], cwd=REPO,
      env=slurm_env(KMNIST_JAX_DATA_DIR=data_dir,
                    XLA_FLAGS="--xla_force_host_platform_device_count=2"),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    wait_for(lambda: checkpoint_steps(wd), "the job's first checkpoint", 300)
    p = cmd("scancel", "--signal=TERM", job, env=env)     # every process of the job
    assert p.returncode == 0, p.stderr
    wait_for(lambda: "requeueing it" in text(log), "the job to requeue itself", 300)
    wait_jobs([job], env)
    assert ref.wait(timeout=300) == 0, ref.stdout.read()[-3000:]
  finally:
    if ref.poll() is None:
      ref.kill()
      ref.wait()
  out = text(log)
  assert "1 node(s) x 2 process(es), coordinator localhost:" in out
  assert out.count("sharded on 2 cpu device(s)") == 4, out[-3000:]  # 2 processes x 2
  stops = re.findall(r"stopped by (?:SIGTERM|a signal to another process) at step (\d+)",
                     out)
  assert len(stops) == 2 and stops[0] == stops[1], out[-3000:]    # the same step
  step = int(stops[0])
  assert 0 < step < 5 * 128, out[-3000:]
  assert out.count(f"Resuming from {wd}/checkpoints/{step}") == 2, out[-3000:]
  assert history(wd) == history(one)
  a, b = json.load(open(f"{wd}/results.json")), json.load(open(f"{one}/results.json"))
  for k in NUMBERS:
    assert a.get(k) == b.get(k), k
  assert a["devices"] == b["devices"] == 2


# ---- Bad input: one error line, nothing submitted ---------------------------------------

AUG_TINY = ["--config.train_limit=512", "--config.test_limit=500",
            "--config.num_epochs=1", "--config.model=logreg", "--config.model_kwargs={}",
            "--config.study.datasets=('kmnist',)", "--config.study.seeds=(0,)",
            "--config.study.measure_costs=False", "--config.study.policies=('none',)"]


@pytest.mark.slow   # real SLURM jobs (with real, tiny, training runs)
def test_refused_submissions_leave_nothing_submitted(cluster, data_dir, tmp_path):
  env = slurm_env(KMNIST_JAX_DATA_DIR=data_dir)
  before = held(env)

  def aug(wd, *extra, env=env):
    return study("augmentation_study.py", f"--config={REDUCED}", f"--workdir={wd}",
                 *AUG_TINY, "--slurm", *extra, env=env)
  # An sbatch option SLURM rejects: its own message.
  wd = tmp_path / "bad_partition"
  err = one_error_line(aug(wd, "--slurm_args=--partition=nope"))
  assert err.startswith("error: sbatch refused the array: sbatch: error: invalid "
                        "partition specified: nope;"), err
  assert err.endswith("; nothing was submitted"), err
  assert not (wd / "slurm" / "jobs.json").exists()
  # An unreachable controller (a slurm.conf naming a port nobody listens on).
  conf = tmp_path / "unreachable.conf"
  conf.write_text(re.sub(r"(?m)^SlurmctldPort=.*$", "SlurmctldPort=9",
                         open(CONF).read()) + "MessageTimeout=2\n")
  wd = tmp_path / "unreachable"
  err = one_error_line(aug(wd, env={**env, "SLURM_CONF": str(conf)}))
  assert "Unable to contact slurm controller" in err and "nothing was submitted" in err
  assert not (wd / "slurm" / "jobs.json").exists()
  # No sbatch on PATH.
  wd = tmp_path / "no_sbatch"
  err = one_error_line(aug(wd, env={**env, "PATH": "/nonexistent"}))
  assert err == ("error: --slurm: sbatch is not on PATH (run on a SLURM login node, or "
                 "see the commands with --dry_run)")
  # The second array refused after the first was accepted: the first is cancelled.
  fake = tmp_path / "bin"
  fake.mkdir()
  real = shutil.which("sbatch")
  (fake / "sbatch").write_text(
      "#!/bin/sh\ncase \"$*\" in *--dependency=*)\n"
      "  echo 'sbatch: error: Batch job submission failed: Job dependency problem' >&2\n"
      f"  exit 1;;\nesac\nexec {real} \"$@\"\n")
  (fake / "sbatch").chmod(0o755)
  wd = tmp_path / "second_refused"
  p = study("transfer_study.py", f"--workdir={wd}", *TRANSFER, "--slurm",
            "--slurm_args=--hold",
            env={**env, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
  err = one_error_line(p)
  (job,) = job_ids(p.stdout)
  assert err == ("error: sbatch refused array 2 of 2: sbatch: error: Batch job "
                 "submission failed: Job dependency problem; nothing was submitted; "
                 f"the 1 array(s) it had accepted (job {job}) were cancelled"), err
  assert not (wd / "slurm" / "jobs.json").exists()
  p = cmd("scontrol", "show", "job", job, env=env)
  assert p.returncode != 0 or "JobState=CANCELLED" in p.stdout, p.stdout
  assert held(env) - before == set()


def test_sbatch_script_cpu_options_checked():
  """launch/slurm.sbatch's CPU options, without a cluster: the sbatch line, bad values."""
  def run(*args):
    return subprocess.run(["bash", "launch/slurm.sbatch", "--dry-run", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
  base = ["--config", "experiments/configs/kmnist_mlp.py", "--workdir", "/w"]
  p = run("--nodes", "1", "--gpus-per-node", "0", "--tasks-per-node", "2",
          "--cpus-per-task", "1", "--time", "10", "--output", "/logs/%j.out", *base)
  assert p.returncode == 0, p.stderr
  lines = p.stdout.splitlines()
  assert lines[1].startswith("sbatch --nodes=1 --ntasks-per-node=2 --gpus-per-node=0 "
                             "--cpus-per-task=1 --time=10 --output=/logs/%j.out "
                             "launch/slurm.sbatch "), lines[1]
  assert not any("JAX_LOCAL_DEVICE_IDS" in ln for ln in lines)     # CPUs: no GPU ids
  assert lines[-1].startswith("srun --nodes=1 --ntasks-per-node=2 ")
  for args, needle in [(["--tasks-per-node", "0"], "--tasks-per-node '0'"),
                       (["--cpus-per-task", "x"], "--cpus-per-task 'x'"),
                       (["--gpus-per-node", "0", "--per-gpu"], "--per-gpu needs"),
                       (["--gpus-per-node", "-1"], "--gpus-per-node '-1'")]:
    p = run(*args, *base)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1 and needle in errors[0], p.stderr
