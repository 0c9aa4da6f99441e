"""`extract_frame`: a DataFrame's text column (pandas or polars) -> a frame of typed columns."""

from __future__ import annotations

from typing import Any

from ._arrow import output_schema, results_table
from ._errors import UsageError
from ._extractor import Extractor, default_extractor
from ._schema import as_output_schema


def extract_frame(df: Any, column: str, schema: Any, *, extractor: Extractor | None = None,
                  batch_size: int | None = None) -> Any:
    """Extract `schema` from every row of `df[column]`.

    Returns a frame of the same kind: one typed column per schema field (nested
    models are structs, lists are lists, dates are dates; Arrow-backed in pandas),
    `_error` (None when the row extracted) and `_ms`. A pandas result keeps `df`'s
    index: join it back with ``df.join(extract_frame(df, "text", Invoice))``; a
    polars one is in row order (``df.hstack(...)``). Failed rows never stop the others.
    """
    polars = type(df).__module__.split(".")[0] == "polars"
    if column not in df.columns:
        raise UsageError(f"no column {column!r} in the frame (columns: {', '.join(map(str, df.columns))})")
    extractor = extractor or default_extractor()
    output = as_output_schema(schema)
    extractor.plan(output)
    from ._job import extract_rows
    from ._rows import Row, as_text

    values = df.get_column(column).to_list() if polars else df[column].tolist()
    # The same row checks as file jobs and Ray (null, bytes, bad UTF-8), so a bad cell reads the same.
    rows = [Row(i, i, as_text(None if _missing(t) else t)) for i, t in enumerate(values)]
    results = extract_rows(extractor, output, rows, batch_size)
    table = results_table(results, output_schema(output, None, extractor.config.bounds))
    if polars:
        import polars as pl

        return pl.from_arrow(table)
    import pandas as pd

    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    frame.index = df.index
    return frame


def _missing(value: Any) -> bool:
    """pandas spells a missing text NaN or NA; the row checks expect None."""
    if value is None or isinstance(value, str):
        return False
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (ImportError, TypeError, ValueError):
        return False
