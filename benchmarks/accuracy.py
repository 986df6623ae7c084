r"""Test accuracy of each experiment config after its default schedule, over seeds.

  python benchmarks/accuracy.py --configs kmnist_cnn,mnist_cnn,kmnist_keras_cnn \
      --seeds 0,1,2 [--datasets kmnist,mnist] [--max_minutes 30] [--out DIR] \
      [--workdir_root DIR] [--parallel N] [--set train_limit=1024,parallel=single]

Each (config, dataset, seed) is a ``train`` run of kmnist_jax.studies.plan (the
study runner's cache rule: a run under --workdir_root, default a temp dir, whose
record holds its key, the SHA-256 of its full resolved config, is reused; an
interrupted one resumes), then the table of mean / std test accuracy (and wall-clock
per run, compilation included) is written to <out>/accuracy_<platform>.json and .md
(<out> default: results/accuracy/<machine kind>/, e.g. gpu_h100), and printed.
--datasets runs each config on those datasets too (dataset override); default: the
config's own. --max_minutes starts no new run after that long (the table
says which runs are missing) so that a lent accelerator's time is never overrun.
"""

import ast
import os
import tempfile

from absl import flags, logging

from kmnist_jax import cli, lock
from kmnist_jax import config as config_lib
from kmnist_jax.errors import UserError
from kmnist_jax.studies import execute
from kmnist_jax.studies import plan as plan_lib

flags.DEFINE_string("configs", "kmnist_cnn,mnist_cnn,kmnist_keras_cnn,kmnist_logreg,"
                    "kmnist_mlp", "Comma-separated config names (experiments/configs).")
flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds.")
flags.DEFINE_string("datasets", "", "Also/instead run on these datasets (override).")
flags.DEFINE_float("max_minutes", 0.0, "Start no new run after this long (0: no limit).")
flags.DEFINE_string("workdir_root", "", "Where runs go (default: a temp dir).")
flags.DEFINE_string("out", "", "Output folder for the table (default results/accuracy/"
                    "<machine kind>/, e.g. gpu_h100).")
flags.DEFINE_string("set", "", "Extra overrides for every run, e.g. 'parallel=single'.")
flags.DEFINE_integer("parallel", 1, "Runs side by side (0: the runner's default).")
FLAGS = flags.FLAGS


def parse_overrides(text):
  out = {}
  for item in filter(None, text.split(",")):
    k, sep, v = item.partition("=")
    if not sep:
      raise UserError(f"--set: {item!r} is not FIELD=VALUE")
    try:
      out[k] = ast.literal_eval(v)
    except (ValueError, SyntaxError):
      out[k] = v
  return out


def plan(workdir):
  """One train run per (config, dataset, seed), validated before anything trains."""
  from kmnist_jax import train  # deferred: JAX loads once the flags are checked
  seeds = [int(s) for s in FLAGS.seeds.split(",")]
  extra = parse_overrides(FLAGS.set)
  runs = []
  for name in FLAGS.configs.split(","):
    base = config_lib.load_file(name)
    for ds in (FLAGS.datasets.split(",") if FLAGS.datasets else [base.dataset]):
      for seed in seeds:
        cfg = config_lib.load_file(name)
        cfg.dataset, cfg.seed, cfg.progress, cfg.tensorboard = ds, seed, False, False
        for k, v in extra.items():
          node, leaf = config_lib.resolve_field(cfg, k, "--set")
          node[leaf] = v
        config_lib.validate(cfg)
        runs.append(plan_lib.Run(name=f"{name}_{ds}_s{seed}", kind="train", seed=seed,
                               config=train.resolved_config(cfg),
                               info={"config": name, "dataset": ds}))
  return plan_lib.Plan("accuracy", workdir, runs)


def write_table(p, records):
  """<out>/accuracy_<platform>.{json,md}."""
  import jax
  import numpy as np

  from kmnist_jax import io
  meta = io.run_meta()
  dev = jax.devices()[0]
  rows = {}
  for run, rec in zip(p.runs, records):
    key = (run.info["config"], run.info["dataset"])
    row = rows.setdefault(key, {"config": key[0], "dataset": key[1], "runs": [],
                                "missing": []})
    if rec is None:
      row["missing"].append(run.seed)
      continue
    res = rec["results"]
    row["runs"].append({"seed": run.seed, "test_accuracy": res["test_accuracy"],
                        "test_balanced_accuracy": res["test_balanced_accuracy"],
                        "epochs": res["epochs"], "wall_s": rec["wall_s"],
                        "train_img_per_s": res.get("train_img_per_s")})
  table = []
  for row in rows.values():
    accs = [r["test_accuracy"] for r in row["runs"]]
    row["mean"] = float(np.mean(accs)) if accs else None
    row["std"] = float(np.std(accs, ddof=1)) if len(accs) > 1 else None
    row["wall_s_mean"] = (float(np.mean([r["wall_s"] for r in row["runs"]])) if accs
                          else None)
    table.append(row)
  import throughput as tp  # benchmarks/throughput.py: this script's folder is on sys.path
  out = FLAGS.out or tp.results_dir("accuracy", dev.platform,
                                    getattr(dev, "device_kind", ""))
  os.makedirs(out, exist_ok=True)
  stem = os.path.join(out, f"accuracy_{dev.platform}")
  io.write_json(stem + ".json", {"meta": meta, "rows": table})
  kind = getattr(dev, "device_kind", dev.platform)
  lines = [f"Test accuracy after each config's default schedule ({kind}, "
           f"{jax.device_count()} device(s), jax {jax.__version__}, {meta['time_utc']}).",
           f"Command: `{meta['command']}`", "",
           "| config | dataset | seeds | test accuracy (mean ± std) | wall-clock per run |",
           "|---|---|---|---|---|"]
  for row in table:
    n = len(row["runs"])
    if not n:
      lines.append(f"| {row['config']} | {row['dataset']} | 0 | not run (time cap) | |")
      continue
    acc = f"{100 * row['mean']:.2f}%"
    if row["std"] is not None:
      acc += f" ± {100 * row['std']:.2f}"
    lines.append(f"| {row['config']} | {row['dataset']} | {n} | {acc} | "
                 f"{row['wall_s_mean']:.0f} s |")
  io.atomic_write(stem + ".md", "\n".join(lines) + "\n")
  print("\n".join(lines))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  root = FLAGS.workdir_root or tempfile.mkdtemp(prefix="kmnist_acc_")
  p = plan(root)
  with lock.WorkdirLock(root):
    failures = execute.execute(p, parallel=FLAGS.parallel, max_minutes=FLAGS.max_minutes)
    write_table(p, plan_lib.records(p))
  if failures:
    raise UserError(f"{len(failures)} run(s) failed: {', '.join(failures)}")


if __name__ == "__main__":
  cli.run(main)
