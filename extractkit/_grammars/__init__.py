"""One module per grammar library; each exposes `build(hf_tokenizer, vocab_size) -> Engine`."""
