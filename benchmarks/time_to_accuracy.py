r"""Wall-clock time to reach a test accuracy, compilation included.

  python benchmarks/time_to_accuracy.py \
      --runs mnist_cnn:0.99,kmnist_cnn_aug:0.98 [--seeds 0] [--out results] \
      [--set parallel=single] [--platform_tag cpu]

Each run is ``config:target`` (a config name from experiments/configs or a path, and
a test accuracy as a fraction), optionally with ``;``-separated overrides after a
second colon: ``kmnist_cnn_aug:0.98:num_epochs=20;model_kwargs.dense=128``.

Each (run, seed) is one fresh ``experiments/train.py`` process in a fresh workdir, with
``--config.eval_test_every_epoch=True --config.stop_at_test_accuracy=TARGET``: the test
set is evaluated after every epoch and the run stops at the first epoch whose test
accuracy reaches the target (the DAWNBench definition: a fixed schedule, stopped when
the target is first met; the schedule itself is not shortened). Reported:

* ``time to target``: ``elapsed_s`` of that epoch in metrics.jsonl -- seconds from the
  start of ``train_and_evaluate`` (data loading, placement on device, compilation and
  training of every epoch before it, validation included; the per-epoch test
  evaluations are the benchmark's own measurement and not counted),
* ``process wall``: the whole process, Python and JAX imports included,
* or, when the schedule ends first, the best test accuracy reached and the time spent.

On CPU, the process gets one XLA device per core (as ``launch/local.sh train`` does),
so ``parallel=auto`` shards the batch over the cores.

Writes ``<out>/time_to_accuracy_<platform_tag>.json`` and ``.md`` (also printed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


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
      raise SystemExit(f"error: run {item!r} must be CONFIG:TARGET[:k=v;k=v], e.g. "
                       "mnist_cnn:0.99")
    name, target = parts[0], parts[1]
    try:
      target = float(target)
    except ValueError:
      raise SystemExit(f"error: run {item!r}: target {target!r} is not a number") from None
    if not 0.0 < target <= 1.0:
      raise SystemExit(f"error: run {item!r}: target {target} must be a fraction in (0, 1]"
                       " (0.99 for 99%)")
    overrides = [o.strip() for o in parts[2].split(";")] if len(parts) > 2 else []
    for o in overrides:
      if "=" not in o:
        raise SystemExit(f"error: run {item!r}: override {o!r} must be key=value")
    path = name if name.endswith(".py") else os.path.join(
        ROOT, "experiments", "configs", name + ".py")
    if not os.path.isfile(path):
      known = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments", "configs"))
                     if f.endswith(".py") and not f.startswith("_"))
      raise SystemExit(f"error: unknown config {name!r}; known: {', '.join(known)}")
    runs.append({"config": name, "path": path, "target": target,
                 "overrides": [o for o in overrides if o]})
  if not runs:
    raise SystemExit("error: --runs is empty")
  return runs


def read_history(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def one_run(run: dict, seed: int, workdir: str, extra: list[str], timeout: float) -> dict:
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "train.py"),
         "--config", run["path"], "--workdir", workdir,
         f"--config.seed={seed}", "--config.progress=False",
         "--config.tensorboard=False", "--config.eval_test_every_epoch=True",
         f"--config.stop_at_test_accuracy={run['target']}"]
  cmd += [f"--config.{o}" for o in run["overrides"] + extra]
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
  if "xla_force_host_platform_device_count" not in env.get("XLA_FLAGS", ""):
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={os.cpu_count()}").strip()
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


def write(report: dict, out: str) -> str:
  rows = report["rows"]
  lines = [f"Time to test accuracy ({report['meta']['device']}, jax "
           f"{report['meta']['jax']}, {report['meta']['date']}); time = wall-clock from the "
           "start of training (data loading and compilation included) to the end of the "
           "first epoch whose test accuracy reaches the target.",
           f"Command: `{report['meta']['command']}`", "",
           "| config | target | seed | reached | epoch | time to target | process wall | "
           "test acc at that epoch |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    if r["reached"]:
      lines.append(f"| {r['config']} | {100 * r['target']:.1f}% | {r['seed']} | yes | "
                   f"{r['epoch']} | {_fmt_time(r['time_s'])} | "
                   f"{_fmt_time(r['process_wall_s'])} | {100 * r['test_accuracy']:.2f}% |")
    else:
      best = r.get("best_test_accuracy")
      lines.append(f"| {r['config']} | {100 * r['target']:.1f}% | {r['seed']} | no "
                   f"(rc {r['rc']}) | {r['epochs_run']} | -- (ran {_fmt_time(r['time_s'])}) | "
                   f"{_fmt_time(r['process_wall_s'])} | best "
                   f"{'--' if best is None else f'{100 * best:.2f}%'} |")
  by = {}
  for r in rows:
    by.setdefault((r["config"], r["target"]), []).append(r)
  summary = []
  for (cfg, target), rs in by.items():
    times = [r["time_s"] for r in rs if r["reached"]]
    if len(times) > 1:
      summary.append(f"- {cfg} to {100 * target:.1f}%: median {_fmt_time(statistics.median(times))}"
                     f" over {len(times)} of {len(rs)} seeds")
  if summary:
    lines += [""] + summary
  os.makedirs(out, exist_ok=True)
  stem = os.path.join(out, f"time_to_accuracy_{report['meta']['tag']}")
  tmp = stem + ".json.tmp"
  with open(tmp, "w") as f:
    json.dump(report, f, indent=1)
  os.replace(tmp, stem + ".json")
  with open(stem + ".md.tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(stem + ".md.tmp", stem + ".md")
  return "\n".join(lines)


def device_info() -> dict:
  code = ("import jax, json; d = jax.devices()[0]; print(json.dumps({'platform': d.platform,"
          " 'device': getattr(d, 'device_kind', d.platform), 'jax': jax.__version__}))")
  env = dict(os.environ, XLA_FLAGS="")
  try:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])
  except Exception:  # noqa: BLE001 - informational only
    return {"platform": "?", "device": "?", "jax": "?"}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--runs", default="mnist_cnn:0.99,kmnist_cnn_aug:0.98",
                 help="CONFIG:TARGET[:k=v;k=v],... (targets as fractions)")
  p.add_argument("--seeds", default="0")
  p.add_argument("--set", default="", help="overrides for every run, k=v;k=v")
  p.add_argument("--out", default=os.path.join(ROOT, "results"))
  p.add_argument("--platform_tag", default="", help="file name tag (default: platform)")
  p.add_argument("--workdir_root", default="")
  p.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
  p.add_argument("--keep", action="store_true", help="keep the runs' workdirs")
  a = p.parse_args(argv)
  runs = parse_runs(a.runs)
  try:
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
  except ValueError:
    raise SystemExit(f"error: --seeds {a.seeds!r} must be comma-separated integers") from None
  extra = [o.strip() for o in a.set.split(";") if o.strip()]
  info = device_info()
  tag = a.platform_tag or info["platform"]
  root = a.workdir_root or tempfile.mkdtemp(prefix="kmnist_tta_")
  report = {"meta": {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                     "host": platform.node(), "cpu_count": os.cpu_count(), "tag": tag,
                     "command": "python benchmarks/time_to_accuracy.py " + " ".join(
                         sys.argv[1:] if argv is None else argv), **info},
            "rows": []}
  for run in runs:
    for seed in seeds:
      name = f"{os.path.basename(run['config']).removesuffix('.py')}_{run['target']}_s{seed}"
      workdir = os.path.join(root, name)
      shutil.rmtree(workdir, ignore_errors=True)  # a fresh start: compilation counted
      r = one_run(run, seed, workdir, extra, a.timeout)
      report["rows"].append(r)
      status = (f"reached {100 * r['test_accuracy']:.2f}% at epoch {r['epoch']} after "
                f"{_fmt_time(r['time_s'])}" if r["reached"] else
                f"NOT reached (rc {r['rc']}; best {r.get('best_test_accuracy')})")
      print(f"{name}: {status} (process {_fmt_time(r['process_wall_s'])})", flush=True)
      if r.get("stderr_tail") and r["rc"] not in (0,):
        print(r["stderr_tail"][-800:], file=sys.stderr)
      write(report, a.out)
      if not a.keep:
        shutil.rmtree(workdir, ignore_errors=True)
  print(write(report, a.out))
  return 0


if __name__ == "__main__":
  sys.exit(main())
