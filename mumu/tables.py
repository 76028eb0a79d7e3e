"""Arrow tables built from declared Hugging Face ``Features``, and the one table every stage writes.

The failures table is declared here, in the bottom layer, because the shard runner
(``mumu/stage.py``) writes it for every stage; ``schemas/tables.py`` lists it beside the other
working tables.
"""

from __future__ import annotations

import datasets
import pyarrow as pa

_S = datasets.Value("string")

FAILURES = datasets.Features(
    {
        "item_id": _S,
        "stage": _S,
        "reason": _S,  # a short machine-readable code, counted in reports
        "detail": _S,  # the human-readable message
    }
)


# Where a stage's output names the media files it wrote or uses: columns of store-relative paths
# (the clips tables), and the JSON media references of record parts (``builders/records.py``).
MEDIA_PATH_COLUMNS = ("audio_path", "image_path", "video_path")
MEDIA_REFS_COLUMN = "_media"


def media_paths(table: pa.Table) -> list[str]:
    """The store-relative media files a stage's output table names, sorted, each once."""
    import json

    found: set[str] = set()
    for col in MEDIA_PATH_COLUMNS:
        if col in table.column_names:
            found.update(p for p in table.column(col).to_pylist() if p)
    if MEDIA_REFS_COLUMN in table.column_names:
        for refs in table.column(MEDIA_REFS_COLUMN).to_pylist():
            if refs:
                found.update(r["path"] for r in json.loads(refs).values())
    return sorted(found)


def schema_of(features: datasets.Features) -> pa.Schema:
    return features.arrow_schema


def table_from_rows(rows: list[dict], features: datasets.Features) -> pa.Table:
    """Build a table with exactly the declared columns, in declared order, with HF metadata."""
    schema = features.arrow_schema
    cols = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(cols, schema=schema)
