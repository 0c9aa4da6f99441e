"""Scale out on Ray Data (``pip install "extractkit[ray]"``).

    import ray, extractkit.ray
    ds = ray.data.read_parquet("s3://bucket/docs/")
    out = extractkit.ray.extract_dataset(ds, "text", "invoice", actors=8, cpus_per_actor=2)
    out.write_parquet("s3://bucket/invoices/")

Each actor loads the model and compiles the schema's grammar once, then serves
batches. Schemas travel to actors as an import path (``module:Class``, a
built-in name) or a JSON Schema dict - never as a pickled class - so workers
only need extractkit and your module installed. Importing this module does not
import Ray; `extract_dataset` does.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

from ._arrow import output_schema, results_table
from ._extractor import ExtractConfig
from ._errors import UsageError
from ._rows import Row, as_text
from ._schema import OutputSchema, as_output_schema, load_schema

__all__ = ["extract_dataset", "schema_ref"]


def schema_ref(schema: Any) -> str | dict:
    """What travels to the actors: a ``module:Class`` path when the class can be imported
    by that name (not from ``__main__``), a built-in name or path as given, else the JSON Schema."""
    if isinstance(schema, str):
        load_schema(schema)  # fail here, not in every actor
        return schema
    output = as_output_schema(schema)
    model = output.model
    if model is not None and model.__module__ != "__main__":
        ref = f"{model.__module__}:{model.__qualname__}"
        try:
            if getattr(importlib.import_module(model.__module__), model.__qualname__, None) is model:
                return ref
        except ImportError:
            pass
    return output.json_schema


def _load(ref: str | dict) -> OutputSchema:
    return load_schema(ref) if isinstance(ref, str) else as_output_schema(ref)


class ExtractUDF:
    """The callable class Ray runs on each actor: model and grammar loaded once, then batches."""

    def __init__(self, schema: str | dict, column: str, model: str | None, adapter: str | None,
                 engine: str, config: ExtractConfig, threads: int):
        import torch

        from ._extractor import Extractor

        torch.set_num_threads(max(1, threads))  # the actor's CPUs, not the whole node's
        self.column, self.output = column, _load(schema)
        self.extractor = Extractor.from_pretrained(model, adapter=adapter, engine=engine, config=config)
        self.extractor.plan(self.output)
        self.schema = output_schema(self.output, None, config.bounds)

    def __call__(self, batch: Any) -> Any:
        from ._job import extract_rows

        if self.column not in batch.column_names:
            raise UsageError(f"no column {self.column!r} (columns: {', '.join(batch.column_names)})")
        clash = set(batch.column_names) & set(self.schema.names)
        if clash:
            raise UsageError(f"input column {sorted(clash)[0]!r} clashes with an output column; "
                             "rename or drop it first")
        rows = [Row(i, i, as_text(t)) for i, t in enumerate(batch.column(self.column).to_pylist())]
        table = results_table(extract_rows(self.extractor, self.output, rows), self.schema)
        for field, col in zip(table.schema, table.columns):
            batch = batch.append_column(field, col)
        return batch


def pool_kwargs(map_batches: Any, actors: int) -> dict[str, Any]:
    """`map_batches` arguments for a fixed pool of `actors`, across Ray's API change.

    Ray 2.9-2.4x size actor pools with ``concurrency=n`` (deprecating
    ``compute=``); newer and older Rays take ``compute=ActorPoolStrategy(size=n)``.
    """
    params = inspect.signature(map_batches).parameters
    deprecated = "concurrency: This argument is deprecated" in (map_batches.__doc__ or "")
    if "concurrency" in params and not deprecated:
        return {"concurrency": actors}
    from ray.data import ActorPoolStrategy

    return {"compute": ActorPoolStrategy(size=actors)}


def extract_dataset(ds: Any, column: str, schema: Any, *, model: str | os.PathLike | None = None,
                    adapter: str | os.PathLike | None = "bundled", engine: str = "llguidance",
                    config: ExtractConfig = ExtractConfig(), actors: int = 1, cpus_per_actor: int = 1,
                    rows_per_batch: int = 64) -> Any:
    """A Dataset with `ds`'s columns plus the schema's typed columns, `_error` and `_ms`.

    `model` / `adapter` / `engine` are as in `Extractor.from_pretrained` and must be
    readable on every node. Each of the `actors` reserves `cpus_per_actor` CPUs and
    runs torch with that many threads.
    """
    kwargs = dict(schema=schema_ref(schema), column=column,
                  model=None if model is None else os.fspath(model),
                  adapter=adapter if adapter in (None, "bundled") else os.fspath(adapter),  # type: ignore[arg-type]
                  engine=engine, config=config, threads=cpus_per_actor)
    return ds.map_batches(ExtractUDF, fn_constructor_kwargs=kwargs, batch_format="pyarrow",
                          batch_size=rows_per_batch, num_cpus=cpus_per_actor,
                          **pool_kwargs(ds.map_batches, actors))
