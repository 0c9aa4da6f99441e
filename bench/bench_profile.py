"""Where a batch's time goes in the fast engine: prefill, decode passes by width, head, screen, grammar.

    python bench/bench_profile.py --docs 24 --batch-size 16 [--copy 8] [--screen qint8] [--numerics qint8]

Loads the default model (base + bundled adapter; --numerics, default fp32), warms it on one SROIE
dev receipt, then decodes the first --docs receipts with timers wrapped around
the runner's forward pass (prefill vs decode passes, by tokens per row), the
attention kernel, the head's pick and its screen, the candidates' rescoring
and the grammar's allowed-token calls. Timers nest (the screen is inside the
head's pick, attention inside the passes), so the lines do not add up to the
total. --copy sets the copy-draft length (0: grammar drafts only). Run it on
a quiet machine; compare runs made back to back.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--copy", type=int, default=None, help="copy-draft tokens per row (default: the engine's)")
    parser.add_argument("--screen", choices=("auto", "qint8", "int8", "bf16", "off"), default="auto",
                        help="the head's screen (default: what the engine chooses)")
    parser.add_argument("--numerics", default="fp32", help="Extractor's numerics (auto, fp32, bf16, int8, qint8)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from extractkit import ExtractConfig, Extractor
    from extractkit import _gemma, _qint8, _screens
    from extractkit._schema import load_schema

    lines = (REPO / "finetune/data/sroie/dev.jsonl").read_text().splitlines()
    texts = [json.loads(x)["text"] for x in lines if x.strip()][: args.docs]
    extractor = Extractor.from_pretrained(numerics=args.numerics, config=ExtractConfig(max_new_tokens=384))
    schema = load_schema("receipt")
    extractor.extract(texts[0], schema)  # warm: grammar, prefix cache, head screen
    fast = extractor.backend._fast
    if args.screen != "auto":
        fast.head.screen, fast.head._copy, fast.head._asking = args.screen, None, False
        extractor.extract(texts[0], schema)  # build that screen before the timed batch
    if args.copy is not None:
        fast.copy = args.copy
    seconds, calls = collections.defaultdict(float), collections.Counter()

    def timed(owner, name, label):
        inner = getattr(owner, name)

        def run(*a, **k):
            start = time.perf_counter()
            out = inner(*a, **k)
            key = label(*a, **k) if callable(label) else label
            seconds[key] += time.perf_counter() - start
            calls[key] += 1
            return out

        setattr(owner, name, run)

    def width(cache, rows, tokens, *rest, **k):
        return "prefill" if tokens.shape[1] > 32 else f"decode pass, {tokens.shape[1]} per row"

    timed(fast.runner, "forward", width)
    timed(fast.head, "pick", "head: pick")
    timed(fast.head, "_rescore", "head: rescore (in pick)")
    timed(fast.head, "_pick_near", "head: near-top proof (in pick)")
    timed(fast, "_allowed", "grammar: allowed ids")
    timed(_gemma, "_attend", lambda q, *a: "attention (in passes)" + (", prefill" if q.shape[2] > 8 else ""))
    # Whatever screen the head ends up with (a batch may replace the warm-up's one-row copy).
    timed(_screens.Screen, "logits", "head: screen pass (in pick)")
    timed(_qint8.QInt8Screen, "logits", "head: screen pass (in pick)")
    timed(fast.head, "_pick_small", "head: a few allowed (in pick)")
    timed(fast.head, "_rescore_rows", "head: batched proof (in pick)")
    timed(fast.head, "_exact_best", "head: fp32 rescoring (in pick)")
    timed(fast.head, "_full_logits", "head: full fp32 row (in pick)")
    head_stats = dict(fast.head.stats)
    steps = dict(fast.stats)
    start = time.perf_counter()
    results = list(extractor.extract_many(texts, schema, batch_size=args.batch_size))
    total = time.perf_counter() - start
    print(f"{len(texts)} receipts, batch {args.batch_size}, copy {fast.copy}, screen {fast.head.screen}: "
          f"{total:.1f} s, {len(texts) / total:.3f} docs/s, {sum(r.tokens for r in results)} tokens, "
          f"{fast.stats['steps'] - steps['steps']} steps, copy drafts kept "
          f"{fast.stats['copy_kept'] - steps['copy_kept']} of {fast.stats['copied'] - steps['copied']}")
    print("  head picks:", {k: v - head_stats[k] for k, v in fast.head.stats.items()})
    for key in sorted(seconds):
        print(f"  {key:34s} {seconds[key]:7.2f} s  {calls[key]:6d} calls  {seconds[key] / calls[key] * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
