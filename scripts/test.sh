#!/usr/bin/env bash
# Install (idempotent), then run the test suite (unit tests, real-data loader tests, notebooks
# executed by papermill). Real data: $KDAL_DATA or ../shared/data; set KDAL_REQUIRE_DATA=1 to fail
# instead of skipping when it is missing. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest "$@"
