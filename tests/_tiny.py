"""A tiny Gemma 3 with random weights and a small byte-level BPE tokenizer, built in-process.

It exercises the real pipeline (transformers generate, the grammar engines,
tokenization) in seconds; its outputs are random but must still be valid.
"""

from __future__ import annotations

from pathlib import Path

_CORPUS = [
    '{"company":"ACME SDN BHD","date":"2024-03-05","total":12.50,"items":[{"name":"tea","qty":2}]}',
    "Invoice INV-001 issued 5 March 2024 to Jane Doe, total due USD 1,234.56 by 2024-04-01.",
    "TOTAL: 9.00 CASH 10.00 CHANGE 1.00 THANK YOU PLEASE COME AGAIN",
    "null true false 0123456789 -+.:,;!?@#$%&*()[]{}<>/\\'\" abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ Extract the fields described by the schema from the text",
]
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]  # Gemma's ids 0..3


def build_tokenizer(vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 20, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")


def build_model(vocab_size: int, seed: int = 0):
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
        sliding_window=64, layer_types=["sliding_attention", "full_attention"],
        pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True)
    return Gemma3ForCausalLM(config).eval()


def save_tiny(folder: Path) -> Path:
    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
