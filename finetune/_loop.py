"""The training loop proper: LoRA wrapping, steps, checkpoints and resume.

Kept apart from `_train.py` (which decides *what* to train on) so this file
reads top to bottom as the mechanics: wrap, step, save, restore.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

from ._train import Encoded, TrainConfig, learning_rate, plan_order

_STATE = "trainer_state.pt"


class Loop:
    def __init__(self, model: Any, encoded: Sequence[Encoded], config: TrainConfig, out: Path, *,
                 device: str, dtype: str, progress: bool):
        import torch
        from peft import LoraConfig, get_peft_model

        self.config, self.out, self.device, self.dtype = config, out, device, dtype
        self.encoded = encoded
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.target_modules), task_type="CAUSAL_LM")
        self.model = get_peft_model(model, lora)
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=0.0)
        self.order = plan_order(len(encoded), config)
        self.total_steps = -(-len(self.order) // config.batch_size)
        self.step = 0
        self.target_tokens = self.total_tokens = 0
        self.seconds = 0.0
        self.losses: list[float] = []
        self.progress = progress

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        import torch

        if self.dtype == "bfloat16":
            return torch.autocast(device_type=self.device, dtype=torch.bfloat16)
        return nullcontext()

    def _example_loss(self, enc: Encoded, weight: float) -> float:
        """Forward + backward on one example; returns its summed token loss."""
        import torch
        import torch.nn.functional as F

        ids = torch.tensor([enc.input_ids], device=self.device)
        # Logits only where a target token is predicted: position t predicts t+1.
        keep = torch.arange(enc.n_prompt - 1, len(enc.input_ids) - 1, device=self.device)
        labels = ids[0, enc.n_prompt:]
        with self._autocast():
            logits = self.model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits[0]
        loss = F.cross_entropy(logits.float(), labels, reduction="sum")
        (loss * weight).backward()
        return float(loss.detach())

    def train_step(self) -> float:
        import torch

        batch = self.order[self.step * self.config.batch_size:(self.step + 1) * self.config.batch_size]
        items = [self.encoded[i] for i in batch]
        n_targets = sum(len(e.input_ids) - e.n_prompt for e in items)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, self.total_steps, self.config)
        self.optimizer.zero_grad(set_to_none=True)
        total = sum(self._example_loss(e, 1.0 / n_targets) for e in items)
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.step += 1
        self.target_tokens += n_targets
        self.total_tokens += sum(len(e.input_ids) for e in items)
        self.losses.append(total / n_targets)
        return self.losses[-1]

    def recent_loss(self, window: int = 10) -> float:
        tail = self.losses[-window:]
        return sum(tail) / len(tail) if tail else float("nan")

    def run(self, on_checkpoint: Callable[[int], None] | None = None) -> None:
        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_steps, initial=self.step, desc="finetune", unit="step", file=sys.stderr,
                   disable=not self.progress or os.environ.get("EXTRACTKIT_QUIET") == "1")
        while self.step < self.total_steps:
            start = time.perf_counter()
            tokens_before = self.total_tokens
            self.train_step()
            took = time.perf_counter() - start
            self.seconds += took
            bar.set_postfix(loss=f"{self.recent_loss():.4f}",
                            tok_s=f"{(self.total_tokens - tokens_before) / took:.0f}")
            bar.update(1)
            if self.step % self.config.save_every == 0 and self.step < self.total_steps:
                self.save_checkpoint()
                if on_checkpoint:
                    on_checkpoint(self.step)
        bar.close()

    # ------------------------------------------------------------- persistence
    def save_adapter(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder), safe_serialization=True)

    def save_checkpoint(self) -> None:
        """Adapter + optimizer + counters, written aside and renamed into place."""
        import torch

        final = self.out / "checkpoint"
        tmp = self.out / f".checkpoint-tmp-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        self.save_adapter(tmp)
        torch.save({"step": self.step, "optimizer": self.optimizer.state_dict(), "losses": self.losses,
                    "target_tokens": self.target_tokens, "total_tokens": self.total_tokens,
                    "seconds": self.seconds, "torch_rng": torch.get_rng_state(),
                    "python_rng": random.getstate(), "n_examples": len(self.encoded),
                    "config": json.dumps(self.config.__dict__, sort_keys=True, default=list)},
                   tmp / _STATE)
        old = self.out / ".checkpoint-old"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            import shutil

            shutil.rmtree(old)

    def load_adapter_weights(self, folder: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(str(folder / "adapter_model.safetensors")))

    def restore(self) -> None:
        """Continue from `out/checkpoint`; refuses a checkpoint of other data or config."""
        import torch

        folder = self.out / "checkpoint"
        if not (folder / _STATE).exists():
            old = self.out / ".checkpoint-old"  # killed between the two renames
            folder = old if (old / _STATE).exists() else folder
        if not (folder / _STATE).exists():
            raise FileNotFoundError(f"nothing to resume: no checkpoint in {self.out}")
        state = torch.load(folder / _STATE, weights_only=False)
        config = json.dumps(self.config.__dict__, sort_keys=True, default=list)
        if state["config"] != config or state["n_examples"] != len(self.encoded):
            raise ValueError(f"the checkpoint in {folder} was made with other data or settings; "
                             "rerun with the same arguments, or start over without --resume")
        self.load_adapter_weights(folder)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.losses = state["step"], state["losses"]
        self.target_tokens, self.total_tokens = state["target_tokens"], state["total_tokens"]
        self.seconds = state["seconds"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
