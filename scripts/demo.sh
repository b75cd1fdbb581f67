#!/usr/bin/env bash
# The main job on a fresh machine: set-up, then `tiertrace demo` (offline, embedded defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
TIERTRACE_SKIP_APT=1 bash scripts/setup.sh
exec .venv/bin/tiertrace demo "$@"
