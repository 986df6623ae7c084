r"""Wall-clock time to reach a test accuracy, compilation included.

  python benchmarks/time_to_accuracy.py \
      --runs=mnist_cnn:0.99,kmnist_cnn_aug:0.98 [--seeds=0] [--out=DIR] \
      [--set=parallel=single] [--platform_tag=cpu]

Each run is ``config:target`` (a config name from experiments/configs or a path, and
a test accuracy as a fraction), optionally with ``;``-separated overrides after a
second colon: ``kmnist_cnn_aug:0.98:num_epochs=20;model_kwargs.dense=128``.

Each (run, seed) is one fresh ``experiments/train.py`` process in a fresh workdir, with
``--config.eval_test_every_epoch=True --config.stop_at_test_accuracy=TARGET``: the test
set is evaluated after every epoch and the run stops at the first epoch whose test
accuracy reaches the target (the DAWNBench definition: a fixed schedule, stopped when
the target is first met; the schedule itself is not shortened). Reported:

* ``time to target``: ``elapsed_s`` of that epoch in metrics.jsonl -- seconds from the
  start of ``train_and_evaluate`` (data loading, model initialisation, placement on
  device, compilation, and every epoch before it with its validation and test
  evaluation; only the test evaluation of the epoch that reaches the target is not
  counted),
* ``process wall``: the whole process, Python and JAX imports included,
* or, when the schedule ends first, the best test accuracy reached and the time spent.

On CPU, the process gets one XLA device per core (as ``launch/local.sh train`` does),
so ``parallel=auto`` shards the batch over the cores.

The summary gives, per config and target, the mean +- std (and min / max) of the time
to target and of the process wall over the seeds, and in how many seeds the target was
reached. ``--wait_idle=S`` waits (up to S seconds) before each run until other
processes use < 0.1 cores, as the throughput benchmark does.

Each json row also carries the run's curve: every epoch's elapsed time, test accuracy,
training rate and, with a validation split (``val_size=N`` in the overrides), its
validation accuracy, so that tuning can rank recipes on held-out training images
rather than on the test set.

Writes ``<out>/time_to_accuracy_<platform_tag>.json`` (``<out>`` default:
results/time_to_accuracy/<machine kind>/; the rows and a ``meta`` block:
kmnist_jax.io.run_meta, CPU model, the training device) and ``.md`` (also printed),
atomically, after every run. A bad flag or value is one ``error:`` line, exit 2.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import throughput as tp  # benchmarks/throughput.py: this script's folder is on sys.path
from absl import flags

from kmnist_jax import cli, io
from kmnist_jax.errors import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

flags.DEFINE_string("runs", "mnist_cnn:0.99,kmnist_cnn_aug:0.98",
                    "CONFIG:TARGET[:k=v;k=v],... (targets as fractions).")
flags.DEFINE_string("seeds", "0", "Comma-separated seeds.")
flags.DEFINE_string("set", "", "Overrides for every run, k=v;k=v.")
flags.DEFINE_string("out", "", "Output folder (default results/time_to_accuracy/<machine "
                    "kind>/, e.g. cpu_zen4 or gpu_h100).")
flags.DEFINE_string("platform_tag", "", "File name tag (default: the platform).")
flags.DEFINE_string("workdir_root", "", "Where the runs go (default: a temp dir).")
flags.DEFINE_float("timeout", 3600.0, "Seconds per run.", lower_bound=0.0)
flags.DEFINE_boolean("keep", False, "Keep the runs' workdirs.")
flags.DEFINE_float("wait_idle", 0.0, "Before each run, wait up to this many seconds "
                   "until other processes use < 0.1 cores.", lower_bound=0.0)
FLAGS = flags.FLAGS


def split_top(text: str, sep: str) -> list[str]:
  """Splits on `sep` outside brackets, so that tuples like (8,16) stay whole."""
  parts, depth, cur = [], 0, ""
  for ch in text:
    depth += ch in "([{"
    depth -= ch in ")]}"
    if ch == sep and depth == 0:
      parts.append(cur)
      cur = ""
    else:
      cur += ch
  return parts + [cur]


def parse_runs(text: str) -> list[dict]:
  runs = []
  for item in filter(None, (x.strip() for x in split_top(text, ","))):
    parts = item.split(":", 2)
    if len(parts) < 2:
      raise UserError(f"run {item!r} must be CONFIG:TARGET[:k=v;k=v], e.g. "
                      "mnist_cnn:0.99")
    name, target = parts[0], parts[1]
    try:
      target = float(target)
    except ValueError:
      raise UserError(f"run {item!r}: target {target!r} is not a number") from None
    if not 0.0 < target <= 1.0:
      raise UserError(f"run {item!r}: target {target} must be a fraction in (0, 1]"
                      " (0.99 for 99%)")
    overrides = [o.strip() for o in parts[2].split(";")] if len(parts) > 2 else []
    for o in overrides:
      if "=" not in o:
        raise UserError(f"run {item!r}: override {o!r} must be key=value")
    path = name if name.endswith(".py") else os.path.join(
        ROOT, "experiments", "configs", name + ".py")
    if not os.path.isfile(path):
      folder = os.path.join(ROOT, "experiments", "configs")
      known = sorted(f[:-3] for f in os.listdir(folder)
                     if f.endswith(".py") and not f.startswith("_"))
      raise UserError(f"unknown config {name!r}; known: {', '.join(known)}")
    runs.append({"config": name, "path": path, "target": target,
                 "overrides": [o for o in overrides if o]})
  if not runs:
    raise UserError("--runs is empty")
  return runs


def read_history(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def one_run(run: dict, seed: int, workdir: str, extra: list[str], timeout: float) -> dict:
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "train.py"),
         f"--config={run['path']}", f"--workdir={workdir}",
         f"--config.seed={seed}", "--config.progress=False",
         "--config.tensorboard=False", "--config.eval_test_every_epoch=True",
         f"--config.stop_at_test_accuracy={run['target']}"]
  cmd += [f"--config.{o}" for o in run["overrides"] + extra]
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if "xla_force_host_platform_device_count" not in env.get("XLA_FLAGS", ""):
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                        f"device_count={os.cpu_count()}").strip()
  t0 = time.perf_counter()
  try:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    rc, err = proc.returncode, proc.stderr
  except subprocess.TimeoutExpired as e:
    rc, err = "timeout", (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (
        e.stderr or "")
  wall = time.perf_counter() - t0
  hist = read_history(workdir)
  out = {"config": run["config"], "target": run["target"], "seed": seed,
         "overrides": run["overrides"] + extra, "process_wall_s": wall, "rc": rc,
         "epochs_run": len(hist),
         "curve": [{"epoch": h["epoch"], "elapsed_s": h.get("elapsed_s"),
                    "test_accuracy": h.get("test_accuracy"),
                    "val_accuracy": h.get("val_accuracy"),
                    "train_img_per_s": h.get("train_img_per_s")} for h in hist]}
  hit = [h for h in hist if (h.get("test_accuracy") or 0.0) >= run["target"]]
  if hit:
    out.update(reached=True, epoch=hit[0]["epoch"], time_s=hit[0]["elapsed_s"],
               test_accuracy=hit[0]["test_accuracy"])
  else:
    best = max((h.get("test_accuracy") or 0.0 for h in hist), default=None)
    out.update(reached=False, best_test_accuracy=best,
               time_s=hist[-1]["elapsed_s"] if hist else None)
  if rc != 0:
    out["stderr_tail"] = err[-2000:]
  return out


def _fmt_time(s) -> str:
  if s is None:
    return "--"
  return f"{s:.0f} s" if s < 120 else f"{int(s // 60)} min {int(s % 60):02d} s"


def spread(values: list[float]) -> str:
  """'44.6 s +- 0.8 (min 43.9, max 45.7)', or one value."""
  if len(values) == 1:
    return f"{values[0]:.1f} s (one seed)"
  return (f"{statistics.mean(values):.1f} s +- {statistics.stdev(values):.1f} "
          f"(min {min(values):.1f}, max {max(values):.1f})")


def write(report: dict, out: str) -> str:
  rows = report["rows"]
  lines = [f"Time to test accuracy ({report['meta']['device']}: "
           f"{report['meta'].get('cpu_model', '?')}, jax "
           f"{report['meta']['jax']}, {report['meta']['date']}); time = wall-clock from "
           "the start of training (data loading and compilation included) to the end of "
           "the first epoch whose test accuracy reaches the target.",
           f"Command: `{report['meta']['command']}`", "",
           "| config | target | seed | reached | epoch | time to target | process wall | "
           "test acc at that epoch |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    if r["reached"]:
      lines.append(f"| {r['config']} | {100 * r['target']:.1f}% | {r['seed']} | yes | "
                   f"{r['epoch']} | {_fmt_time(r['time_s'])} | "
                   f"{_fmt_time(r['process_wall_s'])} | "
                   f"{100 * r['test_accuracy']:.2f}% |")
    else:
      best = r.get("best_test_accuracy")
      lines.append(f"| {r['config']} | {100 * r['target']:.1f}% | {r['seed']} | no "
                   f"(rc {r['rc']}) | {r['epochs_run']} | "
                   f"-- (ran {_fmt_time(r['time_s'])}) | "
                   f"{_fmt_time(r['process_wall_s'])} | best "
                   f"{'--' if best is None else f'{100 * best:.2f}%'} |")
  by = {}
  for r in rows:
    by.setdefault((r["config"], r["target"]), []).append(r)
  summary = []
  for (cfg, target), rs in by.items():
    ok = [r for r in rs if r["reached"]]
    summary.append(f"- {cfg} to {100 * target:.1f}%: reached in {len(ok)} of {len(rs)} "
                   "seeds" + (f"; {spread([r['time_s'] for r in ok])} to target, "
                              f"process wall {spread([r['process_wall_s'] for r in ok])}"
                              if ok else ""))
  if summary:
    lines += [""] + summary
  os.makedirs(out, exist_ok=True)
  stem = os.path.join(out, f"time_to_accuracy_{report['meta']['tag']}")
  io.write_json(stem + ".json", report)
  io.atomic_write(stem + ".md", "\n".join(lines) + "\n")
  return "\n".join(lines)


def device_info() -> dict:
  code = ("import jax, json; d = jax.devices()[0]; "
          "print(json.dumps({'platform': d.platform,"
          " 'device': getattr(d, 'device_kind', d.platform), 'jax': jax.__version__}))")
  env = dict(os.environ, XLA_FLAGS="")
  try:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])
  except Exception:  # noqa: BLE001 - informational only
    return {"platform": "?", "device": "?", "jax": "?"}


def main(argv) -> int:
  del argv
  return run_all(FLAGS)


def run_meta(tag: str, info: dict) -> dict:
  """kmnist_jax.io.run_meta, plus what the table names: date, tag, CPU model, the
  training device (platform, device, jax) and the command as typed from the repo."""
  meta = io.run_meta(devices=False)
  script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
  return {**meta, "date": meta["time_utc"], "cpu_model": meta["cpu"], "tag": tag,
          "command": shlex.join(["python", script] + sys.argv[1:]), **info}


def run_all(a) -> int:
  runs = parse_runs(a.runs)
  try:
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
  except ValueError:
    raise UserError(f"--seeds {a.seeds!r} must be comma-separated integers") from None
  if not seeds:
    raise UserError("--seeds is empty; give comma-separated integers, e.g. 0,1,2")
  extra = [o.strip() for o in a.set.split(";") if o.strip()]
  for o in extra:
    if "=" not in o:
      raise UserError(f"--set: override {o!r} must be key=value")
  info = device_info()
  tag = a.platform_tag or info["platform"]
  root = a.workdir_root or tempfile.mkdtemp(prefix="kmnist_tta_")
  report = {"meta": run_meta(tag, info), "rows": []}
  out = a.out or tp.results_dir("time_to_accuracy", info["platform"], info["device"])
  for run in runs:
    for seed in seeds:
      stem = os.path.basename(run["config"]).removesuffix(".py")
      name = f"{stem}_{run['target']}_s{seed}"
      workdir = os.path.join(root, name)
      shutil.rmtree(workdir, ignore_errors=True)  # a fresh start: compilation counted
      if a.wait_idle > 0:
        tp.wait_for_idle(a.wait_idle, os.cpu_count() or 1)
      r = one_run(run, seed, workdir, extra, a.timeout)
      report["rows"].append(r)
      status = (f"reached {100 * r['test_accuracy']:.2f}% at epoch {r['epoch']} after "
                f"{_fmt_time(r['time_s'])}" if r["reached"] else
                f"NOT reached (rc {r['rc']}; best {r.get('best_test_accuracy')})")
      print(f"{name}: {status} (process {_fmt_time(r['process_wall_s'])})", flush=True)
      if r.get("stderr_tail") and r["rc"] not in (0,):
        print(r["stderr_tail"][-800:], file=sys.stderr)
      write(report, out)
      if not a.keep:
        shutil.rmtree(workdir, ignore_errors=True)
  print(write(report, out))
  return 0


if __name__ == "__main__":
  cli.run(main)
