"""launch/colab.ipynb end to end: executed with nbclient on the CPU at reduced size
(KMNIST_JAX_NOTEBOOK_SMALL=1, no install), on real data."""

from __future__ import annotations

import json
import os

import nbformat
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "launch", "colab.ipynb")


def test_notebook_is_stored_clean():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(not c.outputs and c.execution_count is None for c in code)
  assert "parameters" in code[0].metadata.get("tags", [])
  assert nb.metadata.kernelspec.name == "python3"


def test_notebook_runs_end_to_end(data_dir, tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  monkeypatch.setenv("KMNIST_JAX_NOTEBOOK_SMALL", "1")
  monkeypatch.setenv("KMNIST_JAX_SKIP_INSTALL", "1")
  monkeypatch.setenv("KMNIST_JAX_NOTEBOOK_WORKDIR", str(workdir))
  monkeypatch.setenv("KMNIST_JAX_DATA_DIR", data_dir)
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  # Runs from launch/, as Jupyter would when the notebook is opened there.
  NotebookClient(nb, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(REPO, "launch")}}).execute()

  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "install skipped (KMNIST_JAX_SKIP_INSTALL=1)" in text
  assert "backend: cpu, 2 device(s)" in text
  assert "test accuracy" in text and "on cpu" in text
  # Samples, confusion heatmap and mistakes grid are shown as images.
  images = [o for o in outputs if o.output_type in ("display_data", "execute_result")
            and "image/png" in o.get("data", {})]
  assert len(images) >= 3, [o.output_type for o in outputs]
  tables = [o for o in outputs if "text/markdown" in o.get("data", {})]
  assert tables and "most confused pair" in tables[0].data["text/markdown"]
  res = json.load(open(workdir / "results.json"))
  assert res["epochs"] == 1 and res["test_accuracy"] > 0.2   # chance: 0.1
  for f in ("confusion.png", "confused_pairs.png", "report.md", "metrics.json"):
    assert (workdir / "analysis" / f).stat().st_size > 0, f
