#!/usr/bin/env bash
# Create .venv and install the core and every tier (editable) with their test extras.
# Also installs Debian's prometheus and prometheus-pushgateway when missing and we may (root + apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${TIERTRACE_SKIP_APT:-0}" != 1 ] && { ! command -v promtool >/dev/null || ! command -v prometheus-pushgateway >/dev/null || ! command -v amtool >/dev/null; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian packages: prometheus prometheus-pushgateway prometheus-alertmanager"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-pushgateway prometheus-alertmanager >/dev/null
  else
    echo "== prometheus/promtool/pushgateway not found and cannot apt-get: their tests will skip" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "== installing tiertrace and its tiers into .venv"
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
packages=(-e ".[test]")
for tier in plugins/*/; do
  packages+=(-e "${tier%/}[test]")
done
.venv/bin/python -m pip install -q -c constraints.txt "${packages[@]}" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import tiertrace" # fails loudly if the install did not work
