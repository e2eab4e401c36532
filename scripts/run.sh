#!/usr/bin/env bash
# The collection's main job: install (idempotent), then execute every notebook on its embedded
# defaults with papermill. Extra arguments go to kdal-run (e.g. --preset smoke, 01, -p SEED 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/kdal-run "${@:-all}"
