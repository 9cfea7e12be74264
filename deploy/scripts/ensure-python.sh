#!/usr/bin/env bash
# Create the project's virtualenv with Python 3.11+, installing Debian's venv support if the
# interpreter lacks it (a clean Debian machine ships python3 without ensurepip).
set -euo pipefail
python="${1:-python3}"
venv="${2:-.venv}"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "installing python3" >&2
  apt-get update -q && apt-get install -y -q python3 python3-venv
fi
"$python" - <<'PY' || { echo "Python 3.11 or newer is required (found $("$python" -V 2>&1))" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    echo "installing python3-venv" >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q python3-venv; else sudo -n apt-get update -q && sudo -n apt-get install -y -q python3-venv; fi
    "$python" -m venv "$venv"
  fi
fi
