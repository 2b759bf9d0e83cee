#!/usr/bin/env bash
# The coordination benchmark on a many-core machine without network access, in one call.
#
# Optuna (the reference) and its dependencies come as wheels in .bench-deps/wheels, fetched
# beforehand on a machine with an index:
#   pip download optuna filelock -d .bench-deps/wheels --only-binary=:all: \
#       --python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64
# They are installed into a private directory, never into the system's site-packages.
# The populations live on the local disk under the repository (not /tmp, which may be tmpfs).
# Writes the log and the JSON under ${OUT:-/tmp/evo-coord}.
set -uo pipefail
OUT=${OUT:-/tmp/evo-coord}
PROCS=${PROCS:-"4 8 16 32 64"}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ! python3 -c "import optuna" 2>/dev/null; then
  python3 -m pip install -q --no-index --find-links .bench-deps/wheels --target /tmp/evo-bench-pkgs optuna filelock \
    || { echo "optuna could not be installed from .bench-deps/wheels"; exit 2; }
  export PYTHONPATH=$PYTHONPATH:/tmp/evo-bench-pkgs
fi
DIR=$PWD/.bench-pop
mkdir -p "$DIR"
{ nproc; uptime; df -T "$DIR" | tail -1; python3 -c "import optuna, filelock, platform; print('python', platform.python_version(), 'optuna', optuna.__version__, 'filelock', filelock.__version__)"; } | tee "$OUT/machine.txt"
# shellcheck disable=SC2086
timeout 560 python3 benchmarks/coordination.py --procs $PROCS --seconds 5 --rounds 3 --dead 100 \
  --locks flock --dir "$DIR" --no-docs --no-overhead --json "$OUT/coordination.json" 2>&1 \
  | grep -v "^{" | tee "$OUT/coordination.log" | grep -E "^\||Throughput|^vm|^[a-z0-9-]+:"
rm -rf "$DIR"
