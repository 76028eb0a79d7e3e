"""How a dataset was composed, for its card and the run summary: targets met or missed (and why),
what its draw took from the selection, and what the decontamination lists removed."""

from __future__ import annotations

from builders.splits import SPLITS


def _cell(v) -> str:
    return "`-`" if v in (None, "", {}, []) else str(v)


def composition_lines(stats: dict) -> list[str]:
    """Markdown lines (a ``## Composition`` section); none for a dataset built without targets,
    draws or decontamination lists."""
    targets, draw, decon = stats.get("targets") or [], stats.get("draw"), stats.get("decontamination")
    if not (targets or draw or decon):
        return []
    lines = ["## Composition", ""]
    if targets:
        lines += ["Train targets: drawn with headroom, then cut to the target exactly; a target the built records "
                  "did not reach says which failures left it short.", "",
                  "| tasks | counted in | target | built | kept | short | short because |",
                  "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for t in targets:
            why = ", ".join(f"{k} {v}" for k, v in t.get("short_because", {}).items())
            tasks = t["tasks"] if isinstance(t["tasks"], str) else ", ".join(t["tasks"])
            lines.append(f"| {tasks} | {t['unit']}s | {t['target']} | {t['built']} | {t['kept']} | {t['shortfall']} | "
                         f"{_cell(why)} |")
        lines.append("")
    if draw:
        lines += [f"Drawn from {'every list' if draw.get('lists') == 'all' else ', '.join(draw.get('lists', []))}"
                  f"{', balanced over instrument classes' if draw.get('balance') else ''}"
                  "; shared with the other AudioSet datasets: "
                  + (", ".join(f"{k} {v} clips" for k, v in sorted(draw.get("overlap", {}).items())) or "none") + ".", "",
                  "| split | pool | target | drawn | short of target + headroom | classes | largest / smallest class |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for s in SPLITS:
            r = draw.get(s)
            if not r:
                continue
            cls = r.get("classes", {})
            span = (f"{max(cls, key=cls.get)} {max(cls.values())} / {min(cls, key=cls.get)} {min(cls.values())}"
                    if cls else "`-`")
            lines.append(f"| {s} | {r['pool']} | {_cell(r['target']) if r['target'] is not None else 'all'} | "
                         f"{r['drawn']} | {r['short']} | {len(cls)} | {span} |")
        lines.append("")
    if decon:
        removed = decon.get("removed_at_selection", {})
        lists = decon.get("lists", [])
        if lists or removed:
            lines += ["Decontamination (segments removed before any dataset drew; clips a list excludes later are "
                      "`decontaminated` rows):", "",
                      "| list | format | status | entries | removed |", "| --- | --- | --- | ---: | ---: |"]
            named = set()
            for entry in lists:
                named.add(entry.get("name"))
                lines.append(f"| {entry.get('name')} | {entry.get('format')} | {entry.get('status')} | "
                             f"{entry.get('entries', 0)} | {removed.get(entry.get('name'), 0)} |")
            lines += [f"| {k} | | | | {v} |" for k, v in sorted(removed.items()) if k not in named]
            lines.append("")
    return lines
