#!/usr/bin/env bash
# Local entry point: makes or reuses a virtualenv, installs this package into it
# (editable, exact versions from constraints.txt) with what the command needs, then runs
#   bash launch/local.sh train [train.py flags]   # default: KMNIST CNN in ./workdirs/kmnist_cnn
#   bash launch/local.sh test  [pytest args]      # the test suite
#   bash launch/local.sh lint  [ruff args]        # ruff check (what CI runs first)
#   bash launch/local.sh python SCRIPT [args]     # any script with the venv's Python
# Environment: KMNIST_JAX_DATA_DIR (datasets; default ~/kmnist_jax_data, downloaded
#              there when missing), KMNIST_JAX_VENV (virtualenv; default ./.venv),
#              KMNIST_JAX_EXTRAS (the extras to install; default: none for train and
#              python, the light install without TensorFlow; dev,tfds,embed,notebook
#              for test and lint, everything the tests use), PYTHON (default python3).
# Extras installed once stay: a later command that needs fewer installs nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KMNIST_JAX_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
case "${1:-}" in
  test|lint) EXTRAS="${KMNIST_JAX_EXTRAS-dev,tfds,embed,notebook}" ;;
  *) EXTRAS="${KMNIST_JAX_EXTRAS-}" ;;
esac

if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating virtualenv $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
# Install when the dependencies or the lock change, or an extra is missing. The stamp
# holds a digest of the dependency files, then the extras installed (one a line).
STAMP="$VENV/.kmnist_jax_install"
deps="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/constraints.txt" | cksum)"
have=()
need=1
if [ "$(head -1 "$STAMP" 2>/dev/null)" == "$deps" ]; then
  need=0
  while read -r e; do [ -n "$e" ] && have+=("$e"); done < <(tail -n +2 "$STAMP")
fi
for e in ${EXTRAS//,/ }; do
  [[ " ${have[*]} " == *" $e "* ]] || { have+=("$e"); need=1; }
done
if [ "$need" == 1 ]; then
  all="$(IFS=,; echo "${have[*]}")"
  echo "Installing kmnist-jax${all:+[$all]} (editable, constraints.txt) into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT${all:+[$all]}" -c "$ROOT/constraints.txt"
  { echo "$deps"; for e in "${have[@]}"; do echo "$e"; done; } > "$STAMP"
fi

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
cd "$ROOT"
cmd="${1:-}"
shift || true
case "$cmd" in
  train)
    # XLA:CPU runs a step on one core: one CPU device per core lets data parallelism
    # (parallel=auto -> sharded) use them all. No effect on GPU/TPU runs.
    if [[ "${XLA_FLAGS:-}" != *xla_force_host_platform_device_count* ]]; then
      export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$(nproc)"
    fi
    # Defaults go first: --config must precede its --config.x overrides.
    defaults=()
    has() { local a; for a in "${@:2}"; do [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0; done; return 1; }
    has --config "$@" || defaults+=(--config experiments/configs/kmnist_cnn.py)
    has --workdir "$@" || defaults+=(--workdir workdirs/kmnist_cnn)
    exec "$VENV/bin/python" experiments/train.py "${defaults[@]}" "$@"
    ;;
  test)
    # Two pytest workers, each test file on one (its session fixtures built once): the
    # suite is compile- and start-up-bound (one core each), so two workers use both
    # cores. PYTEST_WORKERS=0: one process.
    workers="${PYTEST_WORKERS:-2}"
    xdist=()
    if [[ "$workers" != 0 ]]; then xdist=(-n "$workers" --dist loadfile); fi
    exec "$VENV/bin/python" -m pytest "${xdist[@]}" "$@"
    ;;
  lint)
    exec "$VENV/bin/ruff" check "$@" .
    ;;
  python)
    exec "$VENV/bin/python" "$@"
    ;;
  *)
    echo "usage: bash launch/local.sh {train|test|lint|python} [args...]" >&2
    exit 2
    ;;
esac
