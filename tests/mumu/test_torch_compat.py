"""PyPI's torchvision and torchaudio beside the CPU torch (mumu/torch_compat.py, loaded by a .pth file):
their Python parts import and work in a fresh interpreter, as every process of the environment sees them."""

import subprocess
import sys

import pytest

CHECK = """
import torch, torchvision, torchaudio, torchvision.extension
import torchaudio.functional as F
from torchvision.transforms import v2
x = torch.randn(1, 2400)
assert F.resample(x, 24000, 16000).shape == (1, 1600)
img = torch.rand(3, 48, 64)
assert v2.Resize((32, 32))(img).shape == (3, 32, 32)
if not torchvision.extension._has_ops():  # the compiled part did not load: the schemas stand in for it
    assert hasattr(torch.ops.torchvision, "nms") and hasattr(torch.ops.torchvision, "qnms")
print("ok", torchvision.__version__, torchaudio.__version__, torchvision.extension._has_ops())
"""


def test_torchvision_and_torchaudio_import_and_work_in_a_fresh_process():
    pytest.importorskip("vllm", reason="torchvision / torchaudio come with the cpu-llm extra")
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok ")


def test_the_hook_is_installed_by_a_pth_file():
    """Installed before anything imports it: the interpreter's start-up ran the .pth line."""
    pytest.importorskip("vllm", reason="torchvision / torchaudio come with the cpu-llm extra")
    out = subprocess.run([sys.executable, "-c", "import sys; print('mumu.torch_compat' in sys.modules, "
                          "any(type(f).__name__ == '_Hooks' for f in sys.meta_path))"],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "True"], out.stderr
