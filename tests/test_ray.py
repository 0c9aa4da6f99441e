"""Ray Data: a real local cluster (2 CPUs) running the model on an actor pool - no mocks."""

from __future__ import annotations

import inspect
from pathlib import Path

import pyarrow as pa
import pytest

import extractkit.ray as xray
from extractkit import ExtractConfig, Extractor, UnknownSchemaError
from extractkit.schemas import Contact

pytestmark = pytest.mark.ray
EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
N_SCHEMA = {"title": "N", "type": "object", "required": ["n", "word"],
            "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99},
                           "word": {"type": "string", "maxLength": 3}}}
SMALL = ExtractConfig(max_new_tokens=40, batch_size=4)


def test_schemas_travel_as_import_paths_or_json_schema():
    assert xray.schema_ref(Contact) == "extractkit.schemas.contact:Contact"
    assert xray.schema_ref("invoice") == "invoice"
    assert xray.schema_ref(N_SCHEMA) == N_SCHEMA
    local = type("Local", (Contact,), {"__module__": "__main__"})  # not importable on a worker
    assert xray.schema_ref(local)["title"] == "Local"
    with pytest.raises(UnknownSchemaError):
        xray.schema_ref("no_such_schema")


def test_actor_pool_arguments_follow_rays_api():
    def old(fn, *, compute=None, batch_size=None): ...

    def middle(fn, *, compute=None, concurrency=None):
        """concurrency: The maximum number of Ray workers to use concurrently."""

    assert xray.pool_kwargs(middle, 3) == {"concurrency": 3}
    assert xray.pool_kwargs(old, 3)["compute"].min_size == 3
    import ray.data

    installed = xray.pool_kwargs(ray.data.Dataset.map_batches, 2)
    assert set(installed) <= {"compute", "concurrency"} and len(installed) == 1
    assert set(installed) <= set(inspect.signature(ray.data.Dataset.map_batches).parameters)


def test_extract_dataset_on_the_tiny_model_matches_a_local_run(ray_cluster, tiny_dir):
    texts = [f"row {i}: {i % 13} items" for i in range(10)] + ["   "]
    ds = ray_cluster.data.from_items([{"key": i, "text": t} for i, t in enumerate(texts)])
    out = xray.extract_dataset(ds, "text", N_SCHEMA, model=tiny_dir, adapter=None, config=SMALL,
                               actors=1, rows_per_batch=64)
    table = pa.Table.from_pylist(sorted(out.take_all(), key=lambda r: r["key"]))
    assert out.schema().names == ["key", "text", "n", "word", "_error", "_ms"]
    assert table.column("_error").to_pylist()[-1].startswith("InputError: input text is empty")
    local = list(Extractor.from_pretrained(tiny_dir, adapter=None, config=SMALL).extract_many(texts, N_SCHEMA))
    assert table.column("n").to_pylist() == [r.value["n"] if r.ok else None for r in local]
    assert table.column("word").to_pylist() == [r.value["word"] if r.ok else None for r in local]


@pytest.mark.real_model
def test_extract_dataset_on_the_real_model(ray_cluster):
    texts = [(EXAMPLES / "contact.txt").read_text(), ""]
    ds = ray_cluster.data.from_items([{"text": t} for t in texts])
    rows = xray.extract_dataset(ds, "text", Contact, actors=1, cpus_per_actor=2).take_all()
    assert len(rows) == 2
    assert rows[0]["_error"] is None and isinstance(rows[0]["name"], str)
    assert rows[1]["_error"].startswith("InputError")
