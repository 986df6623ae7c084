r"""Evaluation (inference) throughput: kmnist_jax's ``inference.predict`` vs PyTorch.

  python benchmarks/eval_throughput.py                     # CPU, full (long: see below)
  python benchmarks/eval_throughput.py --quick             # smoke run: 256 images
  python benchmarks/eval_throughput.py --models=cnn,keras_cnn --wait_idle=30

Measures INFERENCE images/s (labels out) on the CPU of the default ``cnn`` (model kwargs
of experiments/configs/kmnist_cnn.py) and, with ``--models``, ``keras_cnn``; weights
freshly initialised (speed does not depend on them), float32, batch ``--batch`` (1000):

* ``clean``: the 10,000 KMNIST test images, one call each of
  - JAX ``inference.predict(model, images, output='labels', batch_size=B)``: the
    library's one inference path (XLA's convolution, see kmnist_jax/inference.py);
  - JAX the same with ``conv_impl='auto'``: the training formulation (im2col /
    fwdconv), slower for a forward pass alone -- why ``predict`` swaps it;
  - PyTorch eager and channels_last (benchmarks/torch_models.py, same layers and
    parameter counts, checked) under ``torch.inference_mode()``, ``model.eval()``,
    ``torch.set_num_threads(cores)``; the uint8 images are scaled to float per batch
    inside the timed call, as ``predict`` does on device; argmax labels.
* ``suite_load`` / ``suite_preloaded`` (only when a cached MNIST-C-style suite exists,
  ``--cached_suite``, default: the largest KMNIST build in the robustness cache, e.g.
  ~/.cache/kmnist_jax/corrupted/kmnist-test-seed0-limit1000): every (corruption,
  severity) set, one call per set, each loaded with ``robustness.sets.load`` (SHA-256
  check + npz) then predicted -- what the corruption evaluator does -- and the same
  sets preloaded in memory (the model cost alone). JAX predict vs the best PyTorch
  variant of ``clean``.
* ``suite_tiled``: ``--suite_images`` (1,000,000) images, the test set tiled 100x: the
  model cost of a 20 x 5 x 10,000 suite, file loading excluded; one call per 10,000-image
  set, JAX predict vs the best PyTorch variant of ``clean``.

Timing: each configuration makes one warm-up call (compile + its first set), then
``--reps`` (5; ``suite_tiled``: ``--suite_reps``, 3) timed calls, configurations
interleaved rep by rep (the order rotated each rep) so that drift hits all alike;
img/s = images / seconds of one call, the median over reps, with the min-max spread.
JAX and PyTorch each run in one worker process (``--worker``, started by the parent and
kept for the whole model: set up and compile once) so their thread pools stay apart;
only one of them computes at a time. The JAX worker runs with the library's XLA:CPU
flags (kmnist_jax.xla_cpu), as the experiment scripts do. ``--wait_idle`` waits for a
quiet CPU before every timed call; each call records the CPU other processes used
meanwhile (a row disturbed by > 0.25 cores is marked †), as in throughput.py.
The full run is long on 2 cores: ``suite_tiled`` is minutes per call (the parent prints
an estimate from the ``clean`` rates before it starts).

Writes ``<out_dir>/eval_throughput_cpu.json`` (every number, the correctness checks and
the ``meta`` block of kmnist_jax.io.run_meta, CPU model included) and ``.md`` (the
table, also printed, the command and the CPU), each atomically. ``--quick`` writes to
results/tmp/eval_throughput/ by default so that a smoke run never overwrites measured
results. A bad flag or value is one ``error:`` line, exit 2.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import throughput as tp  # benchmarks/throughput.py: this script's folder is on sys.path
from absl import flags

from kmnist_jax import cli, io
from kmnist_jax.errors import UserError

FLAGS = flags.FLAGS
TAG = "EVAL_THROUGHPUT "
TEST_IMAGES = 10_000  # the KMNIST test split
FULL_SUITE = 20 * 5 * TEST_IMAGES
TORCH_VARIANTS = ("eager", "channels_last")
MEASUREMENTS = ("clean", "suite_load", "suite_preloaded", "suite_tiled")
LABELS = {
    ("jax", "predict"): "JAX inference.predict (XLA conv)",
    ("jax", "predict_auto"): "JAX predict, conv_impl='auto' (training convs)",
    ("torch", "eager"): "PyTorch eager (NCHW)",
    ("torch", "channels_last"): "PyTorch channels_last",
}


# ---- Workers --------------------------------------------------------------------------

def _clean_images(spec):
  from kmnist_jax import data as data_lib
  n = spec["test_images"]
  ds = data_lib.load("kmnist", data_dir=spec["data_dir"], source="files",
                     limit={"test": n} if n else None)
  return ds.splits["test"].images, ds.info.num_classes


def _jax_setup(spec, num_classes):
  """({config: images -> labels}, {config: images -> logits}, info) of the JAX model."""
  import jax

  from kmnist_jax import config as config_lib
  from kmnist_jax import inference, models, train

  cfg = config_lib.load_file(os.path.join(tp.ROOT, tp.MODEL_CONFIGS[spec["model"]]))
  model = train.init_model(cfg, num_classes)

  def fn(conv_impl, output):
    return lambda x: inference.predict(model, x, output=output,
                                       batch_size=spec["batch"], conv_impl=conv_impl)

  convs = {"predict": None, "predict_auto": "auto"}
  info = {"params": models.param_count(model), "jax_version": jax.__version__,
          "devices": len(jax.devices()), "model_conv_impl": cfg.conv_impl,
          "dtype": cfg.dtype, "batch": spec["batch"]}
  return ({c: fn(v, "labels") for c, v in convs.items()},
          {c: fn(v, "logits") for c, v in convs.items()}, info)


def _torch_setup(spec, num_classes):
  """The same for the PyTorch twin, one model copy per memory format."""
  import numpy as np
  import torch
  import torch_models

  torch.set_num_threads(spec["threads"])
  torch.manual_seed(0)
  base = torch_models.create(spec["model"], num_classes, **spec["model_kwargs"]).eval()
  want = tp.KNOWN_PARAMS.get(spec["model"])
  n_params = torch_models.param_count(base)
  if want is not None and n_params != want:
    raise AssertionError(f"{spec['model']}: {n_params} parameters, expected {want}")
  nets = {"eager": base,
          "channels_last": copy.deepcopy(base).to(memory_format=torch.channels_last)}
  b = spec["batch"]

  def fn(variant, output):
    net, channels_last = nets[variant], variant == "channels_last"

    def run(images):
      x_all = torch.from_numpy(images)  # uint8 [N, 28, 28], no copy
      outs = []
      with torch.inference_mode():
        for i in range(0, len(x_all), b):
          x = x_all[i:i + b].unsqueeze(1).float().div_(255.0)
          if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
          logits = net(x)
          outs.append(logits.argmax(1) if output == "labels" else logits)
        if not outs:
          return np.zeros((0,), np.int64)
        return torch.cat(outs).numpy()
    return run

  info = {"params": n_params, "torch_version": torch.__version__,
          "threads": torch.get_num_threads(), "batch": b}
  return ({v: fn(v, "labels") for v in nets}, {v: fn(v, "logits") for v in nets}, info)


class _Runner:
  """One framework's side: the images of every measurement and the timed calls."""

  def __init__(self, spec):
    self.spec = spec
    self.clean, num_classes = _clean_images(spec)
    setup = _jax_setup if spec["framework"] == "jax" else _torch_setup
    self.infer, self.logits, self.info = setup(spec, num_classes)
    self.info["test_images"] = len(self.clean)
    self._preloaded = self._tiled = None

  def _pairs(self):
    from kmnist_jax.robustness import sets
    return [(e["corruption"], e["severity"])
            for e in sets.read_manifest(self.spec["cached_suite"])["files"].values()]

  def _load(self, name, severity):
    from kmnist_jax.robustness import sets
    k = self.spec["cached_images"] or None
    return sets.load(self.spec["cached_suite"], name, severity)[0][:k]

  def sets(self, measurement: str):
    """The image sets of one call (lazily where loading them is part of the call)."""
    if measurement == "clean":
      return [self.clean]
    if measurement == "suite_load":
      return (self._load(n, s) for n, s in self._pairs())
    if measurement == "suite_preloaded":
      if self._preloaded is None:  # loaded once, untimed (the warm-up call)
        self._preloaded = [self._load(n, s) for n, s in self._pairs()]
      return self._preloaded
    if measurement == "suite_tiled":
      if self._tiled is None:  # uint8 only: 1M images are 784 MB, no float copy
        import numpy as np
        n, total = len(self.clean), self.spec["suite_images"]
        tiled = np.tile(self.clean, (math.ceil(total / n), 1, 1))[:total]
        self._tiled = [tiled[i:i + n] for i in range(0, total, n)]
      return self._tiled
    raise ValueError(f"unknown measurement {measurement!r}")

  def call(self, measurement: str, config: str, *, warmup: bool) -> dict:
    fn = self.infer[config]
    sets = self.sets(measurement)
    if warmup:
      sets = [next(iter(sets))]
    cpu0, busy0, t0 = os.times(), tp.cpu_busy_s(), time.perf_counter()
    images = n_sets = 0
    for x in sets:
      labels = fn(x)
      images += len(x)
      n_sets += 1
      if len(labels) != len(x):
        raise AssertionError(f"{len(labels)} labels for {len(x)} images")
    wall = time.perf_counter() - t0
    cpu1, busy1 = os.times(), tp.cpu_busy_s()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    other = (None if busy0 is None or busy1 is None
             else max(0.0, busy1 - busy0 - cpu) / wall)
    return {"seconds": wall, "images": images, "sets": n_sets,
            "cpu_util": cpu / wall if wall > 0 else None, "other_cpu": other}

  def check(self) -> dict:
    """The first two configurations on the clean images (untimed): label mismatches
    and the largest logit difference (on the first 1,000 images)."""
    import numpy as np
    names = list(self.infer)[:2]
    if len(names) < 2:
      return {}
    a, b = (self.infer[c](self.clean) for c in names)
    x = self.clean[:1000]
    la, lb = (np.asarray(self.logits[c](x), np.float64) for c in names)
    return {"compared": names, "images": len(self.clean),
            "label_mismatches": int((np.asarray(a) != np.asarray(b)).sum()),
            "logit_images": len(x),
            "max_abs_logit_diff": float(np.abs(la - lb).max()) if len(x) else 0.0,
            "max_abs_logit": float(np.abs(la).max()) if len(x) else 0.0,
            "labels_are_logit_argmax": bool((np.asarray(a)[:len(x)]
                                             == la.argmax(1)).all())}


def _answer(obj) -> None:
  print(TAG + json.dumps(obj), flush=True)


def worker_main(spec_json: str) -> int:
  """Sets up, answers the set-up info, then one answer per request line on stdin."""
  spec = json.loads(spec_json)
  try:
    runner = _Runner(spec)
  except Exception as e:  # an answer: the parent reports it and goes on
    traceback.print_exc()
    _answer(tp.error_result(e))
    return 0
  _answer(runner.info)
  for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "quit":
      break
    try:
      if req["op"] == "check":
        out = runner.check()
      else:
        out = runner.call(req["measurement"], req["config"],
                          warmup=req["op"] == "warmup")
    except Exception as e:
      traceback.print_exc()
      out = tp.error_result(e)
    _answer(out)
  return 0


# ---- Parent ---------------------------------------------------------------------------

class Worker:
  """A worker process (``--worker=SPEC``): set up once, then one request at a time."""

  def __init__(self, spec, timeout: float):
    self.timeout = timeout
    self.errors = tempfile.TemporaryFile(mode="w+")  # stderr: never a full pipe
    self.proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker=" + json.dumps(spec)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True,
        env=tp.worker_env(spec), cwd=tp.ROOT)
    self.answers = queue.Queue()
    threading.Thread(target=self._read, daemon=True).start()
    self.info = self._answer()

  def _read(self):
    for line in self.proc.stdout:
      if line.startswith(TAG):
        self.answers.put(json.loads(line[len(TAG):]))
    self.answers.put(None)  # the worker exited

  def _stderr_tail(self) -> list[str]:
    self.errors.seek(0)
    return self.errors.read().strip().splitlines()[-15:]

  def _answer(self) -> dict:
    try:
      out = self.answers.get(timeout=self.timeout)
    except queue.Empty:
      self.proc.kill()
      self.proc.wait()
      return {"error": f"no answer within {self.timeout:.0f} s (--worker_timeout)"}
    if out is None:
      tail = self._stderr_tail() or ["no output"]
      return {"error": f"worker exited {self.proc.wait()}: {tail[-1][:300]}",
              "stderr_tail": tail}
    if "error" in out:
      out["stderr_tail"] = self._stderr_tail()
    return out

  def request(self, **msg) -> dict:
    if self.proc.poll() is not None:
      return {"error": f"worker exited {self.proc.returncode} earlier"}
    try:
      self.proc.stdin.write(json.dumps(msg) + "\n")
      self.proc.stdin.flush()
    except BrokenPipeError:
      return {"error": "worker exited earlier"}
    return self._answer()

  def close(self) -> None:
    if self.proc.poll() is None:
      try:
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
      except (BrokenPipeError, subprocess.TimeoutExpired):
        self.proc.kill()
        self.proc.wait()
    self.errors.close()


def _rates(r: dict) -> dict:
  """The summary numbers of one configuration from its timed calls."""
  reps = r["rep_s"]
  med = statistics.median(reps)
  return {"img_per_s": r["images"] / med, "img_per_s_min": r["images"] / max(reps),
          "img_per_s_max": r["images"] / min(reps), "median_s": med,
          "reps": len(reps), "cpu_util": statistics.median(r["cpu_util_per_rep"]),
          "other_cpu": max(r["other_cpu_per_rep"], default=None)}


def measure(name: str, configs, reps: int, workers: dict, a, cores: int,
            model: str) -> dict:
  """{config: result} of one measurement: a warm-up call each, then `reps` rounds of
  one timed call per configuration (the order rotated each round)."""
  res = {}
  for c in configs:
    w = workers.get(c[0])
    r = (w.request(op="warmup", measurement=name, config=c[1]) if w
         else {"error": "no worker"})
    if "error" in r:
      res[c] = r
      print(f"  {model:9s} {name:15s} {LABELS[c]:45s} failed: {r['error']}",
            file=sys.stderr, flush=True)
      continue
    res[c] = {"first_call_s": r["seconds"], "first_call_images": r["images"],
              "rep_s": [], "cpu_util_per_rep": [], "other_cpu_per_rep": [],
              "waited_for_idle_s": 0.0}
  for rep in range(reps):
    live = [c for c in configs if "error" not in res[c]]
    if not live:
      break
    k = rep % len(live)
    for c in live[k:] + live[:k]:
      waited = tp.wait_for_idle(a.wait_idle, cores) if a.wait_idle > 0 else 0.0
      r = workers[c[0]].request(op="time", measurement=name, config=c[1])
      if "error" in r:
        res[c] = r
        print(f"  {model:9s} {name:15s} {LABELS[c]:45s} failed: {r['error']}",
              file=sys.stderr, flush=True)
        continue
      d = res[c]
      d["images"], d["sets"] = r["images"], r["sets"]
      d["rep_s"].append(r["seconds"])
      d["cpu_util_per_rep"].append(r["cpu_util"])
      if r["other_cpu"] is not None:
        d["other_cpu_per_rep"].append(r["other_cpu"])
      d["waited_for_idle_s"] += waited
      print(f"  {model:9s} {name:15s} {LABELS[c]:45s} rep {rep + 1}/{reps}: "
            f"{r['images'] / r['seconds']:9,.0f} img/s ({r['seconds']:.2f} s, others "
            f"{r['other_cpu'] or 0:.2f})", file=sys.stderr, flush=True)
  for c, d in res.items():
    if "error" not in d and d["rep_s"]:
      d.update(_rates(d))
  return res


def best_torch(res: dict):
  rows = [(c, r) for c, r in res.items() if c[0] == "torch" and "img_per_s" in r]
  return max(rows, key=lambda cr: cr[1]["img_per_s"], default=(None, None))


def find_cached_suite(flag: str) -> str | None:
  """The cached suite folder to time: '' none, 'auto' the KMNIST build in the
  robustness cache with the most sets (then images), else the given folder."""
  if not flag:
    return None
  from kmnist_jax.robustness import sets
  if flag != "auto":
    folder = os.path.abspath(os.path.expanduser(flag))
    try:
      m = sets.read_manifest(folder)
    except UserError as e:
      raise UserError(f"--cached_suite={flag}: {e}") from None
    if m["dataset"] != "kmnist" or m["split"] != "test":
      raise UserError(f"--cached_suite={flag}: a {m['dataset']} {m['split']} build; "
                      "give a KMNIST test-split build")
    return folder
  root = sets.default_cache_dir()
  found = []
  for d in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    if not d.startswith("kmnist-test-seed"):
      continue
    try:
      m = sets.read_manifest(os.path.join(root, d))
    except UserError:
      continue
    if m["dataset"] == "kmnist" and m["files"]:
      found.append((len(m["files"]), m["count"], os.path.join(root, d)))
  return max(found)[2] if found else None


def _ratio(r, best) -> str:
  ok = r is not None and "img_per_s" in r and best is not None
  return f"{r['img_per_s'] / best['img_per_s']:.2f}x" if ok else "--"


def make_table(report: dict) -> str:
  lines = ["| Model | Measurement | Configuration | img/s (median ± half range) | "
           "min-max img/s | s per call | vs best PyTorch |",
           "|---|---|---|---|---|---|---|"]
  out = []
  for m in report["models"]:
    for name, rs in report["results"][m].items():
      res = {tuple(k.split(":")): r for k, r in rs.items()}
      _, best = best_torch(res)
      for c, r in res.items():
        ok = "img_per_s" in r
        lines.append(
            f"| {m} | {name} | {LABELS[c]} | {tp.fmt_rate(r)} | "
            + (f"{r['img_per_s_min']:,.0f}-{r['img_per_s_max']:,.0f} | "
               f"{r['median_s']:.2f} |" if ok else "-- | -- |")
            + f" {_ratio(r, best)} |")
        if not ok:
          out.append(f"- {m}, {name}, {LABELS[c]}: {r.get('error')}")
      s = report["summary"][m][name]
      if s.get("jax_over_best_torch") is not None:
        out.append(f"- **{m}, {name}**: JAX predict / best PyTorch "
                   f"({LABELS[('torch', s['best_torch'])]}) = "
                   f"**{s['jax_over_best_torch']:.2f}x**"
                   + (f"; conv_impl='auto' / predict = {s['auto_over_predict']:.2f}x"
                      if s.get("auto_over_predict") is not None else ""))
  loaded = [f"{m} {n} {LABELS[tuple(k.split(':'))]} ({r['other_cpu']:.2f})"
            for m in report["models"] for n, rs in report["results"][m].items()
            for k, r in rs.items() if (r.get("other_cpu") or 0.0) > tp.LOADED]
  if loaded:
    out.append("- †: other processes kept > %.2f cores busy during at least one timed "
               "call (the largest share is given), so it shared the CPU: %s"
               % (tp.LOADED, "; ".join(loaded)))
  for name, d in report["measurements"].items():
    out.append(f"- {name}: {d['description']}")
  for m, chk in report["checks"].items():
    j = chk.get("jax") or {}
    if "label_mismatches" in j:
      out.append(f"- {m} check: JAX predict with conv_impl=None (XLA conv) and 'auto' "
                 f"gave {j['label_mismatches']} different labels on {j['images']:,} "
                 f"images; largest logit difference {j['max_abs_logit_diff']:.1e} "
                 f"(logits up to {j['max_abs_logit']:.2f}).")
    t = chk.get("torch") or {}
    if "label_mismatches" in t:
      out.append(f"- {m} check: PyTorch eager and channels_last gave "
                 f"{t['label_mismatches']} different labels on {t['images']:,} images.")
  out += [f"- {note}" for note in report["notes"]]
  return "\n".join(lines) + "\n\n" + "\n".join(out) + "\n"


def _markdown(report: dict, table: str) -> str:
  mi = report["machine"]
  return (
      f"# Evaluation throughput (cpu)\n\n"
      f"CPU: {mi['cpu_model']}, {mi['cores']} cores, {mi['mem_gib']} GiB.\n\n"
      f"{report['date']}; Python {mi['python']}, jax {mi['jax']}, torch "
      f"{mi['torch'] or 'not installed'}; load average before/after: "
      f"{mi['loadavg_before']} / {mi['loadavg_after']}.\n\n"
      f"Inference (labels out), float32, batch {report['batch']}, freshly initialised "
      f"weights. img/s = images / seconds of one call, compiled, after a warm-up call; "
      f"median over {report['reps']} timed calls ({report['suite_reps']} for "
      f"suite_tiled), configurations interleaved rep by rep; ± = half the min-max "
      f"range. Ratios: each configuration / the best PyTorch variant of the same "
      f"measurement.\n\n"
      f"`{report['command']}`\n\n" + table)


def define_flags() -> None:
  flags.DEFINE_boolean("quick", False, "Smoke run: 256 test images, a 512-image tiled "
                       "suite, 32 images per cached set, 2 reps; writes to "
                       "results/tmp/eval_throughput/.")
  flags.DEFINE_string("models", "cnn", f"Comma list of {', '.join(tp.MODELS)}.")
  flags.DEFINE_string("torch_variants", ",".join(TORCH_VARIANTS),
                      f"Comma list of {', '.join(TORCH_VARIANTS)} ('' = JAX only).")
  flags.DEFINE_integer("batch", 1000, "Batch size of every call.", lower_bound=1)
  flags.DEFINE_integer("reps", None, "Timed calls per configuration (default 5; --quick "
                       "2).", lower_bound=1)
  flags.DEFINE_integer("suite_reps", None, "Timed calls per configuration of "
                       "suite_tiled (default 3; --quick 1).", lower_bound=1)
  flags.DEFINE_integer("test_images", None, "Clean test images (default all 10,000; "
                       "--quick 256).", lower_bound=1, upper_bound=TEST_IMAGES)
  flags.DEFINE_integer("suite_images", None, "Images of suite_tiled: the test images "
                       "tiled (default 1,000,000 = 20 x 5 x 10,000; --quick 512).",
                       lower_bound=1)
  flags.DEFINE_string("cached_suite", "auto", "Cached corrupted suite to time: 'auto' "
                      "(the KMNIST build in the robustness cache with the most sets), a "
                      "build folder, or '' (none).")
  flags.DEFINE_integer("cached_images", None, "Images per cached set (default: all the "
                       "build holds; --quick 32).", lower_bound=1)
  flags.DEFINE_integer("threads", None, "torch threads (default: cores).", lower_bound=1)
  flags.DEFINE_string("data_dir", "", "Datasets folder (default $KMNIST_JAX_DATA_DIR / "
                      "~/kmnist_jax_data).")
  flags.DEFINE_string("out_dir", None, "Output folder (default results/eval_throughput/"
                      "<machine kind>/; --quick: "
                      "results/tmp/eval_throughput/).")
  flags.DEFINE_float("worker_timeout", 3600.0, "Seconds a worker may take for its set-up "
                     "or for one call.", lower_bound=1.0)
  flags.DEFINE_float("wait_idle", 0.0, "Before each timed call, wait up to this many "
                     "seconds for other processes to leave the CPU idle (shared "
                     "machines).", lower_bound=0.0)
  flags.DEFINE_string("worker", None, "Internal: a worker process (a JSON spec); the "
                      "parent starts these.")


def main(argv) -> int:
  del argv
  if FLAGS.worker is not None:
    return worker_main(FLAGS.worker)
  return run(FLAGS)


def _describe(name: str, d: dict, folder: str | None) -> str:
  if name == "clean":
    return f"the KMNIST test images ({d['images']:,}), one call"
  if name in ("suite_load", "suite_preloaded"):
    how = ("each loaded with robustness.sets.load (SHA-256 check + npz) and then "
           "predicted, as the corruption evaluator does" if name == "suite_load" else
           "preloaded in memory: the model cost alone")
    return (f"the cached suite {folder}: {d['sets']} sets x {d['set_images']:,} images, "
            f"one call per set, {how}")
  tiles = d["images"] / d["set_images"]
  what = (": the model cost of a 20x5x10,000 suite, file loading excluded"
          if d["images"] == FULL_SUITE and d["set_images"] == TEST_IMAGES
          else ", file loading excluded")
  return (f"the test set tiled {tiles:g}x ({d['images']:,} images, one call per set of "
          f"{d['set_images']:,}){what}")


def run(a) -> int:
  cores = tp.core_count()
  quick = a.quick
  models = tp.csv_list(a.models, tp.MODELS, "model")
  torch_variants = tp.csv_list(a.torch_variants, TORCH_VARIANTS, "torch variant")
  reps = a.reps or (2 if quick else 5)
  suite_reps = a.suite_reps or (1 if quick else 3)
  test_images = a.test_images or (256 if quick else TEST_IMAGES)
  suite_images = a.suite_images or (2 * test_images if quick else FULL_SUITE)
  cached_images = a.cached_images or (32 if quick else 0)
  threads = a.threads or cores
  out_dir = a.out_dir or (os.path.join(tp.ROOT, "results", "tmp", "eval_throughput")
                           if quick else tp.results_dir("eval_throughput"))
  data_dir = tp.resolve_data_dir(a.data_dir)
  cached = find_cached_suite(a.cached_suite)
  notes = []
  if torch_variants and importlib.util.find_spec("torch") is None:
    notes.append(tp.NO_TORCH)
    print(f"note: {tp.NO_TORCH}", file=sys.stderr, flush=True)
    torch_variants = []
  if a.cached_suite and not cached:
    notes.append("No cached corrupted suite was found (--cached_suite=auto looks in "
                 "the robustness cache), so suite_load / suite_preloaded were not run.")
  print(f"eval_throughput: {', '.join(models)} on {tp.cpu_model()}, {cores} cores, "
        f"load {tp.loadavg()}; cached suite: {cached or 'none'}", file=sys.stderr,
        flush=True)

  load_before = tp.loadavg()
  t_start = time.perf_counter()
  results, checks, info, summary = {}, {}, {}, {}
  measurements = {}
  for model in models:
    spec = {"model": model, "model_kwargs": tp.model_kwargs(model), "platform": "cpu",
            "mode": "predict", "devices": None, "batch": a.batch,
            "data_dir": data_dir, "test_images": test_images,
            "suite_images": suite_images, "cached_suite": cached,
            "cached_images": cached_images, "threads": threads}
    workers = {}
    try:
      frameworks = ["jax"] + (["torch"] if torch_variants else [])
      for fw in frameworks:
        w = Worker({**spec, "framework": fw}, a.worker_timeout)
        if "error" in w.info:
          print(f"  {model}: the {fw} worker failed: {w.info['error']}",
                file=sys.stderr, flush=True)
          w.close()
        else:
          workers[fw] = w
      info[model] = {fw: w.info for fw, w in workers.items()}
      counts = {fw: i["params"] for fw, i in info[model].items()}
      if len(set(counts.values())) > 1:
        raise SystemExit(f"error: {model}: parameter counts differ between "
                         f"frameworks: {counts}")
      res = {}
      configs = ([("jax", "predict"), ("jax", "predict_auto")]
                 + [("torch", v) for v in torch_variants])
      res["clean"] = measure("clean", configs, reps, workers, a, cores, model)
      checks[model] = {fw: w.request(op="check") for fw, w in workers.items()}
      best, best_r = best_torch(res["clean"])
      suite_configs = [("jax", "predict")] + ([best] if best else [])
      if cached:
        for name in ("suite_load", "suite_preloaded"):
          res[name] = measure(name, suite_configs, reps, workers, a, cores, model)
      rates = [r["img_per_s"] for c, r in res["clean"].items() if c in suite_configs
               and "img_per_s" in r]
      calls = suite_reps + min(1.0, test_images / suite_images)  # + the warm-up set
      secs = sum(suite_images / x for x in rates) * calls
      print(f"  {model}: suite_tiled ({suite_images:,} images, {suite_reps} reps): "
            + (f"about {secs / 60:.0f} min" if secs > 120 else f"about {secs:.0f} s")
            + " expected from the clean rates", file=sys.stderr, flush=True)
      res["suite_tiled"] = measure("suite_tiled", suite_configs, suite_reps, workers,
                                   a, cores, model)
    finally:
      for w in workers.values():
        w.close()
    results[model] = {n: {f"{c[0]}:{c[1]}": r for c, r in rs.items()}
                      for n, rs in res.items()}
    summary[model] = {}
    for name, rs in res.items():
      bk, bt = best_torch(rs)
      j, auto = rs.get(("jax", "predict"), {}), rs.get(("jax", "predict_auto"), {})
      summary[model][name] = {
          "best_torch": bk[1] if bk else None,
          "jax_over_best_torch": (j["img_per_s"] / bt["img_per_s"]
                                  if bt and "img_per_s" in j else None),
          "auto_over_predict": (auto["img_per_s"] / j["img_per_s"]
                                if "img_per_s" in auto and "img_per_s" in j else None)}
      got = next((r for r in rs.values() if "images" in r), None)
      if got and name not in measurements:
        d = {"images": got["images"], "sets": got["sets"],
             "set_images": got["images"] // got["sets"] if name != "suite_tiled"
             else test_images}
        d["description"] = _describe(name, d, cached)
        measurements[name] = d
  total_s = time.perf_counter() - t_start

  meta = tp.machine_meta("cpu", cores)
  report = {
      "meta": meta, "date": meta["date"], "command": meta["command"], "quick": quick,
      "machine": tp.machine_info(cores, load_before),
      "models": models, "model_kwargs": {m: tp.model_kwargs(m) for m in models},
      "batch": a.batch, "reps": reps, "suite_reps": suite_reps,
      "test_images": test_images, "suite_images": suite_images,
      "cached_suite": cached, "cached_images": cached_images or None,
      "threads": threads, "wait_idle": a.wait_idle,
      "loaded_threshold_cores": tp.LOADED, "total_s": total_s,
      "measurements": measurements, "workers": info, "checks": checks,
      "results": results, "summary": summary, "notes": notes,
  }
  os.makedirs(out_dir, exist_ok=True)
  base = os.path.join(out_dir, "eval_throughput_cpu")
  io.write_json(base + ".json", report)
  table = make_table(report)
  io.atomic_write(base + ".md", _markdown(report, table))
  print(table)
  print(f"wrote {base}.json and {base}.md ({total_s:.0f} s)", file=sys.stderr)
  failed = any("error" in r for rs in results.values() for ms in rs.values()
               for r in ms.values())
  return 1 if failed or any("error" in c for ch in checks.values()
                            for c in ch.values()) else 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)
