#!/usr/bin/env bash
# Install a real OpenAI-compatible server for the integration tests: llama-cpp-python's
# server, plus a tiny deterministic GGUF model.
#
#   scripts/install-llama.sh            # idempotent; safe to run again
#
# - builds a portable llama-cpp-python wheel into .cache/wheels/ (once: ~5 min on 2 cores),
#   unless a wheel of the pinned version for this Python is already there;
# - installs llama-cpp-python[server] from that wheel, and the gguf package;
# - writes .cache/models/tiny-llama.gguf with scripts/make_tiny_gguf.py (fixed seed).
#
# Environment: PYTHON (default python3), LLAMA_CPP_VERSION (default below).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
LLAMA_CPP_VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
GGUF_VERSION="${GGUF_VERSION:-0.19.0}"
WHEEL_DIR="$ROOT/.cache/wheels"
MODEL="$ROOT/.cache/models/tiny-llama.gguf"

log() { printf '[install-llama] %s\n' "$*"; }
now() { date +%s; }

mkdir -p "$WHEEL_DIR" "$(dirname "$MODEL")"

# One run at a time (two test sessions could start this together).
exec 9>"$ROOT/.cache/install-llama.lock"
flock 9

# A C/C++ toolchain and CMake are needed to build the wheel.
need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v g++ >/dev/null 2>&1 || need_apt+=(build-essential)
if ((${#need_apt[@]})); then
    log "installing build tools: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The wheel is tagged py3-none-<platform> (the library is loaded with ctypes).
shopt -s nullglob
wheels=("$WHEEL_DIR"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl)
shopt -u nullglob

if ((${#wheels[@]})); then
    log "wheel present: $(basename "${wheels[0]}")"
else
    log "building llama-cpp-python $LLAMA_CPP_VERSION wheel (portable, CPU only)"
    start=$(now)
    build_log="$ROOT/.cache/llama-wheel-build.log"
    if ! CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" \
        CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        "$PYTHON" -m pip wheel --no-deps "llama-cpp-python==$LLAMA_CPP_VERSION" \
        -w "$WHEEL_DIR" >"$build_log" 2>&1; then
        tail -n 60 "$build_log" >&2
        log "wheel build failed; full log: $build_log" >&2
        exit 1
    fi
    log "wheel built in $(($(now) - start)) s"
fi

start=$(now)
"$PYTHON" -m pip install -q --disable-pip-version-check \
    --find-links "$WHEEL_DIR" \
    "llama-cpp-python[server]==$LLAMA_CPP_VERSION" "gguf==$GGUF_VERSION"
log "packages installed in $(($(now) - start)) s"

"$PYTHON" -c 'import llama_cpp, llama_cpp.server, gguf; print("[install-llama] llama_cpp", llama_cpp.__version__)'

start=$(now)
"$PYTHON" "$ROOT/scripts/make_tiny_gguf.py" "$MODEL"
log "model ready in $(($(now) - start)) s: $MODEL"
