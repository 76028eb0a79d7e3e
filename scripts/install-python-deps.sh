#!/usr/bin/env bash
# A virtual environment with the project and its Python dependencies.
# torch is installed first on its own so that the CPU build is the one that lands (TORCH_SPEC
# can name another, e.g. a CUDA build on GPU workers); torchcodec is pinned to the last
# CPU-only build that loads beside it (datasets decodes audio and video through torchcodec).
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCHCODEC_SPEC=${TORCHCODEC_SPEC:-torchcodec==0.13.0}
EXTRAS=${EXTRAS:-dev}
command -v "$PYTHON" >/dev/null || { echo "need $PYTHON (3.10 or newer)" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || { echo "need Python 3.10 or newer" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
"$VENV/bin/python" -m pip install -q -e ".[${EXTRAS}]" "$TORCHCODEC_SPEC"
"$VENV/bin/python" -c "import torch, torchcodec, datasets, prefect, librosa, fluidsynth; print('python env ready: torch', torch.__version__, '| prefect', prefect.__version__, '| datasets', datasets.__version__)"
