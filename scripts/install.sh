#!/usr/bin/env bash
# Install kdal-lab into ./.venv (Python 3.10+ and pip are all it needs). Idempotent: a second run
# only re-checks. MulticoreTSNE is built with a distutils config that fixes its cmake arguments;
# if that build fails the collection still works (kdal_lib falls back to scikit-learn's t-SNE).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${KDAL_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    echo "[install] creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip wheel setuptools
# torch/torchvision first, pinned (pyproject pins the same versions)
$PIP install -q "torch==2.14.1" "torchvision==0.29.1"
$PIP install -q -e ".[notebooks,test]"

bash scripts/install_tsne.sh "$VENV/bin/python"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (kdal-lab)" >/dev/null
echo "[install] done: $("$VENV/bin/python" -c 'import kdal_lib, torch; print("kdal_lib", kdal_lib.__version__, "torch", torch.__version__)')"
