"""launch/colab.ipynb end to end, install cell included, with no network: the wheel is
built here from the checkout (offline), the notebook's kernel runs in a fresh venv where
kmnist_jax is NOT importable (its dependencies are, through a .pth onto this venv's
site-packages), the install cell pip-installs the wheel (--no-deps --no-index), the data
cell downloads KMNIST from a loopback server serving ../shared/data, then training on
the CPU at reduced size (KMNIST_JAX_NOTEBOOK_SMALL=1), TensorBoard logs and analysis."""

from __future__ import annotations

import glob
import json
import os
import site
import subprocess
import venv

import pytest

if not os.environ.get("CI"):  # CI installs the notebook extra: there this must not skip
  pytest.importorskip("nbclient",
                      reason="needs the notebook extra (pip install -e '.[notebook]')")
import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from tests.test_download import serve
from tests.test_package import build_wheel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "launch", "colab.ipynb")


def test_notebook_is_stored_clean():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code)
  assert "parameters" in code[0].metadata.get("tags", [])
  assert nb.metadata.kernelspec.name == "python3"
  src = "\n".join(c.source for c in code)
  # Nothing pins over Colab's packages, nothing reaches into experiments/ or sys.path.
  assert "requirements.txt" not in src and "constraints" not in src
  assert "sys.path" not in src and "import analyze" not in src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  return build_wheel(tmp_path_factory.mktemp("wheel"))


def _kernel_venv(root) -> str:
  """A venv without kmnist_jax whose Python sees this venv's packages (not its .pth
  files, so not the editable kmnist_jax), registered as the Jupyter kernel 'nbtest'."""
  env_dir = root / "venv"
  venv.EnvBuilder(with_pip=False).create(env_dir)
  py = str(env_dir / "bin" / "python")
  purelib = subprocess.run(
      [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
      check=True, capture_output=True, text=True).stdout.strip()
  with open(os.path.join(purelib, "_outer_venv.pth"), "w") as f:
    f.write("\n".join(site.getsitepackages()) + "\n")
  spec = root / "jupyter" / "kernels" / "nbtest"
  spec.mkdir(parents=True)
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [py, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "nbtest", "language": "python"}))
  check = subprocess.run([py, "-c", "import kmnist_jax"], capture_output=True, cwd=root)
  assert check.returncode != 0, "kmnist_jax must not be importable before the install"
  return purelib


@pytest.mark.slow  # about 50 s on 2 cores: builds a wheel, a venv, a kernel
def test_notebook_runs_end_to_end(data_dir, wheel, tmp_path, monkeypatch):
  purelib = _kernel_venv(tmp_path)
  workdir, data = tmp_path / "run", tmp_path / "data"
  run_dir = tmp_path / "nb"
  run_dir.mkdir()
  for k, v in {"KMNIST_JAX_NOTEBOOK_SMALL": "1",
               "KMNIST_JAX_NOTEBOOK_WORKDIR": str(workdir),
               "KMNIST_JAX_DATA_DIR": str(data), "KMNIST_JAX_DOWNLOAD": "1",
               "KMNIST_JAX_NOTEBOOK_SOURCE": wheel,
               "KMNIST_JAX_NOTEBOOK_PIP_ARGS": "--no-deps --no-index",
               "JUPYTER_PATH": str(tmp_path / "jupyter"), "PYTHONPATH": "",
               "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
               "MPLBACKEND": "module://matplotlib_inline.backend_inline"}.items():
    monkeypatch.setenv(k, v)
  nb = nbformat.read(NOTEBOOK, as_version=4)
  with serve(data_dir) as url:
    monkeypatch.setenv("KMNIST_JAX_DATA_URL", url)
    # From a folder that is not a checkout, as on Colab.
    NotebookClient(nb, timeout=300, kernel_name="nbtest",
                   resources={"metadata": {"path": str(run_dir)}}).execute()

  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  # The install cell installed the wheel into the kernel's venv, no restart needed.
  assert "$ pip install --no-deps --no-index kmnist-jax @ file://" in text
  assert "installed kmnist-jax 0.1.0; no restart needed" in text
  assert glob.glob(os.path.join(purelib, "kmnist_jax", "experiments", "configs",
                                "kmnist_cnn.py"))
  assert "accelerator found: cpu" in text and "backend: cpu, 2 device(s)" in text
  # The data cell downloaded KMNIST from the loopback server.
  assert "Downloading kmnist (5 files" in text
  assert sorted(os.listdir(data / "kmnist")) == sorted(
      f for f in os.listdir(os.path.join(data_dir, "kmnist"))
      if f.endswith((".npz", ".csv")))
  assert "test accuracy" in text and "on cpu" in text
  assert "TensorBoard logs:" in text and "(1 event file(s))" in text
  # Samples, confusion heatmap and mistakes grid are shown as images.
  images = [o for o in outputs if o.output_type in ("display_data", "execute_result")
            and "image/png" in o.get("data", {})]
  assert len(images) >= 3, [o.output_type for o in outputs]
  tables = [o for o in outputs if "text/markdown" in o.get("data", {})]
  assert tables and "most confused pair" in tables[0].data["text/markdown"]
  res = json.load(open(workdir / "results.json"))
  assert res["epochs"] == 1 and res["test_accuracy"] > 0.2   # chance: 0.1
  assert res["config"]["dataset"] == "kmnist" and "versions" in res["env"]
  for f in ("confusion.png", "mistakes.png"):
    assert (workdir / "notebook" / f).stat().st_size > 0, f
