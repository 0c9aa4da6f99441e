"""The cold start's tokenizer and grammar tables, measured side by side.

    python bench/bench_tables.py [--answers 40] [--repeat 2]

On the cached base model (any earlier extraction creates it), in one process:
- tokenizer: Gemma's tokenizer.json parsed by the Rust `tokenizers` library,
  against its SentencePiece form (`extractkit/_spm.py`), and whether both give
  the same ids on the SROIE dev receipts and their answers;
- llguidance's tables with extractkit's one slice (`_grammars/llguidance.SLICES`),
  llguidance's four default slices, and none: seconds to build, and the mean
  mask time along the receipt grammar over --answers SROIE dev gold answers
  (masks over 1 ms counted).
Timings alternate between the variants, --repeat rounds; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import llguidance
    from tokenizers import Tokenizer

    from extractkit import _spm, dump_json
    from extractkit._constraint import new_bitmask
    from extractkit._grammars.llguidance import SLICES, _Encoder, remembered_token_bytes
    from extractkit._model import checkpoint_path
    from extractkit._surface import build_surface
    from extractkit._tokenizer import TextTokenizer
    from extractkit.schemas import Receipt

    folder = checkpoint_path(None)
    rows = [json.loads(line) for line in (REPO / "finetune/data/sroie/dev.jsonl").read_text().splitlines()]
    schema = Receipt.model_json_schema()
    answers = [dump_json({**{f: None for f in schema["properties"]}, **row["output"]}, schema) for row in rows]
    for round_ in range(args.repeat):
        start = time.perf_counter()
        rust = Tokenizer.from_file(str(folder / "tokenizer.json"))
        middle = time.perf_counter()
        spm = _spm.ensure(folder)
        end = time.perf_counter()
        print(f"round {round_ + 1}: tokenizer.json (Rust) {middle - start:.2f} s, SentencePiece form "
              f"{end - middle:.2f} s", flush=True)
    texts = [row["text"] for row in rows] + answers
    same = sum(rust.encode(t).ids == spm.encode(t).ids for t in texts)
    print(f"same ids: {same} of {len(texts)} texts (SROIE dev receipts and their answers)")

    tokenizer = TextTokenizer.from_folder(folder)
    vocab = len(tokenizer)
    encoder = _Encoder(tokenizer.backend_tokenizer,
                       remembered_token_bytes(tokenizer.backend_tokenizer, vocab, tokenizer.source), tokenizer)
    grammar = llguidance.LLMatcher.grammar_from_regex(build_surface(schema).regex)
    walks = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers[: args.answers]]
    variants = {"extractkit's one slice": SLICES, "llguidance's four": llguidance.LLTokenizer.general_slices(),
                "no slices": []}
    bitmask = new_bitmask(1, vocab)
    for round_ in range(args.repeat):
        for name, slices in variants.items():
            start = time.perf_counter()
            tables = llguidance.LLTokenizer(llguidance.TokenizerWrapper(encoder), n_vocab=vocab,
                                            eos_token=tokenizer.eos_token_id, slices=slices)
            built = time.perf_counter() - start
            masks, slow, total = 0, 0, 0.0
            for ids in walks:
                matcher = llguidance.LLMatcher(tables, grammar)
                for token in ids:
                    start = time.perf_counter()
                    matcher.unsafe_compute_mask_ptr(bitmask[0].data_ptr(), bitmask[0].numel() * 4)
                    took = time.perf_counter() - start
                    masks, slow, total = masks + 1, slow + (took > 1e-3), total + took
                    assert matcher.consume_token(token), matcher.get_error()
            print(f"round {round_ + 1}: {name:24s} build {built:.2f} s, masks {1e3 * total / masks:.3f} ms "
                  f"mean over {masks} ({slow} over 1 ms)", flush=True)


if __name__ == "__main__":
    main()
