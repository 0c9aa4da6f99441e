"""ETL benchmark: what the job machinery costs, and how Ray actors scale.

1. Job overhead: the same Extractor extracts --rows texts twice over, once with
   `list(extract_many(texts))` and once as a job (`run_job`: scan the JSONL input,
   chunked Parquet parts with fsync, final join). Runs alternate, --repeats times
   each; the best of each is compared. The job may cost at most 5 %.
2. Ray Data: `extractkit.ray.extract_dataset` on a local cluster with 1 and then 2
   actors of 1 CPU / 1 torch thread each. Each pool's actors load the model when
   the run starts, so besides end-to-end rows/s the report gives steady rows/s:
   (rows - warm-up rows) / (time - warm-up time), where the warm-up is a run over
   one batch per actor.

Texts are synthetic contact notes (deterministic), the schema is `contact`.

    python bench/bench_etl.py --model DIR --rows 200          # a tiny checkpoint folder: a smoke test
    python bench/bench_etl.py --out bench/results/etl.txt      # the real model (base + bundled adapter)

Numbers from a machine that is busy with other work are not results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def texts(n: int) -> list[str]:
    out = []
    for i in range(n):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        out.append(f"Note {i}: please call {first} {last} ({first.lower()}.{last.lower()}@example.org, "
                   f"+44 20 7946 {i % 10000:04d}) about order {1000 + i}.")
    return out


def bench_job(args, schema) -> list[str]:
    from extractkit import ExtractConfig, Extractor
    from extractkit._job import JobConfig, run_job
    from extractkit._rows import RowSource

    config = ExtractConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    ex = Extractor.from_pretrained(args.model, adapter=None if args.base else "bundled", config=config)
    rows = texts(args.rows)
    list(ex.extract_many(rows[: args.batch_size], schema))  # warm-up: first-call allocations
    tmp = Path(tempfile.mkdtemp(prefix="bench-etl-"))
    src = tmp / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(rows)))
    direct, job = [], []
    for rep in range(args.repeats):
        start = time.perf_counter()
        ok = sum(r.ok for r in ex.extract_many(rows, schema))
        direct.append(time.perf_counter() - start)
        log(f"direct #{rep + 1}: {direct[-1]:.1f} s ({ok} ok)")
        start = time.perf_counter()
        summary = run_job(ex, schema, RowSource(src, "text", "id"), tmp / "out.parquet",
                          JobConfig(chunk_rows=args.chunk_rows, overwrite=True, progress=False))
        job.append(time.perf_counter() - start)
        log(f"job #{rep + 1}: {job[-1]:.1f} s ({summary.line})")
    shutil.rmtree(tmp)
    best_d, best_j = min(direct), min(job)
    return [f"1. job overhead ({args.rows} rows, batch size {args.batch_size}, chunk {args.chunk_rows} rows, "
            f"best of {args.repeats})",
            f"   extract_many directly : {args.rows / best_d:8.2f} rows/s  ({best_d:.1f} s)",
            f"   job (JSONL -> Parquet): {args.rows / best_j:8.2f} rows/s  ({best_j:.1f} s)",
            f"   overhead              : {100 * (best_j / best_d - 1):+.1f} %  (budget: +5 %)"]


def bench_ray(args, schema) -> list[str]:
    import ray

    import extractkit.ray as xray
    from extractkit import ExtractConfig

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "EXTRACTKIT_QUIET": "1"}})
    config = ExtractConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    lines = [f"2. Ray Data, local cluster, actors of 1 CPU / 1 thread ({args.rows} rows, "
             f"{args.rows_per_batch} rows per batch)"]
    for actors in (1, 2):
        def run(n: int) -> float:
            ds = ray.data.from_items([{"text": t} for t in texts(n)], override_num_blocks=max(1, n // 16))
            start = time.perf_counter()
            xray.extract_dataset(ds, "text", schema, model=args.model, adapter=None if args.base else "bundled",
                                 config=config, actors=actors, cpus_per_actor=1,
                                 rows_per_batch=args.rows_per_batch).materialize()
            return time.perf_counter() - start

        warm_rows = actors * args.rows_per_batch
        warm, total = run(warm_rows), run(args.rows)
        steady = (args.rows - warm_rows) / max(total - warm, 1e-9)
        log(f"ray {actors} actor(s): warm-up {warm:.1f} s, all {total:.1f} s")
        lines.append(f"   {actors} actor(s): {args.rows / total:8.2f} rows/s end to end ({total:.1f} s), "
                     f"{steady:8.2f} rows/s steady")
    ray.shutdown()
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="checkpoint folder (default: the cached base model)")
    p.add_argument("--base", action="store_true", help="without the bundled adapter (implied by --model)")
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunk-rows", type=int, default=256)
    p.add_argument("--rows-per-batch", type=int, default=32, help="Ray Data batch size")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads for section 1")
    p.add_argument("--sections", default="job,ray")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    args.base = args.base or args.model is not None  # a bare checkpoint folder has no adapter of ours
    import torch

    from extractkit._schema import load_schema

    if args.threads:
        torch.set_num_threads(args.threads)
    schema = load_schema("contact")
    report = [f"bench_etl: model {args.model or 'cached base'}{'' if args.base else ' + bundled adapter'}, "
              f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, {platform.processor() or '?'}",
              f"load average at start: {os.getloadavg()[0]:.2f} (a busy machine's numbers are not results)"]
    for name, fn in (("job", bench_job), ("ray", bench_ray)):
        if name in args.sections.split(","):
            report += fn(args, schema)
            text = "\n".join(report) + "\n"
            if args.out:
                args.out.write_text(text)
    print("\n".join(report))


if __name__ == "__main__":
    main()
