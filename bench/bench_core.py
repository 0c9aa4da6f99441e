"""Core benchmark of extractkit on CPU: cold start, per-document latency, grammar engines.

What it measures (plain-text report on stdout, also written with --out):

1. Cold start, each in a fresh `python -c` subprocess: import extractkit,
   `Extractor.from_pretrained()`, and the first extraction of one receipt
   (schema Receipt).
   (a) first-ever: EXTRACTKIT_CACHE_DIR points at a new temporary folder, so the
       GGUF -> safetensors conversion is included (skip with --skip-first-ever);
   (b) from cache: the default cache. The OS page cache is not dropped.
2. Per-document latency and output tokens/s: one Extractor (--engine), batch
   size 1, `extract_many([text], Receipt)` per document over the LAST --docs
   lines of the dataset (the tail is kept out of any training split), then one
   `extract_many(all texts)` at --batch-size for aggregate docs/s.
3. Grammar engines (every name in extractkit._constraint.ENGINES) on the real
   Gemma tokenizer: tokenizer-table build (`load_engine`), compile time of each
   built-in schema's surface regex, and per-token `fill` / `advance` time while
   walking a realistic output (at most --mask-tokens tokens). Each engine runs in
   a worker subprocess; a compile (or mask walk) longer than --compile-timeout
   is reported as "timeout" and the worker is restarted for the next schema.
   `apply_bitmask` on a (1, vocab) logits tensor is timed in this process.
4. Physical numbers: torch threads, CPU model, peak RSS.

Run (the full run takes about an hour on 2 cores):

    python bench/bench_core.py --out bench/results/core.txt

Smoke test:

    python bench/bench_core.py --docs 3 --skip-first-ever --compile-timeout 30 --mask-tokens 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "datasets" / "sroie-train.jsonl"
SCHEMAS = ("Invoice", "Receipt", "Contact", "Event", "JobPosting")
SECTIONS = ("cold", "latency", "engines")
MARK = "BENCH_JSON "           # prefix of the machine-readable lines children print
COLD_TIMEOUT_S = 1800          # a cold start that takes longer than this is broken
TABLES_TIMEOUT_S = 600         # tokenizer load + engine table build in a worker


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ small helpers
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "mean": statistics.fmean(ms), "median": statistics.median(ms),
            "p90": pct(ms, 90), "max": max(ms)}


def load_docs(path: Path, n: int) -> list[dict]:
    """The last `n` records of the JSON-lines dataset, in file order."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [json.loads(line) for line in lines[-n:]] if n > 0 else []


def child_json(stdout: str) -> dict:
    """The last MARK line a child printed, parsed."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError("child printed no result line")


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


CHILD_PEAKS_MB: list[float] = []  # peak RSS reported by every child, for section 4


def tail(text: str, n: int = 800) -> str:
    return text[-n:].strip().replace("\n", " | ")


# ------------------------------------------------------------------ 1. cold start
COLD_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
text = sys.stdin.read()
import extractkit
from extractkit.schemas import Receipt
t1 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[1]))
t2 = time.perf_counter()
ex = extractkit.Extractor.from_pretrained()
t3 = time.perf_counter()
r = next(ex.extract_many([text], Receipt))
t4 = time.perf_counter()
print(%r + json.dumps({
    "import_extractkit": t1 - t0, "import_torch": t2 - t1, "load": t3 - t2, "first_result": t4 - t3,
    "in_process": t4 - t0, "decode_seconds": r.seconds, "tokens": r.tokens, "ok": r.ok,
    "error": type(r.error).__name__ if r.error else None,
    "peak_rss_mb": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024}))
""" % MARK


def cold_start(text: str, threads: int, cache_dir: str | None) -> dict:
    """Run COLD_CHILD once; cache_dir=None means the default cache."""
    env = dict(os.environ, EXTRACTKIT_QUIET="1")
    if cache_dir is not None:
        env["EXTRACTKIT_CACHE_DIR"] = cache_dir
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", COLD_CHILD, str(threads)], input=text, env=env,
                          capture_output=True, text=True, timeout=COLD_TIMEOUT_S, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"wall": wall, "failed": f"exit {proc.returncode}: {tail(proc.stderr)}"}
    result = {"wall": wall, **child_json(proc.stdout)}
    CHILD_PEAKS_MB.append(result["peak_rss_mb"])
    return result


def section_cold(args, docs: list[dict]) -> list[str]:
    text = docs[0]["text"]
    runs = []
    if not args.skip_first_ever:
        log("cold start: first-ever (fresh EXTRACTKIT_CACHE_DIR, includes conversion)")
        with tempfile.TemporaryDirectory(prefix="extractkit-bench-cache-") as tmp:
            runs.append(("first-ever", cold_start(text, args.threads, tmp)))
    log("cold start: from cache")
    runs.append(("from cache", cold_start(text, args.threads, None)))

    out = ["1. COLD START (fresh subprocess each; import extractkit + from_pretrained() + first "
           f"Receipt extraction of {docs[0]['id']})"]
    if args.skip_first_ever:
        out.append("   first-ever: skipped (--skip-first-ever)")
    for name, r in runs:
        if "failed" in r:
            out.append(f"   {name}: FAILED after {r['wall']:.1f} s: {r['failed']}")
            continue
        out.append(f"   {name}: wall {r['wall']:.2f} s (interpreter start + below)")
        out.append(f"      import extractkit  {r['import_extractkit']:8.2f} s")
        out.append(f"      import torch       {r['import_torch']:8.2f} s")
        out.append(f"      from_pretrained()  {r['load']:8.2f} s   (conversion when first-ever, weights, engine tables)")
        out.append(f"      first result       {r['first_result']:8.2f} s   (grammar compile + decode: "
                   f"{r['tokens']} tokens in {r['decode_seconds']:.2f} s, "
                   f"{'ok' if r['ok'] else r['error']})")
        out.append(f"      child peak RSS     {r['peak_rss_mb']:8.0f} MB")
    return out


# ------------------------------------------------------------------ 2. latency
class RecordingBackend:
    """Delegates to a real backend and keeps the Generations of the last call (for mask time)."""

    def __init__(self, inner):
        self.inner, self.last = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, *args, **kwargs):
        self.last = self.inner.generate(*args, **kwargs)
        return self.last


def section_latency(args, docs: list[dict]) -> list[str]:
    from extractkit import ExtractConfig, Extractor
    from extractkit.schemas import Receipt

    log(f"latency: loading the model (engine {args.engine})")
    start = time.perf_counter()
    loaded = Extractor.from_pretrained(engine=args.engine)
    load_s = time.perf_counter() - start
    backend = RecordingBackend(loaded.backend)
    budget = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    one = Extractor(backend, ExtractConfig(batch_size=1, **budget))
    start = time.perf_counter()
    plan = one.plan(Receipt)  # grammar compile, kept out of the per-document numbers
    plan_s = time.perf_counter() - start
    max_new = getattr(plan, "max_new_tokens", args.max_new_tokens)

    rows = []
    for i, doc in enumerate(docs):
        start = time.perf_counter()
        r = next(one.extract_many([doc["text"]], Receipt))
        wall = time.perf_counter() - start
        mask = backend.last[0].mask_seconds if backend.last else 0.0
        rows.append({"id": doc["id"], "seconds": r.seconds, "wall": wall, "tokens": r.tokens,
                     "mask": mask, "ok": r.ok, "error": type(r.error).__name__ if r.error else ""})
        log(f"latency: doc {i + 1}/{len(docs)} {doc['id']}: {r.seconds:.2f} s, {r.tokens} tokens, "
            f"{'ok' if r.ok else rows[-1]['error']}")

    log(f"latency: extract_many of {len(docs)} docs at batch_size {args.batch_size}")
    many = Extractor(loaded.backend, ExtractConfig(batch_size=args.batch_size, **budget))
    start = time.perf_counter()
    batch = list(many.extract_many([d["text"] for d in docs], Receipt))
    batch_wall = time.perf_counter() - start

    secs = [r["seconds"] for r in rows]
    tokens, decode_s, mask_s = sum(r["tokens"] for r in rows), sum(secs), sum(r["mask"] for r in rows)
    errors: dict[str, int] = {}
    for r in rows:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    batch_tokens = sum(r.tokens for r in batch)

    out = [f"2. PER-DOCUMENT LATENCY (engine {args.engine}, schema Receipt, max_new_tokens "
           f"{max_new}, last {len(docs)} lines of {args.data.name}: "
           f"{docs[0]['id']} .. {docs[-1]['id']})",
           f"   model load (warm cache, in process)  {load_s:.2f} s; Receipt grammar compile {plan_s:.3f} s",
           f"   batch_size 1, one extract_many([text]) per doc (Result.seconds):",
           f"      latency mean {statistics.fmean(secs):.2f} s  median {statistics.median(secs):.2f} s  "
           f"p90 {pct(secs, 90):.2f} s  max {max(secs):.2f} s",
           f"      call wall mean {statistics.fmean(r['wall'] for r in rows):.2f} s (adds prompt + parse)",
           f"      output tokens {tokens} in {decode_s:.2f} s decode -> {tokens / decode_s:.2f} tokens/s; "
           f"mean {tokens / len(rows):.1f} tokens/doc",
           f"      grammar masks {mask_s:.2f} s = {100 * mask_s / decode_s:.1f}% of decode time",
           f"      valid objects {sum(r['ok'] for r in rows)}/{len(rows)} "
           f"({100 * sum(r['ok'] for r in rows) / len(rows):.0f}%)"
           + (f"; errors: {', '.join(f'{k} x{v}' for k, v in sorted(errors.items()))}" if errors else ""),
           f"   batch_size {args.batch_size}, one extract_many(all {len(docs)} texts):",
           f"      wall {batch_wall:.2f} s -> {len(docs) / batch_wall:.3f} docs/s, "
           f"{batch_tokens / batch_wall:.2f} output tokens/s ({batch_tokens} tokens), "
           f"valid {sum(r.ok for r in batch)}/{len(batch)}",
           "   per document (batch_size 1):"]
    out += [f"      {r['id']:<18} {r['seconds']:7.2f} s {r['tokens']:4d} tok  mask {r['mask']:6.2f} s  "
            f"{'ok' if r['ok'] else r['error']}" for r in rows]
    return out


# ------------------------------------------------------------------ 3. engines: samples
def sample_instances() -> dict:
    """A realistic instance of every built-in schema (what a good extraction looks like)."""
    from extractkit.schemas import Contact, Event, Invoice, JobPosting, LineItem, Receipt, Salary
    from extractkit.schemas.receipt import ReceiptItem

    return {
        "Receipt": Receipt(
            company="LIAN HING STATIONERY SDN BHD", date=dt.date(2018, 3, 27),
            address="NO.32 & 33, JALAN SR 1/9, SEKSYEN 9, TAMAN SERDANG RAYA, 43300 SERI KEMBANGAN, "
                    "SELANGOR DARUL EHSAN",
            items=[ReceiptItem(name="F/CASTELL 187057-75 TACK-IT 75G WHITE", quantity=Decimal("2"),
                               price=Decimal("12.00")),
                   ReceiptItem(name="A4 PAPER 80GSM", quantity=Decimal("1"), price=Decimal("11.90")),
                   ReceiptItem(name="STAPLER REFILL NO.10", quantity=None, price=Decimal("3.50"))],
            total=Decimal("27.40")),
        "Invoice": Invoice(
            invoice_number="INV-2024-00173", issue_date=dt.date(2024, 5, 2), due_date=dt.date(2024, 6, 1),
            seller="Northwind Traders Ltd", buyer="Contoso GmbH", currency="EUR",
            line_items=[LineItem(description="Consulting, April 2024", quantity=Decimal("12.5"),
                                 unit_price=Decimal("95.00"), amount=Decimal("1187.50")),
                        LineItem(description="Travel expenses (flat)", quantity=None, unit_price=None,
                                 amount=Decimal("240.00"))],
            subtotal=Decimal("1427.50"), tax=Decimal("271.23"), total=Decimal("1698.73")),
        "Contact": Contact(name="Dr. Maria Okonkwo", title="Head of Procurement", company="Acme Corp.",
                           email="m.okonkwo@acme.example.com", phone="+44 20 7946 0958",
                           address="221B Baker Street, London NW1 6XE"),
        "Event": Event(title="Quarterly planning review", date=dt.date(2024, 9, 12),
                       start_time=dt.time(14, 0), end_time=dt.time(15, 30), location="Room 4.12, HQ",
                       organizer="Jane Doe", attendees=["Jane Doe", "Raj Patel", "Li Wei"], online=False),
        "JobPosting": JobPosting(title="Senior Backend Engineer", company="Globex", location="Berlin",
                                 employment_type="full_time", remote=True,
                                 salary=Salary(minimum=Decimal("70000"), maximum=Decimal("90000"),
                                               currency="EUR", period="year"),
                                 skills=["Python", "PostgreSQL", "Kubernetes"],
                                 contact_email="jobs@globex.example"),
    }


def schema_case(name: str, instance) -> tuple[str, str]:
    """(surface regex, realistic output text) for one built-in schema; the text must match."""
    import re

    import extractkit.schemas
    from extractkit import dump_json
    from extractkit._schema import as_output_schema
    from extractkit._surface import build_surface

    js = as_output_schema(getattr(extractkit.schemas, name)).json_schema
    regex = build_surface(js).regex
    text = dump_json(instance, js)
    if not re.fullmatch(regex, text):
        raise AssertionError(f"the {name} sample does not match its surface regex: {text}")
    return regex, text


# ------------------------------------------------------------------ 3. engines: worker side
def emit(**event) -> None:
    event["rss_mb"] = peak_rss_mb()
    print(MARK + json.dumps(event), flush=True)


def time_masks(compiled, tokenizer, text: str, vocab: int, limit: int) -> dict:
    """Walk `text` token by token: time matcher creation, fill and advance."""
    from extractkit._constraint import new_bitmask

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bitmask = new_bitmask(1, vocab)
    start = time.perf_counter()
    matcher = compiled.matcher()
    matcher_s = time.perf_counter() - start
    fills, advances = [], []
    for i, tok in enumerate(ids[:limit]):
        start = time.perf_counter()
        matcher.fill(bitmask, 0)
        mid = time.perf_counter()
        if not (int(bitmask[0, tok // 32]) >> (tok % 32)) & 1:
            return {"status": "error", "error": f"token #{i} ({tok}) is not allowed by the mask"}
        matcher.advance(tok)
        fills.append(mid - start)
        advances.append(time.perf_counter() - mid)
    return {"status": "ok", "text_tokens": len(ids), "matcher_ms": matcher_s * 1000,
            "fill": summary_ms(fills), "advance": summary_ms(advances)}


def engine_worker(engine: str, schemas: list[str], mask_tokens: int, threads: int) -> None:
    """Child process: build `engine`'s tables, then compile and walk each schema, one line per step."""
    import torch

    torch.set_num_threads(threads)
    from transformers import AutoConfig, AutoTokenizer

    from extractkit._constraint import load_engine
    from extractkit._model import ensure_base_checkpoint

    path = str(ensure_base_checkpoint())
    tokenizer = AutoTokenizer.from_pretrained(path)
    vocab = AutoConfig.from_pretrained(path).vocab_size
    start = time.perf_counter()
    eng = load_engine(engine, tokenizer, vocab)
    emit(event="tables", seconds=time.perf_counter() - start, vocab=vocab)
    instances = sample_instances()
    for name in schemas:
        regex, text = schema_case(name, instances[name])
        start = time.perf_counter()
        try:
            compiled = eng.compile(regex)
        except Exception as exc:
            emit(event="compile", schema=name, status="error", error=f"{type(exc).__name__}: {exc}"[:300])
            continue
        emit(event="compile", schema=name, status="ok", seconds=time.perf_counter() - start)
        try:
            emit(event="mask", schema=name, **time_masks(compiled, tokenizer, text, vocab, mask_tokens))
        except Exception as exc:
            emit(event="mask", schema=name, status="error", error=f"{type(exc).__name__}: {exc}"[:300])


# ------------------------------------------------------------------ 3. engines: parent side
class Worker:
    """An engine_worker subprocess whose result lines are read with a deadline."""

    def __init__(self, engine: str, schemas: list[str], args):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_engine-worker", engine,
               "--_schemas", ",".join(schemas), "--mask-tokens", str(args.mask_tokens),
               "--threads", str(args.threads)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=REPO, start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True).start()

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in stream:
            sink.put(line) if isinstance(sink, queue.Queue) else sink.append(line)
        if isinstance(sink, queue.Queue):
            sink.put(None)  # end of output

    def next_event(self, timeout: float) -> dict | str:
        """The next result line, "timeout", or "exited" if the worker ended first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                return "timeout"
            if line is None:
                return "exited"
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def why_exited(self) -> str:
        self.proc.wait()
        return f"worker exit {self.proc.returncode}: {tail(''.join(self.stderr), 300)}"


def bench_engine(engine: str, args) -> dict:
    """Tables, compile and mask numbers of one engine for every built-in schema."""
    pending, items, tables, rss = list(SCHEMAS), {}, [], 0.0
    while pending:
        log(f"engines: {engine} worker for {', '.join(pending)}")
        worker = Worker(engine, pending, args)
        event = worker.next_event(TABLES_TIMEOUT_S)
        if not isinstance(event, dict):
            reason = worker.why_exited() if event == "exited" else "timeout building tables"
            worker.stop()
            for name in pending:
                items[name] = {"status": "error", "error": reason}
            break
        tables.append(event["seconds"])
        rss = max(rss, event["rss_mb"])
        while pending:
            name = pending.pop(0)
            item = items[name] = {"status": "timeout"}
            event = worker.next_event(args.compile_timeout)
            if event == "exited":
                item.update(status="error", error=worker.why_exited())
                break
            if event == "timeout":
                item["phase"] = "compile"
                break
            rss = max(rss, event["rss_mb"])
            item.update(status=event["status"], compile_s=event.get("seconds"), error=event.get("error"))
            log(f"engines: {engine} {name} compile {event['status']} {event.get('seconds') or 0:.2f} s")
            if event["status"] != "ok":
                continue
            event = worker.next_event(args.compile_timeout)
            if not isinstance(event, dict):
                item.update(status="timeout" if event == "timeout" else "error", phase="mask",
                            error=worker.why_exited() if event == "exited" else None)
                break
            rss = max(rss, event["rss_mb"])
            item["mask"] = event
        worker.stop()
    CHILD_PEAKS_MB.append(rss)
    return {"tables": tables, "items": items, "rss_mb": rss}


def time_apply_bitmask(vocab: int, reps: int = 30) -> dict:
    import torch

    from extractkit._constraint import apply_bitmask, new_bitmask

    bitmask = new_bitmask(1, vocab)
    bitmask[0, :100] = -1  # some allowed tokens; the cost does not depend on which
    times = []
    for _ in range(reps):
        logits = torch.randn(1, vocab)
        start = time.perf_counter()
        apply_bitmask(logits, bitmask)
        times.append(time.perf_counter() - start)
    return summary_ms(times[1:])  # the first call allocates the bit table


_FIRST_MASK = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
which = sys.argv[1]
logits = torch.randn(1, 262144)
if which == "extractkit":
    from extractkit._constraint import apply_bitmask, new_bitmask
    bitmask = new_bitmask(1, 262144)
    apply = lambda: apply_bitmask(logits, bitmask)
else:  # the engines' bundled kernel, wrapped in torch.compile
    import llguidance.torch as k
    bitmask = k.allocate_token_bitmask(1, 262144)
    apply = lambda: k.apply_token_bitmask_inplace(logits, bitmask)
t = time.perf_counter(); apply(); first = time.perf_counter() - t
t = time.perf_counter(); apply(); second = time.perf_counter() - t
print(first, second)
"""


def time_first_mask(which: str, threads: int) -> str:
    """First and second mask application in a fresh process: the torch.compile tax, if any."""
    try:
        out = subprocess.run([sys.executable, "-c", _FIRST_MASK, which, str(threads)], capture_output=True,
                             text=True, timeout=300, check=True)
        first, second = (float(x) for x in out.stdout.split()[-2:])
        return f"first call {first * 1000:.1f} ms, second {second * 1000:.2f} ms"
    except (subprocess.SubprocessError, ValueError) as exc:
        return f"failed: {exc}"


def fmt_ms(stats: dict | None) -> str:
    if not stats or not stats.get("n"):
        return "-"
    return f"{stats['median']:.3f}/{stats['p90']:.3f}"


def section_engines(args) -> list[str]:
    from extractkit._constraint import ENGINES

    results = {engine: bench_engine(engine, args) for engine in ENGINES}
    vocab = 262144
    out = [f"3. GRAMMAR ENGINES (real Gemma tokenizer, vocab {vocab}; compile timeout "
           f"{args.compile_timeout:.0f} s; masks on at most {args.mask_tokens} tokens of a realistic output)"]
    for engine, r in results.items():
        tables = ", ".join(f"{s:.2f}" for s in r["tables"]) or "-"
        counts: dict[str, int] = {}
        for item in r["items"].values():
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        out.append(f"   {engine}: table build {tables} s (one per worker start); worker peak RSS "
                   f"{r['rss_mb']:.0f} MB; coverage " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    out.append("   fill / advance in ms as median/p90 per token; matcher = creating one matcher")
    out.append(f"   {'engine':<14}{'schema':<12}{'status':<18}{'compile s':>10}{'tokens':>8}"
               f"{'matcher ms':>11}{'fill ms':>17}{'advance ms':>17}")
    for engine, r in results.items():
        for name in SCHEMAS:
            item = r["items"].get(name, {"status": "not run"})
            mask = item.get("mask") or {}
            status = item["status"] + (f"({item['phase']})" if item.get("phase") else "")
            compile_s = f"{item['compile_s']:.3f}" if item.get("compile_s") is not None else "-"
            tokens = f"{mask['fill']['n']}/{mask['text_tokens']}" if mask.get("status") == "ok" else "-"
            matcher = f"{mask['matcher_ms']:.2f}" if mask.get("status") == "ok" else "-"
            out.append(f"   {engine:<14}{name:<12}{status:<18}{compile_s:>10}{tokens:>8}{matcher:>11}"
                       f"{fmt_ms(mask.get('fill')):>17}{fmt_ms(mask.get('advance')):>17}")
            error = item.get("error") or (mask.get("error") if mask.get("status") == "error" else None)
            if error:
                out.append(f"      error: {error}")
    a = time_apply_bitmask(vocab)
    out.append(f"   apply_bitmask on (1, {vocab}) float32 logits: median {a['median']:.3f} ms, "
               f"p90 {a['p90']:.3f} ms ({a['n']} runs)")
    out.append("   first mask application of a fresh process (the torch.compile tax):")
    for which in ("extractkit", "llguidance.torch"):
        out.append(f"      {which:<18} {time_first_mask(which, args.threads)}")
    return out


# ------------------------------------------------------------------ 4. physical
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def section_physical() -> list[str]:
    from importlib.metadata import version

    import torch

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except Exception:
            return "?"

    children = f"largest child {max(CHILD_PEAKS_MB):.0f} MB" if CHILD_PEAKS_MB else "no children measured"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ["4. PHYSICAL",
            f"   CPU: {cpu_model()}; {cpus} usable logical CPUs",
            f"   torch.get_num_threads() {torch.get_num_threads()}, interop {torch.get_num_interop_threads()}",
            f"   peak RSS: main process {peak_rss_mb():.0f} MB; {children} (timed-out workers not counted)",
            f"   python {platform.python_version()}, torch {ver('torch')}, transformers {ver('transformers')}, "
            f"llguidance {ver('llguidance')}, outlines_core {ver('outlines_core')}, xgrammar {ver('xgrammar')}"]


# ------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SROIE JSON lines (id, text, gold)")
    p.add_argument("--docs", type=int, default=40, help="how many documents, the LAST lines of --data")
    p.add_argument("--engine", default="llguidance", help="grammar engine for sections 1-2's Extractor")
    p.add_argument("--batch-size", type=int, default=8, help="batch size of the aggregate run")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="output token budget per document (default: the library's per-schema budget)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads, here and in children")
    p.add_argument("--skip-first-ever", action="store_true", help="skip the cold start that converts the model")
    p.add_argument("--compile-timeout", type=float, default=120.0, help="seconds per engine x schema compile")
    p.add_argument("--mask-tokens", type=int, default=60, help="tokens walked per engine x schema")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list out of {','.join(SECTIONS)}")
    p.add_argument("--out", type=Path, help="also write the report here")
    p.add_argument("--_engine-worker", dest="engine_worker", help=argparse.SUPPRESS)
    p.add_argument("--_schemas", dest="schemas", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.engine_worker:
        engine_worker(args.engine_worker, args.schemas.split(","), args.mask_tokens, args.threads)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    docs = load_docs(args.data.resolve(), args.docs) if {"cold", "latency"} & set(args.sections) else []
    if {"cold", "latency"} & set(args.sections) and not docs:
        raise SystemExit(f"no documents in {args.data}")
    report = [f"extractkit core benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}, threads {args.threads}",
              "command: " + " ".join([Path(sys.executable).name] + sys.argv), ""]

    def publish(lines: list[str]) -> None:
        lines = lines + ["   load average 1/5/15 min after this section: "
                         + " ".join(f"{x:.2f}" for x in os.getloadavg())]
        report.extend(lines + [""])
        print("\n".join(lines + [""]), flush=True)
        if args.out:  # rewritten after every section, so a crash keeps what was measured
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("\n".join(report), encoding="utf-8")

    print("\n".join(report), flush=True)
    if "cold" in args.sections:
        publish(section_cold(args, docs))
    if "latency" in args.sections:
        publish(section_latency(args, docs))
    if "engines" in args.sections:
        publish(section_engines(args))
    publish(section_physical())
    return 0


if __name__ == "__main__":
    sys.exit(main())
