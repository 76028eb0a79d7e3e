"""The request cache: an identical request is never sent to a model twice, across reruns too.

A request's key is the sha256 of everything that decides its answer: the model id, the prompt
version, a hash of its inputs (rendered messages with every media item replaced by its sha256,
and the output schema), the sampling parameters and the seed. The backend is left out on
purpose, so a request answered by a ``vllm`` worker is not asked again through ``openai``
against the same model.

Entries are small JSON files in the store (``cache/requests/<role>/<kk>/<key>.json``), written
atomically (temporary name, then rename) through ``mumu.store.Store``, so a killed run never
leaves a half entry and many workers can share one bucket. A process keeps what it read or wrote
in memory as well.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import threading
from typing import Any

from mumu.store import Store

CACHE_DIR = "cache/requests"


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def request_key(model: str, prompt_version: str, inputs_hash: str, params: dict[str, Any], seed: int) -> str:
    """The cache key of one request (hex sha256)."""
    return hashlib.sha256(canonical({"model": model, "prompt_version": prompt_version, "inputs": inputs_hash,
                                     "params": params, "seed": int(seed)})).hexdigest()


class RequestCache:
    """Answers by request key, kept in a store under ``cache/requests/<role>/`` (or in memory only)."""

    def __init__(self, store: Store | None, role: str):
        self.store, self.role = store, role
        self._mem: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = self.writes = 0

    def _path(self, key: str) -> str:
        assert self.store is not None
        return self.store.path(CACHE_DIR, self.role, key[:2], f"{key}.json")

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            hit = self._mem.get(key)
        if hit is None and self.store is not None:
            path = self._path(key)
            try:
                if self.store.exists(path):
                    hit = self.store.read_json(path)
            except (OSError, ValueError):
                hit = None  # unreadable entry: ask again and overwrite it
            if hit is not None and hit.get("key") != key:
                hit = None
            if hit is not None:
                with self._lock:
                    self._mem[key] = hit
        with self._lock:
            if hit is None:
                self.misses += 1
            else:
                self.hits += 1
        return hit

    def put(self, key: str, entry: dict[str, Any]) -> None:
        entry = {**entry, "key": key}
        with self._lock:
            self._mem[key] = entry
            self.writes += 1
        if self.store is not None:
            self.store.write_json(self._path(key), entry)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            if key in self._mem:
                return True
        return self.store is not None and self.store.exists(self._path(key))

    def __len__(self) -> int:
        """Entries on disk (or in memory when there is no store)."""
        if self.store is None:
            return len(self._mem)
        folder = self.store.path(CACHE_DIR, self.role)
        if not self.store.exists(folder):
            return 0
        return sum(1 for p in self.store.fs.find(folder) if posixpath.basename(p).endswith(".json")
                   and not posixpath.basename(p).startswith(".tmp-"))

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "writes": self.writes}
