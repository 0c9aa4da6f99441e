"""The head's screens on real hidden states: cost per pass, and how many tokens each bound leaves.

    python bench/bench_screens.py --docs 6

Decodes the first --docs SROIE dev receipts at batch 16 (fp32) and keeps the
hidden states of every open-ended pick. Then, per screen - weight-only int8
(`_int8`), qint8 (`_qint8`: fbgemm int8 x int8) with 0, 16 (the engine's) and 128
dims in fp32 - it times a 16-row and a 1-row pass over the whole 262k-row head and
counts, per hidden state, the tokens outside the 32 best-screened whose screen
value plus the bound still reaches the best fp32 score among those 32: the
rows the engine would have to rescore in fp32 (0 = the pick is proven from
the 32). It also checks that the fp32 argmax is never ruled out. Needs ~3 GB.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = 32


def capture(docs: int):
    from extractkit import ExtractConfig, Extractor
    from extractkit._schema import load_schema

    lines = (REPO / "finetune/data/sroie/dev.jsonl").read_text().splitlines()
    texts = [json.loads(x)["text"] for x in lines if x.strip()][:docs]
    extractor = Extractor.from_pretrained(numerics="fp32", config=ExtractConfig(max_new_tokens=384))
    schema = load_schema("receipt")
    extractor.extract(texts[0], schema)
    head, kept = extractor.backend._fast.head, []
    inner = head._pick_wide

    def keep(hidden, allowed):
        kept.append(hidden.clone())
        return inner(hidden, allowed)

    head._pick_wide = keep
    list(extractor.extract_many(texts, schema, batch_size=16))
    import torch

    return torch.cat(kept), extractor.backend.model.get_output_embeddings().weight.detach()


def seconds(run, hidden) -> float:
    run(hidden)
    start = time.perf_counter()
    for _ in range(3):
        run(hidden)
    return (time.perf_counter() - start) / 3


def left(screen, hidden, weight, slack) -> list[int]:
    """Tokens each hidden state leaves to rescore, in passes of 16 rows as the engine makes them."""
    import torch

    counts = []
    for start in range(0, len(hidden), 16):
        rows = hidden[start:start + 16]
        values, exact = screen.logits(rows), rows @ weight.T
        for r in range(len(rows)):
            top = values[r].topk(CANDIDATES).indices
            best = exact[r][top].max()
            possible = values[r] + slack * values[r].abs() + screen.bound(rows[r], 0.0) >= best
            possible[top] = False
            winner = int(exact[r].argmax())
            assert winner in top.tolist() or bool(possible[winner]), "the bound ruled out the fp32 winner"
            counts.append(int(possible.sum()))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from extractkit._screens import OUTPUT as _OUTPUT
    from extractkit._screens import Screen as _Screen
    from extractkit._qint8 import QInt8Screen

    hidden, weight = capture(args.docs)
    order = hidden.abs().mean(dim=0).argsort(descending=True)
    screens = {"int8 (weight-only)": _Screen("int8", weight)}
    # 16 fp32 dims is the engine's choice (`fp32_dims`); 128 leave exactly one 512-dim fbgemm block.
    for outliers in (0, 16, 128):
        screens[f"qint8, {outliers} dims fp32"] = QInt8Screen(weight, order[:outliers])
    print(f"{len(hidden)} open-ended hidden states from {args.docs} receipts; largest dims {order[:8].tolist()}")
    print(f"{'screen':26s} {'16 rows':>8s} {'1 row':>8s}   tokens left to rescore: median  p90  max")
    for name, screen in screens.items():
        counts = torch.tensor(left(screen, hidden, weight, _OUTPUT), dtype=torch.float)
        print(f"{name:26s} {seconds(screen.logits, hidden[:16]) * 1e3:6.1f}ms {seconds(screen.logits, hidden[:1]) * 1e3:6.1f}ms"
              f"   {counts.median():>34.0f} {counts.quantile(0.9):4.0f} {counts.max():5.0f}")


if __name__ == "__main__":
    main()
