"""Lets `python experiments/<script>.py` import the library without installing it."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# XLA:CPU defaults (AVX-512 code for fused loops where the CPU has it), before JAX
# starts; the user's $XLA_FLAGS win.
from kmnist_jax import xla_cpu  # noqa: E402

xla_cpu.apply()


def compilation_cache(workdir: str) -> None:
  """JAX's persistent compilation cache in <workdir>/jax_cache (studies that run many
  same-shaped jobs, and resume, compile each once)."""
  import jax
  jax.config.update("jax_compilation_cache_dir",
                    os.path.join(os.path.abspath(workdir), "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
