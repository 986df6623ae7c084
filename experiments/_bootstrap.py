"""Imported first by every experiments/ script: XLA:CPU defaults before JAX starts
(the study runner sets up JAX's compilation cache itself). The package itself comes from the installation
(`pip install -e .`, see docs/install.md); nothing here touches sys.path."""

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

