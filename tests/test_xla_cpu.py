"""The default XLA:CPU flags: added once, never over the user's own."""

import pytest

from kmnist_jax import xla_cpu


def test_apply_adds_recommended_flags_once(monkeypatch):
  monkeypatch.setattr(xla_cpu, "recommended_flags",
                      lambda: ["--xla_cpu_prefer_vector_width=512"])
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  assert xla_cpu.apply(env) == ("--xla_force_host_platform_device_count=2 "
                                "--xla_cpu_prefer_vector_width=512")
  assert xla_cpu.apply(env) == env["XLA_FLAGS"]  # idempotent
  assert env["XLA_FLAGS"].count("prefer_vector_width") == 1


def test_user_flag_wins(monkeypatch):
  monkeypatch.setattr(xla_cpu, "recommended_flags",
                      lambda: ["--xla_cpu_prefer_vector_width=512"])
  env = {"XLA_FLAGS": "--xla_cpu_prefer_vector_width=256"}
  assert xla_cpu.apply(env) == "--xla_cpu_prefer_vector_width=256"


def test_recommended_flags_follow_the_cpu(monkeypatch):
  monkeypatch.setattr(xla_cpu, "usable_cores", lambda: 1)
  monkeypatch.setattr(xla_cpu, "cpu_has", lambda f: False)
  assert xla_cpu.recommended_flags() == []
  monkeypatch.setattr(xla_cpu, "cpu_has", lambda f: f == "avx512f")
  assert xla_cpu.recommended_flags() == ["--xla_cpu_prefer_vector_width=512"]
  monkeypatch.setattr(xla_cpu, "usable_cores", lambda: 2)
  assert xla_cpu.recommended_flags() == ["--xla_force_host_platform_device_count=2",
                                         "--xla_cpu_prefer_vector_width=512"]


def test_user_device_count_wins(monkeypatch):
  monkeypatch.setattr(xla_cpu, "usable_cores", lambda: 2)
  monkeypatch.setattr(xla_cpu, "cpu_has", lambda f: False)
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert xla_cpu.apply(env) == "--xla_force_host_platform_device_count=8"


@pytest.mark.parametrize("intel,avx512,want", [
    (True, True, "pmap"),        # Intel Xeon (measured)
    (True, False, "pmap"),
    (False, True, "pmap"),       # AMD Zen 4 (measured)
    (False, False, "sharded"),   # AMD Zen 3 (measured)
])
def test_auto_mode_is_the_measured_choice(monkeypatch, intel, avx512, want):
  import jax

  from kmnist_jax import parallel
  monkeypatch.setattr(xla_cpu, "is_intel_cpu", lambda: intel)
  monkeypatch.setattr(xla_cpu, "cpu_has", lambda f: avx512 and f == "avx512f")
  cpus = jax.devices("cpu")
  assert parallel.auto_mode(cpus[:1]) == "single"
  if len(cpus) > 1:
    assert parallel.auto_mode(cpus) == want
    assert parallel.create("auto").mode == want


def test_cpu_info_reads_the_first_processor(tmp_path):
  f = tmp_path / "cpuinfo"
  f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f\n\n"
               "processor\t: 1\nvendor_id\t: AuthenticAMD\n")
  info = xla_cpu.cpu_info(str(f))
  assert info["vendor_id"] == "GenuineIntel" and "avx512f" in info["flags"].split()
  assert xla_cpu.cpu_info(str(tmp_path / "missing")) == {}
