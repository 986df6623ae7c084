r"""The README's performance table, generated from the measured results.

  python benchmarks/perf_table.py            # rewrite the table in README.md
  python benchmarks/perf_table.py --check    # exit 1 if README.md's table is stale

One row per machine kind (results/<what>/<kind>/), each cell the latest measurement of
that kind, linked to its file (results/README.md gives its command, commit and date):
- training: best JAX / best PyTorch variant, same model and batch
  (results/throughput/: the median over repetitions where there were several);
- time to accuracy: mean +- std over the seeds that reached the target, and how many
  did (results/time_to_accuracy/: MNIST 99% and KMNIST 98%, the config named);
- inference: JAX / best PyTorch on the clean test set and on the corrupted suite
  (results/eval_throughput/).
The table sits between the README's `<!-- perf:begin -->` and `<!-- perf:end -->` lines.
"""

import glob
import json
import os
import statistics

import readme_block
from absl import flags

from kmnist_jax import cli

flags.DEFINE_bool("check", False, "Only check that README.md's table is up to date.")
flags.DEFINE_string("readme", "", "README to update (default: the repo's README.md).")
FLAGS = flags.FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results")
BEGIN, END = "<!-- perf:begin -->", "<!-- perf:end -->"
KINDS = {"cpu_zen4": "AMD EPYC Zen 4, 2 cores (AVX-512)",
         "cpu_zen3": "AMD EPYC Zen 3, 2 cores (AVX2)",
         "cpu_intel": "Intel Xeon, 2 cores (AVX-512)",
         "gpu_h100": "NVIDIA H100"}
TARGETS = (("mnist", 0.99), ("kmnist", 0.98))


def _files(what: str, kind: str) -> list[tuple[str, dict]]:
  """(results-relative .md link, loaded .json) of a what/kind folder, newest first."""
  out = []
  for path in glob.glob(os.path.join(RESULTS, what, kind, "*.json")):
    with open(path) as f:
      d = json.load(f)
    meta = d.get("meta") or {}
    date = str(meta.get("date") or meta.get("time_utc") or d.get("date") or "")
    out.append((date, os.path.relpath(path, REPO)[:-5] + ".md", d))
  out.sort(key=lambda t: t[0], reverse=True)
  return [(link, d) for _, link, d in out]


def _training(kind: str) -> str:
  for link, d in _files("throughput", kind):
    s = d.get("summary") or {}
    if all(m in s for m in ("keras_cnn", "cnn")):
      r = [s[m].get("ratio_median", s[m]["jax_over_torch"]) for m in ("keras_cnn", "cnn")]
      return f"[{r[0]:.2f}x · {r[1]:.2f}x]({link})"
  return "not measured"


def _dataset(config: str) -> str:
  return config.split("_")[0]


def _time(kind: str, dataset: str, target: float) -> str:
  for link, d in _files("time_to_accuracy", kind):
    groups: dict[tuple, list] = {}
    for r in d.get("rows", []):
      if _dataset(r["config"]) == dataset and abs(r["target"] - target) < 1e-9:
        groups.setdefault((r["config"], tuple(r.get("overrides") or ())), []).append(r)
    if not groups:
      continue
    (config, overrides), rows = next(iter(groups.items()))
    times = [r["time_s"] for r in rows if r.get("reached")]
    name = f"`{config}`" + ("".join(f", {o}" for o in overrides))
    if not times:
      return f"[not reached]({link}) ({name}, {len(rows)} seed{'s' * (len(rows) > 1)})"
    spread = f" ± {statistics.stdev(times):.1f}" if len(times) > 1 else ""
    seeds = f"{len(times)} of {len(rows)} seeds" if len(rows) > 1 else "1 seed"
    return f"[{statistics.mean(times):.1f} s{spread}]({link}) ({seeds}, {name})"
  return "not measured"


def _inference(kind: str) -> str:
  for link, d in _files("eval_throughput", kind):
    s = (d.get("summary") or {}).get("cnn") or {}
    if "clean" in s and "suite_load" in s:
      a, b = s["clean"]["jax_over_best_torch"], s["suite_load"]["jax_over_best_torch"]
      return f"[{a:.2f}x · {b:.2f}x]({link})"
  return "not measured"


def render() -> str:
  kinds = sorted({k for what in ("throughput", "time_to_accuracy", "eval_throughput")
                  for k in os.listdir(os.path.join(RESULTS, what))
                  if os.path.isdir(os.path.join(RESULTS, what, k))},
                 key=lambda k: (list(KINDS).index(k) if k in KINDS else len(KINDS), k))
  lines = [BEGIN,
           "| machine | training vs PyTorch: `keras_cnn` · `cnn` | MNIST 99% | KMNIST 98% "
           "| inference vs PyTorch: clean · corrupted |",
           "|---|---|---|---|---|"]
  for k in kinds:
    cells = [KINDS.get(k, f"`{k}`"), _training(k),
             *(_time(k, ds, t) for ds, t in TARGETS), _inference(k)]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "Training and inference: JAX / the best PyTorch variant (eager, "
            "channels_last), same model, batch 128 (`python benchmarks/throughput.py`, "
            "`python benchmarks/eval_throughput.py`; the median over repetitions where "
            "there were several). Time to accuracy: wall-clock from the start, data "
            "loading and compilation included, a fresh process per seed "
            "(`python benchmarks/time_to_accuracy.py`). Each cell is the latest "
            "measurement on that machine kind, at the commit that "
            "[results/README.md](results/README.md) lists. Generated by "
            "`python benchmarks/perf_table.py`.",
            END]
  return "\n".join(lines)


def main(argv):
  del argv
  readme_block.update(FLAGS.readme or os.path.join(REPO, "README.md"), BEGIN, END,
                      render(), what="performance table", script="perf_table.py", check=FLAGS.check)


if __name__ == "__main__":
  cli.run(main)
