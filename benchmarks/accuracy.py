r"""Test accuracy of each experiment config after its default schedule, over seeds.

  python benchmarks/accuracy.py --configs kmnist_cnn,mnist_cnn,kmnist_keras_cnn \
      --seeds 0,1,2 [--datasets kmnist,mnist] [--max_minutes 30] [--out results]

Each (config, dataset, seed) trains with experiments/train.py's code path in a fresh
workdir under --workdir_root (default: a temp dir; finished runs there are reused),
then the table of mean / std test accuracy (and wall-clock per run, compilation
included) is written to <out>/accuracy_<platform>.json and .md and printed.
--datasets runs each config on those datasets too (dataset override); default: the
config's own. --max_minutes stops starting new runs after that long (the table says
which runs are missing) so that a lent accelerator's time is never overrun.
"""

import datetime
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_string("configs", "kmnist_cnn,mnist_cnn,kmnist_keras_cnn,kmnist_logreg,"
                    "kmnist_mlp", "Comma-separated config names (experiments/configs).")
flags.DEFINE_string("seeds", "0,1,2", "Comma-separated seeds.")
flags.DEFINE_string("datasets", "", "Also/instead run on these datasets (override).")
flags.DEFINE_float("max_minutes", 0.0, "Start no new run after this long (0: no limit).")
flags.DEFINE_string("workdir_root", "", "Where runs go (default: a temp dir).")
flags.DEFINE_string("out", "results", "Output folder for the table.")
flags.DEFINE_string("set", "", "Extra overrides for every run, e.g. 'parallel=single'.")
FLAGS = flags.FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name):
  from kmnist_jax import config as config_lib
  return config_lib.load_file(name)


def parse_overrides(text):
  import ast
  out = {}
  for item in filter(None, text.split(",")):
    k, v = item.split("=", 1)
    try:
      out[k] = ast.literal_eval(v)
    except (ValueError, SyntaxError):
      out[k] = v
  return out


def write_table(rows, final=True):
  """Writes <out>/accuracy_<platform>.{json,md} (after every run: a cut-off run keeps
  what finished)."""
  import jax
  import numpy as np
  dev = jax.devices()[0]
  meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
          "device": getattr(dev, "device_kind", dev.platform),
          "platform": dev.platform, "device_count": jax.device_count(),
          "host": platform.node(), "cpu_count": os.cpu_count(),
          "jax": jax.__version__, "command": " ".join(sys.argv)}
  table = []
  for row in rows.values():
    accs = [r["test_accuracy"] for r in row["runs"]]
    row["mean"] = float(np.mean(accs)) if accs else None
    row["std"] = float(np.std(accs, ddof=1)) if len(accs) > 1 else None
    row["wall_s_mean"] = float(np.mean([r["wall_s"] for r in row["runs"]])) if accs else None
    table.append(row)
  os.makedirs(FLAGS.out, exist_ok=True)
  stem = os.path.join(FLAGS.out, f"accuracy_{dev.platform}")
  with open(stem + ".json", "w") as f:
    json.dump({"meta": meta, "rows": table}, f, indent=1)
  lines = [f"Test accuracy after each config's default schedule ({meta['device']}, "
           f"{meta['device_count']} device(s), jax {meta['jax']}, {meta['date']}).",
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
  with open(stem + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  if final:
    print("\n".join(lines))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from kmnist_jax import train

  t_start = time.time()
  root = FLAGS.workdir_root or tempfile.mkdtemp(prefix="kmnist_acc_")
  seeds = [int(s) for s in FLAGS.seeds.split(",")]
  extra = parse_overrides(FLAGS.set)
  runs = []
  for name in FLAGS.configs.split(","):
    base = load_config(name)
    for ds in (FLAGS.datasets.split(",") if FLAGS.datasets else [base.dataset]):
      for seed in seeds:
        runs.append((name, ds, seed))
  rows = {}
  for name, ds, seed in runs:
    key = (name, ds)
    rows.setdefault(key, {"config": name, "dataset": ds, "runs": [], "missing": []})
    if FLAGS.max_minutes and time.time() - t_start > 60 * FLAGS.max_minutes:
      rows[key]["missing"].append(seed)
      continue
    cfg = load_config(name)
    cfg.dataset, cfg.seed, cfg.progress, cfg.tensorboard = ds, seed, False, False
    for k, v in extra.items():
      cfg[k] = v
    workdir = os.path.join(root, f"{name}_{ds}_s{seed}")
    t0 = time.time()
    res = train.train_and_evaluate(cfg, workdir, log=lambda *_: None)
    wall = time.time() - t0
    rows[key]["runs"].append({"seed": seed, "test_accuracy": res["test_accuracy"],
                              "test_balanced_accuracy": res["test_balanced_accuracy"],
                              "epochs": res["epochs"], "wall_s": wall,
                              "train_img_per_s": res.get("train_img_per_s")})
    print(f"{name} on {ds}, seed {seed}: test accuracy {res['test_accuracy']:.4f} "
          f"({wall:.0f} s)", flush=True)
    write_table(rows, final=False)

  write_table(rows)



if __name__ == "__main__":
  app.run(main)
