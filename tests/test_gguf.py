"""Fast tier: `export_gguf` on a tiny Gemma 3 whose config llama.cpp can express.

The shared tiny model (conftest) alternates sliding/full layers, which llama.cpp's
fixed gemma3 layout cannot represent, so these tests build their own tiny
checkpoint with Gemma 3's real layout and a small template GGUF for it.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import BaseModel

from extractkit import ModelLoadError
from extractkit._schema import as_output_schema
from extractkit.finetune import Example, TrainConfig, export_gguf, train
from extractkit.finetune._gguf import write_template

GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
LAYER_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
               "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
               "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "post_attention_norm",
               "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
               "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


class Pet(BaseModel):
    name: str
    age: int | None = None


@pytest.fixture(scope="module")
def gguf_base(tmp_path_factory):
    """A tiny Gemma 3 laid out like the real one (every 6th layer global, head_dim 256), an adapter, a template."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from _tiny import build_tokenizer

    folder = tmp_path_factory.mktemp("gguf-tiny")
    tokenizer = build_tokenizer()
    torch.manual_seed(1)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256,
        max_position_embeddings=4096, sliding_window=64, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        tie_word_embeddings=True)
    model = Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # Gemma initializes norms to 0: random ones make the +1 convention visible
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.normal_(0, 0.5)
    model.save_pretrained(folder / "base")
    tokenizer.save_pretrained(folder / "base")
    pairs = [(as_output_schema(Pet), Example("Rex is 4 years old.", {"name": "Rex", "age": 4}))]
    train(pairs, folder / "adapter", base=folder / "base", progress=False,
          config=TrainConfig(max_steps=1, batch_size=1, lora_r=4, learning_rate=5e-2))
    template = write_template(folder / "template.gguf", folder / "base")
    return folder / "base", folder / "adapter", template


def _export(gguf_base, out, quant):
    base, adapter, template = gguf_base
    return export_gguf(out, quant=quant, model=base, adapter=adapter, template=template)


def _merged(gguf_base):
    from extractkit._model import load_weights

    base, adapter, _ = gguf_base
    return load_weights(base, adapter=adapter, device="cpu")


def _expected(merged) -> dict[str, np.ndarray]:
    """The merged weights under their GGUF names, norms as 1 + w; written out by hand, not by the exporter."""
    names = dict(GGUF_NAMES)
    for i in range(merged.config.num_hidden_layers):
        names.update({f"model.layers.{i}.{hf}.weight": f"blk.{i}.{g}.weight" for hf, g in LAYER_NAMES.items()})
    state = {k: v.detach().numpy() for k, v in merged.state_dict().items() if k != "lm_head.weight"}
    assert set(state) == set(names)
    return {names[k]: v + 1.0 if "norm" in names[k] else v for k, v in state.items()}


def _read(path):
    import gguf

    reader = gguf.GGUFReader(path)
    tensors = {t.name: (t.tensor_type, gguf.quants.dequantize(t.data, t.tensor_type)) for t in reader.tensors}
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}, tensors


def test_f16_export_holds_every_merged_weight_and_the_models_metadata(gguf_base, tmp_path):
    from gguf import GGMLQuantizationType as Q, LlamaFileType

    out = _export(gguf_base, tmp_path / "m.gguf", "f16")
    merged = _merged(gguf_base)
    fields, tensors = _read(out)
    expected = _expected(merged)
    assert set(tensors) == set(expected)  # tied lm_head: no output.weight, like the base GGUF
    for name, want in expected.items():
        qtype, got = tensors[name]
        assert got.shape == want.shape, name
        if want.ndim == 1:  # norms stay f32, carrying HF's 1 + w
            assert qtype == Q.F32 and np.array_equal(got, want), name
        else:
            assert qtype == Q.F16 and np.array_equal(got, want.astype(np.float16).astype(np.float32)), name
    c = merged.config
    assert fields["general.architecture"] == "gemma3"
    assert fields["general.file_type"] == LlamaFileType.MOSTLY_F16
    assert fields["extractkit.prompt_version"] == "ek-prompt-v1"
    assert "adapter" in fields["general.description"] and fields["general.name"].startswith("extractkit")
    assert (fields["gemma3.block_count"], fields["gemma3.embedding_length"], fields["gemma3.feed_forward_length"],
            fields["gemma3.attention.head_count"], fields["gemma3.attention.head_count_kv"],
            fields["gemma3.attention.key_length"], fields["gemma3.context_length"],
            fields["gemma3.attention.sliding_window"]) == (2, 64, 128, 2, 1, 256, 4096, 64)
    assert fields["gemma3.rope.freq_base"] == c.rope_parameters["full_attention"]["rope_theta"]
    assert fields["gemma3.attention.layer_norm_rms_epsilon"] == pytest.approx(c.rms_norm_eps)
    assert fields["tokenizer.ggml.tokens"][:3] == ["<pad>", "<eos>", "<bos>"]
    assert (fields["tokenizer.ggml.bos_token_id"], fields["tokenizer.ggml.eos_token_id"]) == (2, 1)


def test_q8_0_export_quantizes_matrices_within_q8_tolerance(gguf_base, tmp_path):
    from gguf import GGMLQuantizationType as Q, LlamaFileType

    fields, tensors = _read(_export(gguf_base, tmp_path / "m.gguf", "q8_0"))
    assert fields["general.file_type"] == LlamaFileType.MOSTLY_Q8_0
    for name, want in _expected(_merged(gguf_base)).items():
        qtype, got = tensors[name]
        assert got.shape == want.shape, name
        if want.ndim == 1:
            assert qtype == Q.F32 and np.array_equal(got, want), name
            continue
        assert qtype == Q.Q8_0, name
        # Q8_0: per block of 32, step = max|w| / 127 stored as f16; rounding costs half a step,
        # the f16 step at most 127 * 2^-11 steps more.
        blocks = want.reshape(-1, 32)
        step = np.abs(blocks).max(axis=1, keepdims=True) / 127
        assert np.all(np.abs(got.reshape(-1, 32) - blocks) <= 0.57 * step + 1e-8), name


def test_transformers_reads_the_export_back_with_the_merged_models_logits(gguf_base, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    merged = _merged(gguf_base)
    plain = _merged((gguf_base[0], None, None))
    ids = torch.tensor([[2, 40, 41, 42, 43, 44, 45, 46]])
    with torch.no_grad():
        want = merged(ids).logits
        assert not torch.allclose(want, plain(ids).logits, atol=1e-3)  # the adapter changed the model
        # tolerances relative to the largest logit; the tiny random model's logits are small and close
        for quant, rtol in (("f16", 2e-3), ("q8_0", 6e-2)):
            out = _export(gguf_base, tmp_path / f"{quant}.gguf", quant)
            # Only the weights and config are read back: transformers' GGUF tokenizer reader
            # assumes Gemma's SentencePiece vocab, and the tiny tokenizer is byte-level BPE.
            loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name,
                                                         dtype=torch.float32).eval()
            assert loaded.config.layer_types == merged.config.layer_types
            got = loaded(ids).logits
            assert (got - want).abs().max() < rtol * want.abs().max(), quant
            if quant == "f16":
                assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_export_refuses_what_llama_cpp_would_compute_differently(tiny_dir, gguf_base, tmp_path):
    import gguf

    # conftest's tiny model alternates sliding/full layers: llama.cpp fixes every 6th as full
    with pytest.raises(ModelLoadError, match="layer_types"):
        export_gguf(tmp_path / "x.gguf", model=tiny_dir, adapter=None, template=gguf_base[2])
    other = gguf.GGUFWriter(tmp_path / "other.gguf", "gemma3")
    other.add_array("tokenizer.ggml.tokens", ["<pad>", "<eos>", "<bos>"])
    other.write_header_to_file(), other.write_kv_data_to_file(), other.write_tensors_to_file(), other.close()
    with pytest.raises(ModelLoadError, match="tokenizer"):
        export_gguf(tmp_path / "x.gguf", model=gguf_base[0], adapter=None, template=tmp_path / "other.gguf")
    with pytest.raises(ValueError, match="q4"):
        export_gguf(tmp_path / "x.gguf", quant="q4")
    assert not list(tmp_path.glob("*x.gguf*"))  # nothing half-written left behind
