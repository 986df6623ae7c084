r"""What each CPU performance idea gives: JAX training throughput under variants.

  python benchmarks/cpu_variants.py [--models=keras_cnn,cnn] [--seconds=8] \
      [--variants=default,fwdconv,...] [--out=DIR] [--tag=zen3] [--wait_idle=30] \
      [--repeats=1]

Runs the throughput benchmark's JAX worker (benchmarks/throughput.py: the library's
compiled epoch chunk, batch 128, Adam, real KMNIST images) once per variant, one
subprocess each, and tabulates img/s against the first variant. Variants change one
thing at a time: the parallel mode and device count, the convolution formulation
(``conv_impl``), the compute dtype, and XLA:CPU flags. Writes
``<out>/cpu_variants.json`` (the rows and the ``meta`` block of kmnist_jax.io.run_meta,
CPU model included) and ``.md``, each atomically. Run it on a quiet machine: it records
the CPU that other processes used while each variant was timed (``others``), as
throughput.py does. A bad flag or value is one ``error:`` line, exit 2.

``--repeats=N`` times the whole list N times, the variants' order reversed in every
second repetition (so neither side always runs first as the machine's speed drifts),
and adds a summary per model and variant: the median img/s and its range, and the
median of the paired ratios against the first variant of the same repetition, with how
many repetitions it was faster in. Use it to decide between two variants whose
difference is near the run-to-run noise (``--variants=default,pmap --repeats=6``).
"""

from __future__ import annotations

import statistics

import throughput as tp  # benchmarks/throughput.py: this script's folder is on sys.path
from absl import flags

from kmnist_jax import cli

# name: (description, spec overrides)
VARIANTS = {
    "default": ("sharded over one CPU device per core (auto's choice on the Zen 3; "
                "pmap elsewhere: the pmap variant), otherwise the library's defaults: "
                "conv_impl=auto, 2x2 max-pool as reshape+max, AVX-512 loops", {}),
    "vector256": ("without --xla_cpu_prefer_vector_width=512 (XLA's default width)",
                  {"library_flags": False}),
    "im2col": ("conv_impl=im2col for every conv", {"conv_impl": "im2col"}),
    "fwdconv": ("conv_impl=fwdconv for every stride-1 conv", {"conv_impl": "fwdconv"}),
    "xla_conv": ("conv_impl=xla: XLA's convolution and its autodiff gradients",
                 {"conv_impl": "xla", "chunk_steps": 1, "seconds": 0.0, "min_reps": 2,
                  "warmup": 0}),
    "single": ("one device (XLA's own intra-op threads)", {"mode": "single"}),
    "pmap": ("pmap over one device per core", {"mode": "pmap"}),
    "bf16": ("dtype=bfloat16 (the CPU has avx512_bf16)", {"dtype": "bfloat16"}),
    "no_eigen_threads": ("--xla_cpu_multi_thread_eigen=false",
                         {"xla_flags": "--xla_cpu_multi_thread_eigen=false"}),
    "legacy_runtime": ("--xla_cpu_use_thunk_runtime=false",
                       {"xla_flags": "--xla_cpu_use_thunk_runtime=false"}),
    "fast_math": ("--xla_cpu_enable_fast_math=true",
                  {"xla_flags": "--xla_cpu_enable_fast_math=true"}),
    "onednn": ("--xla_cpu_use_onednn=true (oneDNN for XLA:CPU's matmuls / convs)",
               {"xla_flags": "--xla_cpu_use_onednn=true"}),
    "onednn_custom_call": ("--xla_cpu_experimental_onednn_custom_call=true (oneDNN "
                           "custom calls: fused matmul / conv + bias + activation)",
                           {"xla_flags": "--xla_cpu_experimental_onednn_custom_call=true"}),
    "xnnpack": ("--xla_cpu_use_xnnpack=true",
                {"xla_flags": "--xla_cpu_use_xnnpack=true"}),
    "no_ynn": ("--xla_cpu_experimental_ynn_fusion_type= (no YNNPACK dot fusions: the "
               "dots run as Eigen matmuls)",
               {"xla_flags": "--xla_cpu_experimental_ynn_fusion_type="}),
    "no_ynn_reduce": ("--xla_cpu_experimental_ynn_fusion_type=-reduce (reductions as "
                      "XLA's own loops; YNNPACK keeps the dots)",
                      {"xla_flags": "--xla_cpu_experimental_ynn_fusion_type=-reduce"}),
    "no_ynn_eltwise": ("--xla_cpu_experimental_ynn_fusion_type=-eltwise (elementwise ops "
                       "as XLA's own loops; YNNPACK keeps the dots)",
                       {"xla_flags": "--xla_cpu_experimental_ynn_fusion_type=-eltwise"}),
    "concurrent_scheduler": ("--xla_cpu_enable_concurrency_optimized_scheduler=true",
                             {"xla_flags":
                              "--xla_cpu_enable_concurrency_optimized_scheduler=true"}),
    "no_fusion_emitters": ("--xla_cpu_use_fusion_emitters=false (XLA:CPU's older loop "
                           "emitters for fusions, gathers and concatenates included)",
                           {"xla_flags": "--xla_cpu_use_fusion_emitters=false"}),
    "region_copy_insertion": ("--xla_cpu_copy_insertion_use_region_analysis=true",
                              {"xla_flags":
                               "--xla_cpu_copy_insertion_use_region_analysis=true"}),
    "batch256": ("batch 256 (not the comparison's batch; for reference)", {"batch": 256}),
}


flags.DEFINE_string("models", "keras_cnn,cnn", f"Comma list of {', '.join(tp.MODELS)}.")
flags.DEFINE_string("variants", ",".join(VARIANTS), "Comma list of variants: "
                    f"{', '.join(VARIANTS)}.")
flags.DEFINE_float("seconds", 8.0, "Timed seconds per variant.", lower_bound=0.0)
flags.DEFINE_string("out", "", "Output folder (default results/cpu_variants/<machine "
                    "kind>/).")
flags.DEFINE_string("data_dir", "", "Datasets folder (default $KMNIST_JAX_DATA_DIR / "
                    "~/kmnist_jax_data).")
flags.DEFINE_float("timeout", 600.0, "Seconds per variant.", lower_bound=0.0)
flags.DEFINE_string("tag", "", "File name tag: <out>/cpu_variants_<tag>.{json,md} "
                    "(default: cpu_variants.*), e.g. the CPU kind.")
flags.DEFINE_integer("repeats", 1, "Time the variant list this many times (order "
                     "reversed every second time) and summarise paired ratios.",
                     lower_bound=1)
flags.DEFINE_float("wait_idle", 0.0, "Before each variant, wait up to this many seconds "
                   "until other processes use < 0.1 cores.", lower_bound=0.0)
FLAGS = flags.FLAGS


def main(argv) -> int:
  del argv
  return run(FLAGS)


def run(a) -> int:
  tp.check_tag(a.tag)
  models = tp.csv_list(a.models, tp.MODELS, "model")
  variants = tp.csv_list(a.variants, tuple(VARIANTS), "variant")
  cores = tp.core_count()
  data_dir = tp.resolve_data_dir(a.data_dir)
  rows = []
  for rep in range(a.repeats):
    for model in models:
      for v in (variants if rep % 2 == 0 else variants[::-1]):
        rows.append(_time_variant(a, model, v, data_dir, cores, rep))
  base = {(m, rep): next((r["img_per_s"] for r in rows if r["model"] == m
                          and r["repeat"] == rep and r["variant"] == variants[0]
                          and r["img_per_s"]), None)
          for m in models for rep in range(a.repeats)}
  meta = tp.machine_meta("cpu", cores)
  lines = [f"JAX training throughput on this CPU by variant ({meta['cpu_model']}, "
           f"{cores} cores, {meta['date']}); batch 128, Adam; relative to the first "
           "variant" + (" of the same repetition." if a.repeats > 1 else "."),
           f"Command: `{meta['command']}`", ""]
  summary = []
  if a.repeats > 1:
    summary = _summary(rows, models, variants, base)
    lines += ["| model | variant | median img/s | range | median paired ratio | "
              "faster than the first | others' CPU (max) |",
              "|---|---|---|---|---|---|---|"]
    for s in summary:
      ratio = f"{s['median_ratio']:.3f}x" if s["median_ratio"] else "--"
      lines.append(f"| {s['model']} | {s['variant']} | {s['median_img_per_s']:,.0f} | "
                   f"{s['min_img_per_s']:,.0f}-{s['max_img_per_s']:,.0f} | {ratio} | "
                   f"{s['faster']} of {s['pairs']} | {s['max_other_cpu']:.2f} |")
    lines += ["", "Every repetition:", ""]
  lines += ["| repetition | model | variant | what changes | img/s | vs first | "
            "others' CPU |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    b = base[(r["model"], r["repeat"])]
    rate = f"{r['img_per_s']:,.0f}" if r["img_per_s"] else f"failed ({r['error']})"
    rel = f"{r['img_per_s'] / b:.2f}x" if r["img_per_s"] and b else "--"
    lines.append(f"| {r['repeat'] + 1} | {r['model']} | {r['variant']} | "
                 f"{r['description']} | {rate} | {rel} | {r['other_cpu'] or 0:.2f} |")
  tp.write_results(a.out or tp.results_dir("cpu_variants"), "cpu_variants", a.tag,
                   {"meta": meta, "rows": rows, "summary": summary}, lines)
  return 0


def _time_variant(a, model: str, v: str, data_dir: str, cores: int, rep: int) -> dict:
  """One variant timed in its own worker process: a result row."""
  desc, over = VARIANTS[v]
  spec = tp.cpu_jax_spec(model, data_dir, cores, **{"seconds": a.seconds, **over})
  if a.wait_idle > 0:
    tp.wait_for_idle(a.wait_idle, cores)
  r = tp.run_worker(spec, a.timeout, "--timeout")
  row = {"model": model, "variant": v, "repeat": rep, "description": desc,
         "img_per_s": r.get("img_per_s"), "compile_s": r.get("compile_s"),
         "cpu_util": r.get("cpu_util"), "other_cpu": r.get("other_cpu"),
         "error": r.get("error") or r.get("skipped")}
  print(f"{model:10s} {v:18s} "
        + (f"{row['img_per_s']:8,.0f} img/s  (cpu util {row['cpu_util']:.2f}, "
           f"others {row['other_cpu'] or 0:.2f})" if row["img_per_s"] else
           f"failed: {row['error']}"), flush=True)
  return row


def _summary(rows: list[dict], models: list[str], variants: list[str],
             base: dict) -> list[dict]:
  """Per model and variant over the repetitions: median / range of img/s, and the
  median ratio to the first variant paired within each repetition."""
  out = []
  for m in models:
    for v in variants:
      ok = [r for r in rows if r["model"] == m and r["variant"] == v and r["img_per_s"]]
      if not ok:
        continue
      rates = [r["img_per_s"] for r in ok]
      ratios = [r["img_per_s"] / base[(m, r["repeat"])] for r in ok
                if base[(m, r["repeat"])]]
      out.append({"model": m, "variant": v, "repetitions": len(ok),
                  "median_img_per_s": statistics.median(rates),
                  "min_img_per_s": min(rates), "max_img_per_s": max(rates),
                  "median_ratio": statistics.median(ratios) if ratios else None,
                  "faster": sum(x > 1.0 for x in ratios), "pairs": len(ratios),
                  "max_other_cpu": max(r["other_cpu"] or 0.0 for r in ok)})
  return out


if __name__ == "__main__":
  cli.run(main)
