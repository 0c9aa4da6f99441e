"""Gemma 3 (text) as plain torch modules, loaded straight from a safetensors checkpoint.

The fast engine (`_gemma.py`) runs the forward pass itself; from transformers'
model it only ever used the weights, the norms, the rotary tables and the
activation. Importing transformers' Gemma 3 modeling module costs ~2.2 s on 2
cores (its activations pull in the distributed-tensor modules, its masks
torch._dynamo), more than the whole load. So the engine's default load builds
these modules instead: the same parameter names as transformers'
`Gemma3ForCausalLM` (so a LoRA merge and the runner see one layout), the same
arithmetic op for op (tests/test_gemma3.py compares every piece and the
runner's outputs against transformers'), and the weights memory-mapped from the
checkpoint as transformers maps them (`_pages.py` relies on that).

What the modules do not implement - other RoPE types, logit soft-capping,
bidirectional attention, untied heads - makes `config_of` return None, and
the caller loads the transformers model instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from . import _machine


@dataclass(frozen=True)
class Gemma3Config:
    """The fields of a `gemma3_text` config.json that the runner reads (attribute names as transformers')."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    sliding_window: int
    layer_types: tuple[str, ...]
    rope_theta: Mapping[str, float]  # layer type -> RoPE base
    query_pre_attn_scalar: float
    max_position_embeddings: int
    pad_token_id: int | None
    eos_token_id: int | list[int] | None
    bos_token_id: int | None
    model_type: str = "gemma3_text"


def config_of(raw: dict) -> Gemma3Config | None:
    """The config these modules implement exactly, or None (load the transformers model instead)."""
    if raw.get("model_type") != "gemma3_text" or not raw.get("layer_types"):
        return None
    if (raw.get("attn_logit_softcapping") or raw.get("final_logit_softcapping") or raw.get("attention_bias")
            or raw.get("use_bidirectional_attention") or not raw.get("tie_word_embeddings", True)
            or raw.get("hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh"):
        return None
    if "rope_parameters" in raw:  # transformers 5's layout: a default RoPE per layer type
        params = raw["rope_parameters"] or {}
        if any((params.get(kind) or {}).get("rope_type") != "default" for kind in set(raw["layer_types"])):
            return None
        theta = {kind: float(params[kind]["rope_theta"]) for kind in set(raw["layer_types"])}
    elif raw.get("rope_scaling") is None:  # transformers 4's: a global base, and a local one
        theta = {"full_attention": float(raw.get("rope_theta", 1_000_000.0)),
                 "sliding_attention": float(raw.get("rope_local_base_freq", 10_000.0))}
    else:
        return None
    return Gemma3Config(
        vocab_size=raw["vocab_size"], hidden_size=raw["hidden_size"], intermediate_size=raw["intermediate_size"],
        num_hidden_layers=raw["num_hidden_layers"], num_attention_heads=raw["num_attention_heads"],
        num_key_value_heads=raw["num_key_value_heads"], head_dim=raw["head_dim"],
        rms_norm_eps=raw.get("rms_norm_eps", 1e-6), sliding_window=raw["sliding_window"],
        layer_types=tuple(raw["layer_types"]), rope_theta=MappingProxyType(theta),
        query_pre_attn_scalar=raw.get("query_pre_attn_scalar", 256),
        max_position_embeddings=raw.get("max_position_embeddings", 32768), pad_token_id=raw.get("pad_token_id"),
        eos_token_id=raw.get("eos_token_id"), bos_token_id=raw.get("bos_token_id"))


class RMSNorm(nn.Module):
    """Gemma's RMSNorm: computed in fp32 and scaled by (1 + weight), then cast back."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim, device="meta"), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * (1.0 + self.weight.float())).type_as(x)


class ScaledEmbedding(nn.Embedding):
    """The token embedding times sqrt(hidden), the scale cast to the weights' dtype as Gemma does."""

    def __init__(self, vocab: int, hidden: int, padding_idx: int | None):
        # A given (meta) weight skips the random init, whose normal_ on meta would import torch._dynamo (~1 s).
        super().__init__(vocab, hidden, padding_idx, _weight=torch.empty(vocab, hidden, device="meta"),
                         _freeze=True)
        self.embed_scale = nn.Buffer(torch.tensor(hidden ** 0.5), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids) * self.embed_scale.to(self.weight.dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables per layer type (each with its own base), for positions [B, K]."""

    def __init__(self, config: Gemma3Config):
        super().__init__()
        dim = config.head_dim
        self.inv_freq = {kind: 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
                         for kind, base in config.rope_theta.items()}

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq[kind].to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)  # default RoPE: no scaling


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary_pos_emb(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                         sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k [B, heads, K, D] rotated by the tables [B, K, D]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def _linear(n_in: int, n_out: int) -> nn.Linear:
    return nn.Linear(n_in, n_out, bias=False, device="meta").requires_grad_(False)


class Attention(nn.Module):
    def __init__(self, c: Gemma3Config):
        super().__init__()
        self.head_dim = c.head_dim
        self.scaling = c.query_pre_attn_scalar ** -0.5
        self.q_proj = _linear(c.hidden_size, c.num_attention_heads * c.head_dim)
        self.k_proj = _linear(c.hidden_size, c.num_key_value_heads * c.head_dim)
        self.v_proj = _linear(c.hidden_size, c.num_key_value_heads * c.head_dim)
        self.o_proj = _linear(c.num_attention_heads * c.head_dim, c.hidden_size)
        self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps)
        self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps)


class MLP(nn.Module):
    def __init__(self, c: Gemma3Config):
        super().__init__()
        self.gate_proj = _linear(c.hidden_size, c.intermediate_size)
        self.up_proj = _linear(c.hidden_size, c.intermediate_size)
        self.down_proj = _linear(c.intermediate_size, c.hidden_size)

    @staticmethod
    def act_fn(x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")  # "gelu_pytorch_tanh"


class DecoderLayer(nn.Module):
    def __init__(self, c: Gemma3Config):
        super().__init__()
        self.self_attn, self.mlp = Attention(c), MLP(c)
        norm = lambda: RMSNorm(c.hidden_size, c.rms_norm_eps)  # noqa: E731
        self.input_layernorm, self.post_attention_layernorm = norm(), norm()
        self.pre_feedforward_layernorm, self.post_feedforward_layernorm = norm(), norm()


class TextModel(nn.Module):
    def __init__(self, c: Gemma3Config):
        super().__init__()
        self.embed_tokens = ScaledEmbedding(c.vocab_size, c.hidden_size, c.pad_token_id)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(c)


class Gemma3ForCausalLM(nn.Module):
    """The weights and modules of a Gemma 3 text model; `GemmaRunner` runs the forward pass."""

    def __init__(self, config: Gemma3Config):
        super().__init__()
        self.config = config
        self.model = TextModel(config)
        # The files the weights came from (path, inode, size, mtime of each; `load` and the
        # adapter merge fill it in): names these exact weights for what is derived from them
        # and remembered across processes (`_gemma.GemmaRunner`'s int8 layers).
        self.source = ""
        # A LoRA's factors not yet added to the projections (`_lora.merge_plain_lora(defer=True)`).
        self.pending_lora: list | None = None

    def get_output_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens  # tied: the head is the embedding's [vocab, hidden] weight


def load(path: Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Gemma3ForCausalLM | None:
    """The checkpoint at `path` as these modules, or None where they do not implement its config.

    Tensors come from safetensors' memory map (unread pages cost no memory);
    a dtype other than the file's converts them. Every parameter must come
    from the file and every tensor of the file must be used.
    """
    config = config_of(json.loads((path / "config.json").read_text()))
    files = sorted(path.glob("*.safetensors"))
    if config is None or not files or any(f.name.startswith("adapter_") for f in files):
        return None
    from safetensors import safe_open

    model = Gemma3ForCausalLM(config)
    params = dict(model.named_parameters())
    seen = set()
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                if name == "lm_head.weight":  # a tied head saved anyway: the embedding is the head
                    continue
                if name not in params:
                    raise ValueError(f"{file.name}: unexpected tensor {name}")
                _assign(model, name, handle.get_tensor(name), dtype)
                seen.add(name)
    missing = set(params) - seen
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[0]}")
    model.source = f"{'; '.join(_machine.file_identity(f) for f in files)} as {dtype}"
    return model.to(device).eval()


def _assign(model: nn.Module, name: str, tensor: torch.Tensor, dtype: torch.dtype) -> None:
    owner, _, attr = name.rpartition(".")
    module = model.get_submodule(owner)
    expected = getattr(module, attr).shape
    if tensor.shape != expected:
        raise ValueError(f"{name} is {tuple(tensor.shape)} in the checkpoint, {tuple(expected)} in its config")
    setattr(module, attr, nn.Parameter(tensor if tensor.dtype == dtype else tensor.to(dtype), requires_grad=False))


def is_light(model: Any) -> bool:
    """True for a model built here rather than by transformers."""
    return isinstance(model, Gemma3ForCausalLM)
