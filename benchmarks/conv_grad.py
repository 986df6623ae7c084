r"""The conv kernel-gradient operand order on this CPU (issue 15's idea record).

  python benchmarks/conv_grad.py [--reps=30] [--batch=128] [--out=DIR] \
      [--tag=zen3] [--wait_idle=30]

The weight gradient of an im2col / fwdconv convolution is one matmul, dW = cols^T dy,
contracting the batch and spatial dims. Written directly
(``dot_general(cols, dy)``), XLA:CPU first transposes the larger operand; the library
(:func:`kmnist_jax.convs.kernel_grad`) writes the same sum as (dy^T cols)^T. This times
both, jitted, on the conv layers of the default CNN (``cnn``: 28x28, 9 taps -> 32 and
14x14, 288 -> 64), of ``keras_cnn`` (26x26 -> 32 and 24x24, 288 -> 64) and of the
half-width ``mnist_fast`` CNN (28x28, 9 -> 16 and 14x14, 144 -> 32), after
checking that they agree. The two forms alternate rep by rep, so drift of a shared
machine hits both alike. Writes ``<out>/conv_grad[_<tag>].{json,md}`` (median ms per
call and the ratio, with the run-metadata block, CPU model included).
A bad flag is one ``error:`` line, exit 2.
"""

from __future__ import annotations

import os
import statistics
import time

import throughput as tp  # benchmarks/throughput.py: this script's folder is on sys.path
from absl import flags

from kmnist_jax import cli
from kmnist_jax.errors import UserError

# name: (output height = width, K = taps x input channels, output channels)
LAYERS = {
    "cnn conv1": (28, 9, 32),
    "cnn conv2": (14, 288, 64),
    "keras_cnn conv1": (26, 9, 32),
    "keras_cnn conv2": (24, 288, 64),
    "mnist_fast conv1": (28, 9, 16),
    "mnist_fast conv2": (14, 144, 32),
}

flags.DEFINE_integer("reps", 30, "Timed calls per form and layer.", lower_bound=3)
flags.DEFINE_integer("batch", 128, "Batch size.", lower_bound=1)
flags.DEFINE_string("out", "", "Output folder (default results/conv_grad/<machine "
                    "kind>/).")
flags.DEFINE_string("tag", "", "File name tag: <out>/conv_grad_<tag>.{json,md}.")
flags.DEFINE_float("wait_idle", 0.0, "First wait up to this many seconds until other "
                   "processes use < 0.1 cores.", lower_bound=0.0)
FLAGS = flags.FLAGS


def forms():
  import jax
  from jax import lax

  from kmnist_jax import convs

  def direct(cols, dy):
    return lax.dot_general(cols, dy, (((0, 1, 2), (0, 1, 2)), ((), ())))

  def library(cols, dy):
    return convs.kernel_grad(cols, dy, None)
  return {"direct cols^T dy": jax.jit(direct), "library (dy^T cols)^T": jax.jit(library)}


def time_layer(fns, side: int, k: int, o: int, batch: int, reps: int) -> dict:
  import jax
  import numpy as np
  kc, kd = jax.random.split(jax.random.key(0))
  cols = jax.random.normal(kc, (batch, side, side, k))
  dy = jax.random.normal(kd, (batch, side, side, o))
  outs = {n: np.asarray(f(cols, dy)) for n, f in fns.items()}   # compile + check
  ref = next(iter(outs.values()))
  err = max(float(np.max(np.abs(v - ref))) / float(np.max(np.abs(ref)))
            for v in outs.values())
  if err > 1e-5:
    raise UserError(f"the two kernel-gradient forms disagree (relative {err:.2g})")
  times = {n: [] for n in fns}
  busy0, t0, cpu0 = tp.cpu_busy_s(), time.perf_counter(), os.times()
  for _ in range(reps):
    for n, f in fns.items():
      t = time.perf_counter()
      f(cols, dy).block_until_ready()
      times[n].append(time.perf_counter() - t)
  wall = time.perf_counter() - t0
  cpu1, busy1 = os.times(), tp.cpu_busy_s()
  own = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
  other = None if busy0 is None or busy1 is None else max(0.0, busy1 - busy0 - own) / wall
  return {"ms": {n: 1e3 * statistics.median(v) for n, v in times.items()},
          "ms_min": {n: 1e3 * min(v) for n, v in times.items()},
          "max_rel_diff": err, "other_cpu": other}


def main(argv) -> int:
  del argv
  return run(FLAGS)


def run(a) -> int:
  tp.check_tag(a.tag)
  cores = tp.core_count()
  if a.wait_idle > 0:
    tp.wait_for_idle(a.wait_idle, cores)
  fns = forms()
  names = list(fns)
  rows = []
  for layer, (side, k, o) in LAYERS.items():
    r = time_layer(fns, side, k, o, a.batch, a.reps)
    rows.append({"layer": layer, "shape": f"{a.batch}x{side}x{side}: {k} -> {o}", **r,
                 "speedup": r["ms"][names[0]] / r["ms"][names[1]]})
    print(f"{layer:16s} " + "  ".join(f"{n} {r['ms'][n]:7.2f} ms" for n in names)
          + f"  {rows[-1]['speedup']:.2f}x (others {r['other_cpu'] or 0:.2f})", flush=True)
  meta = tp.machine_meta("cpu", cores)
  lines = [f"Conv kernel gradient dW = cols^T dy on this CPU ({meta['cpu_model']}, "
           f"{cores} cores, {meta['date']}); median ms per jitted call over {a.reps} "
           "alternating reps.", f"Command: `{meta['command']}`", "",
           f"| layer | batch x out side: K -> O | {names[0]} | {names[1]} | speed-up | "
           "others' CPU |", "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['layer']} | {r['shape']} | {r['ms'][names[0]]:.2f} | "
                 f"{r['ms'][names[1]]:.2f} | {r['speedup']:.2f}x | "
                 f"{r['other_cpu'] or 0:.2f} |")
  tp.write_results(a.out or tp.results_dir("conv_grad"), "conv_grad", a.tag,
                   {"meta": meta, "rows": rows}, lines)
  return 0


if __name__ == "__main__":
  cli.run(main)
