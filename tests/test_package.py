"""The package: metadata (light default dependencies, extras, console scripts), the lock,
the wheel's contents, the console script training with self-downloading data (loopback
server, never the internet), and no TensorFlow on the default import paths."""

from __future__ import annotations

import glob
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

from packaging.requirements import Requirement

from kmnist_jax import cli
from tests.test_download import serve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = tomllib.load(open(os.path.join(REPO, "pyproject.toml"), "rb"))["project"]
HEAVY = ("tensorflow", "tensorflow-cpu", "tensorflow-datasets", "clu", "torch",
         "jax-cuda13-plugin")


def _name(r: Requirement) -> str:
  return re.sub(r"[-_.]+", "-", r.name).lower()


def _lock(path: str) -> dict[str, str]:
  out = {}
  for line in open(os.path.join(REPO, path)):
    line = line.split("#")[0].strip()
    if line:
      name, version = line.split("==")
      out[re.sub(r"[-_.]+", "-", name).lower()] = version
  return out


def test_default_install_is_light_and_extras_exist():
  deps = [Requirement(d) for d in PYPROJECT["dependencies"]]
  assert not [d for d in deps if _name(d) in HEAVY]
  extras = PYPROJECT["optional-dependencies"]
  assert set(extras) >= {"tfds", "embed", "notebook", "dev", "cuda", "tpu"}
  assert {_name(Requirement(r)) for r in extras["tfds"]} >= {"tensorflow-cpu",
                                                              "tensorflow-datasets"}
  assert not [r for r in extras["dev"] if _name(Requirement(r)) in HEAVY]  # torch-free
  # The CUDA / TPU extras are jax's own, at the pinned jax version.
  (jax,) = [d for d in deps if _name(d) == "jax"]
  (pin,) = [s.version for s in jax.specifier if s.operator == "=="]
  assert extras["cuda"] == [f"jax[cuda13]=={pin}"]
  assert extras["tpu"] == [f"jax[tpu]=={pin}"]


def test_lock_files_agree_with_pyproject():
  """constraints.txt pins every requirement of every installable extra, satisfying the
  pyproject specifiers; requirements.txt is the default + dev subset, same versions,
  without TensorFlow."""
  full, light = _lock("constraints.txt"), _lock("requirements.txt")
  extras = PYPROJECT["optional-dependencies"]
  reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
  for extra in ("tfds", "embed", "notebook", "dev"):
    reqs += [Requirement(r) for r in extras[extra]]
  for r in reqs:
    assert _name(r) in full, r
    assert r.specifier.contains(full[_name(r)], prereleases=True), (r, full[_name(r)])
  for r in [Requirement(x) for x in PYPROJECT["dependencies"] + extras["dev"]]:
    assert _name(r) in light, r
  assert all(full[k] == v for k, v in light.items())
  assert not set(light) & set(HEAVY)


def test_console_scripts_run_the_experiment_scripts():
  scripts = PYPROJECT["scripts"]
  assert {f"kmnist-{n.replace('_', '-')}" for n in cli.SCRIPTS} == set(scripts)
  for name, target in scripts.items():
    module, func = target.split(":")
    assert module == "kmnist_jax.cli" and callable(getattr(cli, func))
    path = cli.script_path(func)
    assert os.path.isfile(path), f"{name} runs {path}, which does not exist"
  assert cli.experiments_dir() == os.path.join(REPO, "experiments")


def test_unknown_script_and_missing_package_are_one_line_errors(tmp_path):
  out = subprocess.run(
      [sys.executable, "-c", "from kmnist_jax import cli; cli.exec_script('nope')"],
      capture_output=True, text=True, timeout=60)
  assert out.returncode == 2 and out.stderr.startswith("error: unknown script 'nope'")
  # A Python without the package installed (-S: no site-packages): the script says how
  # to install it instead of a traceback; nothing puts the checkout on sys.path.
  out = subprocess.run(
      [sys.executable, "-S", os.path.join(REPO, "experiments", "train.py")],
      capture_output=True, text=True, timeout=60, cwd=tmp_path)
  assert out.returncode == 2, out.stderr
  assert out.stderr.startswith("error: the kmnist_jax package is not installed")
  assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def build_wheel(out) -> str:
  """The wheel of this checkout, built offline from a copy (setuptools writes build/
  beside the sources: never into the checkout, which other tests read)."""
  src = os.path.join(str(out), "src")
  skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
  os.makedirs(src)
  for f in ("pyproject.toml", "setup.py", "LICENSE", "README.md"):
    shutil.copy(os.path.join(REPO, f), src)
  for d in ("kmnist_jax", "experiments"):
    shutil.copytree(os.path.join(REPO, d), os.path.join(src, d), ignore=skip)
  subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "--no-build-isolation", "--no-index", "-w", str(out), src],
                 check=True, capture_output=True, timeout=300)
  (whl,) = glob.glob(os.path.join(str(out), "kmnist_jax-*.whl"))
  return whl


def test_wheel_ships_package_scripts_and_configs(tmp_path):
  whl = build_wheel(tmp_path)
  names = set(zipfile.ZipFile(whl).namelist())
  for f in ("kmnist_jax/train.py", "kmnist_jax/download.py", "kmnist_jax/tensorboard.py",
            "kmnist_jax/plots/__init__.py", "kmnist_jax/experiments/train.py",
            "kmnist_jax/experiments/_bootstrap.py",
            "kmnist_jax/experiments/configs/kmnist_cnn.py"):
    assert f in names, f
  assert not [n for n in names if n.startswith(("tests/", "experiments/", "benchmarks/"))]
  assert not [n for n in names if "__pycache__" in n]
  meta = zipfile.ZipFile(whl).read(
      next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
  assert "License-Expression: Apache-2.0" in meta
  required = [line for line in meta.splitlines()
              if line.startswith("Requires-Dist:") and "extra ==" not in line]
  assert required and not [r for r in required if re.search(r"tensorflow|clu|torch", r)]
  entry = zipfile.ZipFile(whl).read(
      next(n for n in names if n.endswith("entry_points.txt"))).decode()
  assert "kmnist-train = kmnist_jax.cli:train" in entry


def test_default_import_paths_load_no_tensorflow():
  code = ("import sys\n"
          "import kmnist_jax.train, kmnist_jax.data, kmnist_jax.download\n"
          "import kmnist_jax.cli\n"
          "import kmnist_jax.tensorboard, kmnist_jax.plots, kmnist_jax.io\n"
          "bad = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'clu',\n"
          "             'tensorflow_datasets', 'torch'})\n"
          "assert not bad, bad\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
  assert out.returncode == 0, out.stderr


def test_console_script_trains_with_downloaded_data(data_dir, tmp_path, monkeypatch):
  """README command 1 as a new user runs it: the console script, no data folder, the
  data downloaded (from a loopback server standing in for the publisher), a report."""
  md.version("kmnist-jax")  # the package is installed (pip install -e .)
  exe = os.path.join(os.path.dirname(sys.executable), "kmnist-train")
  assert os.path.isfile(exe), f"{exe}: console script not installed"
  workdir, data = tmp_path / "run", tmp_path / "data"
  with serve(data_dir) as url:
    env = dict(os.environ, KMNIST_JAX_DATA_URL=url, KMNIST_JAX_DOWNLOAD="1",
               KMNIST_JAX_DATA_DIR=str(data), XLA_FLAGS="")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    out = subprocess.run(
        [exe, "--config", os.path.join(REPO, "experiments", "configs", "mnist_logreg.py"),
         "--workdir", str(workdir), "--config.num_epochs=1", "--config.train_limit=2048",
         "--config.test_limit=500", "--config.val_size=256", "--config.progress=False"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "Downloading mnist (4 files, 11.6 MB)" in out.stderr
  assert "Test accuracy" in out.stdout + out.stderr
  assert sorted(os.listdir(data / "mnist")) == sorted(os.listdir(os.path.join(data_dir,
                                                                              "mnist")))
  # No TensorFlow / oneDNN / absl-C++ log lines at start.
  noise = [line for line in out.stderr.splitlines()
           if re.search(r"oneDNN|tensorflow|cuda_|absl::InitializeLog|TF_ENABLE", line)]
  assert not noise, noise
  res = json.load(open(workdir / "results.json"))
  assert res["config"]["dataset"] == "mnist" and res["env"]["command"]
  assert (workdir / "config.json").is_file() and (workdir / "env.json").is_file()
  assert glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))


def test_license_and_citation():
  assert PYPROJECT["license"] == "Apache-2.0"
  text = open(os.path.join(REPO, "LICENSE")).read()
  assert "Apache License" in text and "Version 2.0, January 2004" in text
  cff = open(os.path.join(REPO, "CITATION.cff")).read()
  assert "cff-version: 1.2.0" in cff and "license: Apache-2.0" in cff
  for title in ("Deep Learning for Classical Japanese Literature",
                "MNIST-C: A Robustness Benchmark for Computer Vision"):
    assert f'title: "{title}"' in cff
  bib = open(os.path.join(REPO, "docs", "citation.md")).read()
  assert "@online{clanuwat2018deep," in bib and "@article{mu2019mnist," in bib
