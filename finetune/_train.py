"""LoRA fine-tuning of Gemma 3 270M on extraction examples.

One example = the inference prompt (`render_prompt`) followed by the decoder's
JSON (`target_json`) and EOS; the loss covers the JSON and EOS only. Both
strings come from the inference modules, never from a copy, so the model is
trained on exactly what it will see and write.

CPU is the default target, so the loop is built for it: one example per
forward pass (no padding waste) with gradient accumulation, bf16 autocast
where the CPU has bf16 units, and logits computed only at the target positions
- the 262k-row output head on every prompt token would cost about as much as
the rest of the model.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from extractkit._prompt import render_prompt_for_schema
from extractkit._schema import OutputSchema

from ._data import Example, target_json

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (recorded in the manifest)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = TARGET_MODULES
    learning_rate: float = 3e-4
    warmup_steps: int = 10
    batch_size: int = 8            # examples per optimizer step (accumulated one at a time)
    epochs: float = 1.0
    max_steps: int | None = None   # overrides epochs when set
    max_length: int = 2048         # longer examples are skipped (and counted), never cut
    seed: int = 0
    dtype: str = "auto"            # auto | bfloat16 | float32 (autocast dtype; weights stay fp32)
    save_every: int = 20           # steps between resumable checkpoints
    threads: int | None = None     # torch threads; default: all cores


@dataclass(frozen=True)
class Encoded:
    prompt: str
    target: str
    input_ids: list[int]
    n_prompt: int                  # the first n_prompt ids are the prompt (no loss)


def encode(example: Example, schema: OutputSchema, tokenizer: Any) -> Encoded:
    """The training sequence for one example: prompt ids, then target ids and EOS."""
    prompt = render_prompt_for_schema(example.text, schema.json_schema)
    target = target_json(example.output, schema)
    prompt_ids = tokenizer(prompt)["input_ids"]
    target_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return Encoded(prompt, target, prompt_ids + target_ids, len(prompt_ids))


def resolve_dtype(name: str, device: str) -> str:
    """`auto` picks bf16 autocast on CUDA and on CPUs with bf16 units, else fp32."""
    if name != "auto":
        return name
    import torch

    if device == "cuda":
        return "bfloat16"
    has_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or \
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return "bfloat16" if has_bf16 else "float32"


def plan_order(n: int, config: TrainConfig) -> list[int]:
    """Example indices in training order: a fresh seeded shuffle per epoch."""
    rng = random.Random(config.seed)
    total = config.max_steps * config.batch_size if config.max_steps else math.ceil(n * config.epochs)
    order: list[int] = []
    while len(order) < total:
        epoch = list(range(n))
        rng.shuffle(epoch)
        order.extend(epoch)
    return order[:total]


def learning_rate(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    examples: int
    skipped: int
    target_tokens: int
    total_tokens: int
    seconds: float
    final_loss: float
    dtype: str
    device: str


def train(data: Sequence[tuple[OutputSchema, Example]], out: str | os.PathLike, *,
          config: TrainConfig = TrainConfig(), base: str | os.PathLike | None = None,
          init_adapter: str | os.PathLike | None = None, resume: bool = False,
          device: str | None = None, progress: bool = True,
          on_checkpoint: Callable[[int], None] | None = None) -> TrainResult:
    """Train a LoRA adapter on (schema, example) pairs and save it to `out`.

    With `resume=True` training continues from `out/checkpoint` (same data and
    config give the same order, so the result matches an uninterrupted run up
    to floating-point nondeterminism). `init_adapter` starts from an earlier
    adapter's weights (a second curriculum stage) instead of a fresh LoRA. Returns what was trained; the manifest is
    written by the caller, who knows the data's provenance.
    """
    import torch

    from extractkit._model import checkpoint_path, load_tokenizer, load_weights

    from ._loop import Loop

    out = Path(out)
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    path = checkpoint_path(base)
    tokenizer = load_tokenizer(path)
    encoded = [encode(ex, schema, tokenizer) for schema, ex in data]
    keep = [i for i, e in enumerate(encoded) if len(e.input_ids) <= config.max_length]
    skipped = len(encoded) - len(keep)
    if not keep:
        raise ValueError(f"every example is longer than max_length={config.max_length} tokens")
    encoded = [encoded[i] for i in keep]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = resolve_dtype(config.dtype, device)
    model = load_weights(path, device=device, dtype="float32")
    loop = Loop(model, encoded, config, out, device=device, dtype=dtype, progress=progress)
    if resume:
        loop.restore()
    elif init_adapter is not None:
        loop.load_adapter_weights(Path(init_adapter))
    loop.run(on_checkpoint)
    loop.save_adapter(out)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    return TrainResult(out, loop.step, len(encoded), skipped, loop.target_tokens, loop.total_tokens,
                       loop.seconds, loop.recent_loss(), dtype, device)
