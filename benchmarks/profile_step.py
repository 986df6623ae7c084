r"""Where a training step's time goes: XLA:CPU's per-op times in the library's chunk.

  python benchmarks/profile_step.py [--model=keras_cnn] [--mode=pmap] [--chunks=2] \
      [--top=25] [--out=DIR] [--tag=zen4]

Runs the throughput benchmark's JAX worker (benchmarks/throughput.py: the library's
compiled epoch chunk, batch 128, Adam, real KMNIST images, the library's XLA:CPU
flags) in a subprocess, warms it up, then traces ``--chunks`` more chunks with
``jax.profiler`` and sums the XLA:CPU thunk events of the trace by HLO op name
(fusions, dots, collectives). Each op is reported in ms per training step and per
device (pmap / sharded: every device runs every op on its share of the batch), with
its shape and the JAX operation it came from, read from XLA's dump of the optimised
HLO. Ops that XLA:CPU runs on its intra-op thread pool (Eigen dots) return before
they finish, so their share shows up in whatever waits on them: read the table as
where the step's wall time goes, op by op, not as FLOP counts.

Writes ``<out>/profile_step_<model>[_<tag>].json`` (every op, the step time, the
run-metadata block with the CPU model) and ``.md``, each atomically. Reading the trace
needs TensorFlow's profiler protos (installed with the ``tfds`` extra). A bad flag is
one ``error:`` line, exit 2.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import tempfile

import throughput as tp  # benchmarks/throughput.py: this script's folder is on sys.path
from absl import flags

from kmnist_jax import cli
from kmnist_jax.errors import UserError

flags.DEFINE_enum("model", "keras_cnn", list(tp.MODELS), "Model.")
flags.DEFINE_enum("mode", "pmap", ["single", "pmap", "sharded"], "Parallel mode.")
flags.DEFINE_integer("chunks", 2, "Chunks traced (after warm-up).", lower_bound=1)
flags.DEFINE_integer("chunk_steps", 0, "Steps per chunk (0: the library's default).",
                     lower_bound=0)
flags.DEFINE_integer("top", 25, "Ops listed.", lower_bound=1)
flags.DEFINE_string("out", "", "Output folder (default results/profile_step/<machine "
                    "kind>/).")
flags.DEFINE_string("tag", "", "File name tag: <out>/profile_step_<model>_<tag>.*")
flags.DEFINE_string("data_dir", "", "Datasets folder (default $KMNIST_JAX_DATA_DIR / "
                    "~/kmnist_jax_data).")
flags.DEFINE_float("timeout", 900.0, "Seconds for the worker.", lower_bound=0.0)
FLAGS = flags.FLAGS

_WAITS = ("Rendezvous", "Wait:")                             # cross-device waits
_SKIP = ("ThunkExecutor", "while.", "$") + _WAITS              # containers, Python


def read_trace(trace_dir: str) -> dict[str, dict]:
  """{event name: {"ms": total, "calls": n}} over the CPU threads of an xplane trace."""
  try:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
  except ImportError:
    raise UserError("reading the trace needs TensorFlow's profiler protos: pip install "
                    "-e '.[tfds]'") from None
  files = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
  if not files:
    raise UserError(f"the worker wrote no trace under {trace_dir}")
  space = xplane_pb2.XSpace()
  with open(files[0], "rb") as f:
    space.ParseFromString(f.read())
  ops = collections.defaultdict(lambda: {"ms": 0.0, "calls": 0})
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if line.name == "python":
        continue
      for ev in line.events:
        op = ops[names.get(ev.metadata_id, "?")]
        op["ms"] += ev.duration_ps / 1e9
        op["calls"] += 1
  return dict(ops)


def hlo_lines(dump_dir: str) -> dict[str, str]:
  """{instruction name: its line} of the largest optimised module in an XLA dump."""
  files = glob.glob(os.path.join(dump_dir, "*after_optimizations.txt"))
  if not files:
    return {}
  with open(max(files, key=os.path.getsize)) as f:
    text = f.read()
  out = {}
  for m in re.finditer(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$", text, re.M):
    out.setdefault(m.group(1), m.group(2))
  return out


def describe(line: str) -> tuple[str, str]:
  """(shape, JAX op_name) of an HLO instruction line."""
  shape = line.split(" ", 1)[0] if line else ""
  m = re.search(r'op_name="([^"]*)"', line)
  where = m.group(1) if m else ""
  where = re.sub(r"^.*?/(?:body/closed_call/|while/body/)", "", where)
  return shape, where


def main(argv) -> int:
  del argv
  return run(FLAGS)


def run(a) -> int:
  tp.check_tag(a.tag)
  cores = tp.core_count()
  with tempfile.TemporaryDirectory(prefix="profile_step_") as tmp:
    trace, dump = os.path.join(tmp, "trace"), os.path.join(tmp, "dump")
    spec = tp.cpu_jax_spec(
        a.model, tp.resolve_data_dir(a.data_dir), cores, mode=a.mode, seconds=0.0,
        min_reps=1, max_reps=1, chunk_steps=a.chunk_steps, profile_dir=trace,
        profile_chunks=a.chunks,
        xla_flags=f"--xla_dump_to={dump} --xla_dump_hlo_as_text "
                  "--xla_dump_hlo_module_re=.*chunk.*|.*_fun.*")
    r = tp.run_worker(spec, a.timeout, "--timeout")
    if r.get("error") or r.get("skipped"):
      raise UserError(f"the {a.model} {a.mode} worker failed: "
                      f"{r.get('error') or r.get('skipped')}")
    ops = read_trace(trace)
    lines = hlo_lines(dump)
  devices = r["devices"] if a.mode != "single" else 1
  steps = a.chunks * r["chunk_steps"]
  per_step = lambda ms: ms / (steps * devices)  # noqa: E731
  step_ms = 1e3 * spec["batch"] / r["img_per_s"]
  rows = []
  for name, v in sorted(ops.items(), key=lambda kv: -kv[1]["ms"]):
    if name.startswith(_SKIP) or name == "?":
      continue
    shape, where = describe(lines.get(name, ""))
    rows.append({"op": name, "ms_per_step": per_step(v["ms"]), "calls": v["calls"],
                 "shape": shape, "jax_op": where})
  waits = {k: per_step(v["ms"]) for k, v in ops.items() if k.startswith(_WAITS)}
  meta = tp.machine_meta("cpu", cores)
  md = [f"Per-op time of one training step: {a.model}, {a.mode} ({devices} device(s)), "
        f"batch {spec['batch']}, Adam, on {meta['cpu_model']} ({cores} cores, {meta['date']}).",
        f"Command: `{meta['command']}`", "",
        f"Step: {step_ms:.1f} ms wall ({r['img_per_s']:,.0f} img/s in the timed chunk); "
        f"traced {a.chunks} chunk(s) of {r['chunk_steps']} steps. ms = per step and per "
        "device. Eigen dots run on the thread pool and return early: their time shows "
        "in what waits on them.", "",
        "| op | ms per step | shape | from (JAX op) |", "|---|---|---|---|"]
  for row in rows[:a.top]:
    md.append(f"| {row['op']} | {row['ms_per_step']:.2f} | `{row['shape']}` | "
              f"{row['jax_op'][:80]} |")
  if waits:
    md += ["", "Cross-device waits (ms per step and device): "
           + ", ".join(f"{k} {v:.2f}" for k, v in sorted(waits.items()))]
  name = f"{a.model}" + (f"_{a.tag}" if a.tag else "")
  tp.write_results(a.out or tp.results_dir("profile_step"), "profile_step", name,
                   {"meta": meta, "model": a.model, "mode": a.mode, "devices": devices,
                    "step_ms": step_ms, "img_per_s": r["img_per_s"], "rows": rows,
                    "waits_ms_per_step": waits}, md)
  return 0


if __name__ == "__main__":
  cli.run(main)
