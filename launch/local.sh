#!/usr/bin/env bash
# Local entry point: makes or reuses a virtualenv, installs this package into it
# (editable, with the extras in $KMNIST_JAX_EXTRAS, exact versions from constraints.txt),
# then runs
#   bash launch/local.sh train [train.py flags]   # default: KMNIST CNN in ./workdirs/kmnist_cnn
#   bash launch/local.sh test  [pytest args]      # the test suite
#   bash launch/local.sh lint  [ruff args]        # ruff check (what CI runs first)
#   bash launch/local.sh python SCRIPT [args]     # any script with the venv's Python
# Environment: KMNIST_JAX_DATA_DIR (datasets; default ~/kmnist_jax_data, downloaded
#              there when missing), KMNIST_JAX_VENV (virtualenv; default ./.venv),
#              KMNIST_JAX_EXTRAS (default dev,tfds,embed,notebook: everything the tests
#              use; "dev" alone gives the light install without TensorFlow),
#              PYTHON (default python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KMNIST_JAX_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${KMNIST_JAX_EXTRAS:-dev,tfds,embed,notebook}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating virtualenv $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
# Reinstall when the dependencies, the lock or the extras change.
STAMP="$VENV/.kmnist_jax_install"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT/constraints.txt"; echo "$EXTRAS")"
if [ "$want" != "$(cat "$STAMP" 2>/dev/null)" ]; then
  echo "Installing kmnist-jax[$EXTRAS] (editable, constraints.txt) into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]" -c "$ROOT/constraints.txt"
  printf '%s' "$want" > "$STAMP"
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
    # suite is compile- and start-up-bound, so 2 workers on 2 cores took 16.5 min
    # against 23.5 min in one process (AMD EPYC Zen 3). PYTEST_WORKERS=0: one process.
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
