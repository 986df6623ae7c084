"""Imported first by every experiments/ script: XLA:CPU defaults before JAX starts, and
the compilation-cache helper. The package itself comes from the installation
(`pip install -e .`, see docs/install.md); nothing here touches sys.path."""

import os

# XLA:CPU defaults (AVX-512 code for fused loops where the CPU has it), before JAX
# starts; the user's $XLA_FLAGS win.
try:
  from kmnist_jax import xla_cpu
except ModuleNotFoundError as e:  # run from a checkout that was never installed
  if e.name != "kmnist_jax":
    raise
  import sys
  print("error: the kmnist_jax package is not installed in this Python "
        f"({sys.executable}); run `pip install -e .` in the repository (docs/install.md)",
        file=sys.stderr)
  sys.exit(2)

xla_cpu.apply()


def compilation_cache(workdir: str) -> None:
  """JAX's persistent compilation cache in <workdir>/jax_cache (studies that run many
  same-shaped jobs, and resume, compile each once)."""
  import jax
  jax.config.update("jax_compilation_cache_dir",
                    os.path.join(os.path.abspath(workdir), "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
