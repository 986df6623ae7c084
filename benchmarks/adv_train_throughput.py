r"""Adversarial-training throughput: kmnist_jax's compiled chunk vs a PyTorch loop, per method.

  python benchmarks/adv_train_throughput.py                  # CPU: none, fgsm_rs, pgd, trades
  python benchmarks/adv_train_throughput.py --quick          # smoke run: a few steps each
  python benchmarks/adv_train_throughput.py --methods=pgd --steps=40 --seconds=60

Measures steady-state TRAINING images/s (compile excluded, reported separately) of
adversarial training on the real MNIST train images, for each method of
``config.adversarial`` (none, fgsm_rs, pgd-k, trades-k; k = ``--steps``, L-inf eps
``--eps``), the model of experiments/configs/mnist_robust.py (``--model_config``),
batch ``--batch``, Adam (lr 1e-3, no weight decay, constant schedule):

* JAX: the library's own compiled chunk, ``train.make_train_chunk`` over
  ``train.make_train_step`` with the run's adversary
  (``kmnist_jax.robustness.adversarial_training``: the evaluators' PGD on device inside
  the scan), compiled by ``Parallel.compile`` and called as ``train_and_evaluate`` calls
  it, in the parallel mode the library picks for ``--devices`` CPU devices
  (``--jax_mode``, default ``auto``);
* PyTorch: the standard training loop on the twin model (benchmarks/torch_models.py,
  same layers and parameter count, checked): per step the attack in ``model.eval()``
  (the library's default BatchNorm mode while attacking), then ``model.train()``, the
  loss and the update -- PGD (random start, k signed-gradient steps, projection onto
  the ball and [0, 1]), FGSM-RS (one step of 1.25 eps), TRADES (k steps on the KL from
  x + 0.001 N(0, 1), loss CE + beta KL); ``torch.set_num_threads(cores)``; eager and
  ``channels_last`` (``--torch_variants``).

Each configuration runs in its own subprocess (``--worker``): JAX's CPU device count
is fixed before jax is imported, and the frameworks' thread pools stay apart. Timing:
one first call (compile + one chunk), ``--warmup`` more, then timed chunks of
``--chunk_steps`` steps until ``--seconds`` have passed (at least ``--min_reps``);
the rate is the median chunk. ``--wait_idle`` waits for a quiet CPU before each
configuration; a row measured while other processes used > 0.25 cores is marked.

Writes ``<out_dir>/adv_train_throughput_cpu[_<tag>].json`` (every number, machine
info and the ``meta`` block of kmnist_jax.io.run_meta) and ``.md`` (the table, also
printed); ``<out_dir>`` default: results/adv_train_throughput/<machine kind>/.
``--quick`` writes to results/tmp/adv_train_throughput/ so that a smoke run never
overwrites measured results. A bad flag or value is one ``error:`` line, exit 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import throughput as tp  # benchmarks/throughput.py: this script's folder is on sys.path
from absl import flags

from kmnist_jax import cli
from kmnist_jax.errors import UserError

FLAGS = flags.FLAGS
TAG = "ADV_TRAIN_THROUGHPUT "
METHODS = ("none", "fgsm_rs", "pgd", "trades")
TORCH_VARIANTS = ("eager", "channels_last")
JAX_MODES = ("auto", "single", "pmap", "sharded")
MODEL_CONFIG = "experiments/configs/mnist_robust.py"


def method_label(method: str, steps: int) -> str:
  return {"none": "none", "fgsm_rs": "fgsm_rs"}.get(method, f"{method}-{steps}")


# ---- Workers --------------------------------------------------------------------------

def _jax_worker(spec) -> dict:
  import jax
  import ml_collections

  from kmnist_jax import config as config_lib
  from kmnist_jax import models, parallel, train
  from kmnist_jax.robustness import adversarial_training as adv_lib

  cfg = config_lib.base()
  cfg.dataset = "mnist"
  cfg.model = spec["model"]
  cfg.model_kwargs = ml_collections.ConfigDict(spec["model_kwargs"])
  cfg.optimizer, cfg.learning_rate, cfg.weight_decay = "adam", 1e-3, 0.0
  cfg.schedule = "constant"
  cfg.batch_size = spec["batch"]
  cfg.parallel = spec["jax_mode"]
  cfg.data_dir, cfg.data_source, cfg.val_size = spec["data_dir"], "files", 0
  a = cfg.adversarial
  a.method, a.eps, a.steps, a.beta = spec["method"], spec["eps"], spec["steps"], 6.0
  a.check_every_epoch = False
  config_lib.validate(cfg)

  par = parallel.create(cfg.parallel)
  par.check_batch(cfg.batch_size)
  images, labels, num_classes = tp.load_train(spec, "mnist", val_size=0)
  n_train = len(labels)
  steps_per_epoch = n_train // cfg.batch_size
  chunk_steps = min(spec["chunk_steps"], steps_per_epoch)
  graphdef, tx, state = train.init_state(cfg, num_classes, steps_per_epoch,
                                         bn_axis_name=par.axis_name)
  n_params = models.param_count(state.params)
  state = par.replicate(state)
  arrays = par.replicate((images, labels))
  root = train.root_key(cfg.seed)
  adversary = adv_lib.build(cfg, graphdef, steps_per_epoch)
  step = train.make_train_step(graphdef, tx, cfg, num_classes, par, None, adversary)
  chunk_fn = par.compile(train.make_train_chunk(step, n_train=n_train,
                                                batch_size=cfg.batch_size,
                                                chunk_steps=chunk_steps, par=par),
                         num_replicated=3)
  call = tp.chunk_caller(chunk_fn, par, state, arrays, root, steps_per_epoch, chunk_steps)
  out = tp.timed_reps(call, dict(spec, chunk_steps=chunk_steps))
  full_kwargs = {**models.model_kwargs(cfg.model), **spec["model_kwargs"]}
  out.update(params=n_params, devices=par.num_replicas, mode=par.mode,
             describe=par.describe(), jax_version=jax.__version__,
             model_kwargs=json.loads(json.dumps(full_kwargs)))
  return out


def _torch_worker(spec) -> dict:
  import numpy as np
  import torch
  import torch.nn.functional as F
  import torch_models

  torch.set_num_threads(spec["threads"])
  torch.manual_seed(0)
  channels_last = spec["variant"] == "channels_last"
  images_np, labels_np, num_classes = tp.load_train(spec, "mnist", val_size=0)
  images = torch.from_numpy(images_np).unsqueeze(1)           # uint8 [N,1,28,28]
  labels = torch.from_numpy(labels_np.astype(np.int64))
  n, b = len(labels), spec["batch"]
  steps_per_epoch = n // b
  model = torch_models.create(spec["model"], num_classes, **spec["model_kwargs"])
  n_params = torch_models.param_count(model)
  if n_params != spec["jax_params"]:
    raise AssertionError(f"twin of {spec['model']}: {n_params} parameters, JAX "
                         f"{spec['jax_params']}")
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  method, eps, k = spec["method"], spec["eps"], spec["steps"]
  alpha = 1.25 * eps if method == "fgsm_rs" else 2.5 * eps / k
  steps = 1 if method == "fgsm_rs" else k

  def fmt(x):
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x

  def attack(x, y):
    """The adversarial batch, model in eval mode (running BatchNorm statistics)."""
    model.eval()
    if method == "trades":
      with torch.no_grad():
        p_clean = F.softmax(model(fmt(x)), 1)
      xa = x + 0.001 * torch.randn_like(x)
    else:
      xa = x + eps * torch.empty_like(x).uniform_(-1.0, 1.0)
    xa = torch.min(torch.max(xa, x - eps), x + eps).clamp_(0.0, 1.0)
    for _ in range(steps):
      xa.requires_grad_(True)
      z = model(fmt(xa))
      if method == "trades":
        loss = F.kl_div(F.log_softmax(z, 1), p_clean, reduction="sum")
      else:
        loss = F.cross_entropy(z, y, reduction="sum")
      g, = torch.autograd.grad(loss, xa)
      xa = xa.detach() + alpha * g.sign()
      xa = torch.min(torch.max(xa, x - eps), x + eps).clamp_(0.0, 1.0)
    model.train()
    return xa.detach()

  def step(idx):
    x = images[idx].float().div_(255.0)
    y = labels[idx]
    if method == "none":
      loss = F.cross_entropy(model(fmt(x)), y)
    elif method == "trades":
      xa = attack(x, y)
      z = model(fmt(x))
      za = model(fmt(xa))
      loss = F.cross_entropy(z, y) + 6.0 * F.kl_div(
          F.log_softmax(za, 1), F.softmax(z, 1), reduction="batchmean")
    else:
      loss = F.cross_entropy(model(fmt(attack(x, y))), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()

  chunk_steps = spec["chunk_steps"]
  pos = {"epoch_step": steps_per_epoch, "perm": None}
  model.train()

  def call():
    t0 = time.perf_counter()
    loss_sum = torch.zeros(())
    for _ in range(chunk_steps):
      if pos["epoch_step"] >= steps_per_epoch:
        pos["perm"] = torch.randperm(n)
        pos["epoch_step"] = 0
      i = pos["epoch_step"]
      pos["epoch_step"] += 1
      loss_sum += step(pos["perm"][i * b:(i + 1) * b])
    loss = float(loss_sum)
    dt = time.perf_counter() - t0
    if not np.isfinite(loss):
      raise FloatingPointError("loss became NaN/inf")
    return dt, loss / chunk_steps

  out = tp.timed_reps(call, spec)
  out.update(params=n_params, threads=torch.get_num_threads(),
             torch_version=torch.__version__)
  return out


def worker_main(spec_json: str) -> int:
  spec = json.loads(spec_json)
  try:
    out = (_jax_worker if spec["framework"] == "jax" else _torch_worker)(spec)
  except Exception as e:  # a result: one failing configuration must not stop the rest
    traceback.print_exc()
    out = tp.error_result(e)
  print(TAG + json.dumps(out), flush=True)
  return 0


def run_worker(spec, timeout: float) -> dict:
  # JAX sees one CPU device in mode single, else --devices (tp.worker_env).
  env = tp.worker_env(dict(spec, platform="cpu", mode="single"
                           if spec.get("jax_mode") == "single" else "sharded"))
  return tp.run_worker(spec, timeout, script=os.path.abspath(__file__), env=env, tag=TAG)


# ---- Parent ---------------------------------------------------------------------------

def make_table(report: dict) -> list[str]:
  rows = ["| method | JAX img/s | " + " | ".join(f"PyTorch {v} img/s"
                                                   for v in report["torch_variants"])
          + " | JAX / best PyTorch | JAX cost vs none |",
          "|---|---:|" + "---:|" * len(report["torch_variants"]) + "---:|---:|"]
  none = report["results"].get("none", {}).get("jax", {}).get("img_per_s")
  for label, r in report["results"].items():
    def cell(x):
      if x is None:
        return "—"
      if "error" in x or "skipped" in x:
        return "error" if "error" in x else "skipped"
      mark = " †" if (x.get("other_cpu") or 0) > tp.LOADED else ""
      return f"{x['img_per_s']:,.0f}{mark}"
    jax_r = r.get("jax") or {}
    torch_rates = [r["torch"][v]["img_per_s"] for v in report["torch_variants"]
                   if "img_per_s" in r.get("torch", {}).get(v, {})]
    ratio = (f"{jax_r['img_per_s'] / max(torch_rates):.2f}x"
             if torch_rates and "img_per_s" in jax_r else "—")
    cost = (f"{none / jax_r['img_per_s']:.1f}x" if none and "img_per_s" in jax_r else "—")
    rows.append(f"| {label} | {cell(jax_r)} | "
                + " | ".join(cell(r.get("torch", {}).get(v)) for v in report["torch_variants"])
                + f" | {ratio} | {cost} |")
  return rows


def _markdown(report: dict) -> list[str]:
  m = report["meta"]
  s = report["settings"]
  return ["# Adversarial-training throughput (images/s), JAX vs PyTorch", "",
          f"`{m['command']}`", "",
          f"{m['cpu_model']}, {m['cores']} cores; {s['model']} "
          f"{json.dumps(s['model_kwargs'])} on MNIST, batch {s['batch']}, Adam, L-inf eps "
          f"{s['eps']}, attack steps {s['steps']}; JAX {report['jax_describe']}.", "",
          *make_table(report), "",
          "Steady state (compile excluded), the median of timed chunks of "
          f"{s['chunk_steps']} steps; † other processes used > {tp.LOADED} cores "
          "meanwhile. Attacks in BatchNorm eval mode in both frameworks."]


def define_flags() -> None:
  flags.DEFINE_boolean("quick", False, "Smoke run: a few steps per configuration; "
                       "writes to results/tmp/adv_train_throughput/.")
  flags.DEFINE_string("methods", ",".join(METHODS), f"Comma list of {', '.join(METHODS)}.")
  flags.DEFINE_integer("steps", 10, "Attack steps of pgd and trades.", lower_bound=1)
  flags.DEFINE_float("eps", 0.3, "L-inf radius (pixels in [0, 1]).")
  flags.DEFINE_string("model_config", MODEL_CONFIG, "Config whose model is timed.")
  flags.DEFINE_string("torch_variants", ",".join(TORCH_VARIANTS),
                      f"Comma list of {', '.join(TORCH_VARIANTS)} ('' for JAX only).")
  flags.DEFINE_enum("jax_mode", "auto", list(JAX_MODES), "JAX parallel mode.")
  flags.DEFINE_integer("batch", 128, "Batch size.", lower_bound=1)
  flags.DEFINE_float("seconds", None, "Timed seconds per configuration (default 30; "
                     "--quick 0).", lower_bound=0.0)
  flags.DEFINE_integer("min_reps", None, "Timed chunks at least (default 3; --quick 1).",
                       lower_bound=1)
  flags.DEFINE_integer("warmup", None, "Chunks after the first call, before timing "
                       "(default 1; --quick 0).", lower_bound=0)
  flags.DEFINE_integer("chunk_steps", None, "Training steps per timed chunk (default 20; "
                       "--quick 2).", lower_bound=1)
  flags.DEFINE_integer("devices", None, "JAX CPU devices (default: cores).", lower_bound=1)
  flags.DEFINE_integer("threads", None, "torch threads (default: cores).", lower_bound=1)
  flags.DEFINE_string("data_dir", "", "Datasets folder (default $KMNIST_JAX_DATA_DIR / "
                      "~/kmnist_jax_data).")
  flags.DEFINE_string("out_dir", None, "Output folder (default results/"
                      "adv_train_throughput/<machine kind>/; --quick results/tmp/...).")
  flags.DEFINE_string("tag", "", "File name tag: <out_dir>/adv_train_throughput_cpu_<tag>.")
  flags.DEFINE_float("worker_timeout", 1800.0, "Seconds per configuration.",
                     lower_bound=1.0)
  flags.DEFINE_float("wait_idle", 0.0, "Before each configuration, wait up to this many "
                     "seconds for a quiet CPU.", lower_bound=0.0)
  flags.DEFINE_string("worker", None, "Internal: run one configuration (a JSON spec).")


def main(argv) -> int:
  del argv   # cli.run refuses stray arguments
  if FLAGS.worker is not None:
    return worker_main(FLAGS.worker)
  return run(FLAGS)


def run(a) -> int:
  from kmnist_jax import config as config_lib  # numpy only: no jax in the parent
  methods = tp.csv_list(a.methods, METHODS, "method")
  if not methods:
    raise UserError("--methods is empty; valid choices: " + ", ".join(METHODS))
  variants = tp.csv_list(a.torch_variants, TORCH_VARIANTS, "PyTorch variant")
  if not 0.0 <= a.eps <= 1.0:
    raise UserError(f"--eps={a.eps} is out of range; valid: 0 <= eps <= 1")
  tag = tp.check_tag(a.tag)
  cfg = config_lib.load_file(os.path.join(tp.ROOT, a.model_config)
                             if not os.path.isabs(a.model_config) else a.model_config)
  import torch_models  # noqa: F401 - only the model names (torch is imported lazily)
  if cfg.model not in torch_models.MODELS:
    raise UserError(f"{a.model_config} trains {cfg.model!r}, which has no PyTorch twin; "
                    f"valid models: {', '.join(torch_models.MODELS)}")
  quick = a.quick
  cores = tp.core_count()
  data_dir = tp.resolve_data_dir(a.data_dir)
  out = a.out_dir or (os.path.join(tp.ROOT, "results", "tmp", "adv_train_throughput")
                      if quick else tp.results_dir("adv_train_throughput"))
  common = {"model": cfg.model, "model_kwargs": json.loads(json.dumps(
                cfg.model_kwargs.to_dict())),
            "batch": a.batch, "eps": a.eps, "steps": a.steps, "data_dir": data_dir,
            "seconds": a.seconds if a.seconds is not None else (0.0 if quick else 30.0),
            "min_reps": a.min_reps or (1 if quick else 3),
            "warmup": a.warmup if a.warmup is not None else (0 if quick else 1),
            "chunk_steps": a.chunk_steps or (2 if quick else 20),
            "threads": a.threads or cores, "devices": a.devices or cores}
  load_before = tp.loadavg()
  report = {"meta": tp.machine_meta("cpu", cores),
            "machine": None, "settings": {k: v for k, v in common.items()
                                          if k != "data_dir"},
            "torch_variants": variants, "results": {}, "jax_describe": ""}
  for method in methods:
    label = method_label(method, a.steps)
    r = report["results"][label] = {"method": method, "torch": {}}
    spec = dict(common, framework="jax", method=method, jax_mode=a.jax_mode)
    if a.wait_idle:
      tp.wait_for_idle(a.wait_idle, cores)
    print(f"{label}: JAX ...", flush=True)
    r["jax"] = run_worker(spec, a.worker_timeout)
    report["jax_describe"] = r["jax"].get("describe", report["jax_describe"])
    for v in variants:
      if "params" not in r["jax"]:
        r["torch"][v] = {"skipped": "the JAX run failed (no parameter count to check)"}
        continue
      if a.wait_idle:
        tp.wait_for_idle(a.wait_idle, cores)
      print(f"{label}: PyTorch {v} ...", flush=True)
      # The twin gets every argument of the JAX model (its defaults filled in).
      r["torch"][v] = run_worker(dict(common, framework="torch", method=method, variant=v,
                                      model_kwargs=r["jax"]["model_kwargs"],
                                      jax_params=r["jax"]["params"]), a.worker_timeout)
  report["machine"] = tp.machine_info(cores, load_before)
  tp.write_results(out, "adv_train_throughput_cpu", tag, report, _markdown(report))
  errors = [f"{label} {fw}" for label, r in report["results"].items()
            for fw, x in [("jax", r["jax"])] + [(f"torch {v}", t)
                                                 for v, t in r["torch"].items()]
            if "error" in x]
  if errors:
    print(f"warning: {len(errors)} configuration(s) failed: {', '.join(errors)} "
          "(the error is in the JSON file)", file=sys.stderr)
  return 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)
