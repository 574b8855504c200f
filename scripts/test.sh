#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run the linters, the type checker and the tests.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${LORA_MCP_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

# torch first: on a CPU machine this pin takes the CPU wheel; a GPU user's existing CUDA torch is left alone.
"$PY" -c "import torch" 2>/dev/null || "${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e '.[all,dev]'

# The MCP Inspector CLI is a real third-party client the tests drive (0.15.0 is the last release for Node 20).
if ! [ -x .tools/node_modules/.bin/mcp-inspector ]; then
  npm install --silent --no-audit --no-fund --prefix .tools @modelcontextprotocol/inspector@0.15.0 >/dev/null
fi

# The dashboard tests drive a real headless Chromium (Debian's package) through Playwright's Python API.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing and cannot be installed here (not root, no sudo): the dashboard tests will fail" >&2
  fi
fi

"$VENV/bin/ruff" check lora_mcp tests benchmarks
"$VENV/bin/ruff" format --check lora_mcp tests benchmarks
"$VENV/bin/mypy"
"$VENV/bin/pytest" "$@"
