r"""results/README.md: the index of every measurement, generated from the files themselves.

  python benchmarks/results_index.py            # rewrite results/README.md
  python benchmarks/results_index.py --check    # exit 1 if results/README.md is stale

Layout: results/<what>/<machine kind>/ holds the current measurement of <what> on that
kind of machine (cpu_zen4, cpu_zen3, cpu_intel, gpu_h100, ...: the folder the scripts
write by default, benchmarks/throughput.py machine_kind); a measurement it replaces is
deleted (git keeps it). One row per file (a .json and its .md are one row, a folder's
figures one row, a sub-folder such as runs/ one row): what it is, the command that made
it, the machine, the code's commit and the date, read from the file's own metadata
(the `meta` block every script writes) or, for a file without one (a figure, a log),
from its folder's. Nothing here reads git, so the index is the same in any checkout.
"""

import glob
import json
import os
import re
import sys

from absl import flags

from kmnist_jax import cli
from kmnist_jax.errors import UserError

flags.DEFINE_bool("check", False, "Only check that results/README.md is up to date.")
flags.DEFINE_string("results", "", "The results folder (default: the repo's results/).")
FLAGS = flags.FLAGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_RECORDED = "not recorded"

# What each results/<what>/ folder measures, and the script that writes it.
WHAT = {
    "accuracy": "Test accuracy of the training configs after their default schedules "
                "(the README's configs table): `benchmarks/accuracy.py`",
    "accuracy_push": "The accuracy push (`kmnist_push`, 3 seeds sharing one GPU), test "
                     "accuracy every epoch: `benchmarks/run_gpu_perf.sh`",
    "adv_train_throughput": "Adversarial-training throughput per method (none, fgsm_rs, "
                            "pgd-k, trades-k), JAX vs a PyTorch loop on the twin model: "
                            "`benchmarks/adv_train_throughput.py`",
    "attack_throughput": "Attack speed, JAX vs torchattacks on the same trained CNN "
                         "(PGD, APGD-CE image-steps/s), and the ensemble's wall time: "
                         "`benchmarks/attack_throughput.py`",
    "augment_adversarial": "The augmentation study's none / noise policies under PGD-10 "
                           "and the AutoAttack-grade ensemble (3 seeds): "
                           "`experiments/augmentation_study.py` with "
                           "`experiments/configs/studies/augment_adversarial.py`",
    "augmentation_study": "Augmentation x robustness study (clean, MNIST-C / KMNIST-C, "
                          "PGD; 3 seeds): `experiments/augmentation_study.py`",
    "robust_training": "The robust-training study (none, noise, fgsm_rs, pgd, trades x MNIST, "
                       "KMNIST x 3 seeds; ensemble, mCE, smoothing): "
                       "`experiments/robust_training_study.py`",
    "mnist_robust": "The flagship robust MNIST model under the ensemble on all 10,000 test "
                    "images: `experiments/configs/mnist_robust.py`, then "
                    "`experiments/evaluate.py` with the adversarial preset",
    "conv_grad": "Conv weight-gradient formulations per layer: `benchmarks/conv_grad.py`",
    "corruptions": "Every corruption at every severity (pictures): "
                   "`experiments/make_corrupted.py --grid`",
    "cpu_variants": "A/B of CPU training variants (XLA flags, conv formulations, pmap vs "
                    "sharded): `benchmarks/cpu_variants.py`",
    "eval_throughput": "Inference throughput, JAX vs PyTorch, clean and corrupted test "
                       "sets: `benchmarks/eval_throughput.py`",
    "robustness": "Default CNNs under MNIST-C / KMNIST-C and FGSM / PGD: "
                  "`experiments/robustness.py`",
    "smoothing": "Randomized-smoothing certificates (Cohen et al.): certified accuracy "
                 "vs L2 radius: `experiments/evaluate.py` with "
                 "`experiments/configs/evals/smoothing.py`",
    "throughput": "Training throughput, JAX vs PyTorch, same model and batch: "
                  "`benchmarks/throughput.py`",
    "time_to_accuracy": "Wall-clock to a test accuracy, fresh process per seed, "
                        "compilation included: `benchmarks/time_to_accuracy.py`",
    "transfer_study": "Transfer MNIST <-> KMNIST, Fashion-MNIST -> KMNIST (3 seeds): "
                      "`experiments/transfer_study.py`",
    "transfer_study_reduced": "Transfer study at the reduced budget (small CNNs, 100 "
                              "steps): `experiments/transfer_study.py`",
    "tuning": "Learning-rate tuning runs of the time-to-accuracy configs (tuning seeds, "
              "whole schedule): `benchmarks/time_to_accuracy.py`",
}
# What a file is, by its stem, where the folder's description does not say it.
STEMS = {"report": "the report", "table": "the headline table", "metrics":
         "every record and the run metadata", "runs": "per-run records (the study's "
         "cache: re-running the command reuses them)", "figures": "figures",
         "README": "notes on the runs"}


# Where a folder's files carry no metadata block: what the script that made them
# records elsewhere (the device check's log names the card; the command is the script).
PROVENANCE = {
    "accuracy_push/gpu_h100": {"command": "bash benchmarks/run_gpu_perf.sh",
                               "machine": "NVIDIA H100 80GB HBM3"},
    "corruptions/cpu": {"command": "python experiments/make_corrupted.py --dataset=kmnist "
                                   "--out=corrupted/kmnist --grid=results/corruptions/cpu/"
                                   "corruptions_kmnist.png (and --dataset=mnist)"},
    "robustness/cpu": {"machine": "AMD EPYC, 2 cores (microarchitecture not recorded)"},
    "transfer_study_reduced/cpu": {"machine": "2-core CPU (kind not recorded)"},
}


def _load(path: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _meta(d) -> dict:
  """{command, machine, commit, date} of one results JSON (None where absent)."""
  if not isinstance(d, dict):
    return {}
  m = d.get("meta") if isinstance(d.get("meta"), dict) else {}
  machine_block = d.get("machine") if isinstance(d.get("machine"), dict) else {}
  devices = m.get("devices") if isinstance(m.get("devices"), dict) else {}
  command = m.get("command") or d.get("command")
  platform = m.get("platform") or d.get("platform") or devices.get("backend")
  device = (m.get("device") if m.get("device") not in (None, "cpu") else None) \
      or machine_block.get("accelerator") or (devices.get("kind") if platform not in
                                              (None, "cpu") else None)
  cpu = m.get("cpu_model") or m.get("cpu") or machine_block.get("cpu_model")
  machine = device or (cpu if cpu else None)
  git = m.get("git") if isinstance(m.get("git"), dict) else {}
  commit = (git.get("commit") or "")[:7] or None
  if commit and git.get("dirty"):
    commit += " (+ local changes)"
  date = m.get("date") or m.get("time_utc") or d.get("date") or d.get("created")
  if isinstance(date, str):
    date = date.replace("T", " ")[:16]
  if not any((command, machine, commit, date)):
    return {}
  return {"command": command, "machine": machine, "commit": commit, "date": date}


def _md_meta(path: str) -> dict:
  """{command, date} from a Markdown report without a JSON meta block: its first
  `python ...` / `bash ...` command (inline or in a code block) and first date."""
  try:
    text = open(path).read()
  except OSError:
    return {}
  cmd = re.search(r"(?:`|^)((?:[A-Z_]+=\S+ )*(?:python|bash) (?:[^`\n\\]|\\\n|\\(?!\n))+)",
                  text, re.M)
  date = re.search(r"\b(20\d\d-\d\d-\d\d)(?:[T ](\d\d:\d\d))?", text)
  out = {}
  if cmd:
    out["command"] = " ".join(cmd.group(1).replace("\\\n", " ").split())
  if date:
    out["date"] = date.group(1) + (f" {date.group(2)}" if date.group(2) else "")
  return out


def _merge(metas: list[dict]) -> dict:
  """One row's fields from several files: one value, or the range of dates / the
  number of distinct commits."""
  out = {}
  for k in ("command", "machine", "commit", "date"):
    vals = sorted({m[k] for m in metas if m.get(k)})
    if not vals:
      out[k] = None
    elif len(vals) == 1 or k in ("command", "machine"):
      out[k] = vals[-1] if k != "command" else next(m[k] for m in metas if m.get(k))
    elif k == "date":
      out[k] = f"{vals[0]} to {vals[-1]}"
    else:
      out[k] = f"{len(vals)} commits"
  return out


def _folder_meta(folder: str) -> dict:
  """A folder's metadata: its metrics.json, else its newest file with a meta block."""
  metas = []
  for p in sorted(glob.glob(os.path.join(folder, "*.json"))):
    m = _meta(_load(p))
    if m:
      if os.path.basename(p) == "metrics.json":
        return m
      metas.append(m)
  best = max(metas, key=lambda m: m.get("date") or "") if metas else {}
  for p in sorted(glob.glob(os.path.join(folder, "*.md"))):
    m = _md_meta(p)
    if m.get("command"):
      return {**m, **{k: v for k, v in best.items() if v}}
  return best


def _rows(results: str, what: str, kind: str) -> list[dict]:
  folder = os.path.join(results, what, kind)
  base = {**PROVENANCE.get(f"{what}/{kind}", {}), **_folder_meta(folder)}
  groups: dict[str, list[str]] = {}
  rows = []
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if os.path.isdir(path):
      files = sorted(glob.glob(os.path.join(path, "**", "*"), recursive=True))
      files = [f for f in files if os.path.isfile(f)]
      metas = [m for m in (_meta(_load(f)) for f in files if f.endswith(".json")) if m]
      meta = _merge(metas) if metas else dict(base)
      meta["command"] = base.get("command") or meta.get("command")
      rows.append({"files": f"{name}/ ({len(files)} files)",
                   "link": f"{what}/{kind}/{name}/", "stem": name, **meta})
      continue
    stem, ext = os.path.splitext(name)
    key = "figures" if ext in (".png", ".svg", ".pdf") else stem
    groups.setdefault(key, []).append(name)
  for key, names in groups.items():
    jsons = [n for n in names if n.endswith(".json")]
    own = _meta(_load(os.path.join(folder, jsons[0]))) if jsons else {}
    mds = [n for n in names if n.endswith(".md")]
    if mds and not own.get("command"):
      own = {**_md_meta(os.path.join(folder, mds[0])), **{k: v for k, v in own.items() if v}}
    meta = {**base, **{k: v for k, v in own.items() if v}}
    if key == "figures":
      label = f"{len(names)} figures (.png)" if len(names) > 1 else names[0]
      link = f"{what}/{kind}/{names[0]}"
    elif len(names) > 1:
      label = f"{key}." + "{" + ",".join(os.path.splitext(n)[1][1:] for n in names) + "}"
      md = [n for n in names if n.endswith(".md")]
      link = f"{what}/{kind}/{(md or names)[0]}"
    else:
      label, link = names[0], f"{what}/{kind}/{names[0]}"
    rows.append({"files": label, "link": link, "stem": key, **meta})
  return sorted(rows, key=lambda r: r["files"])


def layout_errors(results: str) -> list[str]:
  """Files that are not in a results/<what>/<kind>/ folder."""
  errs = []
  for name in sorted(os.listdir(results)):
    path = os.path.join(results, name)
    if name in ("README.md", "tmp"):
      continue
    if os.path.isfile(path):
      errs.append(f"results/{name} is not in results/<what>/<machine kind>/")
      continue
    for sub in sorted(os.listdir(path)):
      if os.path.isfile(os.path.join(path, sub)):
        errs.append(f"results/{name}/{sub} is not in results/{name}/<machine kind>/")
  return errs


def render(results: str) -> str:
  out = ["# Results", "",
         "Every measurement in this repository, one folder per what and machine kind "
         "(`results/<what>/<machine kind>/`), each holding the current measurement; "
         "one it replaced is in git's history. Generated by "
         "`python benchmarks/results_index.py` from the files' own metadata (command, "
         "machine, commit of the code, date); `--check` fails when this index is "
         "stale. Machine kinds: `cpu_zen4`, `cpu_zen3` (AMD EPYC, AVX-512 / AVX2 "
         "only), `cpu_intel` (Intel Xeon, AVX-512): 2 cores each; `cpu`: an earlier "
         "2-core CPU whose kind was not recorded; `gpu_h100`: one NVIDIA H100.", ""]
  for what in sorted(os.listdir(results)):
    folder = os.path.join(results, what)
    if what == "tmp" or not os.path.isdir(folder):
      continue
    kinds = sorted(k for k in os.listdir(folder) if os.path.isdir(os.path.join(folder, k)))
    if not kinds:
      continue
    out += [f"## {what}", "", WHAT.get(what, "(no description: add one to WHAT in "
                                        "benchmarks/results_index.py)"), "",
            "| file | what | command | machine | commit | date |", "|---|---|---|---|---|---|"]
    for kind in kinds:
      for r in _rows(results, what, kind):
        cmd = r.get("command")
        cells = [f"[{kind}/{r['files']}]({r['link']})",
                 STEMS.get(r["stem"], r["stem"].replace("_", " ")),
                 f"`{cmd}`" if cmd else NOT_RECORDED,
                 r.get("machine") or NOT_RECORDED, r.get("commit") or NOT_RECORDED,
                 r.get("date") or NOT_RECORDED]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out.append("")
  return "\n".join(out)


def indexed_paths(index_text: str) -> list[str]:
  """The results/-relative link targets of an index."""
  return re.findall(r"\]\(([^)]+)\)", index_text)


def main(argv):
  del argv
  results = FLAGS.results or os.path.join(REPO, "results")
  errs = layout_errors(results)
  if errs:
    raise UserError(errs[0] + (f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""))
  path = os.path.join(results, "README.md")
  new = render(results)
  old = open(path).read() if os.path.exists(path) else None
  if FLAGS.check:
    if new != old:
      print(f"error: {path} is stale: run python benchmarks/results_index.py",
            file=sys.stderr)
      sys.exit(1)
    print("results index up to date")
    return
  if new != old:
    with open(path, "w") as f:
      f.write(new)
  print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
