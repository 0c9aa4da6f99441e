"""Merge a plain LoRA adapter into a loaded model without importing peft.

`import peft` alone takes ~2.5 s on a 2-core CPU, longer than loading the
model. The adapters extractkit trains (and most LoRA adapters) are the plain
kind: W += (B @ A) * alpha / r on a few Linear layers. For those this module
does what `PeftModel.from_pretrained(...).merge_and_unload()` does, with the
same arithmetic in the same order (so the merged weights are bit-identical,
tests/test_finetune.py checks), reading the adapter's safetensors directly.
Anything fancier (DoRA, rsLoRA, per-module ranks, extra trained modules, ...)
returns False and the caller goes through peft.

`defer=True` reads and checks the adapter but leaves the additions pending on the
model (`merge_pending` does them). The fast engine asks for that: where its qint8
layer forms are remembered (`_gemma.GemmaRunner.calibrate`) it never reads the fp32
projections, and adding 126 deltas to them was ~0.9 s of a 2-core cold start spent
on weights it then drops (`drop_pending`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._pages import release

# adapter_config.json keys that change the arithmetic; any of them set means "let peft do it".
_UNSUPPORTED = ("use_dora", "use_rslora", "fan_in_fan_out", "modules_to_save", "layer_replication",
                "trainable_token_indices", "target_parameters", "alora_invocation_tokens",
                "layers_to_transform", "rank_pattern", "alpha_pattern", "use_qalora", "lora_bias",
                "use_bdlora", "exclude_modules")
_PREFIX = "base_model.model."


def merge_plain_lora(hf_model: Any, adapter: Path, defer: bool = False) -> bool:
    """Merge `adapter` into `hf_model` in place if it is a plain LoRA; False (model untouched) if not.

    With `defer`, the checked factors wait on `hf_model.pending_lora` until `merge_pending`."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    weights_file = adapter / "adapter_model.safetensors"
    if config.get("peft_type") != "LORA" or config.get("bias", "none") != "none" or not weights_file.exists():
        return False
    if any(config.get(key) for key in _UNSUPPORTED):
        return False
    from safetensors.torch import load_file

    pairs = _pairs(load_file(str(weights_file)))
    modules = dict(hf_model.named_modules())
    if pairs is None or any(name not in modules or not hasattr(modules[name], "weight") for name in pairs):
        return False
    scaling = config["lora_alpha"] / config["r"]
    deltas = []
    for name, (a, b) in pairs.items():
        weight = modules[name].weight
        if a.shape[0] != config["r"] or tuple(weight.shape) != (b.shape[0], a.shape[1]):
            raise ValueError(f"LoRA weights for {name} do not fit the model ({tuple(weight.shape)})")
        deltas.append((modules[name], a, b, scaling))
    hf_model.pending_lora = deltas
    if not defer:
        merge_pending(hf_model)
    return True


def merge_pending(hf_model: Any) -> None:
    """Add the deltas `merge_plain_lora(defer=True)` left pending, if any."""
    for module, a, b, scaling in getattr(hf_model, "pending_lora", None) or ():
        weight = module.weight
        # peft's LoraLayer.get_delta_weight + merge: (B @ A) * scaling, added to the weight.
        delta = (b.to(weight.dtype) @ a.to(weight.dtype)) * scaling
        base = weight.data
        # Into new memory rather than in place: a base weight memory-mapped from the
        # checkpoint stays unwritten, so its pages can go back to the page cache.
        weight.data = base + delta.to(weight.device)
        release(base)
    drop_pending(hf_model)


def drop_pending(hf_model: Any) -> None:
    """Forget pending deltas: for a caller that replaced those weights by forms of the merged ones."""
    if getattr(hf_model, "pending_lora", None):
        hf_model.pending_lora = None


def _pairs(state: dict[str, Any]) -> dict[str, tuple[Any, Any]] | None:
    """module name -> (lora_A, lora_B) from peft's key layout; None if a key does not fit it."""
    found: dict[str, dict[str, Any]] = {}
    for key, tensor in state.items():
        if not key.startswith(_PREFIX):
            return None
        for part in ("lora_A", "lora_B"):
            suffix = f".{part}.weight"
            if key.endswith(suffix):
                found.setdefault(key[len(_PREFIX): -len(suffix)], {})[part] = tensor
                break
        else:
            return None  # an embedding LoRA, a bias, a saved module: not plain
    if any(len(p) != 2 for p in found.values()):
        return None
    return {name: (p["lora_A"], p["lora_B"]) for name, p in found.items()}
