"""XLA:CPU flags this project sets by default (before JAX starts its CPU backend).

``--xla_force_host_platform_device_count=2`` on a machine with >= 2 usable cores: two
CPU devices, over which training's ``parallel='auto'`` runs pmap (Intel, AMD Zen 4) or
sharded (AMD without AVX-512: Zen 3): faster than one device, or equal, on each of this
project's 2-core CPU kinds (see kmnist_jax.parallel).

``--xla_cpu_prefer_vector_width=512`` lets XLA:CPU emit AVX-512 code for its fused
elementwise / reduction loops where the CPU has AVX-512 (it emits 256-bit vectors
otherwise). Kept because it was never slower (``benchmarks/cpu_variants.py
--variants=default,vector256``); the other flags tried did not help
(docs/performance.md).

Imported by ``experiments/_bootstrap.py`` and the benchmark workers; it does not
import JAX, and a flag already in ``$XLA_FLAGS`` is left as the user set it.
"""

from __future__ import annotations

import os


def cpu_info(path: str = "/proc/cpuinfo") -> dict[str, str]:
  """The first processor's fields in /proc/cpuinfo, keys lower-case ({} where there is
  no such file): the one reader of it (:func:`kmnist_jax.io.cpu_model` uses it too)."""
  info = {}
  try:
    with open(path) as f:
      for line in f:
        if not line.strip():
          break                                     # the first processor is enough
        k, _, v = line.partition(":")
        info[k.strip().lower()] = v.strip()
  except OSError:
    pass
  return info


def cpu_has(feature: str) -> bool:
  """Whether /proc/cpuinfo lists `feature` (False where there is no /proc/cpuinfo)."""
  return feature in cpu_info().get("flags", "").split()


def is_intel_cpu() -> bool:
  """Whether /proc/cpuinfo says GenuineIntel (False where there is none)."""
  return cpu_info().get("vendor_id") == "GenuineIntel"


def usable_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:     # not Linux
    return os.cpu_count() or 1


def recommended_flags() -> list[str]:
  """Two XLA CPU devices where there are >= 2 cores (training's ``parallel='auto'``
  then runs pmap or sharded over them, faster than one device on this project's 2-core
  CPUs; more devices on more cores were not measured), and AVX-512 loops where the CPU
  has AVX-512."""
  flags = []
  if usable_cores() >= 2:
    flags.append("--xla_force_host_platform_device_count=2")
  if cpu_has("avx512f"):
    flags.append("--xla_cpu_prefer_vector_width=512")
  return flags


def apply(env: dict | None = None) -> str:
  """Adds the recommended flags to ``env['XLA_FLAGS']`` (default: os.environ) unless
  that flag is already set; returns the resulting XLA_FLAGS."""
  env = os.environ if env is None else env
  flags = env.get("XLA_FLAGS", "")
  for flag in recommended_flags():
    if flag.split("=")[0] not in flags:
      flags = f"{flags} {flag}".strip()
  if flags:
    env["XLA_FLAGS"] = flags
  return flags
