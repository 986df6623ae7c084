"""kmnist_jax.io: the one JSON writer, atomic files and folders, run metadata."""

import json
import os

import numpy as np
import pytest

from kmnist_jax import io


def test_dumps_json_is_strict_and_rows_are_one_line():
  obj = {"acc": np.float32(0.5), "nan": float("nan"), "n": np.int64(3),
         "confusion": np.array([[5, 1], [2, 7]]), "ok": np.bool_(True), "t": (1, 2)}
  text = io.dumps_json(obj)
  assert json.loads(text) == {"acc": 0.5, "nan": None, "n": 3, "confusion": [[5, 1], [2, 7]],
                              "ok": True, "t": [1, 2]}
  assert "[5, 1]" in text and "[2, 7]" in text  # each confusion row on one line
  assert "NaN" not in text


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
  p = tmp_path / "a.txt"
  io.atomic_write(p, "old")
  with pytest.raises(RuntimeError):
    with io.atomic_path(p) as tmp:
      with open(tmp, "w") as f:
        f.write("half")
      raise RuntimeError("disk full")
  assert p.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.txt"]
  io.write_json(p, {"x": 1})
  assert io.read_json(p) == {"x": 1} and sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
  out = tmp_path / "report"
  with io.atomic_dir(out) as d:
    open(os.path.join(d, "one"), "w").close()
  with pytest.raises(KeyboardInterrupt):
    with io.atomic_dir(out) as d:
      open(os.path.join(d, "two"), "w").close()
      raise KeyboardInterrupt
  assert os.listdir(out) == ["one"] and sorted(os.listdir(tmp_path)) == ["report"]
  with io.atomic_dir(out) as d:
    open(os.path.join(d, "three"), "w").close()
  assert os.listdir(out) == ["three"]


def test_recover_dir_puts_back_an_old_folder_of_a_killed_writer(tmp_path):
  out = tmp_path / "report"
  old = tmp_path / ".report.old-999999999"  # a pid that does not run
  tmp = tmp_path / ".report.tmp-999999999"
  old.mkdir()
  (old / "kept").write_text("x")
  tmp.mkdir()
  io.recover_dir(out)
  assert os.listdir(out) == ["kept"] and sorted(os.listdir(tmp_path)) == ["report"]


def test_run_meta_names_versions_host_and_commit():
  meta = io.run_meta(devices=False)
  assert {"time_utc", "command", "host", "cpu", "versions"} <= set(meta)
  assert meta["versions"]["numpy"] == np.__version__
  if "git" in meta:
    assert len(meta["git"]["commit"]) == 40


def test_is_disk_full_follows_the_cause_chain():
  import errno
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as e:
      raise RuntimeError("save failed") from e
  except RuntimeError as e:
    assert io.is_disk_full(e)
  assert not io.is_disk_full(OSError(errno.EACCES, "Permission denied"))


@pytest.mark.parametrize("vendor,family,model,flags,want", [
    ("AuthenticAMD", 25, 1, "fma avx2", "AMD EPYC (family 25, model 1: Zen 3; AVX2, no AVX-512)"),
    ("AuthenticAMD", 25, 17, "avx2 avx512f avx512_bf16",
     "AMD EPYC (family 25, model 17: Zen 4; AVX-512)"),
    ("GenuineIntel", 6, 143, "avx2 avx512f", "AMD EPYC (family 6, model 143; AVX-512)"),
])
def test_cpu_model_names_the_kind_of_cpu(tmp_path, vendor, family, model, flags, want):
  f = tmp_path / "cpuinfo"
  f.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
               f"model\t\t: {model}\nmodel name\t: AMD EPYC\nflags\t\t: fpu {flags}\n\n"
               "processor\t: 1\n")
  assert io.cpu_model(str(f)) == want
  assert io.cpu_model(str(tmp_path / "missing"))          # falls back, never raises
