"""Downloads against loopback HTTP servers on 127.0.0.1 (never the internet): the real
files from ../shared/data are fetched, verified and loaded; truncated, wrong, missing or
interrupted downloads are refused with one line and leave nothing behind."""

import contextlib
import functools
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from kmnist_jax import data, download
from kmnist_jax.errors import UserError


class _Quiet(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


class _Truncating(_Quiet):
  """Announces the full length, sends half, hangs up."""

  def do_GET(self):
    path = self.translate_path(self.path)
    if not os.path.isfile(path):
      return self.send_error(404)
    body = open(path, "rb").read()
    self.send_response(200)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(body[:len(body) // 2])
    self.wfile.flush()
    self.close_connection = True


class _Corrupting(_Quiet):
  """The right length, one byte flipped."""

  def do_GET(self):
    path = self.translate_path(self.path)
    if not os.path.isfile(path):
      return self.send_error(404)
    body = bytearray(open(path, "rb").read())
    body[len(body) // 2] ^= 0xFF
    self.send_response(200)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    self.wfile.write(bytes(body))


class _NoLength(_Quiet):
  """No Content-Length, the whole file then more bytes (a different, longer file)."""

  def do_GET(self):
    path = self.translate_path(self.path)
    body = open(path, "rb").read() + b"trailing"
    self.send_response(200)
    self.end_headers()
    self.wfile.write(body)
    self.close_connection = True


@contextlib.contextmanager
def serve(root, handler=_Quiet):
  """http://127.0.0.1:<port> serving the folder `root` in a thread."""
  srv = http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
  t = threading.Thread(target=srv.serve_forever, daemon=True)
  t.start()
  try:
    yield f"http://127.0.0.1:{srv.server_address[1]}"
  finally:
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def downloads_on(monkeypatch):
  monkeypatch.setenv(download.ENABLE_ENV, "1")
  monkeypatch.delenv(download.URL_ENV, raising=False)
  # The publishers' URLs must never be used here.
  monkeypatch.setattr(download, "MIRRORS", {k: ("http://127.0.0.1:9/",)
                                            for k in download.MIRRORS})


def _md5(path):
  return hashlib.md5(open(path, "rb").read()).hexdigest()


def test_files_source_downloads_verifies_and_loads(data_dir, tmp_path, monkeypatch,
                                                   downloads_on):
  """KMNIST (.npz + classmap) through data.load(source='files'), from an empty dir."""
  target = tmp_path / "data"
  with serve(data_dir) as url:
    monkeypatch.setenv(download.URL_ENV, url)
    ds = data.load("kmnist", data_dir=str(target), source="files",
                   limit={"train": 100, "test": 100})
  names = sorted(os.listdir(target / "kmnist"))
  assert names == ["kmnist-test-imgs.npz", "kmnist-test-labels.npz",
                   "kmnist-train-imgs.npz", "kmnist-train-labels.npz",
                   "kmnist_classmap.csv"]
  for n in names:  # byte-identical to the publisher's files
    assert _md5(target / "kmnist" / n) == _md5(os.path.join(data_dir, "kmnist", n))
  ref = data.load("kmnist", data_dir=data_dir, source="files",
                  limit={"train": 100, "test": 100})
  np.testing.assert_array_equal(ds.splits["train"].images, ref.splits["train"].images)
  # A second load downloads nothing (the server is gone).
  data.load("kmnist", data_dir=str(target), source="files", limit={"test": 10})


def test_auto_source_downloads_idx_without_tfds(data_dir, tmp_path, monkeypatch,
                                                downloads_on, capfd):
  """source='auto' with no files: the IDX files are downloaded, TFDS is not used."""
  target = tmp_path / "data"
  with serve(data_dir) as url:
    monkeypatch.setenv(download.URL_ENV, url)
    ds = data.load("mnist", data_dir=str(target), source="auto", limit={"test": 50})
  assert ds.source == "files"
  assert sorted(os.listdir(target / "mnist")) == sorted(
      f for f in os.listdir(os.path.join(data_dir, "mnist")))
  err = capfd.readouterr().err
  assert "Downloading mnist (4 files, 11.6 MB)" in err and url in err


def test_mirrors_tried_in_turn(data_dir, tmp_path, monkeypatch, downloads_on):
  """The first mirror 404s, the second serves the file; the folder gets it."""
  empty = tmp_path / "empty"
  empty.mkdir()
  with serve(empty) as bad, serve(data_dir) as good:
    monkeypatch.setattr(download, "MIRRORS",
                        {"kmnist": (f"{bad}/kmnist/", f"{good}/kmnist/")})
    folder = tmp_path / "d" / "kmnist"
    folder.mkdir(parents=True)
    md5, size = data.verify.MD5["kmnist/kmnist-test-labels.npz"]
    path = download.fetch_file("kmnist", "kmnist-test-labels.npz", str(folder), md5,
                               size, progress=False)
  assert os.listdir(folder) == ["kmnist-test-labels.npz"] and _md5(path) == md5


@pytest.mark.parametrize("handler,why", [
    (_Truncating, "truncated"),
    (_Corrupting, "md5 "),
    (_NoLength, "more than the expected"),
    (_Quiet, "HTTP 404"),
])
def test_bad_download_refused_nothing_kept(data_dir, tmp_path, monkeypatch, downloads_on,
                                           handler, why):
  target = tmp_path / "data"
  root = data_dir if handler is not _Quiet else tmp_path  # _Quiet here: 404 for all
  with serve(root, handler) as url:
    monkeypatch.setenv(download.URL_ENV, url)
    with pytest.raises(UserError) as e:
      data.load("kmnist", data_dir=str(target), source="files")
  msg = str(e.value)
  assert "\n" not in msg and why in msg, msg
  assert msg.startswith("could not download kmnist/") and "nothing was kept" in msg
  assert f"{url}/kmnist/" in msg
  assert os.listdir(target / "kmnist") == []  # no partial, no temporary file


def test_interrupted_download_leaves_nothing(data_dir, tmp_path, monkeypatch,
                                             downloads_on):
  """Ctrl-C in the middle of a file: the temporary file is removed."""

  class _Bar:
    def update(self, n):
      raise KeyboardInterrupt

    def close(self):
      pass

  monkeypatch.setattr(download, "_progress_bar", lambda *a: _Bar())
  folder = tmp_path / "kmnist"
  folder.mkdir()
  md5, size = data.verify.MD5["kmnist/kmnist-test-imgs.npz"]
  with serve(data_dir) as url:
    monkeypatch.setenv(download.URL_ENV, url)
    with pytest.raises(KeyboardInterrupt):
      download.fetch_file("kmnist", "kmnist-test-imgs.npz", str(folder), md5, size,
                          progress=True)
  assert os.listdir(folder) == []


def test_progress_bar_shown(data_dir, tmp_path, monkeypatch, downloads_on, capfd):
  folder = tmp_path / "mnist"
  folder.mkdir()
  md5, size = data.verify.MD5["mnist/t10k-labels-idx1-ubyte.gz"]
  with serve(data_dir) as url:
    monkeypatch.setenv(download.URL_ENV, url)
    download.fetch_file("mnist", "t10k-labels-idx1-ubyte.gz", str(folder), md5, size,
                        progress=True)
  err = capfd.readouterr().err
  assert "mnist/t10k-labels-idx1-ubyte.gz" in err and "4.44k" in err  # size, in the bar


def test_download_off_names_the_switch(tmp_path, monkeypatch):
  monkeypatch.setenv(download.ENABLE_ENV, "0")
  with pytest.raises(UserError) as e:
    data.load("kmnist", data_dir=str(tmp_path), source="files")
  msg = str(e.value)
  assert "\n" not in msg and "kmnist files not found" in msg
  assert f"downloading is off: ${download.ENABLE_ENV}=0" in msg
  assert not os.path.exists(tmp_path / "kmnist")


def test_unwritable_data_dir(tmp_path, monkeypatch, downloads_on):
  """A data dir that cannot be created (a file is in the way): one line, no traceback."""
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(UserError) as e:
    data.load("mnist", data_dir=str(blocker), source="files")
  assert "\n" not in str(e.value) and "cannot create" in str(e.value)


def test_urls_default_to_the_publishers():
  assert download.urls("kmnist", "kmnist-test-imgs.npz")[0] == (
      "https://codh.rois.ac.jp/kmnist/dataset/kmnist/kmnist-test-imgs.npz")
  assert download.urls("mnist", "x", base_url="http://h:1/")[0] == "http://h:1/mnist/x"
  # Every file a `files` load may fetch has a published md5 and size.
  for name, layouts in data.files.LAYOUTS.items():
    for f in (f for pair in layouts[0][1].values() for f in pair):
      assert f"{name}/{f}" in data.verify.MD5
    assert name in download.MIRRORS
