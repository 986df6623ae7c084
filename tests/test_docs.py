"""The README's generated tables and results/README.md (the index of every measurement)
cannot drift from the results they are made from."""

import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "configs_table.py")


def _run(*args):
  return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                        cwd=REPO)


def test_table_is_generated_from_results_and_checked(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text("# x\n\n<!-- configs:begin -->\nold\n<!-- configs:end -->\n\nrest\n")
  r = _run(f"--readme={readme}", "--check")
  assert r.returncode == 1 and "stale" in r.stderr
  r = _run(f"--readme={readme}")
  assert r.returncode == 0, r.stderr
  text = readme.read_text()
  assert text.startswith("# x\n") and text.endswith("\n\nrest\n")
  rows = [line for line in text.splitlines() if line.startswith("| `")]
  names = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "experiments", "configs"))
                 if f.endswith(".py") and not f.startswith("_"))
  listed = [row.split("`")[1] for row in rows]
  assert set(listed) <= set(names) and "kmnist_cnn" in listed and "mnist_logreg" in listed
  assert not any(n.startswith(("augment_study", "transfer_")) for n in listed)
  kmnist_cnn = next(row for row in rows if row.startswith("| `kmnist_cnn`"))
  assert ("96.08% ± 0.26](results/accuracy/gpu_h100/accuracy_gpu_h100.md) (3 seeds, 8 s)"
          in kmnist_cnn)
  assert _run(f"--readme={readme}", "--check").returncode == 0


def test_readme_table_is_up_to_date():
  r = _run("--check")
  assert r.returncode == 0, r.stderr


def test_no_block_is_one_line(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text("no table here\n")
  r = _run(f"--readme={readme}")
  assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr


# ---- results/README.md: the index of every measurement --------------------------------

INDEX = os.path.join(REPO, "benchmarks", "results_index.py")


def _index(*args):
  return subprocess.run([sys.executable, INDEX, *args], capture_output=True, text=True,
                        cwd=REPO)


def test_results_index_is_up_to_date():
  r = _index("--check")
  assert r.returncode == 0, r.stderr


def test_results_index_reads_each_files_metadata(tmp_path):
  """One row per measurement (a .json and its .md together, figures together, a runs/
  folder as one row) with the command, machine, commit and date from the file's own
  meta block; --check fails on a stale index; a file outside <what>/<kind>/ is one
  error line, exit 2."""
  kind = tmp_path / "throughput" / "cpu_zen4"
  (kind / "runs").mkdir(parents=True)
  meta = {"command": "python benchmarks/throughput.py --tag zen4",
          "date": "2030-01-02 03:04 UTC",
          "cpu_model": "AMD EPYC (family 25, model 17: Zen 4; AVX-512)",
          "git": {"commit": "0123456789abcdef", "dirty": False}}
  (kind / "throughput_cpu_zen4.json").write_text(json.dumps({"meta": meta}))
  (kind / "throughput_cpu_zen4.md").write_text("table\n")
  (kind / "a.png").write_bytes(b"x")
  (kind / "b.png").write_bytes(b"x")
  (kind / "runs" / "r1.json").write_text(json.dumps({"meta": meta}))
  assert _index(f"--results={tmp_path}", "--check").returncode == 1
  r = _index(f"--results={tmp_path}")
  assert r.returncode == 0, r.stderr
  text = (tmp_path / "README.md").read_text()
  row = next(ln for ln in text.splitlines() if "throughput_cpu_zen4.{json,md}" in ln)
  assert "(throughput/cpu_zen4/throughput_cpu_zen4.md)" in row
  assert "`python benchmarks/throughput.py --tag zen4`" in row and "| 0123456 |" in row
  assert "Zen 4" in row and "2030-01-02 03:04" in row
  assert "2 figures (.png)" in text and "runs/ (1 files)" in text
  assert _index(f"--results={tmp_path}", "--check").returncode == 0
  (tmp_path / "stray.json").write_text("{}")
  r = _index(f"--results={tmp_path}", "--check")
  assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr
  assert "results/stray.json" in r.stderr


def _links(path):
  text = open(path).read()
  base = os.path.dirname(path)
  out = []
  for target in re.findall(r"\]\(([^)#\s]+)\)", text):
    full = os.path.normpath(os.path.join(base, target))
    if full.startswith(os.path.join(REPO, "results") + os.sep):
      out.append(os.path.relpath(full, os.path.join(REPO, "results")))
  return out


def test_every_results_link_in_the_docs_leads_to_an_indexed_file():
  """Every link into results/ from README.md and docs/ names a file (or folder) that
  exists and whose results/<what>/<kind>/ folder the index lists: each number the
  README cites leads to its command, machine, commit and date."""
  index = open(os.path.join(REPO, "results", "README.md")).read()
  indexed = {"/".join(t.split("/")[:2]) for t in re.findall(r"\]\(([^)]+)\)", index)}
  docs = [os.path.join(REPO, "README.md")] + sorted(
      os.path.join(REPO, "docs", f) for f in os.listdir(os.path.join(REPO, "docs"))
      if f.endswith(".md"))
  readme_links = _links(docs[0])
  assert len(readme_links) >= 10
  for doc in docs:
    for rel in _links(doc):
      if rel == "README.md":                     # the index itself
        continue
      assert os.path.exists(os.path.join(REPO, "results", rel)), (doc, rel)
      assert "/".join(rel.split("/")[:2]) in indexed, (doc, rel)


# ---- The README's performance table and its rules ------------------------------------

PERF = os.path.join(REPO, "benchmarks", "perf_table.py")


def test_performance_table_is_generated_from_results_and_checked(tmp_path):
  """One row per machine kind, each cell linked to the results file it comes from; a
  stale table fails --check; no markers is one error line, exit 2."""
  readme = tmp_path / "README.md"
  readme.write_text("# x\n\n<!-- perf:begin -->\nold\n<!-- perf:end -->\n\nrest\n")
  run = lambda *a: subprocess.run([sys.executable, PERF, *a], capture_output=True,  # noqa: E731
                                  text=True, cwd=REPO)
  assert run(f"--readme={readme}", "--check").returncode == 1
  assert run(f"--readme={readme}").returncode == 0
  text = readme.read_text()
  assert text.startswith("# x\n") and text.endswith("\n\nrest\n")
  zen4 = next(line for line in text.splitlines() if line.startswith("| AMD EPYC Zen 4"))
  assert "(results/throughput/cpu_zen4/" in zen4
  assert "(results/eval_throughput/cpu_zen4/" in zen4
  assert "(results/time_to_accuracy/cpu_zen4/" in zen4 and "`mnist_fast`" in zen4
  assert run(f"--readme={readme}", "--check").returncode == 0
  assert run("--check").returncode == 0, "README.md's performance table is stale"
  readme.write_text("nothing\n")
  r = run(f"--readme={readme}")
  assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr


def test_readme_is_a_guide_not_a_log():
  """At most 250 lines; no dates, commit ids or session stories in it or in docs/
  (those live in results/README.md and git); command 1 is the light install."""
  readme = open(os.path.join(REPO, "README.md")).read()
  assert len(readme.splitlines()) <= 250
  history = re.compile(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]|[Cc]ommit [0-9a-f]{7}|"
                       r"this session|[0-9]+ UTC")
  for name in ["README.md"] + [f"docs/{f}" for f in os.listdir(os.path.join(REPO, "docs"))
                               if f.endswith(".md") and f != "citation.md"]:
    text = open(os.path.join(REPO, name)).read()
    assert not history.findall(text), (name, history.findall(text)[:3])
  first = re.search(r"```bash\n(?:#.*\n)*(.*)", readme[readme.index("## Quickstart"):])
  assert first.group(1).startswith("bash launch/local.sh train")


# ---- The README's robust-training table ------------------------------------------------

STUDY = os.path.join(REPO, "benchmarks", "study_table.py")


def study_table(*args) -> subprocess.CompletedProcess:
  """benchmarks/study_table.py with `args`."""
  return subprocess.run([sys.executable, STUDY, *args], capture_output=True, text=True,
                        cwd=REPO)


def test_robust_training_table_is_generated_from_the_report_and_checked(tmp_path):
  """One row per method, a column group per dataset, each cell from the committed
  report's summary (so from the runs' records); a stale table fails --check; a missing
  report or no markers is one error line, exit 2."""
  readme = tmp_path / "README.md"
  readme.write_text("# x\n\n<!-- robust_training:begin -->\nold\n"
                    "<!-- robust_training:end -->\n\nrest\n"
                    "<!-- augment_adversarial:begin -->\n<!-- augment_adversarial:end -->\n")
  assert study_table(f"--readme={readme}", "--check").returncode == 1
  assert study_table(f"--readme={readme}").returncode == 0
  text = readme.read_text()
  assert text.startswith("# x\n") and "\n\nrest\n<!-- augment_adversarial:begin" in text
  summary = json.load(open(os.path.join(
      REPO, "results/robust_training/cpu_zen/report/metrics.json")))["robust_training_study"]
  rows = [line for line in text.splitlines() if line.startswith("| `")]
  assert [r.split("`")[1] for r in rows] == summary["options"]["methods"]
  pgd = next(r for r in summary["rows"] if r["dataset"] == "mnist" and r["method"] == "pgd")
  cell = f"{100 * pgd['robust_acc_mean']:.1f}"
  assert cell in next(r for r in rows if r.startswith("| `pgd`")).split(" | ")[3]
  assert "report/report.md" in text and "ε=0.3 %" in text
  assert study_table(f"--readme={readme}", "--check").returncode == 0
  assert study_table("--check").returncode == 0, "README.md's robust-training table is stale"
  r = study_table(f"--readme={readme}", "--report=results/nothing_here")
  assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr
  readme.write_text("nothing\n")
  r = study_table(f"--readme={readme}")
  assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr


def test_augmentation_under_attack_table_is_generated_from_the_report(tmp_path):
  """One row per dataset and eps (eps where every model is at 0% are named, not shown):
  each policy's accuracy under PGD and the ensemble and its paired difference to
  `none`, each cell from the committed report's summary; a stale table fails --check."""
  readme = tmp_path / "README.md"
  readme.write_text("<!-- robust_training:begin -->\n<!-- robust_training:end -->\n"
                    "<!-- augment_adversarial:begin -->\nold\n"
                    "<!-- augment_adversarial:end -->\n")
  assert study_table(f"--readme={readme}", "--check").returncode == 1
  assert study_table(f"--readme={readme}").returncode == 0, "write"
  text = readme.read_text()
  summary = json.load(open(os.path.join(
      REPO, "results/augment_adversarial/cpu_zen/report/metrics.json")))["augmentation_study"]
  rows = [ln.split(" | ") for ln in text.splitlines()
          if ln.startswith("| MNIST") or ln.startswith("| KMNIST")]
  shown = sorted({float(r[1]) for r in rows})
  by = {(r["dataset"], r["policy"]): r for r in summary["rows"]}
  for e in (0.05, 0.1, 0.2):
    values = [by[k].get(f"{a}@{e:g}_mean") for k in by for a in ("pgd", "autoattack")]
    assert (e in shown) == any(values), (e, shown)
  row = next(r for r in rows if r[0] == f"| MNIST ({by[('mnist', 'none')]['seeds']}/"
             f"{by[('mnist', 'noise')]['seeds']})" and float(r[1]) == 0.1)
  noise = by[("mnist", "noise")]
  assert row[4].startswith(f"{100 * noise['pgd@0.1_mean']:.1f}")
  assert row[5].startswith(f"{100 * noise['autoattack@0.1_mean']:.1f}")
  assert row[7].startswith(f"{100 * noise['autoattack@0.1_delta_mean']:+.1f}")
  assert "report/report.md" in text
  assert study_table(f"--readme={readme}", "--check").returncode == 0
