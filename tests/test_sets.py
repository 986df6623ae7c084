"""Corrupted test sets on disk: build / load / manifest, atomicity, verification, the
script, and the TFDS builder (tfds.load after the build command)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kmnist_jax import data
from kmnist_jax.errors import UserError
from kmnist_jax.robustness import corruptions
from kmnist_jax.robustness import sets as corrupted

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 60


@pytest.fixture(scope="module")
def clean(data_dir):
  return data.load("kmnist", data_dir=data_dir, limit={"test": LIMIT}).splits["test"]


def build(data_dir, out, **kw):
  kw.setdefault("names", ("shot_noise", "rotate"))
  kw.setdefault("severities", (1, 3))
  return corrupted.build("kmnist", str(out), data_dir=data_dir, limit=LIMIT,
                         progress=False, **kw)


def test_build_writes_verified_files_equal_to_apply(data_dir, clean, tmp_path):
  out = tmp_path / "kmnist_c"
  m = build(data_dir, out)
  assert m == corrupted.read_manifest(str(out))
  assert (m["dataset"], m["split"], m["seed"], m["limit"], m["count"]) == (
      "kmnist", "test", 0, LIMIT, LIMIT)
  assert m["source_sha256"] == corrupted.source_sha256(clean.images, clean.labels)
  assert sorted(m["files"]) == ["rotate/severity_1.npz", "rotate/severity_3.npz",
                                "shot_noise/severity_1.npz", "shot_noise/severity_3.npz"]
  for rel, e in m["files"].items():
    assert e["sha256"] == corrupted.sha256_file(str(out / rel))
    assert e["params"] == corruptions.params(e["corruption"], e["severity"])
    images, labels = corrupted.load(str(out), e["corruption"], e["severity"])
    assert np.array_equal(labels, clean.labels)
    assert np.array_equal(images, corruptions.apply(e["corruption"], clean.images,
                                                    e["severity"], 0))
  assert sorted(os.listdir(tmp_path)) == ["kmnist_c"]  # no temp folder left


def test_rerun_is_noop_and_adding_keeps_old_files(data_dir, tmp_path):
  out = tmp_path / "c"
  m1 = build(data_dir, out)
  mtime = os.path.getmtime(out / corrupted.MANIFEST)
  assert build(data_dir, out) == m1
  assert build(data_dir, out, names=("rotate",), severities=(3,)) == m1  # a subset
  assert os.path.getmtime(out / corrupted.MANIFEST) == mtime
  m2 = build(data_dir, out, names=("rotate", "stripe"), severities=(1, 3, 5))
  assert len(m2["files"]) == 4 + 4  # rotate 5, stripe 1, 3, 5 added
  for rel, e in m1["files"].items():
    assert m2["files"][rel]["sha256"] == e["sha256"]
  assert m2["corruptions"] == ["shot_noise", "rotate", "stripe"]
  corrupted.load(str(out), "stripe", 5)
  assert sorted(os.listdir(tmp_path)) == ["c"]
  with pytest.raises(UserError, match=r"other settings \(seed 0 -> 1\)"):
    build(data_dir, out, seed=1)
  man = json.loads((out / corrupted.MANIFEST).read_text())
  man["files"]["rotate/severity_1.npz"]["params"] = {"r": 0.25}  # older code's table
  (out / corrupted.MANIFEST).write_text(json.dumps(man))
  with pytest.raises(UserError, match=r"rotate/severity_1.npz was made with parameters"):
    build(data_dir, out)


def test_failed_build_leaves_nothing_and_keeps_the_old_build(data_dir, tmp_path,
                                                              monkeypatch):
  real = corruptions.apply
  calls = []

  def flaky(name, images, severity, seed):
    calls.append(name)
    if len(calls) == 2:
      raise KeyboardInterrupt  # interrupted mid-build
    return real(name, images, severity, seed)

  monkeypatch.setattr(corruptions, "apply", flaky)
  with pytest.raises(KeyboardInterrupt):
    build(data_dir, tmp_path / "new")
  assert os.listdir(tmp_path) == []  # neither the final name nor a temp folder

  monkeypatch.setattr(corruptions, "apply", real)
  old = build(data_dir, tmp_path / "old")
  calls.clear()
  monkeypatch.setattr(corruptions, "apply", flaky)
  with pytest.raises(KeyboardInterrupt):
    build(data_dir, tmp_path / "old", names=("stripe",), severities=(1, 2))
  assert sorted(os.listdir(tmp_path)) == ["old"]
  assert corrupted.read_manifest(str(tmp_path / "old")) == old
  corrupted.load(str(tmp_path / "old"), "rotate", 3)


def test_load_verifies(data_dir, tmp_path):
  out = tmp_path / "c"
  build(data_dir, out, names=("stripe",), severities=(2,))
  with pytest.raises(UserError, match="has no stripe at severity 3; it has 1 files"):
    corrupted.load(str(out), "stripe", 3)
  with pytest.raises(UserError, match="severity 7 is out of range"):
    corrupted.load(str(out), "stripe", 7)
  with pytest.raises(UserError, match="unknown corruption 'strip'"):
    corrupted.load(str(out), "strip", 2)
  path = out / "stripe" / "severity_2.npz"
  with open(path, "ab") as f:
    f.write(b"\0")
  with pytest.raises(UserError, match=r"SHA-256 .* the manifest says"):
    corrupted.load(str(out), "stripe", 2)
  (out / corrupted.MANIFEST).write_text("{not json")
  with pytest.raises(UserError, match="not a readable manifest"):
    corrupted.load(str(out), "stripe", 2)
  with pytest.raises(UserError, match=r"no corrupted-dataset build in .*manifest.json missing"):
    corrupted.read_manifest(str(tmp_path / "nothing"))
  (tmp_path / "junk").mkdir()
  (tmp_path / "junk" / "file.txt").write_text("x")
  with pytest.raises(UserError, match="manifest.json missing"):
    build(data_dir, tmp_path / "junk")  # a non-empty folder that is not a build


@pytest.mark.parametrize("kw, match", [
    ({"names": "shot_noise,fogg"}, "unknown corruption 'fogg'"),
    ({"names": ""}, "no corruptions given"),
    ({"severities": "1,6"}, "severity 6 is out of range"),
    ({"severities": "1,x"}, "comma-separated integers"),
    ({"severities": (2, 2)}, "names one twice"),
    ({"split": "validation"}, "unknown split 'validation'"),
    ({"seed": -1}, "seed must be a non-negative int"),
])
def test_bad_build_arguments(kw, match, data_dir, tmp_path):
  with pytest.raises(UserError, match=match):
    build(data_dir, tmp_path / "c", **kw)
  assert not os.path.exists(tmp_path / "c")
  with pytest.raises(UserError, match="unknown dataset 'kmnsit'"):
    corrupted.build("kmnsit", str(tmp_path / "c"))


def _script(*args, env_extra=None):
  env = dict(os.environ, **(env_extra or {}))
  return subprocess.run([sys.executable, os.path.join(REPO, "experiments", "make_corrupted.py"),
                         *args], capture_output=True, text=True, env=env, cwd=REPO)


def test_script_bad_flag_is_one_line(tmp_path):
  r = _script(f"--out={tmp_path / 'c'}", "--corruptions=shot_noise,zigzg", "--noprogress")
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1].startswith("error: unknown corruption 'zigzg'")
  assert [line for line in r.stderr.splitlines() if line.strip()] == [r.stderr.strip()]
  assert not os.path.exists(tmp_path / "c")


@pytest.mark.skipif(importlib.util.find_spec("tensorflow_datasets") is None
                    and not os.environ.get("CI"),
                    reason="needs the tfds extra (pip install -e '.[tfds]'); CI has it")
def test_script_then_tfds_load(data_dir, tmp_path, monkeypatch):
  """The build command with --tfds, then tfds.load of the prepared config and of a
  config prepared lazily from $KMNIST_JAX_CORRUPTED_DIR."""
  out, tfds_dir, png = tmp_path / "kmnist_c", tmp_path / "tfds", tmp_path / "grid.png"
  r = _script("--dataset=kmnist", f"--out={out}", "--corruptions=shot_noise,zigzag",
              "--severities=2,3", "--limit=40", f"--data_dir={data_dir}", "--tfds",
              f"--tfds_dir={tfds_dir}", f"--grid={png}", "--noprogress")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "TFDS: prepared 2 configs" in r.stdout
  from kmnist_jax import plots
  w, h = plots.png_size(str(png))
  assert w > 400 and h > 150

  import tensorflow_datasets as tfds

  from kmnist_jax.robustness import (
    tfds_builders as tfds_corrupted,  # registers the builders
  )
  assert tfds_corrupted.BUILDERS["kmnist"] == "kmnist_corrupted"
  monkeypatch.delenv(tfds_corrupted.DIR_ENV, raising=False)
  got = tfds.as_numpy(tfds.load("kmnist_corrupted/shot_noise", split="test",
                                data_dir=str(tfds_dir), batch_size=-1))
  images, labels = corrupted.load(str(out), "shot_noise", 3)
  order = np.argsort(got["index"])
  assert np.array_equal(got["image"][order, :, :, 0], images)
  assert np.array_equal(got["label"][order], labels)

  # Not prepared by --tfds: needs the build's folder.
  with pytest.raises(Exception, match="no corrupted kmnist build found"):
    tfds.load("kmnist_corrupted/zigzag_2", split="test", data_dir=str(tfds_dir))
  monkeypatch.setenv(tfds_corrupted.DIR_ENV, str(out))
  got = tfds.as_numpy(tfds.load("kmnist_corrupted/zigzag_2", split="test",
                                data_dir=str(tfds_dir), batch_size=-1))
  images, _ = corrupted.load(str(out), "zigzag", 2)
  assert np.array_equal(got["image"][np.argsort(got["index"]), :, :, 0], images)


def test_leftovers_of_a_killed_build_are_cleaned(data_dir, tmp_path):
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()  # a pid that no longer runs
  out = tmp_path / "c"
  build(data_dir, out, names=("stripe",), severities=(1,))
  os.rename(out, tmp_path / f".c.old-{dead.pid}")  # killed between the two renames
  (tmp_path / f".c.tmp-{dead.pid}" / "stripe").mkdir(parents=True)  # killed mid-build
  m = build(data_dir, out, names=("stripe",), severities=(1,))
  assert sorted(os.listdir(tmp_path)) == ["c"]
  assert m["files"]["stripe/severity_1.npz"]["count"] == LIMIT
