"""An adapter's manifest: what it was trained on, so a mismatch is caught at load.

`manifest.json` sits next to `adapter_model.safetensors`. It records the base
model (the GGUF's sha256), the prompt version, the schemas (name + digest), the
training config and results, and - once measured - eval results. Loading an
adapter onto another base model, or with another prompt version than this
extractkit writes, is refused: the weights would be silently wrong.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path
from typing import Any, Iterable

from ._errors import ModelLoadError
from ._prompt import PROMPT_VERSION

MANIFEST = "manifest.json"
BASE_MARK = "extractkit-cache.json"  # written by _model.convert_base_model


def base_identity(checkpoint: Path) -> str | None:
    """The sha256 of the GGUF a checkpoint was converted from, if extractkit made it."""
    mark = checkpoint / BASE_MARK
    if mark.exists():
        return json.loads(mark.read_text()).get("gguf_sha256")
    return None


def read_manifest(adapter: Path) -> dict[str, Any] | None:
    path = adapter / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from None


def check_manifest(adapter: Path, base: str | None) -> dict[str, Any] | None:
    """Refuse an adapter made for another base model or prompt version."""
    manifest = read_manifest(adapter)
    if manifest is None:
        return None
    trained_on = manifest.get("base_model", {}).get("gguf_sha256")
    if base is not None and trained_on is not None and trained_on != base:
        raise ModelLoadError(f"adapter {adapter} was trained on base model {trained_on[:12]}, but the "
                             f"model being loaded is {base[:12]}: load it with the base it was made for")
    version = manifest.get("prompt_version")
    if version is not None and version != PROMPT_VERSION:
        raise ModelLoadError(f"adapter {adapter} was trained with prompt {version}, but this extractkit "
                             f"writes {PROMPT_VERSION}: retrain it, or use the extractkit it was made with")
    return manifest


def machine_description() -> str:
    """CPU model, core count and the vector units that decide numerics (to compare timings)."""
    import os

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    units = [f for f in ("amx_bf16", "avx512_bf16", "avx512_vnni", "avx2") if f in flags]
    return f"{model}, {os.cpu_count()} logical CPUs" + (f" ({', '.join(units)})" if units else "")


def write_training_manifest(folder: Path, result: Any, config: Any, schemas: Iterable[Any],
                            sources: dict[str, Any], base: str | None = None) -> dict[str, Any]:
    """Write `folder/manifest.json` after training (eval results are added later)."""
    from . import __version__
    from ._model import GGUF_SHA256

    seen: dict[str, str] = {}
    for schema in schemas:
        seen.setdefault(schema.digest, schema.name)
    manifest = {
        "format": "extractkit-adapter/1",
        "extractkit_version": __version__,
        "base_model": {"name": "google/gemma-3-270m", "gguf_sha256": base or GGUF_SHA256},
        "prompt_version": PROMPT_VERSION,
        "schemas": [{"name": n, "digest": d} for d, n in sorted(seen.items(), key=lambda kv: kv[1])],
        "config": dataclasses.asdict(config),
        "data": sources,
        "training": {
            "steps": result.steps, "examples": result.examples, "skipped_too_long": result.skipped,
            "target_tokens": result.target_tokens, "total_tokens": result.total_tokens,
            "seconds": round(result.seconds, 1), "final_loss": round(result.final_loss, 4),
            "dtype": result.dtype, "device": result.device,
            "machine": machine_description(),
        },
        "eval": {},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def add_eval(folder: Path, name: str, report: dict[str, Any]) -> None:
    """Record an eval report under `eval[name]` in an adapter's manifest."""
    manifest = read_manifest(folder) or {}
    manifest.setdefault("eval", {})[name] = report
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
