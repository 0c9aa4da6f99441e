"""Where a cold start goes: each step of `Extractor.from_pretrained` + a first result, timed.

    python bench/bench_cold.py [--numerics auto|fp32|bf16] [--load light|transformers]

Runs the steps of `TransformersBackend.from_pretrained` one after another (it
overlaps the engine's tables with the weights; here they are timed apart),
then two short extractions, printing seconds since process start, the step's
own seconds, and resident / peak memory. Run it in a fresh process on a quiet
machine; the model cache must exist (any earlier extraction creates it).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402


def lap(tag: str, last: list[float] = [STARTED]) -> None:  # noqa: B006 - the previous lap's time
    now = time.perf_counter()
    memory = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, *value = line.split()
            if key in ("VmRSS:", "VmHWM:"):
                memory[key[:-1]] = int(value[0]) // 1024
    print(f"{now - STARTED:6.2f} s  (+{now - last[0]:5.2f})  {tag:26s} RSS {memory['VmRSS']:5d} MB, "
          f"peak {memory['VmHWM']:5d} MB", flush=True)
    last[0] = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # No choices= here: the list lives in extractkit._gemma, whose import (torch) this script times.
    parser.add_argument("--numerics", default="auto", help="Extractor's numerics (auto, fp32, bf16, int8, qint8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--load", default="light", choices=("light", "transformers"),
                        help="the fast engine's own Gemma 3 modules (the default load) or transformers' model")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    lap("import torch")
    if args.load == "transformers":
        import transformers  # noqa: F401 - the light load (the default) never imports it

        lap("import transformers")
    import extractkit
    from extractkit._constraint import load_engine
    from extractkit._model import checkpoint_path, load_tokenizer, load_weights, resolve_adapter
    from extractkit._schema import load_schema
    from extractkit._transformers import TransformersBackend

    lap("import extractkit")
    path, adapter = checkpoint_path(None), resolve_adapter(None, "bundled")
    tokenizer = load_tokenizer(path, light=args.load == "light")  # as from_pretrained loads it
    lap("tokenizer")
    engine = load_engine("llguidance", tokenizer, len(tokenizer))
    lap("llguidance tables")
    model = load_weights(path, adapter=adapter, light=args.load == "light", defer_adapter=args.load == "light")
    lap("weights (+ LoRA merge)")
    backend = TransformersBackend(model, tokenizer, engine=engine, numerics=args.numerics, owns_model=True)
    extractor = extractkit.Extractor(backend)
    schema = load_schema("receipt")
    extractor.plan(schema)
    lap("grammar compile")
    extractor.extract("Receipt. ABC MART. 02/01/2019. TOTAL 3.50", schema)
    lap("first result")
    extractor.extract("Receipt. XYZ STORE. 03/04/2020. TOTAL 12.00", schema)
    lap("second result")
    fast = backend._fast
    print(f"numerics {fast.runner.numerics}, head screen {fast.head.screen}")


if __name__ == "__main__":
    main()
