"""Every way to run the fine-tuned model over the same documents, side by side in one run.

    python bench/bench_engine.py --receipts 50 --invoices 10 --out bench/results/engine.txt

Documents: the first --receipts of the SROIE dev split (finetune/data/sroie,
schema `receipt`) and the first --invoices of the held-out synthetic invoices
(schema `invoice`). Weights: the base model + the bundled adapter, merged.
Prompt: extractkit's (`render_prompt`). --threads torch threads (default 2).

  outlines b1    what a user writes without extractkit: outlines.Generator(model, Model)
                 over the merged checkpoint, one document at a time (--rows to skip it)
  generate b1    extractkit, decoder="generate": transformers generate() + grammar (the reference)
  fast b1        extractkit's engine, one document at a time
  fast bN        extractkit's engine, extract_many at --batch-size
  fast b1 bf16   the same with numerics="bf16" ("auto", the default, picks it on this CPU)
  fast bN bf16   extract_many with numerics="bf16"
  fast b1 int8 / fast bN int8   the same with numerics="int8" (weight-only int8 layers, opt-in)
  fast b1 qint8 / fast bN qint8 the same with numerics="qint8" (int8 x int8 layers, fbgemm, opt-in)
  llama.cpp b1   only with --gguf FILE and llama-cpp-python installed (optional extra)

Each row runs in its own process, so peak RSS and cold start are that row's.
Cold start = process start -> import -> load -> grammar -> first short result.
"same" counts documents whose raw output equals `generate b1`'s; "same obj"
those whose parsed object does (outlines writes its own JSON surface form).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
ROWS = ("outlines b1", "generate b1", "fast b1", "fast b1 bf16", "fast b1 int8", "fast b1 qint8", "fast bN",
        "fast bN bf16", "fast bN int8", "fast bN qint8", "llama.cpp b1")


def documents(args) -> list[tuple[str, str]]:
    """(schema name, text) pairs: receipts, then invoices."""
    def first(path: Path, n: int) -> list[str]:
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        return [x["text"] for x in lines[:n]]
    return ([("receipt", t) for t in first(REPO / "finetune/data/sroie/dev.jsonl", args.receipts)]
            + [("invoice", t) for t in first(REPO / "finetune/data/synthetic-heldout/invoice.jsonl", args.invoices)])


# ------------------------------------------------------------------ one row, in a worker process
def worker(row: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    docs = documents(args)
    if row == "outlines b1":
        return outlines_row(docs, args)
    if row == "llama.cpp b1":
        return llama_row(docs, args)
    from extractkit import ExtractConfig, Extractor
    from extractkit._schema import load_schema

    decoder = "generate" if row == "generate b1" else "fast"
    numerics = row.split()[-1] if row.split()[-1] in ("bf16", "int8", "qint8") else "fp32"
    batch = 1 if "b1" in row.split() else args.batch_size
    extractor = Extractor.from_pretrained(decoder=decoder, numerics=numerics,
                                          config=ExtractConfig(max_new_tokens=args.max_new_tokens))
    extractor.extract("Receipt. ABC MART. 02/01/2019. TOTAL 3.50", load_schema("receipt"))
    cold = time.perf_counter() - STARTED
    out = {"cold_s": cold, "raw": [], "obj": [], "tokens": 0, "latency": [], "seconds": 0.0}
    for name in ("receipt", "invoice"):
        schema = load_schema(name)
        texts = [t for s, t in docs if s == name]
        if texts:
            extractor.extract(texts[0], schema)  # warm: grammar compiled, prefix cached
        start = time.perf_counter()
        results = ([r for t in texts for r in extractor.extract_many([t], schema, batch_size=1)] if batch == 1
                   else list(extractor.extract_many(texts, schema, batch_size=batch)))
        out["seconds"] += time.perf_counter() - start
        out.setdefault("seconds_by", {})[name] = time.perf_counter() - start
        out["raw"] += [r.raw for r in results]
        out["obj"] += [r.value.model_dump(mode="json") if r.ok else None for r in results]
        out["tokens"] += sum(r.tokens for r in results)
        out["latency"] += [r.seconds for r in results]
    fast = getattr(extractor.backend, "_fast", None)
    if fast is not None:
        out["grammar_s"], out["decode_s"] = fast.stats["grammar_s"], fast.stats["decode_s"]
    return out


def outlines_row(docs, args) -> dict:
    import outlines

    from extractkit._model import load_model

    loaded = load_model()  # base + bundled adapter, merged: the weights `extractkit export` writes
    model = outlines.from_transformers(loaded.model, loaded.tokenizer)
    # Receipts only: building outlines' index for the Invoice model ran this machine out of its
    # 24 GB (OOM-killed) - the ratios against this row are taken on the receipts.
    return generator_loop(model, lambda raw: len(loaded.tokenizer(raw, add_special_tokens=False)["input_ids"]),
                          [(name, text) for name, text in docs if name == "receipt"], args)


def llama_row(docs, args) -> dict:
    """llama.cpp on the GGUF export of the same weights, under extractkit's own grammar (llguidance).

    outlines' llama.cpp route builds its token index for Gemma's 262k vocabulary and the Receipt
    schema past 20 GB of RAM here (killed), so the fastest constrained route available is
    extractkit's pipeline (prompt, grammar, parsing) with llama.cpp doing the forward passes:
    each step llama.cpp computes the logits, the grammar masks them, greedy picks.
    """
    from extractkit import ExtractConfig, Extractor
    from extractkit._schema import load_schema

    if args.gguf is None:
        raise SystemExit("the llama.cpp row needs --gguf FILE (extractkit export --format gguf --out FILE)")
    extractor = Extractor(LlamaCppBackend(args.gguf, args.threads), ExtractConfig(max_new_tokens=args.max_new_tokens))
    extractor.extract("Receipt. ABC MART. 02/01/2019. TOTAL 3.50", load_schema("receipt"))
    cold = time.perf_counter() - STARTED
    out = {"cold_s": cold, "raw": [], "obj": [], "tokens": 0, "latency": [], "seconds": 0.0}
    for name, text in docs:
        result = next(iter(extractor.extract_many([text], load_schema(name), batch_size=1)))
        out["latency"].append(result.seconds)
        out["raw"].append(result.raw)
        out["obj"].append(result.value.model_dump(mode="json") if result.ok else None)
        out["tokens"] += result.tokens
    out["seconds"] = sum(out["latency"])
    out["seconds_by"] = {name: sum(t for (n, _), t in zip(docs, out["latency"]) if n == name)
                         for name in ("receipt", "invoice")}
    return out


class LlamaCppBackend:
    """extractkit's Backend protocol over llama-cpp-python: one prompt at a time, greedy, grammar-masked."""

    def __init__(self, gguf: Path, threads: int):
        import llama_cpp

        from extractkit._constraint import GrammarCache, load_engine
        from extractkit._model import ensure_base_checkpoint, load_tokenizer

        self.llm = llama_cpp.Llama(model_path=str(gguf), n_threads=threads, n_threads_batch=threads,
                                   n_ctx=4096, n_batch=512, verbose=False)
        self.tokenizer = load_tokenizer(ensure_base_checkpoint())  # the GGUF's vocabulary, id for id
        self.vocab = self.llm.n_vocab()
        self.grammars = GrammarCache(load_engine("llguidance", self.tokenizer, self.vocab))
        self.name, self.context_window = f"llama.cpp:{gguf.name}", 4096

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def compile(self, regex: str):
        return self.grammars.get(regex)

    def generate(self, prompts, plan, *, max_new_tokens: int, batch_size: int):
        import numpy as np

        from extractkit._constraint import new_bitmask, unpack_bitmask
        from extractkit._decode import Generation

        out = []
        for prompt in prompts:
            start, mask_s = time.perf_counter(), 0.0
            matcher = self.compile(plan.surface.regex).matcher()
            self.llm.reset()
            self.llm.eval(self.tokenizer(prompt)["input_ids"])
            tokens, finished = [], False
            while len(tokens) < max_new_tokens:
                # The last position's logits, straight from the context (llm.scores is no longer filled).
                logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.vocab,))
                m0 = time.perf_counter()
                bitmask = new_bitmask(1, self.vocab)
                matcher.fill(bitmask, 0)
                allowed = unpack_bitmask(bitmask, self.vocab)[0].numpy()
                mask_s += time.perf_counter() - m0
                token = int(np.argmax(np.where(allowed, logits, -np.inf)))
                if token == self.tokenizer.eos_token_id:
                    finished = True
                    break
                matcher.advance(token)
                tokens.append(token)
                if len(tokens) < max_new_tokens:
                    self.llm.eval([token])
            out.append(Generation(self.tokenizer.decode(tokens), finished, len(tokens) + finished,
                                  time.perf_counter() - start, mask_s))
        return out


def generator_loop(model, count_tokens, docs, args) -> dict:
    """The loop a user writes with outlines: one Generator per schema, one document at a time."""
    import outlines

    from extractkit._prompt import render_prompt
    from extractkit._schema import load_schema

    models = {name: load_schema(name).model for name in sorted({name for name, _ in docs})}
    generators = {name: outlines.Generator(model, m) for name, m in models.items()}
    generators["receipt"](render_prompt("TOTAL 3.50", models["receipt"]), max_new_tokens=8)  # first-call compile
    cold = time.perf_counter() - STARTED
    out = {"cold_s": cold, "raw": [], "obj": [], "tokens": 0, "latency": [], "seconds": 0.0}
    for name, text in docs:
        start = time.perf_counter()
        raw = generators[name](render_prompt(text, models[name]), max_new_tokens=args.max_new_tokens)
        out["latency"].append(time.perf_counter() - start)
        out["raw"].append(raw)
        out["tokens"] += count_tokens(raw)
        try:
            out["obj"].append(models[name].model_validate_json(raw).model_dump(mode="json"))
        except Exception:
            out["obj"].append(None)
    out["seconds"] = sum(out["latency"])
    out["seconds_by"] = {name: sum(t for (n, _), t in zip(docs, out["latency"]) if n == name) for name in models}
    return out


# ------------------------------------------------------------------ machine limits
def machine_limits(threads: int) -> dict:
    """Measured memory bandwidth and matmul throughput: the roofs the rows are judged against."""
    import torch

    torch.set_num_threads(threads)
    big = torch.ones(256 * 1024 * 1024 // 4)  # 1 GiB of fp32, far past any cache
    big.sum()
    start = time.perf_counter()
    for _ in range(5):
        big.sum()
    bandwidth = 5 * big.numel() * 4 / (time.perf_counter() - start)
    roofs = {"bandwidth_gbs": bandwidth / 1e9}
    # 1024^3, 3 times: emulated bf16 (CPUs without it) runs ~1 GFLOP/s, and 2048^3 took minutes.
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(1024, 1024).to(dtype), torch.randn(1024, 1024).to(dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        roofs[f"gflops_{str(dtype)[6:]}"] = 3 * 2 * 1024 ** 3 / (time.perf_counter() - start) / 1e9
    return roofs


# ------------------------------------------------------------------ the report
def report(runs: dict, limits: dict, args, n_docs: int) -> str:
    import torch

    def receipts_s(r: dict) -> float:  # seconds spent on the receipts (they come first)
        return r.get("seconds_by", {}).get("receipt") or sum(r["latency"][: args.receipts])

    def mean_latency(r: dict, n: int) -> float:
        return sum(r["latency"][:n]) / len(r["latency"][:n])

    ref = runs.get("generate b1")
    lines = [f"{args.receipts} SROIE dev receipts (schema receipt) + {args.invoices} held-out invoices (schema invoice), "
             f"base + bundled adapter, {args.threads} threads, torch {torch.__version__}, "
             f"max_new_tokens {args.max_new_tokens}",
             f"{'path':<14}{'docs':>5}{'docs/s':>8}{'rcpt/s':>8}{'tok/s':>7}{'latency s':>10}{'valid':>6}"
             f"{'same':>7}{'same obj':>9}{'grammar':>8}{'cold s':>7}{'RSS MB':>7}"]
    for name, r in runs.items():
        n = len(r["raw"])
        same = f"{sum(a == b for a, b in zip(r['raw'], ref['raw']))}/{n}" if ref else "-"
        same_obj = f"{sum(a == b for a, b in zip(r['obj'], ref['obj']))}/{n}" if ref else "-"
        grammar = f"{100 * r['grammar_s'] / r['decode_s']:.1f}%" if r.get("decode_s") else "-"
        lines.append(f"{name:<14}{n:>5}{n / r['seconds']:>8.3f}{args.receipts / receipts_s(r):>8.3f}"
                     f"{r['tokens'] / r['seconds']:>7.1f}{mean_latency(r, n):>10.2f}"
                     f"{sum(o is not None for o in r['obj']):>6}{same:>7}{same_obj:>9}{grammar:>8}"
                     f"{r['cold_s']:>7.1f}{r['rss_mb']:>7.0f}")
    lines.append("same / same obj: raw text / parsed object equal to generate b1's; rcpt/s: the receipts alone")
    if "outlines b1" in runs:  # outlines ran the receipts only: compare on those
        b = runs["outlines b1"]
        for name, r in runs.items():
            if name != "outlines b1":
                lines.append(f"{name} / outlines b1 (receipts): docs/s x{receipts_s(b) / receipts_s(r):.2f}, "
                             f"latency x{mean_latency(r, args.receipts) / mean_latency(b, args.receipts):.2f}")
    for base in ("llama.cpp b1", "generate b1"):
        if base not in runs:
            continue
        b = runs[base]
        for name, r in runs.items():
            if name not in (base, "outlines b1"):
                lines.append(f"{name} / {base}: docs/s x{b['seconds'] / r['seconds']:.2f}, latency x"
                             f"{mean_latency(r, n_docs) / mean_latency(b, n_docs):.2f}")
    bw, per_tok = limits["bandwidth_gbs"], 4 * 100e6  # fp32 decoder layers: ~100M weights read per step
    lines.append(f"machine: {bw:.1f} GB/s read bandwidth, {limits['gflops_float32']:.0f} GFLOP/s fp32, "
                 f"{limits['gflops_bfloat16']:.0f} GFLOP/s bf16 (1024^3 matmul)")
    lines.append(f"roofs at batch 1: fp32 layers + full fp32 head (1.07 GB/token) {bw * 1e9 / 1.07e9:.1f} tok/s; "
                 f"layers only (mask-aware head, 0.40 GB) {bw * 1e9 / per_tok:.1f} tok/s; "
                 f"bf16 layers (0.20 GB) {bw * 1e9 / (per_tok / 2):.1f} tok/s")
    lines.append(f"compute roof (0.2 GFLOP/token in the layers): fp32 {limits['gflops_float32'] / 0.2:.0f} tok/s, "
                 f"bf16 {limits['gflops_bfloat16'] / 0.2:.0f} tok/s; prefill tokens cost the same FLOPs")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=50)
    parser.add_argument("--invoices", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--rows", nargs="*", default=[r for r in ROWS if r != "llama.cpp b1" and "int8" not in r],
                        choices=ROWS)
    parser.add_argument("--gguf", type=Path, help="GGUF for the llama.cpp row (`extractkit export --format gguf`)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--reuse", action="store_true", help="keep rows already measured in runs/ (resume)")
    parser.add_argument("--_worker", dest="worker", help=argparse.SUPPRESS)
    parser.add_argument("--_result", dest="result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        out = worker(args.worker, args)
        out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        args.result.write_text(json.dumps(out))
        return
    runs, passthrough = {}, sys.argv[1:]
    for row in args.rows:
        result = REPO / "runs" / f"bench-engine-{row.replace(' ', '_')}.json"
        result.parent.mkdir(exist_ok=True)
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
        if not (args.reuse and result.exists()):
            subprocess.run([sys.executable, __file__, *passthrough, "--_worker", row, "--_result", str(result)],
                           check=True, env=env)
        done = runs[row.replace("bN", f"b{args.batch_size}")] = json.loads(result.read_text())
        # Its own documents: outlines b1 runs the receipts only.
        print(f"{row}: {len(done['raw']) / done['seconds']:.3f} docs/s", flush=True)
    text = report(runs, machine_limits(args.threads), args, args.receipts + args.invoices)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
