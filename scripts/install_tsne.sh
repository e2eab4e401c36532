#!/usr/bin/env bash
# Build MulticoreTSNE 0.1 into the given Python environment (default: python on PATH).
# Its setup.py passes "--" to cmake, which modern cmake rejects, and its CMakeLists asks for a
# cmake policy older than 3.5: a distutils config named by DIST_EXTRA_CONFIG sets the cmake
# arguments, and cmake<4 from PyPI is used. Failure is not fatal: kdal_lib falls back to
# scikit-learn's TSNE and names the backend that ran.
set -uo pipefail
PYBIN=${1:-python3}
if "$PYBIN" -c "import MulticoreTSNE" 2>/dev/null; then
    echo "[tsne] MulticoreTSNE already installed"; exit 0
fi
echo "[tsne] building MulticoreTSNE (cmake args via DIST_EXTRA_CONFIG)"
"$PYBIN" -m pip install -q "cmake>=3.20,<4" || { echo "[tsne] WARNING: could not install cmake"; exit 0; }
cfg=$(mktemp --suffix=.cfg)
printf '[build_ext]\ncmake_args=-DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_POLICY_VERSION_MINIMUM=3.5\n' > "$cfg"
bindir=$(dirname "$("$PYBIN" -c 'import sys; print(sys.executable)')")
if PATH="$bindir:$PATH" DIST_EXTRA_CONFIG="$cfg" "$PYBIN" -m pip install -q --no-build-isolation "MulticoreTSNE==0.1"; then
    echo "[tsne] MulticoreTSNE built"
else
    echo "[tsne] WARNING: MulticoreTSNE did not build; t-SNE will use scikit-learn's TSNE (figures and metrics say which ran)"
fi
rm -f "$cfg"
exit 0
