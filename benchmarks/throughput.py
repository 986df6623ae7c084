r"""Training throughput: kmnist_jax (single / pmap / sharded) vs PyTorch, one machine.

  python benchmarks/throughput.py                    # CPU, full (~7 min on 2 cores)
  python benchmarks/throughput.py --quick            # smoke run: a few steps each
  python benchmarks/throughput.py --platform=gpu     # GPU: JAX and torch.cuda

Measures steady-state TRAINING images/s (compile excluded, reported separately) of
``keras_cnn`` and the default ``cnn`` (model kwargs of experiments/configs/kmnist_cnn.py),
batch 128, Adam (lr 1e-3, no weight decay, constant schedule), on the real KMNIST
train images (60,000, uint8, loaded with ``kmnist_jax.data.load``):

* JAX: the library's own compiled epoch chunk -- ``train.make_train_chunk`` compiled
  by ``Parallel.compile`` and called exactly as ``train.train_and_evaluate`` calls it
  (one ``lax.scan`` over ``chunk_steps`` steps, on-device shuffle, uint8 -> float on
  device, metrics fetched after each chunk) -- in modes ``single`` (1 device),
  ``pmap`` and ``sharded`` (``--devices``, default: the cores), plus ``single_xla``
  (``conv_impl='xla'``: XLA's convolution inside the scan, slow on CPU -- see
  kmnist_jax/ops.py -- so it runs only ``--xla_steps`` steps).
* PyTorch (benchmarks/torch_models.py, same layers and parameter counts): eager,
  channels_last and ``torch.compile``; ``torch.set_num_threads(cores)``; the data are
  a preloaded uint8 tensor indexed by a fresh random permutation each epoch and scaled
  to float inside the loop.

Each configuration runs in its own subprocess (``--worker``): the number of JAX CPU
devices (``--xla_force_host_platform_device_count``) must be fixed before jax is
imported, and a process per configuration keeps the frameworks' thread pools apart.
Timing: one first call (compile + one chunk), ``--warmup`` more chunks, then timed
chunks of ``chunk_steps`` steps until ``--seconds`` have passed (at least
``--min_reps``); the reported rate is the median over the timed chunks, and the
compile time is (first call - median chunk). PyTorch is timed in repetitions of
``--torch_steps`` steps (its per-step cost does not depend on how steps are grouped).
``--repeats=N`` runs the whole table N times round robin (a shared CPU drifts by
10-20% over minutes, and PyTorch's rate swings more than JAX's): each cell is then the
median repetition, and the JAX/PyTorch ratio is given per repetition (median, range)
and as JAX's median over PyTorch's best repetition.

Writes ``<out_dir>/throughput_<platform>[_<tag>].json`` (``<out_dir>`` default:
results/throughput/<machine kind>/, e.g. cpu_zen4; every number, machine info, and the
``meta`` block of kmnist_jax.io.run_meta: versions, git commit, command, CPU model) and
``.md`` (the table, also printed), each atomically. ``--quick`` writes to results/tmp/
by default so that a smoke run never overwrites measured results. Flags are absl
flags (``--name=value``); a bad flag or value is one ``error:`` line, exit 2.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform as platform_lib
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

from absl import flags

from kmnist_jax import cli, io
from kmnist_jax.errors import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FLAGS = flags.FLAGS

MODELS = ("keras_cnn", "cnn")
# The model kwargs come from these config files (so the benchmark follows them).
MODEL_CONFIGS = {"keras_cnn": "experiments/configs/kmnist_keras_cnn.py",
                 "cnn": "experiments/configs/kmnist_cnn.py"}
KNOWN_PARAMS = {"keras_cnn": 1_199_882}  # the rois-codh Keras simple CNN
JAX_MODES = ("single", "pmap", "sharded", "single_xla")
TORCH_VARIANTS = ("eager", "channels_last", "compile")
RESULT_TAG = "THROUGHPUT_RESULT "
LOADED = 0.25  # cores used by other processes while timed: above, a row is marked
NO_TORCH = ("PyTorch is not installed, so this is JAX only: "
            "pip install -r benchmarks/requirements.txt for the baseline.")

LABELS = {
    ("jax", "single"): "JAX single",
    ("jax", "pmap"): "JAX pmap",
    ("jax", "sharded"): "JAX sharded",
    ("jax", "single_xla"): "JAX single, conv_impl=xla",
    ("torch", "eager"): "PyTorch eager",
    ("torch", "channels_last"): "PyTorch channels_last",
    ("torch", "compile"): "PyTorch torch.compile",
}


# ---- Machine info -------------------------------------------------------------------

def core_count() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # pragma: no cover - not Linux
    return os.cpu_count() or 1


def cpu_model() -> str:
  return io.cpu_model()


def _gpu_name() -> str:
  """The first NVIDIA card's name from nvidia-smi, or '' (no card, no driver)."""
  try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.SubprocessError):
    return ""
  lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
  return lines[0] if lines else ""


def machine_kind(platform: str = "cpu", device: str = "") -> str:
  """The machine-kind folder of results/<what>/<kind>/: for a CPU its microarchitecture
  where known ('cpu_zen4', 'cpu_zen3', 'cpu_zen2', ...: AMD EPYCs of one name differ
  by 2x), 'cpu_intel', else 'cpu'; '<platform>_<card>' for an accelerator, e.g.
  'gpu_h100' (nvidia-smi's name when `device` is not given)."""
  if platform == "cpu":
    model = cpu_model()
    arch = re.search(r": (Zen \d|Zen)\b", model)
    if arch:
      return "cpu_" + arch.group(1).lower().replace(" ", "")
    return "cpu_intel" if "Intel" in model else "cpu"
  if not device and platform == "gpu":
    device = _gpu_name()
  words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", device or "")
           if w and w.lower() not in ("nvidia", "amd", "tesla", "tpu", platform)]
  return f"{platform}_{words[0]}" if words else (platform or "unknown")


def results_dir(what: str, platform: str = "cpu", device: str = "") -> str:
  """Where a benchmark writes by default: results/<what>/<machine kind>/ (the current
  measurement for that kind; the one it replaces stays in git's history)."""
  return os.path.join(ROOT, "results", what, machine_kind(platform, device))


def _cpu_flags() -> list[str]:
  """The vector-unit flags that matter for these kernels."""
  want = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          have = set(line.split(":", 1)[1].split())
          return [x for x in want if x in have]
  except OSError:
    pass
  return []


def _mem_gib() -> float | None:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemTotal:"):
          return round(int(line.split()[1]) / 2**20, 1)
  except OSError:
    pass
  return None


def loadavg() -> list[float] | None:
  try:
    with open("/proc/loadavg") as f:
      return [float(x) for x in f.read().split()[:3]]
  except OSError:
    return None


def cpu_busy_s() -> float | None:
  """Seconds of CPU time all processes on this machine have used (from /proc/stat)."""
  try:
    with open("/proc/stat") as f:
      fields = [int(x) for x in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
  # Fields 8, 9 (guest) are already counted in user / nice.
  return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_idle(max_s: float, cores: int) -> float:
  """Waits (at most max_s) until other processes use < 0.1 cores; returns seconds
  waited."""
  t0 = time.perf_counter()
  while time.perf_counter() - t0 < max_s:
    b0 = cpu_busy_s()
    time.sleep(1.0)
    b1 = cpu_busy_s()
    if b0 is None or b1 is None or (b1 - b0) < 0.1 * cores:
      break
  return time.perf_counter() - t0


def package_version(pkg: str) -> str | None:
  try:
    return importlib.metadata.version(pkg)
  except importlib.metadata.PackageNotFoundError:
    return None


def resolve_data_dir(flag: str) -> str:
  if flag:
    return os.path.abspath(flag)
  from kmnist_jax import data as data_lib  # numpy only: no jax import in the parent
  return os.path.abspath(os.path.expanduser(data_lib.default_data_dir()))


def model_kwargs(name: str) -> dict:
  """model_kwargs of the model's experiment config (tuples as lists)."""
  from kmnist_jax import config as config_lib  # no jax import in the parent
  cfg = config_lib.load_file(os.path.join(ROOT, MODEL_CONFIGS[name]))
  if cfg.model != name:
    raise SystemExit(f"error: {MODEL_CONFIGS[name]} configures model {cfg.model!r}, "
                     f"not {name!r}")
  return json.loads(json.dumps(cfg.model_kwargs.to_dict()))


# ---- Workers --------------------------------------------------------------------------

def load_train(spec, dataset="kmnist", **kw):
  """(images, labels, classes) of `dataset`'s training split from spec["data_dir"]."""
  from kmnist_jax import data as data_lib
  ds = data_lib.load(dataset, data_dir=spec["data_dir"], source="files", **kw)
  train = ds.splits["train"]
  return train.images, train.labels, ds.info.num_classes


def chunk_caller(chunk_fn, par, state, arrays, root, steps_per_epoch, chunk_steps):
  """call() -> (seconds, mean loss) of the next compiled training chunk, chunks walking
  through the epochs as train_and_evaluate walks them (the state carried along)."""
  import jax
  import numpy as np
  starts = list(range(0, steps_per_epoch - chunk_steps + 1, chunk_steps))
  pos = {"i": 0, "state": state}

  def call():
    epoch, start = divmod(pos["i"], len(starts))
    pos["i"] += 1
    t0 = time.perf_counter()
    st, m = chunk_fn(pos["state"], *arrays, root, epoch, starts[start])
    m = par.fetch(m)  # what the training loop does after every chunk: a sync
    jax.block_until_ready(st)
    dt = time.perf_counter() - t0
    pos["state"] = st
    if int(m["first_bad_step"]) != np.iinfo(np.int32).max:
      raise FloatingPointError("loss became NaN/inf")
    return dt, float(m["loss_sum"]) / chunk_steps
  return call


def timed_reps(call, spec) -> dict:
  """First call, warm-up, then timed calls (at least spec["min_reps"], until
  spec["seconds"] or spec["max_reps"]); call() -> (seconds, loss) of one chunk."""
  first_s, _ = call()
  for _ in range(spec["warmup"]):
    call()
  reps, losses = [], []
  cpu0, busy0, t0 = os.times(), cpu_busy_s(), time.perf_counter()
  while (len(reps) < spec["min_reps"]
         or (sum(reps) < spec["seconds"]
             and len(reps) < spec.get("max_reps", float("inf")))):
    dt, loss = call()
    reps.append(dt)
    losses.append(loss)
  wall = time.perf_counter() - t0
  cpu1, busy1 = os.times(), cpu_busy_s()
  cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
  other = None if busy0 is None or busy1 is None else max(0.0, busy1 - busy0 - cpu) / wall
  med = statistics.median(reps)
  images = spec["chunk_steps"] * spec["batch"]
  return {
      "img_per_s": images / med,
      "img_per_s_min": images / max(reps),
      "img_per_s_max": images / min(reps),
      "reps": len(reps),
      "steps_per_rep": spec["chunk_steps"],
      "timed_s": sum(reps),
      "rep_s": reps,
      "first_call_s": first_s,
      "compile_s": max(0.0, first_s - med),
      # Cores this process kept busy while timed: < cores means it shared the CPU.
      "cpu_util": cpu / wall if wall > 0 else None,
      # Cores that OTHER processes kept busy meanwhile: > 0.25 marks a shared CPU.
      "other_cpu": other,
      "last_loss": losses[-1],
  }


def _jax_worker(spec) -> dict:
  import jax
  import ml_collections

  from kmnist_jax import config as config_lib
  from kmnist_jax import models, parallel, train

  backend = jax.default_backend()
  if spec["platform"] == "gpu" and backend != "gpu":
    raise RuntimeError(f"--platform gpu, but JAX's backend is {backend!r} "
                       f"(install jax[cuda]); devices: {jax.devices()}")
  mode = spec["mode"]
  par_mode = "single" if mode == "single_xla" else mode
  if par_mode != "single" and len(jax.devices()) < 2:
    return {"skipped": f"{mode} needs >= 2 devices; JAX sees {len(jax.devices())}"}

  cfg = config_lib.base()
  cfg.model = spec["model"]
  cfg.model_kwargs = ml_collections.ConfigDict(spec["model_kwargs"])
  cfg.optimizer = "adam"
  cfg.learning_rate = 1e-3
  cfg.weight_decay = 0.0
  cfg.schedule = "constant"
  cfg.batch_size = spec["batch"]
  cfg.conv_impl = "xla" if mode == "single_xla" else spec.get("conv_impl", "auto")
  cfg.dtype = spec.get("dtype", "float32")
  cfg.parallel = par_mode
  cfg.data_dir = spec["data_dir"]
  cfg.data_source = "files"
  cfg.val_size = 0
  cfg.augment = spec.get("augment", "")
  config_lib.validate(cfg)

  par = parallel.create(par_mode)
  par.check_batch(cfg.batch_size)
  images, labels, num_classes = load_train(spec)
  n_train = len(labels)
  steps_per_epoch = n_train // cfg.batch_size
  chunk_steps = spec["chunk_steps"] or train.chunk_steps_per_call(
      steps_per_epoch, cfg.progress_updates_per_epoch)
  chunk_steps = min(chunk_steps, steps_per_epoch)
  spec = dict(spec, chunk_steps=chunk_steps)

  graphdef, tx, state = train.init_state(cfg, num_classes, steps_per_epoch,
                                         bn_axis_name=par.axis_name)
  n_params = models.param_count(state.params)
  state = par.replicate(state)
  arrays = par.replicate((images, labels))
  root = train.root_key(cfg.seed)
  augmenter = None
  if cfg.augment:
    from kmnist_jax import augment
    augmenter = augment.build(cfg.augment, num_classes)
  train_step = train.make_train_step(graphdef, tx, cfg, num_classes, par, augmenter)
  chunk_fn = par.compile(
      train.make_train_chunk(train_step, n_train=n_train, batch_size=cfg.batch_size,
                             chunk_steps=chunk_steps, par=par), num_replicated=3)
  call = chunk_caller(chunk_fn, par, state, arrays, root, steps_per_epoch, chunk_steps)
  out = timed_reps(call, spec)
  if spec.get("profile_dir"):  # benchmarks/profile_step.py: trace a few more chunks
    with jax.profiler.trace(spec["profile_dir"]):
      for _ in range(spec["profile_chunks"]):
        call()
  dev = jax.devices()[0]
  out.update(params=n_params, devices=par.num_replicas, chunk_steps=chunk_steps,
             conv_impl=cfg.conv_impl, backend=backend,
             device_kind=getattr(dev, "device_kind", str(dev)),
             describe=par.describe(), jax_version=jax.__version__)
  return out


def _torch_worker(spec) -> dict:
  import numpy as np
  import torch
  import torch.nn.functional as F
  import torch_models

  gpu = spec["platform"] == "gpu"
  if gpu and not torch.cuda.is_available():
    raise RuntimeError("--platform gpu, but torch.cuda is not available "
                       f"(torch {torch.__version__})")
  device = torch.device("cuda" if gpu else "cpu")
  if not gpu:
    torch.set_num_threads(spec["threads"])
  else:
    torch.backends.cudnn.benchmark = True
  torch.manual_seed(0)
  variant = spec["variant"]
  channels_last = variant == "channels_last"

  images_np, labels_np, num_classes = load_train(spec)
  images = torch.from_numpy(images_np).unsqueeze(1).to(device)    # uint8 [N,1,28,28]
  labels = torch.from_numpy(labels_np.astype(np.int64)).to(device)
  n, b = len(labels), spec["batch"]
  steps_per_epoch = n // b

  model = torch_models.create(spec["model"], num_classes, **spec["model_kwargs"])
  n_params = torch_models.param_count(model)
  want = KNOWN_PARAMS.get(spec["model"])
  if want is not None and n_params != want:
    raise AssertionError(f"{spec['model']}: {n_params} parameters, expected {want}")
  model = model.to(device)
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
  model.train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  fwd = torch.compile(model) if variant == "compile" else model

  def step(idx):
    x = images[idx].float().div_(255.0)
    if channels_last:
      x = x.contiguous(memory_format=torch.channels_last)
    y = labels[idx]
    logits = fwd(x)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()

  chunk_steps = spec["chunk_steps"]
  pos = {"epoch_step": steps_per_epoch, "perm": None}

  def call():
    if gpu:
      torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    for _ in range(chunk_steps):
      if pos["epoch_step"] >= steps_per_epoch:
        pos["perm"] = torch.randperm(n, device=device)
        pos["epoch_step"] = 0
      i = pos["epoch_step"]
      pos["epoch_step"] += 1
      loss_sum += step(pos["perm"][i * b:(i + 1) * b])
    loss = float(loss_sum)  # a sync, like the JAX chunk's metrics fetch
    if gpu:
      torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if not np.isfinite(loss):
      raise FloatingPointError("loss became NaN/inf")
    return dt, loss / chunk_steps

  out = timed_reps(call, spec)
  out.update(params=n_params, threads=torch.get_num_threads(), variant=variant,
             torch_version=torch.__version__,
             device_kind=torch.cuda.get_device_name() if gpu else "cpu")
  return out


def worker_main(spec_json: str) -> int:
  spec = json.loads(spec_json)
  try:
    fn = _jax_worker if spec["framework"] == "jax" else _torch_worker
    out = fn(spec)
  except Exception as e:  # a result: one failing config must not stop the rest
    traceback.print_exc()
    out = error_result(e)
  print(RESULT_TAG + json.dumps(out), flush=True)
  return 0


def error_result(e: BaseException) -> dict:
  """A worker's result for a failed configuration: the error in one line."""
  return {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
          if str(e).strip() else type(e).__name__}


# ---- Parent ---------------------------------------------------------------------------

def cpu_jax_spec(model: str, data_dir: str, cores: int, **overrides) -> dict:
  """The spec of one CPU JAX worker run (the library's training chunk, batch 128,
  sharded over one device per core), with `overrides`: what cpu_variants.py and
  profile_step.py vary."""
  spec = {"framework": "jax", "mode": "sharded", "model": model,
          "model_kwargs": model_kwargs(model), "platform": "cpu", "batch": 128,
          "data_dir": data_dir, "seconds": 8.0, "min_reps": 3, "max_reps": 1000,
          "warmup": 1, "chunk_steps": 0, "devices": cores, "threads": cores,
          "augment": ""}
  spec.update(overrides)
  return spec


def worker_env(spec) -> dict:
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if spec["framework"] == "jax":
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
                   env.get("XLA_FLAGS", "")).strip()
    if spec["platform"] == "cpu":
      n = 1 if spec["mode"] in ("single", "single_xla") else spec["devices"]
      if n:  # None: the library's default count (kmnist_jax.xla_cpu, below)
        flags += f" --xla_force_host_platform_device_count={n}"
      env["JAX_PLATFORMS"] = "cpu"
    else:
      env.pop("JAX_PLATFORMS", None)
    flags += " " + spec.get("xla_flags", "")
    env["XLA_FLAGS"] = flags.strip()
    if spec.get("library_flags", True):  # the flags experiments/*.py run with
      from kmnist_jax import xla_cpu
      xla_cpu.apply(env)
  return env


def run_worker(spec, timeout: float, timeout_flag: str = "--worker_timeout", *,
               script: str | None = None, env: dict | None = None,
               tag: str = RESULT_TAG) -> dict:
  """Runs `spec` in a fresh `script --worker=...` process (default this file, its
  environment from :func:`worker_env`); the result is its last stdout line starting
  with `tag`, or {'error': ...}."""
  cmd = [sys.executable, script or os.path.abspath(__file__), "--worker=" + json.dumps(spec)]
  env = worker_env(spec) if env is None else dict(env)
  load0 = loadavg()
  t0 = time.perf_counter()
  try:
    with tempfile.TemporaryDirectory(prefix="throughput_inductor_") as cache:
      # torch.compile from a cold cache, like JAX (no persistent compilation cache).
      env["TORCHINDUCTOR_CACHE_DIR"] = env["TRITON_CACHE_DIR"] = cache
      p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
  except subprocess.TimeoutExpired:
    out = {"error": f"timed out after {timeout:.0f} s ({timeout_flag})"}
  else:
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(tag)]
    if lines:
      out = json.loads(lines[-1][len(tag):])
    else:
      tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
      out = {"error": f"worker exited {p.returncode}: {tail[0][:300]}"}
    if "error" in out and p.stderr:
      out["stderr_tail"] = p.stderr.strip().splitlines()[-15:]
  out["wall_s"] = time.perf_counter() - t0
  out["loadavg_before"], out["loadavg_after"] = load0, loadavg()
  return out


def fmt_rate(r: dict | None) -> str:
  if not r:
    return "--"
  if "error" in r:
    return "failed"
  if "skipped" in r:
    return "skipped"
  spread = (r["img_per_s_max"] - r["img_per_s_min"]) / 2 / r["img_per_s"] * 100
  mark = " †" if (r.get("other_cpu") or 0.0) > LOADED else ""
  return f"{r['img_per_s']:,.0f} ±{spread:.0f}%{mark}"


def _best(results: dict, model: str, framework: str):
  rows = [(k, r) for k, r in results[model].items()
          if k[0] == framework and "img_per_s" in r and k[1] != "single_xla"]
  return max(rows, key=lambda kr: kr[1]["img_per_s"], default=(None, None))


def median_result(tries: list[dict]) -> dict:
  """One configuration over the repetitions: the repetition with the median rate (the
  lower middle one for an even count), with every repetition's rate attached."""
  ok = sorted((r for r in tries if "img_per_s" in r), key=lambda r: r["img_per_s"])
  if not ok:
    return tries[0]
  out = dict(ok[(len(ok) - 1) // 2])
  if len(tries) > 1:
    out["repeat_img_per_s"] = [r.get("img_per_s") for r in tries]
  return out


def repeat_summary(reps: list[dict]) -> dict:
  """Per repetition (each a {config: result} of one model), best JAX / best PyTorch in
  that repetition; and the median best JAX rate over PyTorch's best repetition."""
  if len(reps) < 2:
    return {}
  ratios, jax_rates, torch_rates = [], [], []
  for one in reps:
    _, rj = _best({"m": one}, "m", "jax")
    _, rt = _best({"m": one}, "m", "torch")
    if rj:
      jax_rates.append(rj["img_per_s"])
    if rt:
      torch_rates.append(rt["img_per_s"])
    if rj and rt:
      ratios.append(rj["img_per_s"] / rt["img_per_s"])
  if not ratios:
    return {}
  return {"repeat_ratios": ratios, "ratio_median": statistics.median(ratios),
          "ratio_min": min(ratios), "ratio_max": max(ratios),
          "jax_median_over_best_torch_rep": statistics.median(jax_rates) / max(torch_rates)}


def make_table(report: dict) -> str:
  results = {m: {tuple(k.split(":")): r for k, r in rs.items()}
             for m, rs in report["results"].items()}
  models = report["models"]
  configs = [tuple(c.split(":")) for c in report["configs"]]
  head = ["Configuration"]
  for m in models:
    head += [f"{m} img/s", "vs best PyTorch", "compile s"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for c in configs:
    label = LABELS[c]
    if c[0] == "jax" and c[1] in ("pmap", "sharded"):
      n = next((results[m][c]["devices"] for m in models
                if "devices" in results[m].get(c, {})), report["devices"])
      label += f" ({n or 'all'} dev)"
    if c == ("jax", "single_xla"):
      n = report["xla_steps"]
      label += f" ({n} step{'s' if n != 1 else ''}/chunk)"
    row = [label]
    for m in models:
      r = results[m].get(c)
      _, best_t = _best(results, m, "torch")
      ok = r is not None and "img_per_s" in r
      row.append(fmt_rate(r))
      row.append(f"{r['img_per_s'] / best_t['img_per_s']:.2f}x" if ok and best_t
                 else "--")
      show_compile = ok and (c[0] == "jax" or c[1] == "compile")
      row.append(f"{r['compile_s']:.1f}" if show_compile else "--")
    lines.append("| " + " | ".join(row) + " |")
  out = ["\n".join(lines), ""]
  for m in models:
    kj, rj = _best(results, m, "jax")
    kt, rt = _best(results, m, "torch")
    if rj and rt:
      out.append(f"- **{m}**: best JAX ({LABELS[kj]}) {rj['img_per_s']:,.0f} img/s vs "
                 f"best PyTorch ({LABELS[kt]}) {rt['img_per_s']:,.0f} img/s: "
                 f"**JAX/PyTorch = {rj['img_per_s'] / rt['img_per_s']:.2f}x**")
  for m in models:
    sm = report.get("summary", {}).get(m, {})
    if sm.get("repeat_ratios"):
      out.append(f"- {m} over {len(sm['repeat_ratios'])} repetitions: best JAX / best "
                 f"PyTorch of the same repetition = median **{sm['ratio_median']:.2f}x** "
                 f"(range {sm['ratio_min']:.2f}-{sm['ratio_max']:.2f}x: "
                 + ", ".join(f"{x:.2f}" for x in sm["repeat_ratios"])
                 + f"); best JAX's median rate / PyTorch's best repetition = "
                 f"{sm['jax_median_over_best_torch_rep']:.2f}x")
  for m in models:
    for c in configs:
      r = results[m].get(c)
      if r and ("error" in r or "skipped" in r):
        out.append(f"- {m}, {LABELS[c]}: {r.get('error') or r.get('skipped')}")
  loaded = [f"{m} {LABELS[c]} ({r['other_cpu']:.2f})" for m in models
            for c, r in results[m].items() if (r.get("other_cpu") or 0.0) > LOADED]
  if loaded:
    out.append("- †: other processes kept > %.2f cores busy while this was timed, so "
               "it ran on a shared CPU and is too low: %s" % (LOADED, "; ".join(loaded)))
  for note in report["notes"]:
    out.append(f"- {note}")
  return "\n".join(out) + "\n"


def _markdown(report: dict, table: str) -> str:
  mi = report["machine"]
  others = [r["other_cpu"] for rs in report["results"].values() for r in rs.values()
            if r.get("other_cpu") is not None]
  others = max(others) if others else None
  return (
      f"# Training throughput ({report['platform']})\n\n"
      f"{report['date']}: {mi['cpu_model']}, {mi['cores']} cores, {mi['mem_gib']} GiB"
      + (f", {mi['accelerator']}" if mi.get("accelerator") else "")
      + f"; Python {mi['python']}, jax {mi['jax']}, "
      f"torch {mi['torch'] or 'not installed'}."
      f" Load average before/after: {mi['loadavg_before']} / {mi['loadavg_after']}"
      + (f"; other processes used at most {others:.2f} cores while any configuration "
         f"was timed" if others is not None else "") + ".\n\n"
      f"Batch {report['batch']}, Adam lr 1e-3 (no weight decay, constant), real KMNIST "
      f"train images; img/s = median over timed chunks of {report['chunk_desc']} "
      f"(± half the min-max range), after warm-up; compile s = first call - median "
      f"chunk. Ratios: each configuration / the best PyTorch variant of the same "
      f"model."
      + (f" Every configuration ran {report['repeats']} times, round robin over the "
         f"whole table; each cell is its median repetition (all repetitions' rates in "
         f"the .json)." if report.get("repeats", 1) > 1 else "") + "\n\n"
      f"`{report['command']}`\n\n" + table)


def define_flags() -> None:
  """The script's flags. Defined only when this file runs as a script (parent or
  worker), so that cpu_variants.py can import the machinery and define its own."""
  flags.DEFINE_enum("platform", "cpu", ["cpu", "gpu"], "Where to run.")
  flags.DEFINE_boolean("quick", False, "Smoke run: a few steps per configuration, no "
                       "torch.compile and no conv_impl=xla unless asked for; writes to "
                       "results/tmp/.")
  flags.DEFINE_string("models", ",".join(MODELS), f"Comma list of {', '.join(MODELS)}.")
  flags.DEFINE_string("jax_modes", None, f"Comma list of {','.join(JAX_MODES)} (default: "
                      "all; --quick and gpu: no single_xla).")
  flags.DEFINE_string("torch_variants", None, f"Comma list of {','.join(TORCH_VARIANTS)} "
                      "('' = JAX only; default: all; --quick: no compile).")
  flags.DEFINE_float("seconds", None, "Timed seconds per configuration (default 15; "
                     "--quick 0).", lower_bound=0.0)
  flags.DEFINE_integer("min_reps", None, "Timed chunks at least (default 3; --quick 1).",
                       lower_bound=1)
  flags.DEFINE_integer("max_reps", 1000, "Timed chunks at most.", lower_bound=1)
  flags.DEFINE_integer("warmup", None, "Chunks run after the first call, before timing "
                       "(default 1; --quick 0).", lower_bound=0)
  flags.DEFINE_integer("chunk_steps", None, "JAX steps per compiled chunk = per timed "
                       "repetition (default: what training uses, 52 for KMNIST at batch "
                       "128; --quick 3).", lower_bound=0)
  flags.DEFINE_integer("torch_steps", 0, "PyTorch steps per timed repetition (default "
                       "10, gpu 100, --quick 3).", lower_bound=0)
  flags.DEFINE_integer("xla_steps", 1, "Steps per chunk for single_xla (2 timed chunks, "
                       "no warm-up).", lower_bound=1)
  flags.DEFINE_integer("batch", 128, "Batch size.", lower_bound=1)
  flags.DEFINE_string("augment", "", "Augmentation policy run in every JAX training step "
                      "(kmnist_jax.augment, e.g. 'affine+elastic'); its cost is the "
                      "img/s against a run without it.")
  flags.DEFINE_integer("devices", None, "CPU devices for pmap/sharded (default: cores); "
                       "on GPU all.", lower_bound=1)
  flags.DEFINE_integer("threads", None, "torch threads (default: cores).", lower_bound=1)
  flags.DEFINE_string("data_dir", "", "Datasets folder (default $KMNIST_JAX_DATA_DIR / "
                      "~/kmnist_jax_data).")
  flags.DEFINE_string("out_dir", None, "Output folder (default results/throughput/"
                      "<machine kind>/; --quick: "
                      "results/tmp/throughput/).")
  flags.DEFINE_float("worker_timeout", 300.0, "Seconds per configuration.",
                     lower_bound=0.0)
  flags.DEFINE_float("wait_idle", 0.0, "Before each configuration, wait up to this many "
                     "seconds for other processes to leave the CPU idle (shared "
                     "machines).", lower_bound=0.0)
  flags.DEFINE_integer("retries", 0, f"CPU: run a configuration again (up to this many "
                       f"times) when other processes used > {LOADED} cores while it was "
                       "timed; the least disturbed try is kept.", lower_bound=0)
  flags.DEFINE_string("tag", "", "File name tag: <out_dir>/throughput_<platform>_<tag>"
                      ".{json,md}, e.g. the CPU kind (zen3, zen4, intel).")
  flags.DEFINE_integer("repeats", 1, "Run the whole set of configurations this many "
                       "times, round robin (rep 1 of every configuration, then rep 2, "
                       "...): each rate is the median repetition, and the JAX/PyTorch "
                       "ratio is reported per repetition (median and range) and against "
                       "PyTorch's best repetition.", lower_bound=1)
  flags.DEFINE_string("render", "", "Only rewrite the .md beside a saved "
                      "throughput_<platform>.json (this flag's value).")
  flags.DEFINE_string("worker", None, "Internal: run one configuration (a JSON spec) "
                      "in this process; the parent starts these.")


def script_main(argv, fn) -> int:
  """fn() with kmnist_jax.cli's convention, for a benchmark that still ends with absl's
  app.run (the others end with cli.run(main), which does this)."""
  cli.no_arguments(argv)
  with cli.user_errors():
    return fn()


def check_tag(tag: str) -> str:
  """A results-file name tag: letters, digits, '_' or '-' (or empty)."""
  if tag and not tag.replace("_", "").replace("-", "").isalnum():
    raise UserError(f"--tag {tag!r} must be letters, digits, '_' or '-'")
  return tag


def write_results(out: str, name: str, tag: str, obj: dict, lines: list[str]) -> str:
  """<out>/<name>[_<tag>].json (obj) and .md (lines), each atomically; prints the
  table; returns the path stem."""
  os.makedirs(out, exist_ok=True)
  stem = os.path.join(out, name + (f"_{tag}" if tag else ""))
  io.write_json(stem + ".json", obj)
  io.atomic_write(stem + ".md", "\n".join(lines) + "\n")
  print("\n".join(lines))
  return stem


def csv_list(s: str, valid, what: str) -> list[str]:
  items = [x.strip() for x in s.split(",") if x.strip()]
  for x in items:
    if x not in valid:
      raise UserError(f"unknown {what} {x!r}; valid choices: {', '.join(valid)}")
  return items


def command_line() -> str:
  """This command as a user would type it from the repository root."""
  script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
  return shlex.join(["python", script] + sys.argv[1:])


def machine_info(cores: int, load_before: list[float] | None,
                 accelerator: str | None = None) -> dict:
  """The machine block of a results file: CPU, cores, memory, versions, load average
  before (given) and now."""
  return {"cpu_model": cpu_model(), "cpu_flags": _cpu_flags(), "cores": cores,
          "os_cpu_count": os.cpu_count(), "mem_gib": _mem_gib(),
          "accelerator": accelerator, "python": platform_lib.python_version(),
          "os": platform_lib.platform(), "jax": package_version("jax"),
          "jaxlib": package_version("jaxlib"), "flax": package_version("flax"),
          "optax": package_version("optax"), "torch": package_version("torch"),
          "loadavg_before": load_before, "loadavg_after": loadavg()}


def machine_meta(platform: str, cores: int) -> dict:
  """The run-metadata block (kmnist_jax.io.run_meta) plus what these tables name:
  date, platform, CPU model, the cores this process may use, the command."""
  return {**io.run_meta(devices=False),
          "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
          "platform": platform, "cpu_model": cpu_model(), "cores": cores,
          "command": command_line()}


def main(argv) -> int:
  del argv
  if FLAGS.worker is not None:
    return worker_main(FLAGS.worker)
  if FLAGS.render:
    return render(FLAGS.render)
  return run(FLAGS)


def render(path: str) -> int:
  try:
    report = io.read_json(path)
    table = make_table(report)
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(f"--render={path}: not a readable throughput_<platform>.json "
                    f"({type(e).__name__}: {e})") from None
  io.atomic_write(os.path.splitext(path)[0] + ".md", _markdown(report, table))
  print(table)
  return 0


def run(a) -> int:
  check_tag(a.tag)
  cores = core_count()
  quick = a.quick
  models = csv_list(a.models, MODELS, "model")
  default_modes = [m for m in JAX_MODES
                   if not (m == "single_xla" and (quick or a.platform == "gpu"))]
  jax_modes = csv_list(a.jax_modes, JAX_MODES, "JAX mode") if a.jax_modes is not None \
      else default_modes
  torch_variants = (csv_list(a.torch_variants, TORCH_VARIANTS, "torch variant")
                    if a.torch_variants is not None
                    else [v for v in TORCH_VARIANTS if not (quick and v == "compile")])
  seconds = a.seconds if a.seconds is not None else (0.0 if quick else 15.0)
  min_reps = a.min_reps if a.min_reps is not None else (1 if quick else 3)
  warmup = a.warmup if a.warmup is not None else (0 if quick else 1)
  chunk_steps = a.chunk_steps if a.chunk_steps is not None else (3 if quick else 0)
  torch_steps = a.torch_steps or (3 if quick else 100 if a.platform == "gpu" else 10)
  jax_chunk = None
  devices = (a.devices or cores) if a.platform == "cpu" else None  # gpu: all visible
  threads = a.threads or cores
  out_dir = a.out_dir or (os.path.join(ROOT, "results", "tmp", "throughput") if quick
                           else results_dir("throughput", a.platform))
  data_dir = resolve_data_dir(a.data_dir)

  notes = []
  if a.augment:
    notes.append(f"JAX steps include the augmentation policy {a.augment!r} (on device, "
                 "inside the compiled chunk); PyTorch steps have none.")
  if torch_variants and importlib.util.find_spec("torch") is None:
    notes.append(NO_TORCH)
    torch_variants = []

  configs = [("jax", m) for m in jax_modes] + [("torch", v) for v in torch_variants]
  results = {m: {} for m in models}
  print(f"throughput: {len(models)} models x {len(configs)} configurations on "
        f"{a.platform} ({cpu_model()}, {cores} cores, load {loadavg()})",
        file=sys.stderr, flush=True)
  load_before = loadavg()
  t_start = time.perf_counter()
  kwargs_of = {m: model_kwargs(m) for m in models}

  def measure(model, fw, what, tag):
    spec = {"framework": fw, "model": model, "model_kwargs": kwargs_of[model],
            "platform": a.platform, "batch": a.batch, "data_dir": data_dir,
            "seconds": seconds, "min_reps": min_reps, "max_reps": a.max_reps,
            "warmup": warmup, "chunk_steps": chunk_steps, "devices": devices,
            "threads": threads, "augment": a.augment}
    if fw == "jax":
      spec["mode"] = what
      if what == "single_xla":
        spec.update(chunk_steps=a.xla_steps, seconds=0.0, min_reps=2, warmup=0)
    else:
      spec.update(variant=what, chunk_steps=torch_steps)
    tries = []
    for attempt in range(1 + a.retries):
      waited = wait_for_idle(a.wait_idle, cores) if a.wait_idle > 0 else 0.0
      r = run_worker(spec, a.worker_timeout)
      r["waited_for_idle_s"] = waited
      tries.append(r)
      if (a.platform != "cpu" or "img_per_s" not in r
          or (r.get("other_cpu") or 0.0) <= LOADED or attempt == a.retries):
        break
      print(f"  {model:10s} {LABELS[(fw, what)]:28s} other processes used "
            f"{r['other_cpu']:.2f} cores while timed: again", file=sys.stderr,
            flush=True)
    r = min(tries, key=lambda t: t.get("other_cpu") or 0.0)
    r["tries"] = len(tries)
    status = (f"{r['img_per_s']:,.0f} img/s (compile {r['compile_s']:.1f} s, "
              f"{r['reps']} x {r['steps_per_rep']} steps, cpu util "
              f"{r['cpu_util']:.2f}, others {r['other_cpu'] or 0:.2f})"
              if "img_per_s" in r
              else r.get("error") or r.get("skipped"))
    print(f"  {tag}{model:10s} {LABELS[(fw, what)]:28s} {status}  [{r['wall_s']:.0f} s, "
          f"load {r['loadavg_after']}]", file=sys.stderr, flush=True)
    return r

  per_rep = []  # one {model: {config: result}} per repetition
  for rep in range(a.repeats):
    tag = f"[{rep + 1}/{a.repeats}] " if a.repeats > 1 else ""
    per_rep.append({m: {(fw, what): measure(m, fw, what, tag) for fw, what in configs}
                    for m in models})
  for m in models:
    for c in configs:
      results[m][c] = median_result([one[m][c] for one in per_rep])
      if c[0] == "jax" and c[1] != "single_xla" and "chunk_steps" in results[m][c]:
        jax_chunk = results[m][c]["chunk_steps"]
  total_s = time.perf_counter() - t_start

  # Same architecture on both sides: the parameter counts must agree.
  for m in models:
    counts = {LABELS[k]: r["params"] for k, r in results[m].items() if "params" in r}
    if len(set(counts.values())) > 1:
      raise SystemExit(f"error: {m}: parameter counts differ between frameworks: "
                       f"{counts}")

  accel = None
  for m in models:
    for (fw, _), r in results[m].items():
      if a.platform == "gpu" and r.get("device_kind") and not accel:
        accel = r["device_kind"]
  chunk_desc = (f"{jax_chunk or chunk_steps or 'the training'} steps (JAX: one "
                f"compiled chunk, as in training) or {torch_steps} steps (PyTorch)")
  meta = machine_meta(a.platform, cores)
  report = {
      "meta": meta,
      "platform": a.platform,
      "date": meta["date"],
      "command": meta["command"],
      "python_executable": sys.executable,
      "quick": quick,
      "machine": machine_info(cores, load_before, accel),
      "batch": a.batch, "models": models, "devices": devices, "threads": threads,
      "xla_steps": a.xla_steps, "seconds": seconds, "min_reps": min_reps,
      "warmup": warmup, "chunk_desc": chunk_desc, "total_s": total_s,
      "wait_idle": a.wait_idle, "retries": a.retries, "loaded_threshold_cores": LOADED,
      "model_kwargs": {m: model_kwargs(m) for m in models},
      "notes": notes,
  }
  report["configs"] = [f"{fw}:{w}" for fw, w in configs]
  report["results"] = {m: {f"{fw}:{w}": r for (fw, w), r in results[m].items()}
                       for m in models}
  summary = {}
  for m in models:
    kj, rj = _best(results, m, "jax")
    kt, rt = _best(results, m, "torch")
    summary[m] = {
        "best_jax": f"{kj[0]}:{kj[1]}" if kj else None,
        "best_torch": f"{kt[0]}:{kt[1]}" if kt else None,
        "jax_over_torch": rj["img_per_s"] / rt["img_per_s"] if rj and rt else None,
        "each_over_best_torch": {f"{fw}:{w}": r["img_per_s"] / rt["img_per_s"]
                                 for (fw, w), r in results[m].items()
                                 if rt and "img_per_s" in r},
        **repeat_summary([one[m] for one in per_rep]),
    }
  report["summary"] = summary
  report["repeats"] = a.repeats

  os.makedirs(out_dir, exist_ok=True)
  base = os.path.join(out_dir, f"throughput_{a.platform}" + (f"_{a.tag}" if a.tag else ""))
  io.write_json(base + ".json", report)
  table = make_table(report)
  io.atomic_write(base + ".md", _markdown(report, table))
  print(table)
  print(f"wrote {base}.json and {base}.md ({total_s:.0f} s)", file=sys.stderr)
  failed = [(m, c) for m in models for c, r in results[m].items() if "error" in r]
  # A failed torch.compile is a finding, not a failure of the benchmark.
  return 1 if any(c != ("torch", "compile") for _, c in failed) else 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)
