"""The package layers hold, no module imports itself round a cycle, and long modules say why.

The layer contract itself is checked by ``lint-imports`` (``pyproject.toml``, run by ``make test``);
these checks cover what it does not: cycles between modules of one package, and size.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import grimp

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("mumu", "schemas", "model", "sources", "annotators", "metrics", "builders", "publishing", "flows", "cli")
LONG = 500  # lines; a module above it carries a "# size:" comment saying why it stays whole


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in sorted(adj):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter[0]
                counter[0] += 1
                stack.append(v)
                on.add(v)
            for j in range(i, len(adj[v])):
                w = adj[v][j]
                if w not in index:
                    work.append((v, j + 1))
                    work.append((w, 0))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[v])
    return out


def test_no_module_cycles():
    graph = grimp.build_graph(*PACKAGES)  # function-level imports included
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from cyc import b\n")
    (pkg / "b.py").write_text("from cyc import a\n")
    (pkg / "c.py").write_text("from cyc import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("cyc")) == [["cyc.a", "cyc.b"]]


def test_the_layer_contract_is_kept():
    out = subprocess.run([str(pathlib.Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "0 broken" in out.stdout


def test_long_modules_say_why():
    unexplained = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            text = path.read_text()
            if text.count("\n") > LONG and "# size:" not in text:
                unexplained.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert unexplained == []
