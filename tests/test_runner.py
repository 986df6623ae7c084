"""The study runner: the cache key is the full resolved config (sources included),
finished runs are skipped, interrupted ones resume, a changed source setting redoes
exactly the runs built on it, side by side gives the sequential records, SLURM dry
runs, and bad study configs fail in one line before anything trains."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from kmnist_jax import config as config_lib
from kmnist_jax import io, train
from kmnist_jax.errors import UserError
from kmnist_jax.studies import execute, slurm
from kmnist_jax.studies import plan as plan_lib
from kmnist_jax.studies import transfer as transfer_study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def logreg(data_dir, **kw):
  c = config_lib.base()
  c.update(dict(data_dir=data_dir, data_source="files", model="logreg", train_limit=512,
                test_limit=300, val_size=0, batch_size=64, eval_batch_size=100,
                num_epochs=1, progress=False, tensorboard=False, parallel="single"))
  for k, v in kw.items():
    c[k] = v
  return c


def train_plan(workdir, data_dir, seeds=(0, 1), **kw) -> plan_lib.Plan:
  runs = [plan_lib.Run(name=f"logreg-s{s}", kind="train", seed=s,
                     config=train.resolved_config(logreg(data_dir, seed=s, **kw)))
          for s in seeds]
  return plan_lib.Plan("t", str(workdir), runs)


def quiet(*_):
  pass


def test_key_is_the_full_resolved_config(tmp_path):
  base = train.resolved_config(logreg("/data/a"))
  run = lambda **kw: plan_lib.Run("r", "train", {**base, **kw})  # noqa: E731
  key = plan_lib.Plan("t", str(tmp_path), [run()]).runs[0].key
  assert key == plan_lib.digest({"kind": "train", "config": plan_lib.key_config(base),
                               "deps": {}})
  assert len(key) == 64
  # Every computing field is in the key, model defaults included ...
  for field, value in [("learning_rate", 0.01), ("seed", 1), ("val_seed", 3),
                       ("eval_batch_size", 50), ("augment", "noise"),
                       ("model_kwargs", {})]:
    if value == base[field]:
      continue
    other = plan_lib.Plan("t", str(tmp_path), [run(**{field: value})]).runs[0]
    assert other.key != key, field
    assert other.workdir.endswith(f"/runs/r-{other.key[:12]}")
  # ... where the data is read from and how progress is shown are not.
  for field, value in [("data_dir", "/elsewhere"), ("progress", True),
                       ("checkpoint_every", 5)]:
    assert plan_lib.Plan("t", str(tmp_path), [run(**{field: value})]).runs[0].key == key
  # A run built on another has that run's key in its own.
  a = plan_lib.Run("src", "train", base)
  b = plan_lib.Run("dst", "transfer", {"x": 1}, deps=("src",))
  k1 = plan_lib.Plan("t", str(tmp_path), [a, b]).runs[1].key
  a2 = plan_lib.Run("src", "train", {**base, "num_epochs": 2})
  b2 = plan_lib.Run("dst", "transfer", {"x": 1}, deps=("src",))
  assert plan_lib.Plan("t", str(tmp_path), [a2, b2]).runs[1].key != k1
  with pytest.raises(UserError, match="not an earlier run"):
    plan_lib.Plan("t", str(tmp_path), [b, a])


def test_fields_added_later_keep_the_committed_records_keys(tmp_path):
  """Config fields added after a study was committed (config.LATER_FIELDS) stay out of
  the key at their defaults: every committed train record's key is what today's full
  config (which has those fields) hashes to; another value is another key."""
  import glob
  records = [io.read_json(p) for p in glob.glob(os.path.join(
      REPO, "results", "*", "*", "runs", "*.json"))]
  train_records = [r for r in records if r["kind"] == "train" and not r["deps"]]
  assert len(train_records) >= 40
  for r in train_records:
    today = {**config_lib.later_defaults(), **r["config"]}
    assert plan_lib.digest({"kind": "train", "config": plan_lib.key_config(today),
                          "deps": {}}) == r["key"], r["name"]
  base = train.resolved_config(logreg("/data/a"))
  assert base["eval_test_from_epoch"] == config_lib.later_defaults()["eval_test_from_epoch"]
  key = lambda c: plan_lib.Plan("t", str(tmp_path), [plan_lib.Run("r", "train", c)]).runs[0].key  # noqa: E731
  assert key(base) != key({**base, "eval_test_from_epoch": 3})


@pytest.mark.slow   # real (tiny) training runs
def test_skips_finished_and_resumes_interrupted(data_dir, tmp_path):
  plan = train_plan(tmp_path / "s", data_dir, num_epochs=2)
  # Interrupt seed 1 after its first epoch: a checkpoint, no record.
  train.train_and_evaluate(logreg(data_dir, seed=1, num_epochs=2, num_epochs_stop=1),
                           plan.runs[1].workdir, log=quiet)
  assert plan_lib.read_record(plan.runs[1]) is None
  assert execute.execute(plan, parallel=1, log=quiet) == {}
  recs = plan_lib.records(plan)
  assert [r["results"]["epochs"] for r in recs] == [2, 2]
  assert "Resuming from" in open(os.path.join(plan.runs[1].workdir, "log.txt")).read()
  assert "Resuming from" not in open(os.path.join(plan.runs[0].workdir, "log.txt")).read()
  for r, rec in zip(plan.runs, recs):
    assert rec["key"] == r.key and rec["config"] == r.config and rec["seed"] == r.seed
    assert rec["meta"]["versions"]["jax"] and 0.1 < rec["results"]["test_accuracy"] <= 1
  mtimes = [os.path.getmtime(plan_lib.record_path(r)) for r in plan.runs]
  lines = []
  assert execute.execute(plan, parallel=1, log=lines.append) == {}
  assert "2 finished before, 0 to run" in lines[0]
  assert [os.path.getmtime(plan_lib.record_path(r)) for r in plan.runs] == mtimes
  # A finished record with another key (a stale folder) is not taken as finished.
  rec = io.read_json(plan_lib.record_path(plan.runs[0]))
  io.write_json(plan_lib.record_path(plan.runs[0]), {**rec, "key": "0" * 64})
  assert not plan_lib.is_finished(plan.runs[0]) and plan_lib.is_finished(plan.runs[1])


@pytest.mark.slow   # real (tiny) training runs
def test_records_copied_elsewhere_continue_a_study_in_a_new_workdir(data_dir, tmp_path):
  """A study's records committed (e.g. under results/) count as finished in an empty
  workdir; a run built on a train run known only from its copy retrains that run."""
  cfg = tiny_transfer(data_dir)
  a = transfer_study.plan(cfg, str(tmp_path / "a"))
  a.set_records_dir(str(tmp_path / "records"))
  assert execute.execute(a, parallel=1, log=quiet) == {}
  copies = sorted(os.listdir(tmp_path / "records"))
  assert copies == sorted(os.path.basename(r.workdir) + ".json" for r in a.runs)
  b = transfer_study.plan(cfg, str(tmp_path / "b"))            # another machine
  b.set_records_dir(str(tmp_path / "records"))
  lines = []
  assert execute.execute(b, parallel=1, log=lines.append) == {}
  assert "3 finished before, 0 to run" in lines[0]
  assert [r["key"] for r in plan_lib.records(b)] == [r.key for r in a.runs]
  assert not (tmp_path / "b" / "runs").exists()
  # A changed transfer setting: its runs are new, the source is needed here.
  cfg.transfer.steps = 25
  c = transfer_study.plan(cfg, str(tmp_path / "b"))
  c.set_records_dir(str(tmp_path / "records"))
  assert [c.runs[i].name for i in plan_lib.to_run(c)] == [r.name for r in c.runs]
  assert execute.execute(c, parallel=1, log=quiet) == {}
  assert all(plan_lib.is_finished(r, local=True) for r in c.runs)
  assert plan_lib.read_record(c.runs[0])["key"] == a.runs[0].key    # same source key


@pytest.mark.slow   # real (tiny) training runs
def test_side_by_side_gives_the_sequential_records(data_dir, tmp_path):
  seq = train_plan(tmp_path / "seq", data_dir)
  par = train_plan(tmp_path / "par", data_dir)
  assert execute.execute(seq, parallel=1, log=quiet) == {}
  lines = []
  assert execute.execute(par, parallel=2, log=lines.append) == {}
  assert "2 at a time" in lines[0] and "2/2 finished" in lines[-1]
  for a, b in zip(plan_lib.records(seq), plan_lib.records(par)):
    assert a["key"] == b["key"] and a["config"] == b["config"]
    ra, rb = a["results"], b["results"]
    # One core instead of two: the same program, sums maybe in another order.
    assert abs(ra["test_accuracy"] - rb["test_accuracy"]) <= 2 / 300
    assert ra["test_loss"] == pytest.approx(rb["test_loss"], rel=1e-3)
  # Each worker got one of the two cores and one XLA host device.
  env, cores = execute.worker_env(1, 2, par)
  if execute.backend()[0] == "cpu" and len(os.sched_getaffinity(0)) >= 2:
    assert len(cores) == len(os.sched_getaffinity(0)) // 2
    assert f"device_count={len(cores)}" in env["XLA_FLAGS"]


def tiny_transfer(data_dir):
  cfg = config_lib.load_file("transfer_reduced")
  cfg.update(dict(data_dir=data_dir, data_source="files", train_limit=512, num_epochs=1,
                  batch_size=64, eval_batch_size=250, parallel="single"))
  cfg.model = "mlp"                      # the cheapest model with features to compile
  cfg.model_kwargs = {"hidden_sizes": (32,), "dropout": 0.0}
  t = cfg.transfer
  t.directions = ("mnist->kmnist",)
  t.modes = ("linear_probe",)
  t.shots = ("5",)
  t.gain_shots = "5"
  t.seeds = (0,)
  t.steps = 20
  t.batch_size = 32
  t.test_limit = 300
  t.cka_models = ()
  return cfg


@pytest.mark.slow   # real (tiny) training runs
def test_changed_source_setting_redoes_exactly_the_runs_built_on_it(data_dir, tmp_path):
  cfg = tiny_transfer(data_dir)
  plan = transfer_study.plan(cfg, str(tmp_path))
  assert [r.name for r in plan.runs] == [
      "source-mnist", "scratch-kmnist-k5-s0", "mnist_to_kmnist-linear_probe-k5-s0"]
  assert execute.execute(plan, parallel=1, log=quiet) == {}
  before = {r.name: (r.key, os.path.getmtime(plan_lib.record_path(r))) for r in plan.runs}
  # The source model's learning rate changes: the source and the transfer run on it
  # are redone (new keys, new folders), the scratch baseline is not.
  cfg.learning_rate = 1e-2
  plan2 = transfer_study.plan(cfg, str(tmp_path))
  lines = []
  assert execute.execute(plan2, parallel=1, log=lines.append) == {}
  assert "1 finished before, 2 to run" in lines[0]
  redone = {r.name for r in plan2.runs
            if (r.key, os.path.getmtime(plan_lib.record_path(r))) != before[r.name]}
  assert redone == {"source-mnist", "mnist_to_kmnist-linear_probe-k5-s0"}
  src, _, tr = plan_lib.records(plan2)
  assert tr["deps"] == {"source-mnist": src["key"]} != {"source-mnist":
                                                         before["source-mnist"][0]}
  assert src["config"]["learning_rate"] == 1e-2
  # A transfer setting alone: only the runs that use it (both cells), not the source.
  cfg.transfer.steps = 25
  plan3 = transfer_study.plan(cfg, str(tmp_path))
  assert [plan_lib.is_finished(r) for r in plan3.runs] == [True, False, False]


def study_cli(script, *args, data_dir="/nonexistent"):
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir, XLA_FLAGS="", PYTHONPATH=REPO)
  return subprocess.run([sys.executable, os.path.join("experiments", script), *args],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


TINY_T = ["--config.train_limit=512", "--config.transfer.directions=('mnist->kmnist',)",
          "--config.transfer.seeds=(0,1)", "--config.transfer.shots=('5','all')",
          "--config.transfer.gain_shots=5", "--config.transfer.cka_models=()"]


def test_slurm_dry_run_prints_the_sbatch_commands(data_dir, tmp_path):
  wd = tmp_path / "w"
  p = study_cli("transfer_study.py", f"--workdir={wd}", "--slurm", "--dry_run",
                "--slurm_args=--partition=gpu --time=0:30:00", *TINY_T,
                data_dir=data_dir)
  assert p.returncode == 0, p.stderr[-2000:]
  lines = p.stdout.splitlines()
  jobs = [line for line in lines if line.startswith("JOB")]
  assert len(jobs) == 2, p.stdout
  # 1 source + 2 seeds x 2 k x (scratch + 3 modes) = 17 runs: scratch does not
  # wait for the source, so it goes in the first array.
  first = shlex.split(jobs[0].split("=", 1)[1][2:-1])
  second = shlex.split(jobs[1].split("=", 1)[1][2:-1])
  assert first[:3] == ["sbatch", "--parsable", "--array=0-1,5,9,13"]
  assert first[3:5] == ["--partition=gpu", "--time=0:30:00"]
  assert first[-1] == second[-1] == str(wd / "slurm" / "transfer_study.sbatch")
  assert second[2] == "--array=2-4,6-8,10-12,14-16"
  assert second[3] == "--dependency=afterok:$JOB0"
  script = p.stdout.split(f"# ---- {first[-1]}\n", 1)[1]
  assert script.startswith("#!/bin/bash\n#SBATCH --job-name=transfer_study\n")
  assert (f"-m kmnist_jax.studies.worker --plan={wd}/plan.json "
          '--run_index="$SLURM_ARRAY_TASK_ID"') in script
  assert not wd.exists()                         # a dry run writes nothing
  assert slurm.ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


@pytest.mark.parametrize("script,args,needle", [
    ("augmentation_study.py", ["--config.study.policies=('none','afine')"],
     "'afine'"),
    ("augmentation_study.py", ["--config.study.datasets=('kmnist','cifar')"],
     "unknown dataset 'cifar'"),
    ("augmentation_study.py", ["--config.study.polices=('none',)"],
     "unknown config field 'study.polices'"),
    ("transfer_study.py", ["--config.transfer.modes=('linear_probe','probe')"],
     "unknown transfer mode 'probe'"),
    ("transfer_study.py", ["--config.transfer.directions=('mnist->kmnst',)"],
     "unknown dataset 'kmnst'"),
    ("augmentation_study.py", ["--out={tmp}/report", "--records={tmp}/report/runs"],
     "lies inside --out="),          # the report replaces its folder whole
])
def test_bad_study_config_one_line_before_any_training(tmp_path, script, args, needle):
  args = [a.format(tmp=tmp_path) for a in args]
  p = study_cli(script, f"--workdir={tmp_path / 'w'}", *args)
  assert p.returncode == 2, p.stderr[-2000:]
  errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and needle in errors[0], p.stderr[-2000:]
  assert "Traceback" not in p.stderr
  assert not (tmp_path / "w").exists()


@pytest.mark.slow   # real (tiny) training runs
def test_evaluators_run_through_evaluate_and_are_cached_per_setting(data_dir, tmp_path):
  def make(limit):
    r = plan_lib.Run(name="logreg", kind="train",
                   config=train.resolved_config(logreg(data_dir)),
                   evals={"cls": {"type": "classification", "limit": limit}})
    return plan_lib.Plan("t", str(tmp_path), [r])
  plan = make(200)
  assert execute.execute(plan, parallel=1, log=quiet) == {}
  rec = plan_lib.read_record(plan.runs[0])
  got = rec["evals"]["cls"]["record"]
  assert rec["evals"]["cls"]["key"] == plan.runs[0].eval_keys["cls"]
  assert 0.1 < got["accuracy"] <= 1.0 and got["n"] == 200
  # Another evaluator setting: evaluated again on the kept checkpoint, not retrained.
  plan2 = make(100)
  assert plan2.runs[0].key == plan.runs[0].key
  assert not plan_lib.is_finished(plan2.runs[0])
  assert execute.execute(plan2, parallel=1, log=quiet) == {}
  rec2 = plan_lib.read_record(plan2.runs[0])
  assert rec2["results"] == rec["results"] and rec2["wall_s"] == rec["wall_s"]
  assert rec2["evals"]["cls"]["key"] != rec["evals"]["cls"]["key"]
  log = open(os.path.join(plan.runs[0].workdir, "log.txt")).read()
  assert log.count("evaluating cls") == 2 and log.count("Test accuracy:") == 1


def test_study_baseline_is_a_run_the_evaluator_refers_to(tmp_path):
  from kmnist_jax.studies import augmentation
  cfg = config_lib.load_file("studies/augment_robustness")
  a = augmentation.plan(cfg, str(tmp_path / "a"))
  b = augmentation.plan(cfg, str(tmp_path / "b"))
  names = [r.name for r in a.runs]
  assert names[:2] == ["baseline-mnist", "baseline-kmnist"] and len(names) == 2 + 48
  run = a.by_name("kmnist-mixup-s1")
  assert run.after == ("baseline-kmnist",) and run.deps == ()
  assert run.evals["corruption"]["baseline"] == {"kmnist": "@run:baseline-kmnist"}
  # Keys do not depend on where the study lives; the baseline's settings enter the
  # evaluator's key, not the training key.
  assert [r.key for r in a.runs] == [r.key for r in b.runs]
  assert [r.eval_keys for r in a.runs] == [r.eval_keys for r in b.runs]
  cfg.study.baseline_config = "kmnist_mlp"          # another baseline model
  c = augmentation.plan(cfg, str(tmp_path / "a"))
  for name in ("kmnist-mixup-s1", "mnist-none-s2"):
    old, new = a.by_name(name), c.by_name(name)
    assert new.key == old.key                                      # not retrained
    assert new.eval_keys["corruption"] != old.eval_keys["corruption"]   # re-evaluated
    assert new.eval_keys["attack"] == old.eval_keys["attack"]
  # SLURM: the baselines and the policy runs wait in separate arrays.
  assert [len(s) for s in slurm.stages(a, range(len(a.runs)))] == [2, 48]


@pytest.mark.slow   # real (tiny) training runs
def test_slurm_submits_the_arrays_in_order(data_dir, tmp_path):
  """--slurm with a stand-in sbatch: the plan and the script are written, the second
  array waits for the first job (afterok), and nothing trains here."""
  fake = tmp_path / "bin"
  fake.mkdir()
  calls = tmp_path / "calls.txt"
  (fake / "sbatch").write_text(
      f'#!/bin/sh\necho "$@" >> {calls}\nwc -l < {calls} | tr -d " " | sed s/^/100/\n')
  (fake / "sbatch").chmod(0o755)
  wd = tmp_path / "w"
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir, XLA_FLAGS="", PYTHONPATH=REPO,
             PATH=f"{fake}:{os.environ['PATH']}")
  cheap = ["--config.model=mlp", "--config.model_kwargs={'hidden_sizes': (16,)}",
           "--config.transfer.steps=10", "--config.transfer.test_limit=200"]
  p = subprocess.run([sys.executable, "experiments/transfer_study.py", f"--workdir={wd}",
                      "--slurm", *TINY_T, *cheap], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  first, second = [shlex.split(line) for line in calls.read_text().splitlines()]
  assert first[:2] == ["--parsable", "--array=0-1,5,9,13"]
  assert second[:3] == ["--parsable", "--array=2-4,6-8,10-12,14-16",
                        "--dependency=afterok:1001"]
  assert "-> job 1002" in p.stdout and "--report_only" in p.stdout
  plan = plan_lib.load_plan(str(wd / "plan.json"))
  assert len(plan.runs) == 17 and not (wd / "runs").exists()
  assert "--run_index=\"$SLURM_ARRAY_TASK_ID\"" in (
      wd / "slurm" / "transfer_study.sbatch").read_text()
  # An array task: a run whose source has not finished refuses in one line; one
  # without sources runs (the same execute_one as here and in the workers).
  task = [sys.executable, "-m", "kmnist_jax.studies.worker", f"--plan={wd}/plan.json"]
  p = subprocess.run(task + ["--run_index=2"], cwd=REPO, env=env, capture_output=True,
                     text=True, timeout=300)
  assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
      f"error: run {plan.runs[2].name} is built on source-mnist, which has not "
      "finished; run the study (or that array task) first"), p.stderr[-2000:]
  p = subprocess.run(task + ["--run_index=1"], cwd=REPO, env=env, capture_output=True,
                     text=True, timeout=300)
  assert p.returncode == 0, p.stderr[-2000:]
  assert plan_lib.is_finished(plan.runs[1]) and not plan_lib.is_finished(plan.runs[0])
  assert f"{plan.runs[1].name}: done" in p.stdout


STUDY_MAIN = """
import sys
from kmnist_jax.errors import Preempted
from kmnist_jax.studies import execute, plan
try:
  execute.execute(plan.load_plan(sys.argv[1]), parallel=2)
except Preempted as e:
  print(f"preempted: {e}", file=sys.stderr)
  sys.exit(75)
"""


def test_the_runners_death_signal_is_one_stop_however_often_it_comes():
  """The kernel sends a worker the parent-death signal once per thread of the dying
  runner it is handed to: however many arrive, the worker sees one SIGTERM (a stop that
  saves), never the second SIGTERM that means "exit at once, unsaved"."""
  code = (
      "import os, time\n"
      f"os.environ[{execute.RUNNER_ENV!r}] = str(os.getppid())\n"
      "from kmnist_jax import stopping\n"
      "from kmnist_jax.studies import execute\n"
      "execute.term_with_runner()\n"
      "with stopping.StopOnSignal('stopping') as stop:\n"
      "  for _ in range(3):\n"
      "    os.kill(os.getpid(), execute.RUNNER_DIED)\n"
      "    time.sleep(0.05)\n"
      "  print('stopped by', stop.signame, flush=True)\n"
      "print('alive')\n")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                     cwd=REPO, timeout=120)
  assert r.returncode == 0, r.stderr
  assert r.stdout.split("\n")[:2] == ["stopped by SIGTERM", "alive"]
  assert r.stderr.count("received SIGTERM") == 1


@pytest.mark.slow   # real (tiny) training runs, two worker processes
def test_a_study_killed_outright_leaves_no_worker_and_resumes(data_dir, tmp_path):
  """kill -9 on the runner (or a second Ctrl-C): each worker gets the parent-death
  signal from the kernel (PR_SET_PDEATHSIG), turned into one SIGTERM, saves at its next
  chunk and exits."""
  import signal
  import time
  plan = train_plan(tmp_path / "w", data_dir, train_limit=20000, num_epochs=30)
  path = plan.save()
  p = subprocess.Popen([sys.executable, "-c", STUDY_MAIN, path], cwd=REPO,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  logs = [os.path.join(r.workdir, "log.txt") for r in plan.runs]

  def epochs(log):
    return open(log).read().count("epoch ") if os.path.exists(log) else 0
  t0 = time.time()
  while not all(epochs(log) >= 2 for log in logs):     # both workers are training
    assert p.poll() is None and time.time() - t0 < 300
    time.sleep(0.5)
  p.send_signal(signal.SIGKILL)
  p.wait(timeout=30)
  # Each worker saves at its next chunk, says so in its run's log and exits (without
  # the signal it would train on: 30 epochs).
  while not all("preempted: stopped by SIGTERM" in open(log).read() for log in logs):
    assert time.time() - t0 < 600, [open(log).read()[-300:] for log in logs]
    time.sleep(0.5)
  while path in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                               text=True).stdout:
    assert time.time() - t0 < 600, "a worker outlived its killed runner"
    time.sleep(0.5)
  for r in plan.runs:
    assert not plan_lib.is_finished(r, local=True)
  again = train_plan(tmp_path / "w", data_dir, train_limit=20000, num_epochs=30)
  assert execute.execute(again, parallel=2, log=quiet) == {}
  for r in again.runs:
    assert "Resuming from" in open(os.path.join(r.workdir, "log.txt")).read()


@pytest.mark.slow   # real (tiny) training runs, two worker processes
def test_sigterm_to_a_side_by_side_study_stops_and_saves_every_worker(data_dir,
                                                                      tmp_path):
  import signal
  import time
  plan = train_plan(tmp_path / "w", data_dir, train_limit=20000, num_epochs=30)
  path = plan.save()
  p = subprocess.Popen([sys.executable, "-c", STUDY_MAIN, path], cwd=REPO,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  logs = [os.path.join(r.workdir, "log.txt") for r in plan.runs]

  def epochs(log):
    return open(log).read().count("epoch ") if os.path.exists(log) else 0
  t0 = time.time()
  while not all(epochs(log) >= 2 for log in logs):     # both workers are training
    assert p.poll() is None and time.time() - t0 < 300, p.communicate()
    time.sleep(0.5)
  p.send_signal(signal.SIGTERM)
  out, err = p.communicate(timeout=300)
  assert p.returncode == 75, err[-3000:]
  assert "preempted: the study stopped on SIGTERM" in err and "Traceback" not in err
  ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
  assert path not in ps                                  # no worker left behind
  for r in plan.runs:
    assert "preempted: stopped by SIGTERM" in open(os.path.join(r.workdir, "log.txt")).read()
    assert not plan_lib.is_finished(r, local=True)
  again = train_plan(tmp_path / "w", data_dir, train_limit=20000, num_epochs=30)
  assert execute.execute(again, parallel=2, log=quiet) == {}
  for r in again.runs:
    assert "Resuming from" in open(os.path.join(r.workdir, "log.txt")).read()
    assert plan_lib.read_record(r)["results"]["finished"]
