"""Instruction pools of a build: which "Generate ..." lines a record's human turn is drawn from.

With an LLM ``text`` role (vLLM, OpenAI-compatible, transformers) the pools are written once per
build by that role (``annotators.instruction_pools.generate_pool``: about 200 distinct lines per
generation task, filtered and deduplicated, stored under ``<data_root>/pools/<name>/`` with a
completion marker) and records draw from them with the build's seed. MUEdit has an
instruction and a response pool per subtype (``EDIT_POOLS``), templates whose placeholders
(``{speed}``, ``{pitch}``, ``{instrument}``, ``{new_instrument}``) the edit's parameters fill. With
the CPU ``features`` role the bundled hand-written files are the pools. The two are never mixed: an LLM build whose
pool is missing or empty fails its records with ``no_instruction_pool``, it never falls back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from annotators.prompts import pick
from annotators.prompts import pool as bundled_pool
from mumu.config import Config
from mumu.loads import counting, process_name
from mumu.store import Store

# generation task -> (generated pool name, bundled pool file)
POOL_OF_TASK = {"text_to_music": ("text", "mucaps_generate"), "image_to_music": ("image", "muimage_generate"),
                "video_to_music": ("video", "muvideo_generate")}
# MUEdit: an instruction pool and a response pool per subtype (templates with the edit's placeholders)
EDIT_OPS = ("speed", "pitch", "add", "delete", "replace")
EDIT_POOLS = tuple(f"edit_{op}{kind}" for op in EDIT_OPS for kind in ("", "_response"))
POOL_OF_TASK.update({name: (name, name) for name in EDIT_POOLS})
LLM_BACKENDS = ("vllm", "openai", "transformers")


@dataclass(frozen=True)
class PoolEntry:
    text: str
    pool: str  # "generated:<name>" or "bundled:<file>@<version>"
    entry: int  # the line's index in its pool


def uses_generated_pools(cfg: Config) -> bool:
    return cfg.annotators.text.backend in LLM_BACKENDS


def make_pool(store: Store, cfg: Config, task: str) -> dict:
    """Generate (or find finished) the pool of ``task`` with the build's text role; a summary."""
    from annotators.base import annotator_for
    from annotators.instruction_pools import generate_pool

    name = POOL_OF_TASK[task][0]
    if not uses_generated_pools(cfg):
        return {"pool": f"bundled:{POOL_OF_TASK[task][1]}", "instructions": len(bundled_pool(POOL_OF_TASK[task][1]).lines()),
                "reused": True}
    p = cfg.pools
    t0, c0 = time.perf_counter(), time.process_time()
    with counting() as events:
        made = generate_pool(annotator_for("text", cfg, store), name, p.target, p.per_request, p.max_requests, store)
    return {"pool": f"generated:{name}", "instructions": len(made.rows), "rejects": len(made.rejects),
            "requests": made.requests, "reused": made.reused, "seconds": round(time.perf_counter() - t0, 3),
            "cpu_seconds": round(time.process_time() - c0, 3), "process": process_name(), "model_events": events}


def pool_entries(store: Store, cfg: Config, task: str) -> list[PoolEntry]:
    """The lines of the task's pool in their stored order ([] when a generated pool is missing)."""
    from annotators.instruction_pools import pool_paths

    name, bundled = POOL_OF_TASK[task]
    if not uses_generated_pools(cfg):
        t = bundled_pool(bundled)
        return [PoolEntry(line, f"bundled:{bundled}@{t.version}", i) for i, line in enumerate(t.lines())]
    path = pool_paths(store, name)["table"]
    if not store.exists(path):
        return []
    lines = store.read_table(path, columns=["instruction"]).column("instruction").to_pylist()
    return [PoolEntry(line, f"generated:{name}", i) for i, line in enumerate(lines)]


def draw(entries: list[PoolEntry], key: str, seed: int) -> PoolEntry:
    """The entry a record gets: chosen by its key (the clip id) and the build's seed, stable across runs."""
    return pick(entries, key, salt=f"{seed}")


def pool_fingerprint(store: Store, cfg: Config, task: str) -> str:
    """What a record shard's output depends on of the task's pool: its marker's fingerprint (generated)
    or the bundled file's version."""
    from annotators.instruction_pools import pool_paths

    name, bundled = POOL_OF_TASK[task]
    if not uses_generated_pools(cfg):
        return f"bundled:{bundled}@{bundled_pool(bundled).version}"
    marker = pool_paths(store, name)["marker"]
    return store.read_json(marker).get("fingerprint", "") if store.exists(marker) else "missing"
