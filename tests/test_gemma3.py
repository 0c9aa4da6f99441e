"""extractkit's own Gemma 3 modules (`_gemma3.py`) against transformers', piece by piece and end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from _tiny import build_model, build_tokenizer


@pytest.fixture(scope="module")
def tiny_normed(tmp_path_factory):
    """The tiny model with random norm weights (transformers initializes them to 0, where
    `1 + weight` would hide a mistake in how they are applied), saved as a checkpoint."""
    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer), seed=3)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    folder = tmp_path_factory.mktemp("tiny-normed")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def both(folder):
    from transformers import AutoModelForCausalLM

    from extractkit import _gemma3

    return _gemma3.load(folder), AutoModelForCausalLM.from_pretrained(str(folder)).eval()


def test_the_weights_are_the_checkpoints_under_transformers_names(tiny_normed):
    from extractkit._pages import FileRows

    light, hf = both(tiny_normed)
    ours, theirs = dict(light.named_parameters()), dict(hf.named_parameters())
    assert set(ours) == set(theirs) - {"lm_head.weight"}
    for name, param in ours.items():
        assert torch.equal(param, theirs[name]), name
    assert light.get_output_embeddings().weight is light.model.embed_tokens.weight  # tied
    assert FileRows.of(light.model.embed_tokens.weight) is not None  # memory-mapped, as transformers maps it


def test_every_piece_computes_what_transformers_computes(tiny_normed):
    from transformers.models.gemma3.modeling_gemma3 import apply_rotary_pos_emb

    from extractkit import _gemma3

    light, hf = both(tiny_normed)
    torch.manual_seed(0)
    x = torch.randn(2, 5, light.config.hidden_size) * 3
    pairs = [(light.model.norm, hf.model.norm)]
    for ours, theirs in zip(light.model.layers, hf.model.layers):
        pairs += [(getattr(ours, n), getattr(theirs, n)) for n in
                  ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                   "post_feedforward_layernorm")]
        assert ours.self_attn.scaling == theirs.self_attn.scaling
        assert ours.self_attn.head_dim == theirs.self_attn.head_dim
        heads = torch.randn(2, 3, 5, light.config.head_dim)
        for n in ("q_norm", "k_norm"):
            assert torch.equal(getattr(ours.self_attn, n)(heads), getattr(theirs.self_attn, n)(heads))
        assert torch.equal(ours.mlp.act_fn(x), theirs.mlp.act_fn(x))
    for ours, theirs in pairs:
        assert torch.equal(ours(x), theirs(x))
    ids = torch.tensor([[0, 5, 9, 200], [3, 3, 1, 2]])
    assert torch.equal(light.model.embed_tokens(ids), hf.model.embed_tokens(ids))
    positions = torch.tensor([[0, 1, 2, 3, 4], [70, 71, 72, 900, 4000]])
    q, k = torch.randn(2, 2, 5, light.config.head_dim), torch.randn(2, 1, 5, light.config.head_dim)
    for kind in set(light.config.layer_types):
        rope = light.model.rotary_emb(x, positions, kind)
        reference = hf.model.rotary_emb(x, positions, kind)
        assert all(torch.equal(a, b) for a, b in zip(rope, reference)), kind
        assert all(torch.equal(a, b) for a, b in zip(_gemma3.apply_rotary_pos_emb(q, k, *rope),
                                                     apply_rotary_pos_emb(q, k, *reference)))


@pytest.mark.parametrize("numerics", ["fp32", "bf16"])
def test_the_runner_gives_identical_hidden_states_on_either_model(tiny_normed, numerics):
    from extractkit._gemma import GemmaRunner

    light, hf = both(tiny_normed)
    outs = []
    for model in (light, hf):
        runner = GemmaRunner(model, numerics)
        cache = runner.new_cache(2, 80)
        tokens = torch.tensor([[5, 9, 2, 9, 11, 40, 7], [0, 1, 3, 7, 8, 8, 100]])
        first = runner.forward(cache, slice(0, 2), tokens, torch.zeros(2, dtype=torch.long))
        step = runner.forward(cache, slice(0, 2), torch.tensor([[6], [12]]), torch.tensor([7, 7]))
        outs.append((first, step))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_configs_it_does_not_implement_go_to_transformers(tiny_normed):
    from extractkit._gemma3 import config_of

    raw = json.loads((tiny_normed / "config.json").read_text())
    assert config_of(raw) is not None
    for change in ({"final_logit_softcapping": 30.0}, {"attn_logit_softcapping": 50.0},
                   {"model_type": "llama"}, {"tie_word_embeddings": False},
                   {"hidden_activation": "gelu"}, {"use_bidirectional_attention": True},
                   {"rope_parameters": {**raw["rope_parameters"],
                                        "full_attention": {"rope_type": "linear", "factor": 8.0,
                                                           "rope_theta": 1e6}}}):
        assert config_of({**raw, **change}) is None, change
    old = {k: v for k, v in raw.items() if k != "rope_parameters"}  # transformers 4's layout
    theta = config_of({**old, "rope_theta": 1e6, "rope_local_base_freq": 1e4}).rope_theta
    assert dict(theta) == {"full_attention": 1e6, "sliding_attention": 1e4}


def test_a_checkpoint_that_does_not_fit_its_config_is_refused(tiny_normed, tmp_path):
    from safetensors.torch import load_file, save_file

    from extractkit import _gemma3

    state = load_file(str(tiny_normed / "model.safetensors"))
    (tmp_path / "config.json").write_text((tiny_normed / "config.json").read_text())
    for broken, message in (({k: v for k, v in state.items() if "layers.1.mlp.up_proj" not in k}, "lacks"),
                            ({**state, "model.extra.weight": torch.zeros(2)}, "unexpected"),
                            ({**state, "model.norm.weight": torch.zeros(3)}, "in its config")):
        save_file(broken, str(tmp_path / "model.safetensors"))
        with pytest.raises(ValueError, match=message):
            _gemma3.load(tmp_path)


def test_the_fast_engine_loads_and_extracts_without_transformers_modeling_code(tiny_normed):
    script = f"""
import sys
from extractkit import Extractor
from extractkit._gemma3 import is_light
from extractkit._schema import load_schema
extractor = Extractor.from_pretrained({str(tiny_normed)!r}, adapter=None)
result = next(extractor.extract_many(["Invoice INV-001 issued 5 March 2024, total USD 12.50"], load_schema("receipt")))
assert result.raw, result  # random weights: valid or not, the engine decoded something
assert is_light(extractor.backend.model), type(extractor.backend.model)
# the heavy part is the model code (modeling_utils and what it pulls in), not config or tokenizer
loaded = [m for m in sys.modules if m.endswith(("modeling_utils", "modeling_gemma3", "torch.distributed.tensor"))]
assert not loaded, loaded
generate = Extractor.from_pretrained({str(tiny_normed)!r}, adapter=None, decoder="generate")
assert not is_light(generate.backend.model)  # generate() needs transformers' model
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
