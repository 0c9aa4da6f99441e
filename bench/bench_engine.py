"""The fast engine against transformers' generate(), side by side in one run, same weights and prompts.

    python bench/bench_engine.py --docs 50 --out bench/results/engine.txt

Documents: the last --docs SROIE receipts (the dev split's tail), schema
Receipt, the default model (base + bundled adapter), --threads torch threads.
Rows of the report:

  generate b1    transformers generate() + the grammar processor, one document at a time
  fast b1        extractkit's engine, one document at a time
  fast bN        extractkit's engine, extract_many at --batch-size (continuous batching)

Each row: documents/s, output tokens/s, mean latency, grammar-mask share of
the time, and how many documents gave the same text as `generate b1`
(exactness). Ratios against `generate b1` come last. Not yet measured here:
the plain outlines Generator loop and llama.cpp (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "datasets" / "sroie-train.jsonl"


def run(extractor, texts, schema, batch_size: int) -> dict:
    start = time.perf_counter()
    if batch_size == 1:
        results = [r for t in texts for r in extractor.extract_many([t], schema, batch_size=1)]
    else:
        results = list(extractor.extract_many(texts, schema, batch_size=batch_size))
    seconds = time.perf_counter() - start
    tokens = sum(r.tokens for r in results)
    return {"seconds": seconds, "docs_s": len(texts) / seconds, "tok_s": tokens / seconds,
            "latency": statistics.fmean(r.seconds for r in results), "raw": [r.raw for r in results],
            "valid": sum(r.ok for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from extractkit import ExtractConfig, Extractor
    from extractkit._model import load_model
    from extractkit._schema import load_schema
    from extractkit._transformers import TransformersBackend

    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    texts = [r["text"] for r in rows[-args.docs:]]
    schema = load_schema("receipt")
    loaded = load_model()
    report, runs = [], {}
    for name, decoder, batch in (("generate b1", "generate", 1), ("fast b1", "fast", 1),
                                 (f"fast b{args.batch_size}", "fast", args.batch_size)):
        backend = TransformersBackend(loaded.model, loaded.tokenizer, decoder=decoder)
        extractor = Extractor(backend, ExtractConfig(batch_size=batch))
        extractor.extract(texts[0], schema)  # warm: grammar compiled, prefix cached
        runs[name] = run(extractor, texts, schema, batch)
        print(f"{name}: {runs[name]['docs_s']:.3f} docs/s", flush=True)
    reference = runs["generate b1"]["raw"]
    report.append(f"{args.docs} SROIE receipts (tail of {args.data.name}), schema Receipt, "
                  f"{args.threads} threads, torch {torch.__version__}")
    report.append(f"{'path':<14}{'docs/s':>9}{'tok/s':>9}{'latency s':>11}{'valid':>7}{'same as generate':>18}")
    for name, r in runs.items():
        same = sum(a == b for a, b in zip(r["raw"], reference))
        report.append(f"{name:<14}{r['docs_s']:>9.3f}{r['tok_s']:>9.1f}{r['latency']:>11.2f}"
                      f"{r['valid']:>7}{same:>12}/{len(texts)}")
    base = runs["generate b1"]
    for name, r in runs.items():
        if name != "generate b1":
            report.append(f"{name} / generate b1: docs/s x{r['docs_s'] / base['docs_s']:.2f}, "
                          f"latency x{r['latency'] / base['latency']:.2f}")
    report.append(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
