#!/usr/bin/env bash
# The device check (scripts/gpu_check.py): the paper path's PyTorch parts on a GPU machine, offline.
# Uses the project's .venv where there is one, else the machine's python3. Options: --help.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$here/.venv/bin/python"
[ -x "$py" ] || py="$(command -v python3)"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$py" "$here/scripts/gpu_check.py" "$@"
