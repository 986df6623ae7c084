"""The benchmark scripts run end to end (smoke size) and write their result files."""

import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, data_dir):
  env = dict(os.environ, KMNIST_JAX_DATA_DIR=data_dir, XLA_FLAGS="")
  return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)


def test_throughput_quick(data_dir, tmp_path):
  p = run(["benchmarks/throughput.py", "--quick", "--models=cnn", "--jax_modes=single",
           "--torch_variants=", "--augment=cutout", f"--out_dir={tmp_path}"], data_dir)
  assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
  res = json.load(open(tmp_path / "throughput_cpu.json"))
  single = res["results"]["cnn"]["jax:single"]
  assert single["img_per_s"] > 0 and single["compile_s"] >= 0
  assert 0 < single["last_loss"] < 10  # it really trained on real images
  meta = res["meta"]  # kmnist_jax.io.run_meta + what the table names
  assert meta["cpu_model"] and meta["platform"] == "cpu" and meta["versions"]["numpy"]
  assert meta["command"].startswith("python benchmarks/throughput.py --quick")
  assert (tmp_path / "throughput_cpu.md").read_text().count("JAX single") >= 1
  # --render rewrites the .md from the saved .json alone.
  (tmp_path / "throughput_cpu.md").unlink()
  p = run(["benchmarks/throughput.py", f"--render={tmp_path / 'throughput_cpu.json'}"],
          data_dir)
  assert p.returncode == 0, p.stderr[-2000:]
  assert "JAX single" in (tmp_path / "throughput_cpu.md").read_text()


def test_throughput_repeats_take_the_median_and_pair_by_repetition():
  """--repeats: each cell is the median repetition; the ratio is taken within each
  repetition (side by side) and against PyTorch's best one."""
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      "throughput_bench", os.path.join(REPO, "benchmarks", "throughput.py"))
  tp = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tp)
  tries = [{"img_per_s": 90.0, "rep": 0}, {"error": "x"}, {"img_per_s": 110.0, "rep": 2},
           {"img_per_s": 100.0, "rep": 3}]
  med = tp.median_result(tries)
  assert med["rep"] == 3 and med["repeat_img_per_s"] == [90.0, None, 110.0, 100.0]
  assert tp.median_result([{"error": "x"}]) == {"error": "x"}
  reps = [{("jax", "pmap"): {"img_per_s": 100.0}, ("torch", "eager"): {"img_per_s": 80.0},
           ("torch", "channels_last"): {"img_per_s": 125.0}},
          {("jax", "pmap"): {"img_per_s": 120.0}, ("torch", "eager"): {"img_per_s": 100.0},
           ("torch", "channels_last"): {"error": "x"}},
          {("jax", "pmap"): {"img_per_s": 110.0}, ("torch", "eager"): {"img_per_s": 100.0},
           ("torch", "channels_last"): {"img_per_s": 100.0}}]
  s = tp.repeat_summary(reps)
  assert s["repeat_ratios"] == [0.8, 1.2, 1.1] and s["ratio_median"] == 1.1
  assert (s["ratio_min"], s["ratio_max"]) == (0.8, 1.2)
  assert s["jax_median_over_best_torch_rep"] == 110.0 / 125.0
  assert tp.repeat_summary(reps[:1]) == {}


def test_cpu_variants_repeats_pair_within_each_repetition():
  """--repeats: the summary's ratio pairs each variant with the first variant of the
  same repetition (not the medians' ratio), and counts the repetitions it was faster."""
  code = """
import json, sys
sys.path.insert(0, 'benchmarks')
import cpu_variants as cv
rows = [dict(model='cnn', variant=v, repeat=r, img_per_s=x, other_cpu=0.01)
        for r, (d, p) in enumerate([(100., 110.), (80., 76.), (120., 126.)])
        for v, x in (('default', d), ('pmap', p))]
rows.append(dict(model='cnn', variant='pmap', repeat=3, img_per_s=None, other_cpu=None))
base = {('cnn', 0): 100., ('cnn', 1): 80., ('cnn', 2): 120., ('cnn', 3): None}
print(json.dumps(cv._summary(rows, ['cnn'], ['default', 'pmap'], base)))
"""
  p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                     text=True, timeout=120)
  assert p.returncode == 0, p.stderr[-2000:]
  d, pm = json.loads(p.stdout.strip().splitlines()[-1])
  assert d["median_ratio"] == 1.0 and d["faster"] == 0 and d["pairs"] == 3
  assert pm["repetitions"] == 3 and pm["pairs"] == 3 and pm["faster"] == 2
  assert abs(pm["median_ratio"] - 1.05) < 1e-12            # of 1.10, 0.95, 1.05
  assert (pm["min_img_per_s"], pm["median_img_per_s"], pm["max_img_per_s"]) == (
      76.0, 110.0, 126.0)


def test_benchmark_bad_flags(data_dir, tmp_path):
  """A bad flag or value: one `error:` line naming it, exit 2, nothing run."""
  for script, args, msg in (
      ("throughput.py", ["--models=nope"], "unknown model 'nope'; valid choices: "),
      ("throughput.py", ["--jax_modes=single,x"], "unknown JAX mode 'x'"),
      ("throughput.py", ["--platform=tpu"], "value should be one of <cpu|gpu>"),
      ("throughput.py", ["--retries=-1"], "--retries=-1"),
      ("throughput.py", ["--wait_idel=3"], "Unknown command line flag 'wait_idel'"),
      ("throughput.py", [f"--render={tmp_path / 'none.json'}"], "--render="),
      ("throughput.py", ["stray"], "unexpected arguments 'stray'"),
      ("throughput.py", ["--repeats=0"], "--repeats=0"),
      ("throughput.py", ["--tag=a/b"], "--tag 'a/b' must be letters"),
      ("cpu_variants.py", ["--variants=default,nope"], "unknown variant 'nope'"),
      ("cpu_variants.py", ["--seconds=x"], "--seconds=x"),
      ("cpu_variants.py", ["--tag=a/b"], "--tag 'a/b' must be letters"),
      ("cpu_variants.py", ["--repeats=0"], "--repeats=0"),
      ("conv_grad.py", ["--reps=1"], "--reps=1"),
      ("conv_grad.py", ["--tag=a b"], "--tag 'a b' must be letters"),
      ("profile_step.py", ["--mode=gpu"], "value should be one of"),
      ("profile_step.py", ["--chunks=0"], "--chunks=0"),
      ("time_to_accuracy.py", ["--seeds=a"], "--seeds 'a' must be"),
      ("time_to_accuracy.py", ["--set=nokey"], "override 'nokey' must be key=value"),
      ("time_to_accuracy.py", ["--timeout=-1"], "--timeout=-1"),
      ("attack_throughput.py", [], "--workdir is required"),
      ("attack_throughput.py", ["--workdir=/x", "--attacks=pgd,fab"],
       "unknown attack 'fab'; valid choices: pgd, apgd-ce")):
    p = run([f"benchmarks/{script}", *args, f"--out={tmp_path}"]
            if script != "throughput.py" else [f"benchmarks/{script}", *args,
                                                f"--out_dir={tmp_path}"], data_dir)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, (script, args, p.stderr[-800:])
    assert lines[0].startswith("error: ") and msg in lines[0], (script, args, lines)
  assert not list(tmp_path.iterdir())


def test_conv_grad_quick(data_dir, tmp_path):
  """Both kernel-gradient forms agree on every listed layer and the table is written."""
  p = run(["benchmarks/conv_grad.py", "--reps=3", "--batch=2", f"--out={tmp_path}",
           "--tag=t"], data_dir)
  assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
  res = json.load(open(tmp_path / "conv_grad_t.json"))
  assert [r["layer"] for r in res["rows"]] == [
      "cnn conv1", "cnn conv2", "keras_cnn conv1", "keras_cnn conv2", "mnist_fast conv1",
      "mnist_fast conv2"]
  for r in res["rows"]:
    assert r["max_rel_diff"] < 1e-5 and min(r["ms"].values()) > 0 and r["speedup"] > 0
  assert res["meta"]["cpu_model"]
  assert (tmp_path / "conv_grad_t.md").read_text().count("| cnn conv") == 2


def test_eval_throughput_quick(data_dir, tmp_path):
  """Inference img/s on a few hundred images, a 2-set cached suite built here, and the
  tiled suite; JAX predict with XLA's conv and with conv_impl='auto' agree."""
  import importlib.util

  from kmnist_jax.robustness import sets
  suite = tmp_path / "suite"
  sets.build("kmnist", str(suite), names="brightness,inverse", severities=(1,),
             data_dir=data_dir, limit=64, progress=False)
  out = tmp_path / "out"
  p = run(["benchmarks/eval_throughput.py", "--quick", "--test_images=128",
           "--suite_images=256", f"--cached_suite={suite}", f"--out_dir={out}"],
          data_dir)
  assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
  res = json.load(open(out / "eval_throughput_cpu.json"))
  torch = importlib.util.find_spec("torch") is not None
  cnn = res["results"]["cnn"]
  assert set(cnn) == {"clean", "suite_load", "suite_preloaded", "suite_tiled"}
  want = {"jax:predict", "jax:predict_auto"} | (
      {"torch:eager", "torch:channels_last"} if torch else set())
  assert set(cnn["clean"]) == want
  for name, rs in cnn.items():
    assert "jax:predict" in rs and len(rs) == (len(want) if name == "clean"
                                               else 1 + torch), (name, rs)
    for r in rs.values():
      assert r["img_per_s"] > 0 and r["reps"] >= 1, (name, r)
      assert r["img_per_s_min"] <= r["img_per_s"] <= r["img_per_s_max"]
  assert cnn["clean"]["jax:predict"]["images"] == 128
  assert cnn["suite_load"]["jax:predict"]["images"] == 2 * 32  # --quick: 32 a set
  assert cnn["suite_tiled"]["jax:predict"]["sets"] == 2
  tiled = res["measurements"]["suite_tiled"]
  assert tiled["images"] == 256 and "tiled 2x" in tiled["description"]
  summary = res["summary"]["cnn"]["clean"]
  assert (summary["jax_over_best_torch"] > 0) if torch else \
      summary["jax_over_best_torch"] is None
  # The one inference path swaps the training convs for XLA's: the same function.
  check = res["checks"]["cnn"]["jax"]
  assert check["compared"] == ["predict", "predict_auto"] and check["images"] == 128
  assert check["label_mismatches"] == 0 and check["max_abs_logit_diff"] < 1e-4
  assert check["labels_are_logit_argmax"]
  params = {fw: w["params"] for fw, w in res["workers"]["cnn"].items()}
  assert set(params) == ({"jax", "torch"} if torch else {"jax"})
  assert len(set(params.values())) == 1  # the same architecture on both sides
  meta = res["meta"]  # kmnist_jax.io.run_meta + what the table names
  assert meta["cpu_model"] and meta["cpu"] and meta["versions"]["numpy"]
  assert meta["command"].startswith("python benchmarks/eval_throughput.py --quick")
  md = (out / "eval_throughput_cpu.md").read_text()
  assert f"CPU: {meta['cpu_model']}" in md and "JAX inference.predict" in md
  assert "python benchmarks/eval_throughput.py --quick" in md
  assert "| cnn | suite_tiled | JAX inference.predict (XLA conv) |" in p.stdout


def test_eval_throughput_bad_flags(data_dir, tmp_path):
  """A bad flag or value: one `error:` line naming it, exit 2, nothing run."""
  for args, msg in ((["--models=nope"], "unknown model 'nope'; valid choices: "),
                    (["--torch_variants=eager,compile"], "unknown torch variant"),
                    (["--batch=0"], "--batch=0"),
                    (["--test_images=20000"], "--test_images=20000"),
                    (["--reps=x"], "--reps=x"),
                    ([f"--cached_suite={tmp_path / 'none'}"], "--cached_suite="),
                    (["stray"], "unexpected arguments 'stray'")):
    p = run(["benchmarks/eval_throughput.py", *args, f"--out_dir={tmp_path / 'o'}"],
            data_dir)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, (args, p.stderr[-800:])
    assert lines[0].startswith("error: ") and msg in lines[0], (args, lines)
  assert not list(tmp_path.iterdir())


def test_accuracy_tiny(data_dir, tmp_path):
  p = run(["benchmarks/accuracy.py", "--configs", "kmnist_logreg", "--seeds", "0,1",
           "--set", "train_limit=1024,test_limit=500,num_epochs=1,parallel=single",
           "--out", str(tmp_path), "--workdir_root", str(tmp_path / "runs")], data_dir)
  assert p.returncode == 0, p.stderr[-2000:]
  res = json.load(open(tmp_path / "accuracy_cpu.json"))
  (row,) = res["rows"]
  assert len(row["runs"]) == 2 and 0.1 < row["mean"] <= 1.0 and row["std"] is not None
  assert "| kmnist_logreg | kmnist | 2 |" in (tmp_path / "accuracy_cpu.md").read_text()


def test_time_to_accuracy_tiny(data_dir, tmp_path):
  """Two logreg runs on a slice: a reachable target stops the run at the first epoch
  that reaches it; an unreachable one runs the schedule out and says so."""
  over = "train_limit=2048;test_limit=500;val_size=0;num_epochs=4;parallel=single"
  val = over.replace("val_size=0", "val_size=256")   # tuning runs select on this
  p = run(["benchmarks/time_to_accuracy.py",
           f"--runs=kmnist_logreg:0.3:{over},kmnist_logreg:0.999:{val}",
           "--seeds=0,1", "--wait_idle=1", f"--out={tmp_path}", "--platform_tag=t"],
          data_dir)
  assert p.returncode == 0, p.stderr[-2000:]
  res = json.load(open(tmp_path / "time_to_accuracy_t.json"))
  meta = res["meta"]
  assert meta["tag"] == "t" and meta["platform"] == "cpu" and meta["cpu_model"]
  assert meta["cpu_count"] >= 1 and meta["jax"] and meta["date"]
  assert meta["command"].startswith("python benchmarks/time_to_accuracy.py '--runs=")
  reached, reached1, missed, _ = res["rows"]
  assert reached1["seed"] == 1 and reached1["reached"]
  assert reached["reached"] and reached["epoch"] == 1 and reached["epochs_run"] == 1
  assert reached["test_accuracy"] >= 0.3
  assert 0 < reached["time_s"] <= reached["process_wall_s"]
  assert not missed["reached"] and missed["epochs_run"] == 4
  assert 0.3 < missed["best_test_accuracy"] < 0.999
  # Every epoch's validation accuracy is in the curve when there is a validation split.
  assert [c["val_accuracy"] for c in reached["curve"]] == [None]
  assert len(missed["curve"]) == 4
  assert all(0.1 < c["val_accuracy"] <= 1.0 for c in missed["curve"])
  md = (tmp_path / "time_to_accuracy_t.md").read_text()
  assert "| kmnist_logreg | 30.0% | 0 | yes | 1 |" in md and "| no (rc 0) |" in md
  assert md.splitlines()[0].count(meta["cpu_model"]) == 1
  # The summary: mean +- std over the seeds that reached the target, and how many did.
  assert re.search(r"- kmnist_logreg to 30\.0%: reached in 2 of 2 seeds; [\d.]+ s \+- "
                   r"[\d.]+ \(min [\d.]+, max [\d.]+\) to target, process wall", md)
  assert "- kmnist_logreg to 99.9%: reached in 0 of 2 seeds\n" in md


def test_time_to_accuracy_bad_runs(data_dir, tmp_path):
  for runs, msg in (("kmnist_logreg", "must be CONFIG:TARGET"),
                    ("kmnist_logreg:99", "must be a fraction"),
                    ("nope:0.9", "unknown config 'nope'")):
    p = run(["benchmarks/time_to_accuracy.py", "--runs", runs, "--out", str(tmp_path)],
            data_dir)  # absl also takes `--flag value`
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and msg in lines[0], p.stderr[-500:]


def test_gpu_studies_script_plans_both_studies(data_dir, tmp_path):
  """benchmarks/run_gpu_studies.sh, full budget and TINY=1: every flag it passes is
  valid and both studies plan their runs (a wrapper adds --dry_run: nothing trains).
  The TINY=1 version was also run to the end on the 2-core CPU (3.6 min, closing note)."""
  wrapper = tmp_path / "python"
  wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@" --dry_run\n')
  wrapper.chmod(0o755)
  for tiny, n_aug, n_tr in (("0", 50, None), ("1", 5, 5)):
    out = tmp_path / f"out{tiny}"
    env = dict(os.environ, PYTHON=str(wrapper), TINY=tiny, OUT=str(out),
               WORK=str(tmp_path / f"work{tiny}"), KMNIST_JAX_DATA_DIR=data_dir)
    p = subprocess.run(["bash", "benchmarks/run_gpu_studies.sh"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    text = p.stdout + p.stderr
    assert "error:" not in text and "Traceback" not in text, text[-3000:]
    assert f"# {n_aug} runs in " in text, text[-3000:]          # the augmentation study
    assert text.count(" runs in ") == 2 and "sbatch" in text    # and the transfer study
    if n_tr:
      assert f"# {n_tr} runs in " in text
    assert not out.exists()                           # a dry run writes nothing


def test_gpu_robust_script_plans_its_studies(data_dir, tmp_path):
  """benchmarks/run_gpu_robust.sh, full budget and TINY=1, its two study steps: every
  flag it passes is valid and both studies plan their runs (a wrapper adds --dry_run:
  nothing trains); an unknown step is one `error:` line, exit 2."""
  wrapper = tmp_path / "python"
  wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@" --dry_run\n')
  wrapper.chmod(0o755)
  for tiny, n_rob, n_adv in (("0", 32, 12), ("1", 3, 2)):
    out = tmp_path / f"out{tiny}"
    env = dict(os.environ, PYTHON=str(wrapper), TINY=tiny, OUT=str(out),
               STEPS="robust adversarial", WORK=str(tmp_path / f"work{tiny}"),
               KMNIST_JAX_DATA_DIR=data_dir)
    p = subprocess.run(["bash", "benchmarks/run_gpu_robust.sh"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    text = p.stdout + p.stderr
    assert "error:" not in text and "Traceback" not in text, text[-3000:]
    assert f"# {n_rob} runs in " in text and f"# {n_adv} runs in " in text, text[-3000:]
    assert not out.exists()                           # a dry run writes nothing
  p = subprocess.run(["bash", "benchmarks/run_gpu_robust.sh"], cwd=REPO,
                     env=dict(os.environ, STEPS="robust flagshp"),
                     capture_output=True, text=True, timeout=60)
  assert p.returncode == 2 and p.stderr.strip().splitlines() == [
      "error: unknown step 'flagshp'; valid steps: flagship, robust, adversarial, anchors"]


# A benchmark command's flags parsed by its own script (absl), nothing run; the variant
# and config names it gives checked against what exists.
_PARSE_ONLY = """
import os, sys
sys.path.insert(0, "benchmarks")
script, *argv = sys.argv[1:]
m = __import__(os.path.basename(script)[:-3])
getattr(m, "define_flags", lambda: None)()      # throughput.py defines its flags in main
from absl import flags
F = flags.FLAGS
F([script, *argv])
if "variants" in F:
  assert all(v in m.VARIANTS for v in F.variants.split(",")), F.variants
if "runs" in F:
  assert all(os.path.exists(f"experiments/configs/{r.split(':')[0]}.py")
             for r in F.runs.split(",")), F.runs
print("parsed")
"""


def test_cpu_perf_script_commands_parse():
  """benchmarks/run_cpu_perf.sh (DRY_RUN=1: nothing runs) lists its three commands with
  the tag in every output name; each parses with its script's absl flags, names only
  existing variants and configs; the default tag is the CPU kind; a bad tag or a
  second argument is one line, exit 2."""
  env = dict(os.environ, DRY_RUN="1", PYTHON=sys.executable)
  sh = lambda *a: subprocess.run(["bash", "benchmarks/run_cpu_perf.sh", *a], cwd=REPO,  # noqa: E731
                                 env=env, capture_output=True, text=True, timeout=60)
  p = sh("t1")
  assert p.returncode == 0, p.stderr
  cmds = p.stdout.splitlines()
  assert [c.split()[1] for c in cmds] == ["benchmarks/throughput.py",
                                          "benchmarks/time_to_accuracy.py",
                                          "benchmarks/cpu_variants.py"], cmds
  assert "--tag t1_perf" in cmds[0] and "--platform_tag cpu_t1_perf" in cmds[1]
  assert "--tag t1_perf" in cmds[2] and all("--wait_idle" in c for c in cmds)
  for c in cmds:
    q = subprocess.run([sys.executable, "-c", _PARSE_ONLY, *c.split()[1:]], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert q.returncode == 0 and "parsed" in q.stdout, (c, q.stderr[-2000:])
  p = sh()
  assert p.returncode == 0 and re.search(r"--tag (intel|zen3|zen4|cpu)_perf", p.stdout)
  for bad in (("a b",), ("t1", "t2"), ("--x",)):
    p = sh(*bad)
    assert p.returncode == 2 and "Traceback" not in p.stderr, (bad, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1, (bad, p.stderr)


def test_profile_step_quick(data_dir, tmp_path):
  """The per-op profile traces the real training chunk and names its ops with shapes."""
  p = run(["benchmarks/profile_step.py", "--model=cnn", "--mode=single", "--chunk_steps=2",
           "--chunks=1", f"--out={tmp_path}", "--tag=t"], data_dir)
  assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
  res = json.load(open(tmp_path / "profile_step_cnn_t.json"))
  assert res["step_ms"] > 0 and res["meta"]["cpu_model"]
  ops = {r["op"]: r for r in res["rows"]}
  assert all(r["ms_per_step"] >= 0 for r in res["rows"])
  # The conv matmuls are there, with their shapes from the optimised HLO.
  assert any(r["shape"].startswith("f32[") and "dot_general" in r["jax_op"]
             for r in ops.values()), list(ops)[:20]
  assert "| op | ms per step |" in (tmp_path / "profile_step_cnn_t.md").read_text()
