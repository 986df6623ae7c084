"""Test set-up: 8 fake CPU devices (pmap / sharded tests) and the real data dir."""

import os
import tempfile

# Before jax is imported anywhere: 8 CPU devices for the parallelism tests.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TFDS builds go to a temporary dir, never into the (read-only) data folder or ~.
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="kmnist_jax_tfds_")
# Missing data files are an error, never a download (tests reach no network; the download
# tests turn it on against a loopback server).
os.environ["KMNIST_JAX_DOWNLOAD"] = "0"
os.environ.pop("KMNIST_JAX_DATA_URL", None)

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def real_data_dir() -> str | None:
  """$KMNIST_JAX_DATA_DIR, else ../shared/data beside the repo; None if neither."""
  for d in (os.environ.get("KMNIST_JAX_DATA_DIR"),
            os.path.join(REPO, "..", "shared", "data")):
    if d and os.path.isdir(d):
      return os.path.abspath(d)
  return None


@pytest.fixture(scope="session")
def data_dir() -> str:
  d = real_data_dir()
  if d is None:
    if os.environ.get("CI"):
      pytest.fail("CI must set KMNIST_JAX_DATA_DIR to the datasets folder")
    pytest.skip("real data not found: set KMNIST_JAX_DATA_DIR to the datasets folder")
  return d
