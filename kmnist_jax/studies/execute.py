r"""Executing a plan here: one run at a time, or N worker processes side by side.

:func:`execute` runs every unfinished run of a :class:`~kmnist_jax.studies.plan.Plan`.
``parallel=1`` runs them in this process; ``N > 1`` starts N worker processes
(``python -m kmnist_jax.studies.worker --plan=P --worker``), each taking runs from a
queue as their sources finish: on CPU worker k is pinned to cores/N cores
(``sched_setaffinity``; XLA's thread pool and the BLAS threads follow) with
``--xla_force_host_platform_device_count=cores/N``; on GPU each worker gets one device
(``CUDA_VISIBLE_DEVICES``; several workers per device share it). ``parallel=0`` picks
the backend's default, :data:`DEFAULT_PARALLEL`. SLURM job arrays run the same plan one
run per task (:mod:`kmnist_jax.studies.slurm`).

Every run holds its workdir's lock (:mod:`kmnist_jax.lock`) while it runs; an
interrupted run resumes from its checkpoints (``train.train_and_evaluate``). SIGTERM /
SIGINT stop the running runs at their next safe point (training saves a checkpoint)
and :func:`execute` raises :class:`~kmnist_jax.errors.Preempted`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import traceback

from kmnist_jax import io, lock, stopping
from kmnist_jax.errors import EXIT_PREEMPTED, Preempted, UserError
from kmnist_jax.studies import plan as plan_lib
from kmnist_jax.studies.plan import Plan, Run

# Side by side or one at a time, per backend (--parallel=0 picks this). On CPU one
# process already keeps every core busy (XLA's intra-op threads) and each worker pays
# its own start-up and compilations: side by side loses on small runs and wins only at
# the real budget's run size, so the default is one at a time and the real-budget study
# commands pass --parallel=2 (measurements: docs/augmentation.md, "How a study runs").
# On GPU: one worker per device.
DEFAULT_PARALLEL = {"cpu": 1, "gpu": "devices"}

# What a run does on SIGTERM / SIGINT (training installs its own, finer handler).
STOP_MESSAGE = ("stopping the run at its next safe point (training: the next chunk, "
                "after a checkpoint; a transfer run: its next chunk, redone later)")
PREEMPTED = "preempted: "
CPUS_ENV = "KMNIST_JAX_WORKER_CPUS"
RUNNER_ENV = "KMNIST_JAX_RUNNER_PID"    # a side-by-side worker's runner
_MARK = "@@runner "      # a worker's answer line on its stdout


# ---- One run ----------------------------------------------------------------------------

def _evaluate(run: Run, plan: Plan, names: list[str], log) -> dict:
  # Deferred: the evaluators import JAX; a run with its record complete never needs it.
  from kmnist_jax.studies import evaluate as evaluate_lib
  evals = plan_lib.map_refs({n: run.evals[n] for n in names},
                            lambda r: plan.by_name(r).workdir)
  log(f"{run.name}: evaluating {', '.join(names)}")
  recs = evaluate_lib.evaluate(run.workdir, evals, step=plan.eval_step,
                               data_dir=plan.options.get("data_dir") or
                               run.config.get("data_dir") or None)
  return {n: {"key": run.eval_keys[n], "record": recs[n]} for n in names}


def execute_one(plan: Plan, run: Run, *, log=print) -> tuple[dict, bool]:
  """(record, did_work): trains (or resumes) the run and evaluates it, unless its
  record is complete. Holds the run's workdir lock."""
  rec = plan_lib.read_record(run, local=True)
  if rec is not None and not plan_lib.missing_evals(run, rec):
    return rec, False
  for d in run.waits_for:
    if plan_lib.read_record(plan.by_name(d)) is None:
      raise UserError(f"run {run.name} is built on {d}, which has not finished; run "
                      "the study (or that array task) first")
  with lock.WorkdirLock(run.workdir):
    t0 = time.time()
    log(f"== run {run.name} (key {run.key[:12]}), started "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    rec = plan_lib.read_record(run, local=True)
    if rec is None:
      results = plan_lib.kind_fn(run.kind)(run, plan, log)
      rec = {"key": run.key, "name": run.name, "kind": run.kind, "seed": run.seed,
             "info": run.info, "deps": {d: plan.by_name(d).key for d in run.deps},
             "config": run.config, "results": results, "evals": {},
             "wall_s": time.time() - t0}
    todo = plan_lib.missing_evals(run, rec)
    if todo:
      t1, kept = time.time(), len(todo) < len(run.evals)
      rec["evals"] = {**{n: v for n, v in rec.get("evals", {}).items()
                         if n in run.evals}, **_evaluate(run, plan, todo, log)}
      # Seconds of evaluation (wall_s: of training); earlier passes count while
      # some of their evaluators are kept.
      rec["eval_s"] = time.time() - t1 + ((rec.get("eval_s") or 0.0) if kept else 0.0)
    rec["meta"] = io.run_meta()
    io.write_json(plan_lib.record_path(run), rec)
    if run.mirror:
      os.makedirs(os.path.dirname(run.mirror), exist_ok=True)
      io.write_json(run.mirror, rec)
  return rec, True


def enable_compilation_cache(plan: Plan) -> None:
  """JAX's persistent compilation cache in <workdir>/jax_cache (plan option)."""
  if not plan.options.get("compilation_cache", True):
    return
  import jax  # deferred: only a process that executes runs starts JAX
  jax.config.update("jax_compilation_cache_dir",
                    os.path.join(os.path.abspath(plan.workdir), "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def run_logger(run: Run):
  """A log function appending to the run's log.txt."""
  os.makedirs(run.workdir, exist_ok=True)
  path = os.path.join(run.workdir, "log.txt")

  def log(msg):
    with open(path, "a") as f:
      f.write(str(msg) + "\n")
  return log


# ---- The status line --------------------------------------------------------------------

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


class Display:
  """The status line: redrawn in place on a terminal, else printed when it changes."""

  def __init__(self, log):
    self.log, self.tty = log, sys.stdout.isatty() and log is print
    self.last = None

  def __call__(self, text: str, force: bool = False):
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


# ---- Where the workers run --------------------------------------------------------------

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
  del plan
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


def pin_from_env() -> None:
  """A side-by-side worker's share of the cores (set before JAX starts: XLA's thread
  pool sizes itself from the affinity mask)."""
  cpus = os.environ.get(CPUS_ENV)
  if cpus:
    os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])


# ---- One at a time ----------------------------------------------------------------------

def _sequential(plan: Plan, todo: list[int], status: Status, show,
                deadline: float | None = None) -> dict:
  failures = {}
  enable_compilation_cache(plan)
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
      with stopping.StopOnSignal(STOP_MESSAGE):
        execute_one(plan, run, log=run_logger(run))
      status.done += 1
    except UserError as e:
      failures[i] = str(e)
      status.failed += 1
    status.running = 0
    show(status.line())
  return failures


# ---- Side by side -----------------------------------------------------------------------

RUNNER_DIED = signal.SIGUSR2   # what the kernel sends a worker when its runner dies


def term_with_runner() -> None:
  """A side-by-side worker's first step (Linux): ask for a signal when its runner dies,
  so a runner killed outright (a second signal, kill -9) leaves no worker behind: a
  worker still training saves at its next chunk and exits; one that already got the
  runner's forwarded SIGTERM takes this as the second signal and exits at once. (Asked
  for by the worker itself: a fork hook in the runner, which has threads, is unsafe.)

  The kernel sends the parent-death signal each time the worker is handed to another
  thread of the dying runner, so it can come several times for one death; it is
  therefore :data:`RUNNER_DIED`, turned into one SIGTERM here, rather than SIGTERM
  itself, whose second delivery means "exit at once, unsaved"."""
  runner = os.environ.get(RUNNER_ENV)
  if not runner:
    return
  told = []

  def runner_died(signum, frame):
    del signum, frame
    if not told:
      told.append(True)
      os.kill(os.getpid(), signal.SIGTERM)
  try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    signal.signal(RUNNER_DIED, runner_died)
    libc.prctl(1, RUNNER_DIED)   # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    return                # not Linux: the worker ends when its stdin closes
  if os.getppid() != int(runner):       # the runner died before the request
    sys.exit(EXIT_PREEMPTED)


class _Worker:
  def __init__(self, k: int, n: int, plan_path: str, plan: Plan):
    env, cores = worker_env(k, n, plan)
    log_dir = os.path.join(plan.workdir, "workers")
    os.makedirs(log_dir, exist_ok=True)
    self.err = open(os.path.join(log_dir, f"worker{k}.log"), "a")
    if cores:     # the worker pins itself before JAX starts (no fork hook here)
      env[CPUS_ENV] = ",".join(map(str, cores))
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "kmnist_jax.studies.worker", f"--plan={plan_path}",
         "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
        env={**env, RUNNER_ENV: str(os.getpid())}, cwd=io.REPO, text=True, bufsize=1)
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


def serve(plan: Plan) -> None:
  """A side-by-side worker: runs the plan indices read from stdin, one answer line
  each on stdout."""
  enable_compilation_cache(plan)
  out = sys.stdout
  sys.stdout = sys.stderr           # stray prints go to the worker log, not the pipe
  for line in sys.stdin:
    i = int(line)
    run = plan.runs[i]
    msg = {"index": i, "ok": True}
    try:
      with stopping.StopOnSignal(STOP_MESSAGE):
        execute_one(plan, run, log=run_logger(run))
    except UserError as e:
      msg = {"index": i, "ok": False, "error": str(e)}
    except Preempted as e:          # SIGTERM passed on by the study: report and end
      run_logger(run)(f"{PREEMPTED}{e}")
      try:
        out.write(_MARK + json.dumps({"index": i, "ok": False,
                                      "error": f"{PREEMPTED}{e}"}) + "\n")
        out.flush()
      except BrokenPipeError:       # the runner is gone (killed): nobody to tell
        pass
      return
    except Exception as e:  # noqa: BLE001 - report it, keep serving the queue
      traceback.print_exc()
      msg = {"index": i, "ok": False, "error": f"{type(e).__name__}: {e}"}
    out.write(_MARK + json.dumps(msg) + "\n")
    out.flush()


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
            elif msg["error"].startswith(PREEMPTED) and stop.signame:
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


# ---- A plan -----------------------------------------------------------------------------

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
  todo = plan_lib.to_run(plan)
  status = Status(total=len(plan.runs), cached=len(plan.runs) - len(todo))
  show = show or Display(log)
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
          if i in todo and plan.runs[i].name not in out and not plan_lib.is_finished(r)]
  if late:
    log(f"not started (max_minutes={max_minutes:g}): {', '.join(late)}; run the same "
        "command again to continue")
  return out
