"""Peak resident memory and speed of `extract_many` at one batch size, on SROIE dev receipts.

    python bench/bench_rss.py --docs 24 --batch-size 16 [--numerics fp32|bf16|auto]

Loads the default model (base + bundled adapter), warms it on one receipt,
then decodes the first --docs receipts of the SROIE dev split at
--batch-size, sampling the process's resident set every 50 ms. Prints
docs/s, output tokens/s, resident memory before the batch, the sampled
peak and the kernel's high-water mark (ru_maxrss, which includes loading).
--raw FILE writes the raw outputs, to check that a change left them alone.
Run it in a fresh process on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def resident_mb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--numerics", default="fp32", help="Extractor's numerics (auto, fp32, bf16, int8, qint8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--raw", type=Path, help="write the raw outputs here (JSON list)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from extractkit import ExtractConfig, Extractor
    from extractkit._schema import load_schema

    lines = (REPO / "finetune/data/sroie/dev.jsonl").read_text().splitlines()
    texts = [json.loads(x)["text"] for x in lines if x.strip()][: args.docs]
    extractor = Extractor.from_pretrained(numerics=args.numerics,
                                          config=ExtractConfig(max_new_tokens=args.max_new_tokens))
    schema = load_schema("receipt")
    extractor.extract(texts[0], schema)  # warm: grammar compiled, prefix cached, head screen built
    before = peak = resident_mb()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    results = list(extractor.extract_many(texts, schema, batch_size=args.batch_size))
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak = max(peak, resident_mb())
    print(f"{len(texts)} receipts, batch {args.batch_size}, numerics {extractor.backend._fast.runner.numerics}: "
          f"{len(texts) / seconds:.3f} docs/s, {sum(r.tokens for r in results) / seconds:.1f} tok/s, "
          f"{sum(r.ok for r in results)} ok; RSS before {before} MB, sampled peak {peak} MB, "
          f"ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")
    if args.raw:
        args.raw.write_text(json.dumps([r.raw for r in results]))


if __name__ == "__main__":
    main()
