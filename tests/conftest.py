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

# JAX's persistent compilation cache, one per xdist worker and test session (one per
# worker: without a size limit JAX writes entries unlocked, so workers must not share).
# Many tests train the same tiny configs, and each run builds fresh jitted functions, so
# without it every run compiles again. Results are the same with or without it (the
# determinism and resume tests compare numbers, which a cached executable reproduces);
# KMNIST_JAX_TEST_JIT_CACHE=0 turns it off.
# Set in jax.config, not the environment: subprocesses (the scripts' tests) keep their own
# (tiny_runs.jit_cache_env gives a file's scripts one where they rerun the same config).
if os.environ.get("KMNIST_JAX_TEST_JIT_CACHE", "1") != "0":
  import jax  # noqa: E402
  jax.config.update("jax_compilation_cache_dir",
                    tempfile.mkdtemp(prefix="kmnist_jax_test_jit_cache_"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

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
