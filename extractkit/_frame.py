"""`extract_frame`: a pandas DataFrame's text column -> a frame of typed columns."""

from __future__ import annotations

from typing import Any

from ._arrow import output_schema, results_table
from ._extractor import Extractor, default_extractor
from ._errors import UsageError
from ._schema import as_output_schema


def extract_frame(df: Any, column: str, schema: Any, *, extractor: Extractor | None = None,
                  batch_size: int | None = None) -> Any:
    """Extract `schema` from every row of `df[column]`.

    Returns a pandas DataFrame with `df`'s index, one typed column per schema
    field (Arrow-backed: nested models are structs, lists are lists, dates are
    dates), `_error` (None when the row extracted) and `_ms`. Rows that fail never
    stop the others. Join it back with ``df.join(extract_frame(df, "text", Invoice))``.
    """
    import pandas as pd

    if column not in df.columns:
        raise UsageError(f"no column {column!r} in the frame (columns: {', '.join(map(str, df.columns))})")
    extractor = extractor or default_extractor()
    output = as_output_schema(schema)
    extractor.plan(output)
    texts = [None if _missing(t) else t for t in df[column].tolist()]
    results = list(extractor.extract_many(texts, output, batch_size=batch_size))
    table = results_table(results, output_schema(output, None, extractor.config.bounds))
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    frame.index = df.index
    return frame


def _missing(value: Any) -> bool:
    """pandas spells a missing text NaN or NA; the Extractor should see None."""
    try:
        import pandas as pd

        return value is not None and not isinstance(value, str) and bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
