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


def build_sentencepiece_style_tokenizer(folder: Path, vocab_size: int = 400) -> Path:
    """A small tokenizer with Gemma's layout (tokenizer.json + tokenizer_config.json in `folder`).

    The way transformers converts a SentencePiece BPE model, which is how Gemma's came to be:
    byte-fallback pieces, " " written as "\u2581", and as merges every pair of pieces whose
    concatenation is a piece, ranked by that piece's id. Pieces are learned on the corpus.
    """
    import json

    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.normalizer = normalizers.Replace(" ", "\u2581")
    learner.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")  # word-sized pieces
    learner.train_from_iterator(_CORPUS * 20, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False))
    learned = sorted(learner.get_vocab().items(), key=lambda kv: kv[1])
    pieces = SPECIALS + ["<start_of_turn>", "<table>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces += [p for p, _ in learned if p not in pieces and p != "<unk>"]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = sorted(((p[:k], p[k:]) for p in pieces[len(SPECIALS) + 2:] for k in range(1, len(p))
                     if p[:k] in vocab and p[k:] in vocab), key=lambda m: (vocab[m[0] + m[1]], vocab[m[0]], vocab[m[1]]))
    tok = Tokenizer(models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIALS + ["<start_of_turn>"]])
    tok.add_tokens([AddedToken("<table>", normalized=False, special=False)])
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}))
    return folder


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
