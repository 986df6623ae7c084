"""Tests for kmnist_jax.data: real-data loads, verification, carving, errors.

Real data comes from the `data_dir` fixture in conftest.py ($KMNIST_JAX_DATA_DIR,
else <repo>/../shared/data; tests needing it skip when neither exists, and fail
under CI). The real TFDS builds are marked `slow` (about 22-28 s per dataset on
2 cores).
"""

import gzip
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import types
import unicodedata

import numpy as np
import pytest

from kmnist_jax import data
from kmnist_jax.errors import UserError

# Class counts from SOURCES.md.
_COUNTS = {
    "mnist": {
        "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    },
    "kmnist": {"train": [6000] * 10, "test": [1000] * 10},
    "fashion_mnist": {"train": [6000] * 10, "test": [1000] * 10},
}
_IDX = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def kmnist_full(data_dir):
  return data.load("kmnist", data_dir=data_dir, source="files")


def _raises(fn, *parts):
  """Call fn, expect a one-line UserError whose message contains every part."""
  with pytest.raises(UserError) as e:
    fn()
  msg = str(e.value)
  assert "\n" not in msg, msg
  for p in parts:
    assert str(p) in msg, f"{p!r} not in {msg!r}"
  return msg


def _mirror(src_dir, dst_dir, names):
  """dst_dir/<name> -> symlinks to src_dir/<name> (cheap, read-only sources OK)."""
  os.makedirs(dst_dir, exist_ok=True)
  for n in names:
    os.symlink(os.path.join(src_dir, n), os.path.join(dst_dir, n))


# ---------------------------------------------------------------------------
# Real files.


@pytest.mark.parametrize("name", ["mnist", "kmnist", "fashion_mnist"])
def test_full_load_files(data_dir, name):
  ds = data.load(name, data_dir=data_dir, source="files")
  assert ds.source == "files"
  assert ds.info is data.get_info(name)
  assert set(ds.splits) == {"train", "test"}
  for split, n in (("train", 60000), ("test", 10000)):
    s = ds.splits[split]
    assert s.images.shape == (n, 28, 28) and s.images.dtype == np.uint8
    assert s.labels.shape == (n,) and s.labels.dtype == np.uint8
    assert s.images.flags.c_contiguous and s.labels.flags.c_contiguous
    np.testing.assert_array_equal(data.class_counts(s.labels, 10), _COUNTS[name][split])
  # Fingerprint table agrees with both fingerprint functions on the real data.
  for split in ("train", "test"):
    s = ds.splits[split]
    assert data.verify.FINGERPRINTS[(name, split)] == (
        data.fingerprint(s.images, s.labels), data.verify.multiset_fingerprint(s.images, s.labels))


def test_auto_prefers_files(data_dir):
  ds = data.load("mnist", data_dir=data_dir, limit={"train": 10, "test": 10})
  assert ds.source == "files"


def test_kmnist_npz_and_idx_identical(data_dir, kmnist_full, tmp_path):
  _mirror(os.path.join(data_dir, "kmnist"), tmp_path / "kmnist", _IDX)  # IDX only
  idx = data.load("kmnist", data_dir=str(tmp_path), source="files")
  for split in ("train", "test"):
    np.testing.assert_array_equal(idx.splits[split].images, kmnist_full.splits[split].images)
    np.testing.assert_array_equal(idx.splits[split].labels, kmnist_full.splits[split].labels)


def test_md5_cached_in_process(data_dir, kmnist_full):
  path = os.path.join(data_dir, "kmnist", "kmnist-train-imgs.npz")
  st = os.stat(path)
  assert data.verify.MD5_CACHE[(os.path.realpath(path), st.st_size, st.st_mtime_ns)] == \
      data.verify.MD5["kmnist/kmnist-train-imgs.npz"][0]


# ---------------------------------------------------------------------------
# Validation carve and limit.


def test_carve_indices_disjoint_sorted_deterministic():
  n = 1000
  idx = np.arange(n)
  tr, va = data.splits.carve_validation(idx, idx, 100, 3)
  tr2, va2 = data.splits.carve_validation(idx, idx, 100, 3)
  np.testing.assert_array_equal(va.labels, va2.labels)
  np.testing.assert_array_equal(tr.labels, tr2.labels)
  assert len(va.labels) == 100 and len(tr.labels) == 900
  assert not set(va.labels) & set(tr.labels)
  np.testing.assert_array_equal(np.sort(np.concatenate([tr.labels, va.labels])), idx)
  assert np.all(np.diff(tr.labels) > 0)  # remaining train keeps original order
  assert not np.all(np.diff(va.labels) > 0)  # validation in permutation order
  _, va3 = data.splits.carve_validation(idx, idx, 100, 4)
  assert not np.array_equal(va.labels, va3.labels)


def test_carve_pinned_indices():
  # Pins jax.random.permutation(jax.random.key(0), 60000): if this fails after a
  # JAX upgrade, validation splits (and so every validation metric) changed.
  idx = np.arange(60000)
  _, va = data.splits.carve_validation(idx, idx, 5, 0)
  np.testing.assert_array_equal(va.labels, [48820, 47051, 9095, 5778, 25367])


def test_validation_via_load(data_dir, kmnist_full):
  full = kmnist_full.splits["train"]
  a = data.load("kmnist", data_dir=data_dir, val_size=5000, val_seed=0)
  b = data.load("kmnist", data_dir=data_dir, val_size=5000, val_seed=0)
  c = data.load("kmnist", data_dir=data_dir, val_size=5000, val_seed=1)
  assert set(a.splits) == {"train", "validation", "test"}
  assert a.splits["train"].images.shape == (55000, 28, 28)
  assert a.splits["validation"].images.shape == (5000, 28, 28)
  assert a.splits["validation"].images.flags.c_contiguous
  np.testing.assert_array_equal(a.splits["validation"].images, b.splits["validation"].images)
  assert not np.array_equal(a.splits["validation"].images, c.splits["validation"].images)
  np.testing.assert_array_equal(a.splits["test"].images, kmnist_full.splits["test"].images)
  # Exactly the examples the index-level carve selects.
  idx = np.arange(60000)
  tr_idx, va_idx = data.splits.carve_validation(idx, idx, 5000, 0)
  np.testing.assert_array_equal(a.splits["validation"].images, full.images[va_idx.labels])
  np.testing.assert_array_equal(a.splits["validation"].labels, full.labels[va_idx.labels])
  np.testing.assert_array_equal(a.splits["train"].labels, full.labels[tr_idx.labels])


def test_limit(data_dir, kmnist_full):
  ds = data.load("kmnist", data_dir=data_dir, limit={"train": 2000, "test": 500})
  assert ds.splits["train"].images.shape == (2000, 28, 28)
  assert ds.splits["test"].labels.shape == (500,)
  np.testing.assert_array_equal(ds.splits["train"].images,
                                kmnist_full.splits["train"].images[:2000])
  np.testing.assert_array_equal(ds.splits["test"].labels,
                                kmnist_full.splits["test"].labels[:500])
  # Applied after carving: validation keeps the carve's first examples.
  v = data.load("kmnist", data_dir=data_dir, val_size=1000, limit={"validation": 10})
  v_full = data.load("kmnist", data_dir=data_dir, val_size=1000)
  np.testing.assert_array_equal(v.splits["validation"].images,
                                v_full.splits["validation"].images[:10])
  assert v.splits["train"].labels.shape == (59000,)
  big = data.load("kmnist", data_dir=data_dir, limit={"test": 10**9})
  assert big.splits["test"].labels.shape == (10000,)


# ---------------------------------------------------------------------------
# Info, class names, helpers.


def test_class_names_and_glyphs():
  k = data.get_info("kmnist")
  assert k.class_glyphs[0] == "お" and k.class_names[0] == "o"
  assert k.class_glyphs == tuple("おきすつなはまやれを")
  assert k.class_names == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
  assert data.get_info("mnist").class_names == tuple("0123456789")
  assert data.get_info("mnist").class_glyphs == tuple("0123456789")
  f = data.get_info("fashion_mnist")
  assert f.class_names[0] == "T-shirt/top" and f.class_glyphs == f.class_names
  k49 = data.get_info("k49")
  assert k49.num_classes == len(k49.class_names) == len(k49.class_glyphs) == 49
  assert not k49.balanced and k49.tfds_name is None
  for info in data.DATASETS.values():
    assert info.num_classes == len(info.class_names) == len(info.class_glyphs)
    assert len(set(info.class_names)) == info.num_classes
    assert all(n.isascii() for n in info.class_names)
    assert info.citation and info.license
  for g in data.DATASETS["kmnist"].class_glyphs + data.DATASETS["k49"].class_glyphs:
    assert unicodedata.name(g).startswith("HIRAGANA"), g
  assert "1812.01718" in k.citation and k.license == "CC BY-SA 4.0"


@pytest.mark.parametrize("name", ["kmnist", "k49"])
def test_builtin_glyph_tables_match_published_classmap_md5(name):
  # The publishers' classmap CSVs are "index,codepoint,char" rows; regenerating
  # them from our tables must give the published size and md5.
  glyphs = data.get_info(name).class_glyphs
  text = "index,codepoint,char\n" + "".join(
      f"{i},U+{ord(c):04X},{c}\n" for i, c in enumerate(glyphs))
  raw = text.encode("utf-8")
  md5, size = data.verify.MD5[f"{name}/{name}_classmap.csv"]
  assert (hashlib.md5(raw).hexdigest(), len(raw)) == (md5, size)


def test_classmap_checked(data_dir, tmp_path):
  src = os.path.join(data_dir, "kmnist")
  _mirror(src, tmp_path / "kmnist", _IDX)
  (tmp_path / "kmnist" / "kmnist_classmap.csv").write_text(
      "index,codepoint,char\n0,U+3042,あ\n", encoding="utf-8")
  _raises(lambda: data.load("kmnist", data_dir=str(tmp_path)), "kmnist_classmap.csv", "md5",
          data.verify.MD5["kmnist/kmnist_classmap.csv"][0])


def test_default_data_dir(monkeypatch):
  monkeypatch.setenv(data.DATA_DIR_ENV, "/some/where")
  assert data.default_data_dir() == "/some/where"
  monkeypatch.delenv(data.DATA_DIR_ENV)
  assert data.default_data_dir() == os.path.expanduser("~/kmnist_jax_data")


def test_import_does_not_start_jax():
  # Benchmark parents import kmnist_jax.data for data_dir and dataset facts and must
  # not import JAX; only the validation carve imports it, when called.
  code = ("import sys\nimport kmnist_jax.data\n"
          "assert 'jax' not in sys.modules, sorted(sys.modules)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr


def test_class_counts():
  np.testing.assert_array_equal(data.class_counts(np.array([0, 2, 2], np.uint8), 4),
                                [1, 0, 2, 0])
  _raises(lambda: data.class_counts(np.array([0, 5]), 3), "0..2")


# ---------------------------------------------------------------------------
# Bad inputs.


def test_unknown_dataset():
  _raises(lambda: data.get_info("kmnsit"), "kmnsit", "fashion_mnist, k49, kmnist, mnist")
  _raises(lambda: data.load("kmnsit"), "kmnsit", "kmnist")


def test_unknown_source(tmp_path):
  _raises(lambda: data.load("mnist", data_dir=str(tmp_path), source="web"),
          "'web'", "auto, files, tfds")


def test_missing_dir(tmp_path):
  missing = tmp_path / "nope"
  msg = _raises(lambda: data.load("kmnist", data_dir=str(missing), source="files"),
                os.path.join(str(missing), "kmnist"), "$KMNIST_JAX_DATA_DIR",
                "--config.data_dir", "kmnist-train-imgs.npz", "codh.rois.ac.jp",
                "source='tfds'")
  assert "does not exist" in msg
  _raises(lambda: data.load("mnist", data_dir=str(missing), source="files"),
          "yann.lecun.com", "t10k-labels-idx1-ubyte.gz")
  _raises(lambda: data.load("fashion_mnist", data_dir=str(missing), source="files"),
          "zalandoresearch/fashion-mnist")
  # K49 has no TFDS builder: auto and tfds both point at the files.
  msg = _raises(lambda: data.load("k49", data_dir=str(missing)),
                "k49-train-imgs.npz", "codh.rois.ac.jp/kmnist/dataset/k49")
  assert "source='tfds'" not in msg
  _raises(lambda: data.load("k49", data_dir=str(missing), source="tfds"),
          "no TFDS builder", "source='files'")


def test_partly_missing(data_dir, tmp_path):
  _mirror(os.path.join(data_dir, "mnist"), tmp_path / "mnist", _IDX[:3])
  _raises(lambda: data.load("mnist", data_dir=str(tmp_path)),  # auto -> files
          "some are missing", "t10k-labels-idx1-ubyte.gz")


def _mnist_with(data_dir, tmp_path, name, content):
  """tmp mnist folder: real files, except `name` replaced by `content`."""
  folder = tmp_path / "mnist"
  _mirror(os.path.join(data_dir, "mnist"), folder, [n for n in _IDX if n != name])
  (folder / name).write_bytes(content)
  return str(folder / name)


def _real(data_dir, name):
  with open(os.path.join(data_dir, "mnist", name), "rb") as f:
    return f.read()


def test_corrupted_file(data_dir, tmp_path):
  name = "t10k-labels-idx1-ubyte.gz"
  raw = bytearray(_real(data_dir, name))
  raw[len(raw) // 2] ^= 0x01
  path = _mnist_with(data_dir, tmp_path, name, bytes(raw))
  want = data.verify.MD5[f"mnist/{name}"][0]
  _raises(lambda: data.load("mnist", data_dir=str(tmp_path)), path,
          hashlib.md5(raw).hexdigest(), want, "corrupt", "re-download")


def test_truncated_file(data_dir, tmp_path):
  name = "t10k-images-idx3-ubyte.gz"
  raw = _real(data_dir, name)[:-1000]
  path = _mnist_with(data_dir, tmp_path, name, raw)
  _raises(lambda: data.load("mnist", data_dir=str(tmp_path)), path,
          hashlib.md5(raw).hexdigest(), data.verify.MD5[f"mnist/{name}"][0])


def test_truncated_idx_without_md5(data_dir, tmp_path, monkeypatch):
  # Structural checks catch what the md5 table would, had it no entry.
  name = "t10k-images-idx3-ubyte.gz"
  monkeypatch.delitem(data.verify.MD5, f"mnist/{name}")
  raw = gzip.decompress(_real(data_dir, name))
  path = _mnist_with(data_dir, tmp_path, name, gzip.compress(raw[:-100], compresslevel=1))
  _raises(lambda: data.load("mnist", data_dir=str(tmp_path)), path, "truncated",
          str(len(raw) - 100), str(len(raw)))
  os.remove(path)
  with open(path, "wb") as f:  # gzip stream cut short
    f.write(_real(data_dir, name)[:-1000])
  _raises(lambda: data.load("mnist", data_dir=str(tmp_path)), path, "gzip")
  os.remove(path)
  with open(path, "wb") as f:  # labels file where images belong
    f.write(gzip.compress(b"\x00\x00\x08\x01" + (10000).to_bytes(4, "big") + bytes(10000)))
  _raises(lambda: data.load("mnist", data_dir=str(tmp_path)), path, "magic 2049",
          "expected 2051")


def test_fingerprint_mismatch(data_dir, monkeypatch):
  monkeypatch.setitem(data.verify.FINGERPRINTS, ("mnist", "test"), ("0" * 64, "0" * 64))
  _raises(lambda: data.load("mnist", data_dir=data_dir), "fingerprint", "0" * 64)


@pytest.mark.parametrize("kwargs, parts", [
    (dict(val_size=-1), ["val_size -1", "59999"]),
    (dict(val_size=60000), ["val_size 60000", "59999"]),
    (dict(val_size=1.5), ["val_size must be an int"]),
    (dict(val_size=True), ["val_size must be an int"]),
    (dict(val_seed="0"), ["val_seed must be an int"]),
    (dict(limit={"valid": 5}), ["'valid'", "test, train"]),
    (dict(limit={"validation": 5}), ["'validation'", "test, train"]),
    (dict(limit={"train": 0}), ["limit['train']", "positive"]),
    (dict(limit=[1]), ["limit must be a dict"]),
])
def test_bad_arguments(tmp_path, kwargs, parts):
  # Argument errors come before any file access (tmp_path has no data).
  _raises(lambda: data.load("kmnist", data_dir=str(tmp_path), **kwargs), *parts)


# ---------------------------------------------------------------------------
# TFDS path with a stand-in tensorflow_datasets (fast), then the real one (slow).


def _fake_tfds(monkeypatch, splits=None, error=None, prepared=True):
  """Install a stand-in tensorflow_datasets returning `splits` ({split: (img, lab)})."""
  calls = []

  class Builder:
    URL = "http://example.invalid/"  # RFC 6761: never resolves

    def __init__(self, name, data_dir):
      calls.append(("builder", name, data_dir))

    def is_prepared(self):
      return prepared

    def download_and_prepare(self, **kwargs):
      calls.append(("download_and_prepare", kwargs))

    def as_dataset(self, split, batch_size):
      assert batch_size == -1
      if error is not None:
        raise error
      images, labels = splits[split]
      return {"image": images[..., None], "label": labels.astype(np.int64)}

  mod = types.ModuleType("tensorflow_datasets")
  mod.builder = Builder
  mod.as_numpy = lambda x: x
  mod.download = types.SimpleNamespace(DownloadConfig=None)
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", mod)
  return calls


def _tfds_order(split, images, labels):
  order = data.tfds_source.file_order(split, len(labels))
  return images[order], labels[order]


def test_fake_tfds_order_is_restored(kmnist_full, tmp_path, monkeypatch):
  splits = {s: _tfds_order(s, v.images, v.labels) for s, v in kmnist_full.splits.items()}
  calls = _fake_tfds(monkeypatch, splits)
  ds = data.load("kmnist", data_dir=str(tmp_path))  # auto: no files -> tfds
  assert ds.source == "tfds"
  # Default tfds dir: TFDS' own ($TFDS_DATA_DIR, a temp dir in tests), never data_dir.
  assert calls == [("builder", "kmnist", os.environ["TFDS_DATA_DIR"])]
  for s in ("train", "test"):
    np.testing.assert_array_equal(ds.splits[s].images, kmnist_full.splits[s].images)
    np.testing.assert_array_equal(ds.splits[s].labels, kmnist_full.splits[s].labels)


def test_fake_tfds_unknown_order_verified_by_multiset(kmnist_full, tmp_path, monkeypatch):
  splits = {s: (v.images[::-1], v.labels[::-1]) for s, v in kmnist_full.splits.items()}
  _fake_tfds(monkeypatch, splits)
  with pytest.warns(UserWarning, match="content verified"):
    ds = data.load("kmnist", data_dir=str(tmp_path), source="tfds", tfds_dir=str(tmp_path))
  np.testing.assert_array_equal(ds.splits["test"].labels, kmnist_full.splits["test"].labels[::-1])


def test_fake_tfds_wrong_content(kmnist_full, tmp_path, monkeypatch):
  # E.g. a TFDS 'mnist' built from kmnist's extracted files.
  splits = {s: _tfds_order(s, v.images, v.labels) for s, v in kmnist_full.splits.items()}
  _fake_tfds(monkeypatch, splits)
  _raises(lambda: data.load("mnist", data_dir=str(tmp_path), source="tfds"),
          "TFDS mnist train", "does not hold the published data",
          data.verify.FINGERPRINTS[("mnist", "train")][1])


def test_fake_tfds_failure_wrapped(tmp_path, monkeypatch):
  _fake_tfds(monkeypatch, error=RuntimeError("no route to host\nsecond line"))
  _raises(lambda: data.load("kmnist", data_dir=str(tmp_path), source="tfds"),
          "TFDS could not build/read kmnist", "RuntimeError: no route to host second line",
          str(tmp_path / "kmnist"))
  # auto: says both that the files are missing and why TFDS failed.
  _raises(lambda: data.load("kmnist", data_dir=str(tmp_path)),
          "kmnist files not found", "TFDS fallback failed too", "no route to host")


_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
               "ALL_PROXY")


def test_fake_tfds_offline_fails_fast(tmp_path, monkeypatch):
  # Without IDX files TFDS would download, retrying for minutes when offline;
  # an unreachable host is reported at once instead.
  for v in _PROXY_VARS:
    monkeypatch.delenv(v, raising=False)
  calls = _fake_tfds(monkeypatch, prepared=False)
  _raises(lambda: data.load("kmnist", data_dir=str(tmp_path), source="tfds"),
          "TFDS must download kmnist", "example.invalid:80 cannot be reached",
          str(tmp_path / "kmnist"))
  assert not [c for c in calls if c[0] == "download_and_prepare"]
  msg = _raises(lambda: data.load("kmnist", data_dir=str(tmp_path)),
                "kmnist files not found", "the TFDS fallback failed too")
  assert "use source='tfds'" not in msg


def test_tfds_not_installed(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import -> ImportError
  _raises(lambda: data.load("mnist", data_dir=str(tmp_path), source="tfds"),
          "needs tensorflow-datasets", "source='files'")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow_datasets") is None
                    and not os.environ.get("CI"),
                    reason="needs the tfds extra (pip install -e '.[tfds]'); CI has it")
@pytest.mark.parametrize("name", ["kmnist", "mnist"])
def test_real_tfds_offline_build_equals_files(data_dir, tmp_path, name):
  manual = tmp_path / "data" / name  # TFDS manual_dir: the IDX files only
  _mirror(os.path.join(data_dir, name), manual, _IDX)
  tfds_dir = tmp_path / "tfds"
  got = data.load(name, data_dir=str(tmp_path / "data"), source="tfds", tfds_dir=str(tfds_dir))
  assert got.source == "tfds"
  assert os.path.isdir(tfds_dir / "downloads" / name)  # per-dataset download dir
  want = data.load(name, data_dir=data_dir, source="files")
  for s in ("train", "test"):
    np.testing.assert_array_equal(got.splits[s].images, want.splits[s].images)
    np.testing.assert_array_equal(got.splits[s].labels, want.splits[s].labels)
  shutil.rmtree(tfds_dir)
