"""Export: the model with its adapter merged, as a plain transformers checkpoint.

Other tools load it with `AutoModelForCausalLM.from_pretrained(out)`; driven
with `extractkit.render_prompt(text, Model)` it answers exactly as extractkit's
own decoder would. `extractkit-export.json` records what was merged and the
prompt version the weights expect.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from extractkit._model import checkpoint_path, load_tokenizer, load_weights, resolve_adapter
from extractkit._prompt import PROMPT_VERSION


def export_hf(out: str | os.PathLike, *, model: str | os.PathLike | None = None,
              adapter: str | os.PathLike | None = "bundled") -> Path:
    """Write a merged checkpoint (safetensors, config, tokenizer) to `out`; returns it."""
    out = Path(out)
    adapter_dir = resolve_adapter(model, adapter)
    path = checkpoint_path(model)
    hf_model = load_weights(path, adapter=adapter_dir, device="cpu")
    tokenizer = load_tokenizer(path)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    hf_model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    manifest = json.loads((adapter_dir / "manifest.json").read_text()) \
        if adapter_dir is not None and (adapter_dir / "manifest.json").exists() else None
    (tmp / "extractkit-export.json").write_text(json.dumps({
        "prompt_version": PROMPT_VERSION,
        "base_checkpoint": str(path),
        "adapter": str(adapter_dir) if adapter_dir else None,
        "adapter_manifest": manifest,
        "usage": "prompt = extractkit.render_prompt(text, Model); greedy-decode the JSON after it",
    }, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
