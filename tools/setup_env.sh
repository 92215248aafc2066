#!/usr/bin/env bash
# Idempotent environment installer for hybridvit (Python 3.11, CPU by default).
#
#   bash tools/setup_env.sh            # creates/updates .venv in the repo root
#
# Stages: venv -> torch -> build tools -> mmcv 2.1.0 (built from the PyPI sdist once, wheel cached
# in $HYBRIDVIT_WHEEL_CACHE, default ~/.cache/hybridvit/wheels) -> pinned stack -> hybridvit (editable).
# A second run with nothing changed only checks a stamp and the imports (seconds).
#
# GPU users: build mmcv with CUDA ops through the same script by exporting, before running it,
#   FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="8.0;8.6;9.0" HYBRIDVIT_TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
# (a CUDA toolkit matching torch's CUDA version must be on PATH). The wheel is cached under a name
# that includes "cuda" so CPU and CUDA builds never overwrite each other.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HYBRIDVIT_VENV:-$ROOT/.venv}"
PYTHON_BIN="${HYBRIDVIT_PYTHON:-python3.11}"
CACHE="${HYBRIDVIT_WHEEL_CACHE:-$HOME/.cache/hybridvit/wheels}"
TORCH_SPEC="${HYBRIDVIT_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
MMCV_VERSION=2.1.0
FLAVOUR=cpu
if [[ "${FORCE_CUDA:-0}" == "1" ]]; then FLAVOUR=cuda; fi

stage() { printf '\n[setup_env %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# Print "compiled k/N objects, elapsed" every 30 s while a build writes its log.
# ninja prints "[k/N] c++ ..." lines; pip -v indents them, so match anywhere on the line.
report_build_progress() {
  local log="$1" pid="$2" started done_total
  started=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    done_total=$(grep -oE '^[[:space:]]*\[[0-9]+/[0-9]+\]' "$log" 2>/dev/null | tail -n 1 | tr -d ' []' || true)
    echo "  mmcv build: compiled ${done_total:-0/?} objects, $(( $(date +%s) - started ))s elapsed"
  done
}
START=$(date +%s)

STAMP="$VENV/.hybridvit-stamp"
WANT_STAMP="$( (cat "$ROOT/requirements/lock.txt" "$ROOT/setup.py" "$0"; echo "$TORCH_SPEC $FLAVOUR") | sha256sum | cut -c1-16)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT_STAMP" ]] && \
   "$VENV/bin/python" -c "import torch, mmcv.ops, mmdet, mmseg, timm, hybridvit" 2>/dev/null; then
  stage "environment up to date ($VENV), nothing to do ($(( $(date +%s) - START ))s)"
  exit 0
fi

stage "1/6 virtual environment: $VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

stage "2/6 torch ($TORCH_SPEC)"
# shellcheck disable=SC2086
"${PIP[@]}" install -q $TORCH_SPEC

stage "3/6 build tools (setuptools<81 keeps pkg_resources for mmcv and mmengine, ninja, wheel)"
"${PIP[@]}" install -q "setuptools<81" wheel ninja "numpy"

stage "4/6 mmcv $MMCV_VERSION with ops ($FLAVOUR)"
mkdir -p "$CACHE"
WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION-$FLAVOUR-$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  echo "mmcv $MMCV_VERSION already installed"
else
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    echo "no cached wheel in $WHEEL_DIR: building mmcv from source (about 25 min on 2 cores, once)"
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    (cd "$BUILD" && "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION")
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.5 headers need C++17+, torch 2.14 needs C++20; mmcv 2.1.0 hard-codes c++14/17.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g; s#/std:c\+\+1[47]#/std:c++20#g' "$SRC/setup.py"
    grep -q 'c++20' "$SRC/setup.py" || { echo "setup_env: could not patch the C++ standard in $SRC/setup.py" >&2; exit 1; }
    mkdir -p "$WHEEL_DIR"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" wheel -v --no-deps --no-build-isolation \
      -w "$BUILD/dist" "$SRC" > "$BUILD/build.log" 2>&1 &
    BUILD_PID=$!
    report_build_progress "$BUILD/build.log" "$BUILD_PID"
    wait "$BUILD_PID" || { tail -n 30 "$BUILD/build.log" >&2; echo "setup_env: mmcv build failed (log above)" >&2; exit 1; }
    ls "$BUILD"/dist/mmcv-*.whl >/dev/null 2>&1 || { echo "setup_env: mmcv build failed (rerun with the log: pip wheel -v $SRC)" >&2; exit 1; }
    # Move into the cache only when complete, so an interrupted build never leaves a broken wheel.
    mv "$BUILD"/dist/mmcv-*.whl "$WHEEL_DIR"/
  else
    echo "using cached wheel $(ls "$WHEEL_DIR"/mmcv-*.whl)"
  fi
  "${PIP[@]}" install -q --no-deps "$WHEEL_DIR"/mmcv-*.whl
fi

stage "5/6 pinned OpenMMLab stack and tools (requirements/lock.txt)"
"${PIP[@]}" install -q -r "$ROOT/requirements/lock.txt" "mmcv==$MMCV_VERSION" $TORCH_SPEC

stage "6/6 hybridvit (editable)"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

"$PY" - <<'PY'
import torch, mmcv, mmcv.ops, mmengine, mmdet, mmseg, timm
print(f"torch {torch.__version__} | mmcv {mmcv.__version__} | mmengine {mmengine.__version__} | "
      f"mmdet {mmdet.__version__} | mmseg {mmseg.__version__} | timm {timm.__version__}")
PY
echo "$WANT_STAMP" > "$STAMP"
stage "done in $(( $(date +%s) - START ))s"
