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


def schema_of(features: datasets.Features) -> pa.Schema:
    return features.arrow_schema


def table_from_rows(rows: list[dict], features: datasets.Features) -> pa.Table:
    """Build a table with exactly the declared columns, in declared order, with HF metadata."""
    schema = features.arrow_schema
    cols = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(cols, schema=schema)
