"""kmnist_jax.reports.base (Report): tables in three formats, figures, metrics.json
with run metadata, and the folder replaced whole (via io.atomic_dir)."""

import csv
import json
import os

import numpy as np
import pytest

from kmnist_jax import io
from kmnist_jax.reports import base as report


def rows():
  return [{"name": "a|b", "acc": 0.96341, "n": np.int64(10), "skip": 1},
          {"name": "c", "acc": float("nan"), "n": 3, "skip": 2}]


def test_table_md_csv_json(tmp_path):
  rep = report.Report(str(tmp_path), title="T")
  md = rep.table("t", rows(), columns={"name": "model", "acc": "accuracy", "n": "n"},
                 formats={"acc": report.pct}, caption="A caption.")
  assert md.splitlines() == ["| model | accuracy | n |", "|---|---|---|",
                             "| a\\|b | 96.34% | 10 |", "| c | - | 3 |"]
  assert (tmp_path / "t.md").read_text() == "A caption.\n\n" + md + "\n"
  with open(tmp_path / "t.csv") as f:
    assert list(csv.reader(f)) == [["name", "acc", "n"], ["a|b", "0.96341", "10"],
                                   ["c", "", "3"]]
  j = json.load(open(tmp_path / "t.json"))
  assert j["columns"] == {"name": "model", "acc": "accuracy", "n": "n"}
  assert j["rows"] == [{"name": "a|b", "acc": 0.96341, "n": 10},
                       {"name": "c", "acc": None, "n": 3}]
  # Without columns: every key, in first-seen order; default formatting.
  md2 = rep.table("all", rows(), show=False)
  assert md2.splitlines()[0] == "| name | acc | n | skip |"
  assert "| a\\|b | 0.9634 | 10 | 1 |" in md2
  with pytest.raises(ValueError, match="written twice"):
    rep.table("t", rows())


def test_write_report_and_metrics(tmp_path):
  rep = report.Report(str(tmp_path), title="My report")
  rep.section("Numbers", "Some text.")
  rep.table("t", rows(), columns=["name", "acc"])
  fig = rep.figure("pic", "a picture")
  assert fig == str(tmp_path / "pic.png")
  rep.metrics["classification"] = {"accuracy": np.float32(0.5), "x": [np.nan, 1]}
  with pytest.raises(FileNotFoundError, match="figures never written: pic.png"):
    rep.write()
  open(fig, "wb").write(b"png")
  rep.write()
  md = (tmp_path / "report.md").read_text()
  assert md.startswith("# My report\n")
  assert "## Numbers" in md and "Some text." in md and "| name | acc |" in md
  assert "![a picture](pic.png)" in md
  assert md.index("## Numbers") < md.index("| name |") < md.index("![a picture]")
  m = json.load(open(tmp_path / "metrics.json"))
  assert m["classification"] == {"accuracy": 0.5, "x": [None, 1]}
  for key in ("time_utc", "command", "versions", "cpu"):
    assert key in m["meta"]
  assert sorted(os.listdir(tmp_path)) == ["metrics.json", "pic.png", "report.md",
                                          "t.csv", "t.json", "t.md"]


def test_inside_atomic_dir_the_folder_is_replaced_whole(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  (out / "old.md").write_text("old")
  with pytest.raises(RuntimeError):
    with io.atomic_dir(str(out)) as tmp:
      rep = report.Report(tmp)
      rep.table("t", rows())
      raise RuntimeError("plot failed")
  assert os.listdir(out) == ["old.md"] and os.listdir(tmp_path) == ["out"]
  with io.atomic_dir(str(out)) as tmp:
    rep = report.Report(tmp)
    rep.table("t", rows())
    rep.write(meta={"test": True})
  assert sorted(os.listdir(out)) == ["metrics.json", "report.md", "t.csv", "t.json",
                                     "t.md"]
  assert json.load(open(out / "metrics.json")) == {"meta": {"test": True}}


def test_pct_helpers():
  assert report.pct(0.5) == "50.00%" and report.pct(None) == "-"
  assert report.pct(float("nan")) == "-" and report.pct(0.1234, 1) == "12.3%"
  assert report.pct_pm(0.9, 0.01, n=3) == "90.00% ± 1.00"
  assert report.pct_pm(0.9, 0.01, n=1) == "90.00%"
