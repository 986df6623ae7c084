r"""The augmentation study: policy x dataset x seed, one training run each, one table.

  python experiments/augmentation_study.py \
      --config experiments/configs/augment_study_reduced.py --workdir workdirs/augment_reduced
      [--config.study.seeds=(0,1) --config.num_epochs=2 ...]

The config is a training config (kmnist_jax.config.base()) plus a `study` block:
`policies` (augmentation policy strings, kmnist_jax.augment; 'none' is the baseline
every gain is measured against), `datasets`, `seeds`, and options. Each
(dataset, policy, seed) trains in its own workdir ``<workdir>/runs/<dataset>/<label>/
seed<k>`` with ``kmnist_jax.train.train_and_evaluate``: a finished run is skipped (its
results.json is read back), a partial one resumes from its last checkpoint, so the
same command can be stopped and re-run at any time. Every policy is parsed and every
run's config validated before anything loads.

Writes in --workdir (atomically, after every run):
  results.md / results.json  test accuracy mean and std per (dataset, policy), the
                             paired change against no augmentation (same seeds), the
                             classes that gain and lose most, the augmentation's cost
                             in ms per batch (compiled lax.scan, this machine) and the
                             training throughput, and a per-class change table.
  samples_<dataset>.png      one test image per class and what each policy makes of it.
  per_class_gain_<dataset>.png  heatmap: per-class test accuracy change (percentage
                             points) of each policy against none, mean over seeds.
Accuracy under corruptions is not reported yet (it needs the robustness evaluation).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time

import _bootstrap  # noqa: F401  (puts the repo root on sys.path)
from absl import app, flags, logging
from ml_collections import config_flags

from kmnist_jax.errors import UserError
from kmnist_jax.io import atomic_write

FLAGS = flags.FLAGS
if __name__ == "__main__":
  config_flags.DEFINE_config_file(
      "config", None, "Study config (experiments/configs/augment_study_*.py).",
      lock_config=True)
  flags.DEFINE_string("workdir", None, "Root folder of the runs, tables and pictures.")
  flags.DEFINE_bool("compilation_cache", True,
                    "Persistent XLA compilation cache in <workdir>/jax_cache: runs that "
                    "differ only in seed or dataset reuse the compiled training step.")
  flags.mark_flags_as_required(["config", "workdir"])

STUDY_FIELD = "study"


# ---- Plan -------------------------------------------------------------------------------

def policy_label(policy: str) -> str:
  from kmnist_jax import augment
  names = [name for name, _ in augment.parse(policy)]
  return "+".join(names) if names else augment.NONE


def plan(cfg) -> tuple[list[dict], list[dict]]:
  """(policies [{label, policy, canonical}], runs [{dataset, label, seed, ...}]).

  Raises UserError for a bad policy, dataset or run config, before anything loads.
  """
  from kmnist_jax import augment
  from kmnist_jax import config as config_lib
  from kmnist_jax import data as data_lib

  if STUDY_FIELD not in cfg:
    raise UserError("the study config has no 'study' block; start from "
                    "experiments/configs/augment_study_reduced.py")
  st = cfg[STUDY_FIELD]
  if not st.policies:
    raise UserError("config.study.policies is empty; give at least 'none' and one policy")
  if not st.seeds:
    raise UserError("config.study.seeds is empty; give at least one seed")
  for ds in st.datasets:
    if ds not in data_lib.DATASETS:
      raise UserError(f"config.study.datasets: unknown dataset {ds!r}; valid choices: "
                      f"{', '.join(sorted(data_lib.DATASETS))}")
  policies, seen = [], {}
  for policy in st.policies:
    try:
      parsed = augment.parse(policy)
    except UserError as e:
      raise UserError(f"config.study.policies: {e}") from None
    label = "+".join(n for n, _ in parsed) if parsed else augment.NONE
    seen[label] = seen.get(label, 0) + 1
    if seen[label] > 1:
      label = f"{label}_{seen[label]}"
    policies.append({"label": label, "policy": policy,
                     "canonical": augment.format_policy(parsed)})
  if augment.NONE not in [p["label"] for p in policies]:
    raise UserError("config.study.policies must include 'none' (the baseline that "
                    "per-class gains are measured against)")
  runs = []
  for seed in st.seeds:                # seeds outermost: every cell gets a value early
    for ds in st.datasets:
      for p in policies:
        tcfg = run_config(cfg, ds, p["policy"], seed)
        config_lib.validate(tcfg)
        runs.append({"dataset": ds, "label": p["label"], "policy": p["policy"],
                     "seed": int(seed), "config": tcfg})
  return policies, runs


def run_config(cfg, dataset: str, policy: str, seed: int):
  """The training config of one run: the study config without its `study` block."""
  from kmnist_jax import augment
  from kmnist_jax import config as config_lib
  d = config_lib.to_dict(cfg)
  d.pop(STUDY_FIELD, None)
  tcfg = config_lib.from_dict(d)
  tcfg.dataset = dataset
  tcfg.augment = "" if policy.strip() in ("", augment.NONE) else policy
  tcfg.seed = int(seed)
  return tcfg


def run_dir(workdir: str, run: dict) -> str:
  return os.path.join(workdir, "runs", run["dataset"], run["label"], f"seed{run['seed']}")


# ---- Running ------------------------------------------------------------------------------

def train_one(run: dict, workdir: str, log) -> tuple[dict, bool]:
  """(results, trained): skips a finished run whose marker holds the same config."""
  from kmnist_jax import config as config_lib
  from kmnist_jax import train
  wd = run_dir(workdir, run)
  marker = os.path.join(wd, "study_run.json")
  cfg_dict = config_lib.to_dict(run["config"])
  results_path = os.path.join(wd, "results.json")
  if os.path.exists(marker) and os.path.exists(results_path):
    with open(marker) as f:
      saved = json.load(f)
    with open(results_path) as f:
      res = json.load(f)
    if (res.get("finished") and not config_lib.differences(saved["config"], cfg_dict)):
      res["wall_s"] = saved.get("wall_s")
      return res, False
  t0 = time.time()
  res = train.train_and_evaluate(run["config"], wd, log=lambda *_: None)
  res["wall_s"] = time.time() - t0
  if res.get("finished"):
    atomic_write(marker, json.dumps({"config": cfg_dict, "wall_s": res["wall_s"]},
                                     indent=1))
  return res, True


# ---- Summaries ----------------------------------------------------------------------------

def per_class_accuracy(confusion) -> list[float]:
  import numpy as np
  conf = np.asarray(confusion, np.float64)
  total = conf.sum(1)
  return np.divide(np.diag(conf), total, out=np.zeros(len(conf)),
                   where=total > 0).tolist()


def summarize(cfg, policies, runs, results: dict, costs: dict, meta: dict) -> dict:
  """Everything the table and the heatmap show, JSON-safe. `results` maps
  (dataset, label, seed) -> results.json of finished runs."""
  import numpy as np
  from kmnist_jax import data as data_lib

  st = cfg[STUDY_FIELD]
  rows = []
  for ds in st.datasets:
    names = list(data_lib.get_info(ds).class_names)
    base = {r["seed"]: results[(ds, "none", r["seed"])] for r in runs
            if r["dataset"] == ds and r["label"] == "none"
            and (ds, "none", r["seed"]) in results}
    for p in policies:
      got = {s: results[(ds, p["label"], s)] for s in map(int, st.seeds)
             if (ds, p["label"], s) in results}
      accs = [got[s]["test_accuracy"] for s in sorted(got)]
      row = {"dataset": ds, "label": p["label"], "policy": p["policy"],
             "canonical": p["canonical"], "seeds": sorted(got),
             "missing_seeds": [int(s) for s in st.seeds if int(s) not in got],
             "test_accuracy": accs,
             "mean": float(np.mean(accs)) if accs else None,
             "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
             "class_names": names,
             "cost_ms_per_batch": costs.get(p["policy"], {}).get("ms_per_batch"),
             "train_img_per_s": (float(np.median([got[s]["train_img_per_s"]
                                                  for s in got]))
                                 if got and all(got[s].get("train_img_per_s")
                                                for s in got) else None)}
      pcs = {s: per_class_accuracy(got[s]["test_confusion"]) for s in got}
      row["per_class_mean"] = (np.mean([pcs[s] for s in pcs], 0).tolist()
                               if pcs else None)
      paired = sorted(set(got) & set(base))
      if paired and p["label"] != "none":
        d_acc = [got[s]["test_accuracy"] - base[s]["test_accuracy"] for s in paired]
        d_cls = np.array([np.subtract(pcs[s], per_class_accuracy(
            base[s]["test_confusion"])) for s in paired])
        row.update(
            paired_seeds=paired,
            delta_mean=float(np.mean(d_acc)),
            delta_std=float(np.std(d_acc, ddof=1)) if len(d_acc) > 1 else None,
            per_class_gain=d_cls.mean(0).tolist(),
            per_class_gain_std=(d_cls.std(0, ddof=1).tolist() if len(paired) > 1
                                else None))
      rows.append(row)
  return {"meta": meta, "policies": policies, "rows": rows, "costs": costs,
          "datasets": list(st.datasets), "seeds": [int(s) for s in st.seeds]}


def _pct(x, digits=2):
  return "" if x is None else f"{100 * x:.{digits}f}"


def _pp(x, digits=2):
  return "" if x is None else f"{100 * x:+.{digits}f}"


def render_markdown(summary: dict) -> str:
  meta = summary["meta"]
  lines = [
      "# Augmentation study", "",
      f"{meta['date']} · {meta['device']} ({meta['device_count']} device(s), "
      f"{meta['cpu_count']} CPU cores) · jax {meta['jax']} · config "
      f"`{meta['config_file']}` · model {meta['model']} "
      f"{json.dumps(meta['model_kwargs'])}, {meta['num_epochs']} epochs, "
      f"{meta['train_examples']} training images · seeds {summary['seeds']}"
      + (f" · wall-clock of the runs {meta['runs_wall_s'] / 60:.1f} min"
         if meta.get("runs_wall_s") else ""), "",
      f"Command: `{meta['command']}`", "",
      "Test accuracy over seeds (mean ± std); **Δ** is the paired change against "
      "`none` with the same seed (percentage points, mean ± std over seeds); "
      "classes: largest mean per-class gains / largest loss (pp); cost: the "
      "policy alone, ms per batch of "
      f"{meta['cost_batch_size']} inside a compiled `lax.scan` on this machine; "
      "img/s: training throughput of the runs (median).", ""]
  for ds in summary["datasets"]:
    lines += [f"## {ds}", "",
              "| policy | seeds | test accuracy % | Δ vs none (pp) | gain most | "
              "lose most | cost ms/batch | train img/s |",
              "|---|---|---|---|---|---|---|---|"]
    rows = [r for r in summary["rows"] if r["dataset"] == ds]
    for r in rows:
      acc = _pct(r["mean"])
      if r["std"] is not None:
        acc += f" ± {100 * r['std']:.2f}"
      if not r["seeds"]:
        acc = "not run yet"
      delta = _pp(r.get("delta_mean"))
      if r.get("delta_std") is not None:
        delta += f" ± {100 * r['delta_std']:.2f}"
      gain = lose = ""
      if r.get("per_class_gain") is not None:
        g = r["per_class_gain"]
        order = sorted(range(len(g)), key=lambda i: -g[i])
        gain = ", ".join(f"{r['class_names'][i]} {_pp(g[i], 1)}" for i in order[:3]
                         if g[i] > 0) or "none"
        worst = order[-1]
        lose = f"{r['class_names'][worst]} {_pp(g[worst], 1)}" if g[worst] < 0 else "none"
      cost = "" if r["cost_ms_per_batch"] is None else f"{r['cost_ms_per_batch']:.2f}"
      ips = "" if r["train_img_per_s"] is None else f"{r['train_img_per_s']:.0f}"
      lines.append(f"| `{r['label']}` | {len(r['seeds'])} | {acc} | {delta} | {gain} | "
                   f"{lose} | {cost} | {ips} |")
    lines.append("")
    gains = [r for r in rows if r.get("per_class_gain") is not None]
    if gains:
      names = gains[0]["class_names"]
      lines += [f"Per-class test accuracy change against `none` on {ds} (pp, mean over "
                "seeds):", "",
                "| policy | " + " | ".join(names) + " |",
                "|---" * (len(names) + 1) + "|"]
      for r in gains:
        lines.append(f"| `{r['label']}` | " + " | ".join(
            _pp(g, 1) for g in r["per_class_gain"]) + " |")
      lines.append("")
  lines += ["## Policies", "", "| label | policy (every parameter) |", "|---|---|"]
  for p in summary["policies"]:
    lines.append(f"| `{p['label']}` | `{p['canonical']}` |")
  costs = summary.get("costs") or {}
  ops = {k[len("op:"):]: v for k, v in costs.items() if k.startswith("op:")}
  if ops:
    lines += ["", f"## Cost of each op alone (defaults, p=1; ms per batch of "
              f"{meta['cost_batch_size']} in a compiled lax.scan on this machine, "
              "fastest and median of 5 repeats)", "",
              "| op | ms/batch (fastest) | ms/batch (median) |", "|---|---|---|"]
    for name, v in ops.items():
      lines.append(f"| `{name}` | {v['ms_per_batch']:.2f} | "
                   f"{v.get('ms_per_batch_median', v['ms_per_batch']):.2f} |")
  missing = [f"{r['dataset']}/{r['label']}: seeds {r['missing_seeds']}"
             for r in summary["rows"] if r["missing_seeds"]]
  if missing:
    lines += ["", "Missing runs (re-run the same command to finish them): "
              + "; ".join(missing)]
  lines += ["", "Accuracy under corruptions: not reported yet (needs the robustness "
            "evaluation)."]
  return "\n".join(lines) + "\n"


def write_tables(summary: dict, workdir: str) -> str:
  md = render_markdown(summary)
  atomic_write(os.path.join(workdir, "results.json"), json.dumps(summary, indent=1))
  atomic_write(os.path.join(workdir, "results.md"), md)
  return md


# ---- Pictures -----------------------------------------------------------------------------

def _savefig(fig, path):
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=110, bbox_inches="tight")
  os.replace(tmp, path)


def sample_grid(cfg, policies, dataset: str, workdir: str, n: int) -> str:
  """samples_<dataset>.png: one test image per class (first n classes), then each
  policy applied to that batch (key 0; batch-level ops mix within the batch)."""
  import jax
  import jax.numpy as jnp
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  from kmnist_jax import augment
  from kmnist_jax import data as data_lib

  ds = data_lib.load(dataset, data_dir=cfg.data_dir or None, source=cfg.data_source,
                     tfds_dir=cfg.tfds_dir or None, limit={"test": 2000})
  test = ds.splits["test"]
  C = ds.info.num_classes
  idx = [int(np.flatnonzero(test.labels == c)[0]) for c in range(C)
         if np.any(test.labels == c)][:n]
  x = jnp.asarray(test.images[idx], jnp.float32)[..., None] / 255.0
  t = jax.nn.one_hot(jnp.asarray(test.labels[idx]), C)
  rows = [("original", np.asarray(x))]
  for p in policies:
    if p["label"] == augment.NONE:
      continue
    y, _ = jax.jit(augment.build(p["policy"], C))(jax.random.key(0), x, t)
    rows.append((p["label"], np.asarray(y)))
  names = ds.info.class_names
  fig, axes = plt.subplots(len(rows), len(idx), squeeze=False,
                           figsize=(0.9 * len(idx) + 1.6, 0.95 * len(rows) + 0.4))
  for i, (label, imgs) in enumerate(rows):
    for j in range(len(idx)):
      ax = axes[i, j]
      ax.imshow(imgs[j, ..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(names[test.labels[idx[j]]], fontsize=8)
      if j == 0:
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
  fig.suptitle(f"{dataset}: augmented samples per policy", fontsize=9)
  path = os.path.join(workdir, f"samples_{dataset}.png")
  _savefig(fig, path)
  plt.close(fig)
  return path


def gain_heatmap(summary: dict, dataset: str, workdir: str) -> str | None:
  """per_class_gain_<dataset>.png: policies x classes, change in pp (diverging)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  rows = [r for r in summary["rows"]
          if r["dataset"] == dataset and r.get("per_class_gain") is not None]
  if not rows:
    return None
  g = 100 * np.array([r["per_class_gain"] for r in rows])
  names = rows[0]["class_names"]
  lim = max(0.5, float(np.abs(g).max()))
  fig, ax = plt.subplots(figsize=(0.7 * len(names) + 2.5, 0.5 * len(rows) + 1.4))
  im = ax.imshow(g, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
  ax.set_xticks(range(len(names)), names, fontsize=8)
  ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=8)
  for i in range(g.shape[0]):
    for j in range(g.shape[1]):
      ax.text(j, i, f"{g[i, j]:+.1f}", ha="center", va="center", fontsize=7,
              color="white" if abs(g[i, j]) > 0.6 * lim else "black")
  n_seeds = max(len(r.get("paired_seeds", [])) for r in rows)
  ax.set_title(f"{dataset}: per-class test accuracy change vs none "
               f"(pp, mean over {n_seeds} seed(s))", fontsize=9)
  fig.colorbar(im, ax=ax, label="pp")
  path = os.path.join(workdir, f"per_class_gain_{dataset}.png")
  _savefig(fig, path)
  plt.close(fig)
  return path


# ---- The study ----------------------------------------------------------------------------

def measure_costs(cfg, policies) -> dict:
  """{policy: {...}, 'op:<name>': {...}}: ms per batch, on the first dataset's images."""
  from kmnist_jax import augment
  from kmnist_jax import data as data_lib
  st = cfg[STUDY_FIELD]
  ds = data_lib.load(st.datasets[0], data_dir=cfg.data_dir or None,
                     source=cfg.data_source, tfds_dir=cfg.tfds_dir or None,
                     limit={"test": max(st.cost_batch_size, 128)})
  images = ds.splits["test"].images
  C = ds.info.num_classes
  out = {}
  for p in policies:
    out[p["policy"]] = augment.measure_cost(p["policy"], images, num_classes=C,
                                            batch_size=st.cost_batch_size)
  for name, op in augment.REGISTRY.items():
    out[f"op:{name}"] = augment.measure_cost(f"{name}(p=1)", images, num_classes=C,
                                             batch_size=st.cost_batch_size)
  return out


def _meta(cfg, config_file: str, command: str) -> dict:
  import jax
  dev = jax.devices()[0]
  return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
          "device": getattr(dev, "device_kind", dev.platform),
          "platform": dev.platform, "device_count": jax.device_count(),
          "host": platform.node(), "cpu_count": os.cpu_count(), "jax": jax.__version__,
          "command": command, "config_file": config_file, "model": cfg.model,
          "model_kwargs": dict(cfg.model_kwargs.to_dict()),
          "num_epochs": cfg.num_epochs,
          "train_examples": cfg.train_limit or "all",
          "cost_batch_size": cfg[STUDY_FIELD].cost_batch_size}


def run_study(cfg, workdir: str, *, log=print, config_file: str = "",
              command: str = "") -> dict:
  """Trains every (dataset, policy, seed) not finished yet, writes tables and pictures.

  Returns the summary (also in <workdir>/results.json).
  """
  t_start = time.time()
  policies, runs = plan(cfg)            # every bad input fails here, before any load
  st = cfg[STUDY_FIELD]
  os.makedirs(workdir, exist_ok=True)
  meta = _meta(cfg, config_file, command)
  log(f"{len(runs)} runs: {len(policies)} policies x {len(st.datasets)} datasets x "
      f"{len(st.seeds)} seeds, in {workdir}")

  for ds in st.datasets:
    if st.grid_examples:
      log(f"wrote {sample_grid(cfg, policies, ds, workdir, st.grid_examples)}")
  costs_path = os.path.join(workdir, "costs.json")
  costs = {}
  if os.path.exists(costs_path):
    with open(costs_path) as f:
      costs = json.load(f)
  if st.measure_costs and not all(p["policy"] in costs for p in policies):
    costs = measure_costs(cfg, policies)
    atomic_write(costs_path, json.dumps(costs, indent=1))
    log("augmentation cost (ms per batch of %d): %s" % (st.cost_batch_size, ", ".join(
        f"{p['label']} {costs[p['policy']]['ms_per_batch']:.2f}" for p in policies)))

  results = {}
  for i, run in enumerate(runs):
    key = (run["dataset"], run["label"], run["seed"])
    if st.max_minutes and time.time() - t_start > 60 * st.max_minutes:
      log(f"[{i + 1}/{len(runs)}] {'/'.join(map(str, key))}: not started "
          f"(max_minutes={st.max_minutes:g}); run the command again to continue")
      continue
    res, trained = train_one(run, workdir, log)
    if res.get("finished"):
      results[key] = res
    log(f"[{i + 1}/{len(runs)}] {run['dataset']} {run['label']} seed {run['seed']}: "
        f"test accuracy {res['test_accuracy']:.4f}"
        + (f" ({res['wall_s']:.0f} s)" if trained else " (finished before; skipped)"))
    summary = summarize(cfg, policies, runs, results, costs, meta)
    write_tables(summary, workdir)
  meta["runs_wall_s"] = sum(r.get("wall_s") or 0.0 for r in results.values())
  meta["this_invocation_s"] = time.time() - t_start
  summary = summarize(cfg, policies, runs, results, costs, meta)
  md = write_tables(summary, workdir)
  for ds in st.datasets:
    path = gain_heatmap(summary, ds, workdir)
    if path:
      log(f"wrote {path}")
  log(md)
  log(f"study done in {time.time() - t_start:.0f} s; tables in "
      f"{os.path.join(workdir, 'results.md')}")
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  try:
    if FLAGS.compilation_cache:
      _bootstrap.compilation_cache(FLAGS.workdir)
    cfg = FLAGS.config
    run_study(cfg, FLAGS.workdir, config_file=config_flags.get_config_filename(
        FLAGS["config"]), command=" ".join(sys.argv))
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
