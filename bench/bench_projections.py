"""The engine's fp32 projections at decode sizes: x @ W^T (nn.Linear) against W @ x^T, side by side.

    python bench/bench_projections.py [--threads 2] [--repeats 5] [--runner]

Part 1 times the 18 layers' seven projections of Gemma 3 270M (random fp32
weights of the real shapes, 400 MB, so they stream from memory as in a decode
step) at 1-600 positions, both ways, in one process. --runner also times the
real model's decode step (`GemmaRunner.forward` after an 800-token prefill) at
1, 2 and 4 positions with `_numerics.fp32_linear` on and forced off. Prints
milliseconds and the ratio. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import time

SHAPES = [(1024, 640), (256, 640), (256, 640), (640, 1024), (2048, 640), (2048, 640), (640, 2048)]


def timed(run, repeats: int) -> float:
    run()  # page faults, kernel selection
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats * 1e3


def projections(repeats: int) -> None:
    import torch

    weights = [torch.randn(o, i) * 0.05 for _ in range(18) for o, i in SHAPES]
    print("positions  x @ W^T ms  W @ x^T ms  ratio")
    for m in (1, 2, 4, 8, 16, 32, 64, 128, 256, 600):
        xs = {i: torch.randn(m, i) for i in (640, 1024, 2048)}
        row = timed(lambda: [torch.nn.functional.linear(xs[w.shape[1]], w) for w in weights], repeats)
        col = timed(lambda: [torch.mm(w, xs[w.shape[1]].t()).t().contiguous() for w in weights], repeats)
        print(f"{m:>9} {row:>11.1f} {col:>11.1f} {row / col:>6.2f}")


def runner_steps(repeats: int) -> None:
    import torch

    from extractkit import Extractor
    from extractkit import _numerics
    from extractkit._gemma import GemmaRunner

    loaded = Extractor.from_pretrained(numerics="fp32").backend
    runner = GemmaRunner(loaded.model, "fp32")
    cache = runner.new_cache(1, 1024)
    with torch.inference_mode():
        runner.forward(cache, slice(0, 1), torch.randint(0, 1000, (1, 800)), torch.zeros(1, dtype=torch.long))
        print("decode step (real model, 1 row)  module ms  W @ x^T ms  ratio")
        for width in (1, 2, 4):
            def step():
                runner.forward(cache, slice(0, 1), torch.randint(0, 1000, (1, width)), torch.tensor([800]))
            tall, _numerics.TALL = _numerics.TALL, 0  # every projection through the module
            off = timed(step, repeats)
            _numerics.TALL = tall
            on = timed(step, repeats)
            print(f"{width:>10} positions {off:>19.1f} {on:>11.1f} {off / on:>6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runner", action="store_true", help="also time the real model's decode step")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    projections(args.repeats)
    if args.runner:
        runner_steps(args.repeats)


if __name__ == "__main__":
    main()
