r"""Robustness of trained checkpoints: MNIST-C / KMNIST-C corruptions and L-inf attacks.

  python experiments/robustness.py \
      --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --baseline=workdirs/mnist_logreg,workdirs/kmnist_logreg \
      [--out=DIR] [--corruptions=all|NAME,...] [--severities=1,2,3,4,5]
      [--corrupted_dir=[DATASET:]DIR,...] [--limit=N] [--seed=0]
      [--adversarial=fgsm,pgd|none] [--epsilons=0,0.05,0.1,0.15,0.2,0.25,0.3]
      [--pgd_steps=10] [--pgd_step_size=0] [--adv_limit=1000] [--dataset=NAME]
      [--step=best|latest|N] [--cjk_font=auto|none|FAMILY|FILE]

Each checkpoint is restored from its workdir alone and evaluated on its own dataset
(or --dataset) on the clean test set and on every corruption x severity of the
corrupted test set (the 15 MNIST-C corruptions of Mu & Gilmer 2019 plus 5 extra,
kmnist_jax/corruptions.py). The corrupted sets are built once with
``kmnist_jax.robustness.sets.build`` into ``<out>/corrupted/<dataset>-...`` (kept across
runs) unless --corrupted_dir names a prebuilt one (``experiments/make_corrupted.py``).

--baseline names one logistic-regression checkpoint per dataset (``DIR`` uses the
dataset it was trained on; ``kmnist:DIR`` also checks it). It normalises the
corruption errors (CE, mCE, relative mCE; definitions in kmnist_jax/robustness.py and
the README), in the role AlexNet plays for ImageNet-C. A baseline trained on another
dataset than the one it is given for, or for a dataset no model is evaluated on, is
refused with one line.

Writes ``--out`` (default: ``robustness/`` beside the first workdir), replaced whole
(never half-written):

  report.md                      tables, definitions and every picture
  metrics.json                   every number (errors per corruption and severity, CE,
                                 relative CE, mCE, per-class accuracy, attack curves)
  table.csv, table.md            rows: models; columns: clean error, each corruption's
                                 error (mean over severities), mean corruption error,
                                 mCE and relative mCE
  corruption_grid_<ds>.png       the same test examples under each corruption and
                                 severity
  error_vs_severity_<ds>.png     error against severity, one panel per corruption
  per_class_corruption_<m>.png   per-class x corruption accuracy heatmap per model
  accuracy_vs_epsilon.png        FGSM and PGD accuracy against epsilon, all models
  robust_per_class_<m>.png       per-class accuracy: clean, FGSM and PGD at one epsilon

Measured on the 2-core CPU shared with other jobs (results/robustness_cpu.md; README
section "Robustness: evaluation, mCE, adversarial"), all 20 corruptions x 5 severities x
10,000 test images, attacks on 1,000: 14 min 19 s with the sets built (building them:
~3.7 min per dataset, once).

  model (clean error)       mean corr. error  mCE    relative mCE  PGD acc eps=0.05 / 0.1
  mnist_cnn (0.65%)         32.8%             84.5%  157.3%        77.4% / 4.6%
  kmnist_cnn (3.96%)        46.3%             88.6%  360.6%        44.6% / 0.2%
  mnist_logreg (7.67%)      44.1%             100%   100%          (baseline)
  kmnist_logreg (30.32%)    53.5%             100%   100%          (baseline)
"""

from __future__ import annotations

import csv
import datetime
import io
import os
import sys
import time

import _bootstrap  # noqa: F401  (puts the repo root on sys.path)
import jax
import numpy as np
from absl import app, flags, logging

import analyze
from kmnist_jax import plots
from kmnist_jax.robustness import attacks as adversarial
from kmnist_jax.robustness import sets as corrupted
from kmnist_jax.robustness import corruptions
from kmnist_jax import data as data_lib
from kmnist_jax.robustness import mce as rob
from kmnist_jax.errors import UserError, unknown

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_list("workdirs", None, "Training workdirs (or checkpoint step folders).")
  flags.DEFINE_list("baseline", [], "Baseline checkpoint per dataset: DIR or DATASET:DIR "
                    "(a logreg run), comma-separated.")
  flags.DEFINE_string("step", "best", "Checkpoint: best, latest, or a step number.")
  flags.DEFINE_string("dataset", "", "Evaluate every model on this dataset (default: "
                      "each checkpoint's own).")
  flags.DEFINE_string("corruptions", "all", "all, or a comma-separated list of "
                      f"{', '.join(corruptions.NAMES)}.")
  flags.DEFINE_string("severities", "1,2,3,4,5", "Comma-separated severities in 1..5.")
  flags.DEFINE_list("corrupted_dir", [], "Prebuilt corrupted sets: DIR or DATASET:DIR "
                    "(default: build into <out>/corrupted/).")
  flags.DEFINE_integer("limit", 0, "First N test examples only (0: all).")
  flags.DEFINE_integer("seed", 0, "Seed of the corruptions and of PGD's random start.")
  flags.DEFINE_string("adversarial", "fgsm,pgd", "Attacks: fgsm, pgd, both, or none.")
  flags.DEFINE_string("epsilons", ",".join(map(str, adversarial.DEFAULT_EPSILONS)),
                      "L-inf radii on [0, 1] pixels.")
  flags.DEFINE_integer("pgd_steps", 10, "PGD iterations.")
  flags.DEFINE_float("pgd_step_size", 0.0, "PGD step size (0: 2.5 * eps / steps).")
  flags.DEFINE_integer("adv_limit", 1000, "First N test examples for the attacks "
                       "(0: all).")
  flags.DEFINE_float("per_class_epsilon", 0.1, "Epsilon of the per-class robust "
                     "accuracy figure (the nearest one evaluated).")
  flags.DEFINE_string("out", "", "Output folder (default: robustness/ beside the first "
                      "workdir).")
  flags.DEFINE_string("data_dir", "", "Datasets folder (default: $KMNIST_JAX_DATA_DIR).")
  flags.DEFINE_integer("batch_size", 1000, "Evaluation batch size.")
  flags.DEFINE_integer("grid_examples", 3, "Examples per cell of the corruption grid.")
  flags.DEFINE_string("cjk_font", "auto", "Font for hiragana labels: auto, none, or a "
                      "family / file.")


# ---- Parsing ---------------------------------------------------------------------------

def parse_corruptions(spec) -> tuple[str, ...]:
  if isinstance(spec, str):
    spec = corruptions.NAMES if spec.strip() == "all" else [
        s.strip() for s in spec.split(",") if s.strip()]
  names = tuple(spec)
  valid = "all, or a comma-separated list of " + ", ".join(corruptions.NAMES)
  if not names:
    raise UserError(f"--corruptions is empty; valid choices: {valid}")
  for n in names:
    if n == corruptions.IDENTITY:
      raise UserError("--corruptions: 'identity' is the clean column (always reported); "
                      f"valid choices: {valid}")
    if n not in corruptions.NAMES:
      raise unknown("corruption", n, corruptions.NAMES)
  if len(set(names)) != len(names):
    raise UserError(f"--corruptions={','.join(names)} names one twice")
  return names


def parse_severities(spec) -> tuple[int, ...]:
  valid = ", ".join(map(str, corruptions.SEVERITIES))
  if isinstance(spec, str):
    parts = [s.strip() for s in spec.split(",") if s.strip()]
    try:
      spec = [int(p) for p in parts]
    except ValueError:
      raise UserError(f"--severities={spec!r} must be comma-separated integers; valid "
                      f"choices: {valid}") from None
  sev = tuple(spec)
  if not sev:
    raise UserError(f"--severities is empty; valid choices: {valid}")
  for s in sev:
    if s not in corruptions.SEVERITIES:
      raise UserError(f"severity {s} is out of range; valid choices: {valid}")
  if len(set(sev)) != len(sev):
    raise UserError(f"--severities={','.join(map(str, sev))} names one twice")
  return tuple(sorted(sev))


def parse_attacks(spec: str) -> tuple[str, ...]:
  s = spec.strip().lower()
  if s in ("", "none"):
    return ()
  if s == "both":
    return adversarial.ATTACKS
  names = tuple(dict.fromkeys(p.strip() for p in s.split(",") if p.strip()))
  for n in names:
    if n not in adversarial.ATTACKS:
      raise unknown("attack", n, adversarial.ATTACKS + ("both", "none"))
  return names


def split_dataset_prefix(entry: str, what: str) -> tuple[str | None, str]:
  """'kmnist:DIR' -> ('kmnist', 'DIR'); 'DIR' -> (None, 'DIR')."""
  head, sep, tail = entry.partition(":")
  if sep and "/" not in head and not os.path.exists(entry):
    if head not in data_lib.DATASETS:
      raise UserError(f"{what} {entry!r}: unknown dataset {head!r}; valid choices: "
                      f"{', '.join(sorted(data_lib.DATASETS))} (write DATASET:DIR or DIR)")
    return head, tail
  return None, entry


def model_names(workdirs: list[str]) -> list[str]:
  base = [os.path.basename(os.path.normpath(w)) or w for w in workdirs]
  return [b if base.count(b) == 1 else f"{b}-{i}" for i, b in enumerate(base)]


# ---- Data ------------------------------------------------------------------------------

class CorruptedSets:
  """The clean test images of one dataset and its corrupted sets (in memory)."""

  def __init__(self, dataset: str, folder: str, *, names, severities, limit: int,
               seed: int, data_dir: str, prebuilt: bool, log=print):
    self.dataset, self.folder = dataset, folder
    if prebuilt:
      manifest = corrupted.read_manifest(folder)
      if manifest["dataset"] != dataset:
        raise UserError(f"--corrupted_dir {folder} holds {manifest['dataset']} sets, "
                        f"not {dataset}; give DATASET:DIR for each dataset")
      missing = [f"{n} {v}" for n in names for v in severities
                 if corrupted.file_name(n, v) not in manifest["files"]]
      if missing:
        raise UserError(f"--corrupted_dir {folder} lacks {len(missing)} of the requested "
                        f"sets ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}"
                        "); add them with experiments/make_corrupted.py or drop "
                        "--corrupted_dir to build them here")
    else:
      log(f"building {dataset}-C ({len(names)} corruptions x {len(severities)} "
          f"severities) in {folder}")
      manifest = corrupted.build(dataset, folder, names=names, severities=severities,
                                 seed=seed, split="test", data_dir=data_dir or None,
                                 limit=limit or None)
    self.manifest = manifest
    n = int(manifest["count"])
    if limit:
      n = min(n, limit)
    self.n = n
    self.images, self.labels = analyze.load_split(
        dataset, manifest["split"], data_dir=data_dir, source="files", limit=n)
    if n == int(manifest["count"]):  # the very arrays the sets were built from
      got = corrupted.source_sha256(self.images, self.labels.astype(np.uint8))
      if got != manifest["source_sha256"]:
        raise UserError(f"the corrupted sets in {folder} were built from other "
                        f"{dataset} {manifest['split']} images (source SHA-256 differs); "
                        "rebuild them")
    self._cache: dict = {}

  def get(self, name: str, severity: int) -> np.ndarray:
    key = (name, severity)
    if key not in self._cache:
      images, labels = corrupted.load(self.folder, name, severity)
      if len(images) < self.n or not np.array_equal(labels[:self.n], self.labels):
        raise UserError(f"{self.folder}: {name} severity {severity} does not hold the "
                        f"first {self.n} {self.dataset} test examples; rebuild it")
      self._cache[key] = images[:self.n]
    return self._cache[key]


def cache_folder(root: str, dataset: str, seed: int, limit: int) -> str:
  return os.path.join(root, f"{dataset}-test-seed{seed}" + (f"-limit{limit}" if limit
                                                             else ""))


# ---- The run ---------------------------------------------------------------------------

def _pct(x, d=1) -> str:
  return "-" if x is None or not np.isfinite(x) else f"{100 * x:.{d}f}"


def nearest(values, target):
  values = list(values)
  return values[int(np.argmin([abs(v - target) for v in values]))]


def run(workdirs: list[str], *, baseline=(), out: str = "", step="best",
        dataset: str = "", corruption_names="all", severities="1,2,3,4,5",
        corrupted_dir=(), limit: int = 0, seed: int = 0, attacks="fgsm,pgd",
        epsilons=adversarial.DEFAULT_EPSILONS, pgd_steps: int = 10,
        pgd_step_size: float = 0.0, adv_limit: int = 1000, per_class_epsilon=0.1,
        data_dir: str = "", batch_size: int = 1000, grid_examples: int = 3,
        cjk_font="auto", progress: bool = True, log=print) -> dict:
  """Evaluates every workdir (and baseline) and writes `out`; returns metrics.json's
  content."""
  t0 = time.perf_counter()
  # Every flag is checked before anything loads.
  workdirs = [w for w in workdirs if w]
  if not workdirs:
    raise UserError("--workdirs is empty; give one or more training workdirs")
  names = parse_corruptions(corruption_names)
  sevs = parse_severities(severities)
  attacks = parse_attacks(attacks) if isinstance(attacks, str) else tuple(attacks)
  for a in attacks:
    adversarial.check_attack(a)
  eps = adversarial.check_epsilons(epsilons) if attacks else ()
  if attacks and "pgd" in attacks:
    adversarial.check_steps(pgd_steps, pgd_step_size or None)
  for flag, v in (("limit", limit), ("adv_limit", adv_limit)):
    if isinstance(v, bool) or int(v) != v or v < 0:
      raise UserError(f"--{flag}={v!r} must be a non-negative integer (0: all)")
  if seed < 0:
    raise UserError(f"--seed={seed} must be >= 0")
  if batch_size < 1 or grid_examples < 1:
    raise UserError("--batch_size and --grid_examples must be positive")
  if dataset and dataset not in data_lib.DATASETS:
    raise unknown("dataset", dataset, data_lib.DATASETS)
  analyze.parse_step(step)
  data_dir = data_dir or data_lib.default_data_dir()
  out = os.path.abspath(out or os.path.join(
      os.path.dirname(os.path.abspath(workdirs[0].rstrip("/"))), "robustness"))
  if os.path.isfile(out):
    raise UserError(f"--out {out} is a file; give a folder")

  # Models and baselines.
  runs = []
  for w, name in zip(workdirs, model_names(workdirs)):
    wd, restored = analyze.restore(w, step)
    info = analyze.check_dataset(restored, wd, dataset or None)
    runs.append({"name": name, "workdir": os.path.abspath(wd), "restored": restored,
                 "dataset": info.name, "baseline": False})
  eval_datasets = list(dict.fromkeys(r["dataset"] for r in runs))
  baselines = {}
  for entry in baseline or ():
    want, path = split_dataset_prefix(entry, "--baseline")
    wd, restored = analyze.restore(path, step)
    trained = restored.config.dataset
    if want is not None and trained != want:
      raise UserError(f"baseline {path} was trained on {trained}, not {want}; give a "
                      f"{want} logreg checkpoint as --baseline={want}:DIR")
    ds = want or trained
    if ds not in eval_datasets:
      raise UserError(f"baseline {path} is for {ds} but the models are evaluated on "
                      f"{', '.join(eval_datasets)}; give a baseline trained on "
                      f"{' / '.join(eval_datasets)}")
    if ds in baselines:
      raise UserError(f"two baselines for {ds}: {baselines[ds]['workdir']} and {wd}; "
                      "give one per dataset")
    analyze.check_dataset(restored, wd, ds)
    baselines[ds] = {"name": f"{os.path.basename(os.path.normpath(wd))} (baseline)",
                     "workdir": os.path.abspath(wd), "restored": restored,
                     "dataset": ds, "baseline": True}
  prebuilt = {}
  for entry in corrupted_dir or ():
    ds, path = split_dataset_prefix(entry, "--corrupted_dir")
    holds = corrupted.read_manifest(path)["dataset"]
    if ds is not None and ds != holds:
      raise UserError(f"--corrupted_dir {entry}: {path} holds {holds} sets, not {ds}")
    ds = holds
    if ds not in eval_datasets:
      raise UserError(f"--corrupted_dir {path} holds {ds} sets but the models are "
                      f"evaluated on {', '.join(eval_datasets)}")
    if ds in prebuilt:
      raise UserError(f"--corrupted_dir names two folders for {ds}")
    prebuilt[ds] = os.path.abspath(path)

  # Corrupted sets, one per dataset.
  cache_root = os.path.join(out, "corrupted")
  sets = {}
  for ds in eval_datasets:
    folder = prebuilt.get(ds) or cache_folder(cache_root, ds, seed, limit)
    sets[ds] = CorruptedSets(ds, folder, names=names,
                             severities=sevs, limit=limit, seed=seed, data_dir=data_dir,
                             prebuilt=ds in prebuilt, log=log)

  # Corruption evaluation.
  everyone = runs + [baselines[ds] for ds in eval_datasets if ds in baselines]
  for r in everyone:
    s = sets[r["dataset"]]
    cfg = r["restored"].config
    ev = rob.evaluate(rob.with_conv_impl(r["restored"], "xla"), s.labels, s.get, names=names, severities=sevs,
                      clean=s.images, dtype=cfg.dtype, batch_size=batch_size,
                      progress=progress, desc=f"{r['name']} on {r['dataset']}-C")
    r["clean_error"], r["table"] = rob.error_table(ev, s.labels)
    r["per_class"] = rob.per_class_accuracy(ev, s.labels,
                                            data_lib.get_info(r["dataset"]).num_classes)
  for r in everyone:
    b = baselines.get(r["dataset"])
    r["summary"] = rob.summary(r["table"], r["clean_error"],
                               b["table"] if b else None, b["clean_error"] if b else None)
    log(f"{r['name']} on {r['dataset']}: clean error {_pct(r['clean_error'], 2)}%, "
        f"mean corruption error {_pct(r['summary']['mean_corruption_error'], 2)}%"
        + (f", mCE {_pct(r['summary']['mce'])}%, relative mCE "
           f"{_pct(r['summary']['relative_mce'])}%" if b else ""))

  # Attacks.
  key = jax.random.key(seed)
  for i, r in enumerate(runs):
    r["adversarial"] = {}
    if not attacks:
      continue
    s = sets[r["dataset"]]
    n = min(s.n, adv_limit) if adv_limit else s.n
    x, y = s.images[:n], s.labels[:n]
    C = data_lib.get_info(r["dataset"]).num_classes
    for a in attacks:
      preds = adversarial.attack_predictions(
          r["restored"].model, x, y, attack=a, epsilons=eps,
          key=jax.random.fold_in(key, i), steps=pgd_steps,
          step_size=pgd_step_size or None, batch_size=min(batch_size, 500),
          dtype=r["restored"].config.dtype, progress=progress,
          desc=f"{a.upper()} {r['name']}")
      acc = adversarial.accuracy_curve(preds, y)
      r["adversarial"][a] = {"epsilons": list(eps), "accuracy": acc, "n": int(n),
                             "per_class": adversarial.per_class_accuracy(preds, y, C)}
      log(f"{a.upper()} {r['name']}: " + ", ".join(
          f"eps {e:g} {_pct(v)}%" for e, v in zip(eps, acc)))

  result = {
      "created": datetime.datetime.now().isoformat(timespec="seconds"),
      "settings": {"corruptions": list(names), "severities": list(sevs), "seed": seed,
                   "limit": limit or None, "attacks": list(attacks),
                   "epsilons": list(eps), "pgd_steps": pgd_steps,
                   "pgd_step_size": pgd_step_size or "2.5 * eps / steps",
                   "adv_limit": adv_limit or None, "step": str(step),
                   "devices": f"{jax.device_count()} x {jax.devices()[0].platform}"},
      "datasets": {ds: {"corrupted_dir": s.folder, "examples": s.n,
                        "baseline": baselines[ds]["workdir"] if ds in baselines else None,
                        "build_seconds": s.manifest.get("build_seconds")}
                   for ds, s in sets.items()},
      "models": [record(r) for r in everyone],
  }
  write_outputs(out, result, everyone, runs, sets, baselines, names, sevs, eps,
                per_class_epsilon, grid_examples, cjk_font, cache_root, data_dir)
  result["seconds"] = round(time.perf_counter() - t0, 1)
  log(f"robustness report of {len(runs)} models in {result['seconds']} s: "
      f"{os.path.join(out, 'report.md')}")
  result["out"] = out
  return result


def record(r: dict) -> dict:
  cfg = r["restored"].config
  return {"name": r["name"], "workdir": r["workdir"], "step": r["restored"].step,
          "model": cfg.model, "trained_on": cfg.dataset, "dataset": r["dataset"],
          "baseline": r["baseline"], **r["summary"],
          "per_class_accuracy": {"columns": r["per_class"]["columns"],
                                 "accuracy": r["per_class"]["accuracy"]},
          "adversarial": r.get("adversarial", {})}


# ---- Outputs ---------------------------------------------------------------------------

def table_rows(models: list[dict], names) -> tuple[list[str], list[list]]:
  head = (["model", "dataset", "clean error"] + list(names)
          + ["mean corruption error", "mCE", "relative mCE"])
  rows = []
  for m in models:
    rows.append([m["name"], m["dataset"], m["clean_error"]]
                + [m["corruption_errors"][n] for n in names]
                + [m["mean_corruption_error"], m.get("mce"), m.get("relative_mce")])
  return head, rows


def to_csv(head, rows) -> str:
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(head)
  for row in rows:
    w.writerow([("" if v is None or not np.isfinite(v) else f"{v:.4f}")
                if isinstance(v, float) or v is None else v for v in row])
  return buf.getvalue()


def to_md(head, rows) -> str:
  L = ["| " + " | ".join(h.replace("_", " ") for h in head) + " |",
       "|" + "---|" * len(head)]
  for row in rows:
    L.append("| " + " | ".join(_pct(v) if isinstance(v, float) or v is None else str(v)
                               for v in row) + " |")
  return "\n".join(L) + "\n"


def ce_table(models: list[dict], names) -> str:
  """Rows corruptions; per model E_c and (with a baseline) CE_c / relative CE_c."""
  ms = [m for m in models if not m["baseline"]]
  head = ["corruption"] + [f"{m['name']} E / CE / rel. CE" for m in ms]
  L = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for n in names:
    cells = [n.replace("_", " ")]
    for m in ms:
      c = f"{_pct(m['corruption_errors'][n])}"
      if "ce" in m:
        c += f" / {_pct(m['ce'][n], 0)} / {_pct(m['relative_ce'][n], 0)}"
      cells.append(c)
    L.append("| " + " | ".join(cells) + " |")
  return "\n".join(L) + "\n"


def adv_table(runs: list[dict]) -> str:
  lines = []
  for r in runs:
    for a, d in r.get("adversarial", {}).items():
      if not lines:
        eps = d["epsilons"]
        lines = ["| model | dataset | attack | n | " + " | ".join(f"ε={e:g}" for e in eps)
                 + " |", "|" + "---|" * (4 + len(eps))]
      lines.append(f"| {r['name']} | {r['dataset']} | {a.upper()} | {d['n']} | "
                   + " | ".join(_pct(v) for v in d["accuracy"]) + " |")
  return "\n".join(lines) + "\n" if lines else ""


def write_outputs(out, result, everyone, runs, sets, baselines, names, sevs, eps,
                  per_class_epsilon, grid_examples, cjk_font, cache_root, data_dir):
  models = result["models"]
  head, rows = table_rows(models, names)
  files = []
  with analyze.atomic_dir(out) as tmp:
    p = lambda f: os.path.join(tmp, f)  # noqa: E731
    for ds, s in sets.items():
      files.append(corrupted.grid(s.folder, p(f"corruption_grid_{ds}.png"),
                                  examples=grid_examples, data_dir=data_dir))
      series = [{"name": r["name"], "clean": r["clean_error"], "errors": r["table"]}
                for r in everyone if r["dataset"] == ds]
      files.append(plots.error_vs_severity(series, sevs, p(f"error_vs_severity_{ds}.png"),
                                           title=f"{ds}-C: error vs severity"))
    for r in everyone:
      info = data_lib.get_info(r["dataset"])
      lab = plots.class_labels(info.class_names, info.class_glyphs, font=cjk_font)
      pc = r["per_class"]
      files.append(plots.corruption_heatmap(
          pc["accuracy"], lab, pc["columns"], p(f"per_class_corruption_{safe(r['name'])}.png"),
          title=f"{r['name']} on {r['dataset']}-C: per-class accuracy (%), severities "
                "pooled"))
    curves = [{"name": f"{r['name']} ({r['dataset']})", "attack": a,
               "epsilons": d["epsilons"], "accuracy": d["accuracy"]}
              for r in runs for a, d in r["adversarial"].items()]
    if curves:
      files.append(plots.accuracy_vs_epsilon(curves, p("accuracy_vs_epsilon.png")))
      e_star = nearest(eps, per_class_epsilon)
      k = list(eps).index(e_star)
      for r in runs:
        if not r["adversarial"]:
          continue
        info = data_lib.get_info(r["dataset"])
        lab = plots.class_labels(info.class_names, info.class_glyphs, font=cjk_font)
        first = next(iter(r["adversarial"].values()))
        clean_k = list(eps).index(0.0) if 0.0 in eps else None
        series = []
        if clean_k is not None:
          series.append({"name": "clean", "accuracy": first["per_class"][clean_k]})
        series += [{"name": f"{a.upper()} ε={e_star:g}", "accuracy": d["per_class"][k]}
                   for a, d in r["adversarial"].items()]
        files.append(plots.robust_per_class(
            series, lab, p(f"robust_per_class_{safe(r['name'])}.png"),
            title=f"{r['name']} on {r['dataset']}: per-class accuracy under attack "
                  f"({first['n']} test images)"))
    analyze._write_json(p("metrics.json"), result)
    with open(p("table.csv"), "w") as f:
      f.write(to_csv(head, rows))
    with open(p("table.md"), "w") as f:
      f.write(to_md(head, rows))
    with open(p("report.md"), "w") as f:
      f.write(report(result, head, rows, runs, names, files))
    # The corrupted-set cache lives in the output folder: carry it into the new one.
    if os.path.isdir(cache_root):
      os.rename(cache_root, p("corrupted"))


def safe(name: str) -> str:
  return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def report(result, head, rows, runs, names, files) -> str:
  st = result["settings"]
  L = ["# Robustness report\n",
       f"Corruptions: {len(names)} x severities {st['severities']} (seed {st['seed']}); "
       "examples per set: " + ", ".join(f"{ds} {d['examples']}"
                                         for ds, d in result["datasets"].items()) + ".\n",
       "## Errors (%), mean over severities\n", to_md(head, rows),
       "mCE and relative mCE are normalised by the dataset's baseline (100% = the "
       "baseline); '-' where no baseline was given.\n",
       "## Per corruption: error E_c (%) / CE_c (%) / relative CE_c (%)\n",
       ce_table(result["models"], names),
       "Definitions (E: top-1 error; s: severity; b: baseline): E_c = mean_s E_s,c; "
       "CE_c = sum_s E_s,c / sum_s E^b_s,c; mCE = mean_c CE_c; relative CE_c = "
       "sum_s (E_s,c - E_clean) / sum_s (E^b_s,c - E^b_clean); relative mCE = mean_c "
       "relative CE_c.\n"]
  adv = adv_table(runs)
  if adv:
    L += [f"## Accuracy (%) under attack (PGD: {st['pgd_steps']} steps, step size "
          f"{st['pgd_step_size']}, random start)\n", adv]
  L.append("## Pictures\n")
  for f in files:
    b = os.path.basename(f)
    L.append(f"![{b}]({b})\n")
  L.append(f"Written {result['created']} by `experiments/robustness.py`.\n")
  return "\n".join(L)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.ERROR)
  try:
    run(FLAGS.workdirs or [], baseline=FLAGS.baseline, out=FLAGS.out, step=FLAGS.step,
        dataset=FLAGS.dataset, corruption_names=FLAGS.corruptions,
        severities=FLAGS.severities, corrupted_dir=FLAGS.corrupted_dir,
        limit=FLAGS.limit, seed=FLAGS.seed, attacks=FLAGS.adversarial,
        epsilons=FLAGS.epsilons, pgd_steps=FLAGS.pgd_steps,
        pgd_step_size=FLAGS.pgd_step_size, adv_limit=FLAGS.adv_limit,
        per_class_epsilon=FLAGS.per_class_epsilon, data_dir=FLAGS.data_dir,
        batch_size=FLAGS.batch_size, grid_examples=FLAGS.grid_examples,
        cjk_font=None if FLAGS.cjk_font.lower() == "none" else FLAGS.cjk_font)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdirs"])
  app.run(main)
