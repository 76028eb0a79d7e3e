"""The AudioSet ontology: names, descendants and restrictions.

Nodes carry ``restrictions``: ``abstract`` nodes only group others and are never used as labels,
``blacklist`` nodes were judged unreliable and excluded from the released labels. Selection uses
both: a blacklisted label on a segment is ignored, and an abstract node is never an instrument
class of its own (its labelled descendants are).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

BUNDLED = resources.files("sources") / "resources" / "audioset" / "ontology.json"


class Ontology:
    def __init__(self, nodes: list[dict]):
        self.nodes = {n["id"]: n for n in nodes}
        self.parents: dict[str, list[str]] = {}
        for n in nodes:
            for c in n.get("child_ids", []):
                self.parents.setdefault(c, []).append(n["id"])
        self._desc: dict[str, frozenset[str]] = {}

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Ontology":
        text = Path(path).read_text(encoding="utf-8") if path else BUNDLED.read_text(encoding="utf-8")
        data = json.loads(text)
        if not isinstance(data, list) or not all(isinstance(n, dict) and "id" in n for n in data):
            raise ValueError(f"{path or 'ontology.json'} is not an AudioSet ontology (a JSON list of nodes with ids)")
        return cls(data)

    def __contains__(self, mid: str) -> bool:
        return mid in self.nodes

    def name(self, mid: str) -> str:
        return self.nodes[mid]["name"] if mid in self.nodes else mid

    def restrictions(self, mid: str) -> set[str]:
        return set(self.nodes.get(mid, {}).get("restrictions", []))

    def restricted(self, restriction: str) -> frozenset[str]:
        """The ids of every node with this restriction (``blacklist``, ``abstract``)."""
        return frozenset(m for m, n in self.nodes.items() if restriction in n.get("restrictions", []))

    def check(self, mids: list[str], what: str) -> None:
        unknown = [m for m in mids if m not in self.nodes]
        if unknown:
            raise ValueError(f"{what}: ids not in the AudioSet ontology: {unknown}")

    def descendants(self, mid: str) -> frozenset[str]:
        """The node and everything below it."""
        if mid not in self._desc:
            out, stack = set(), [mid]
            while stack:
                m = stack.pop()
                if m in out:
                    continue
                out.add(m)
                stack.extend(self.nodes.get(m, {}).get("child_ids", []))
            self._desc[mid] = frozenset(out)
        return self._desc[mid]

    def classes_under(self, root: str, depth: int = 2) -> dict[str, str]:
        """Map every node below ``root`` to its class: the first non-abstract node at ``depth``
        levels below ``root`` on its path (depth 1: families such as "Keyboard (musical)"; depth 2:
        instruments such as "Piano"). A labelled node above that depth is its own class; abstract
        grouping nodes never are."""
        owner: dict[str, str] = {}

        def visit(mid: str, level: int, cls: str | None) -> None:
            abstract = "abstract" in self.restrictions(mid)
            if cls is None and level >= depth and not abstract:
                cls = mid
            if mid not in owner and (cls is not None or not abstract):
                owner[mid] = cls or mid
            for c in self.nodes.get(mid, {}).get("child_ids", []):
                visit(c, level + 1, cls)

        for child in self.nodes[root].get("child_ids", []):
            visit(child, 1, None)
        return owner


@lru_cache(maxsize=4)
def ontology(path: str | None = None) -> Ontology:
    return Ontology.load(path)
