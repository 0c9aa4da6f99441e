"""The model card's numbers: base vs bundled on SROIE dev, held-out synthetic and unseen schemas.

    python -m extractkit.finetune.recipes.evaluate_bundled --model bundled --out finetune/results --record
    python -m extractkit.finetune.recipes.evaluate_bundled --model base --out finetune/results
    python -m extractkit.finetune.recipes.evaluate_bundled --table --out finetune/results
    python -m extractkit.finetune.recipes.evaluate_bundled --breakdown --model bundled

Each set is decoded with an output budget of 1.5 x its longest gold answer
(+32 tokens): an answer longer than that cannot match the gold, and without a
cap the base model's runaway strings would make the base runs take hours. A
document cut off by the cap counts as failed, like any other failure.

--record also writes each set's headline numbers (accuracy, docs/s) into the
adapter's manifest, which ships with it: only the run that publishes them should,
not every check on another machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from extractkit._manifest import machine_description
from extractkit._schema import as_output_schema, load_schema

from .._data import read_examples, target_json, write_examples
from .._eval import evaluate, format_report
from .bundled import BUILTINS, DATA
from .sroie import SroieReceipt
from .unseen_schemas import UNSEEN_SCHEMAS

HELDOUT = DATA / "synthetic-heldout"
HELDOUT_SEED = 10_000  # training synthesizes with seeds 1..; this one is never trained on
HELDOUT_PER_SCHEMA = 30


def heldout_sets() -> dict[str, tuple]:
    """The held-out synthetic files, generated once (and committed) so reruns score the same texts."""
    out = {}
    for name in BUILTINS:
        schema = load_schema(name)
        path = HELDOUT / f"{name}.jsonl"
        if not path.exists():
            from .._synth import synthesize

            write_examples(path, synthesize(schema, HELDOUT_PER_SCHEMA, seed=HELDOUT_SEED))
        out[f"synthetic/{name}"] = (schema, path)
    return out


def all_sets(only: list[str] | None = None) -> dict[str, tuple]:
    wanted = lambda name: not only or any(name.startswith(o) for o in only)  # noqa: E731
    sets = {"sroie-dev": (as_output_schema(SroieReceipt), DATA / "sroie" / "dev.jsonl")}
    if wanted("synthetic"):
        sets.update(heldout_sets())
    for name, model in UNSEEN_SCHEMAS.items():
        sets[f"unseen/{name}"] = (as_output_schema(model), DATA / "unseen" / f"{name}.jsonl")
    return {name: v for name, v in sets.items() if wanted(name)}


def run(model: str, out: Path, only: list[str] | None, batch_size: int, numerics: str = "fp32",
        record: bool = False) -> None:
    from extractkit import ExtractConfig, Extractor

    extractor = Extractor.from_pretrained(adapter=None if model == "base" else model, numerics=numerics)
    out.mkdir(parents=True, exist_ok=True)
    for name, (schema, path) in all_sets(only).items():
        examples = read_examples(path, schema)
        longest = max(extractor.backend.count_tokens(target_json(ex.output, schema)) for ex in examples)
        budget = int(1.5 * longest) + 32
        extractor.config = ExtractConfig(max_new_tokens=budget, batch_size=batch_size)
        extractor._plans.clear()
        report = evaluate(extractor, examples, schema)
        report.update(set=name, model=model, numerics=numerics, max_new_tokens=budget,
                      finished=time.strftime("%Y-%m-%d %H:%M"), machine=machine_description())
        # fp32 is the exact reference; other numerics get their own report files.
        stem = f"{Path(model).name}{'' if numerics == 'fp32' else '@' + numerics}--{name.replace('/', '--')}"
        (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
        if record and model != "base" and numerics == "fp32":
            record_eval(model, name, report)
        print(f"== {model} on {name}\n{format_report(report)}\n", flush=True)


def record_eval(model: str, name: str, report: dict) -> None:
    """The set's headline numbers in the adapter's own manifest (the full report stays in --out)."""
    from extractkit._manifest import add_eval
    from extractkit._model import BUNDLED_ADAPTER

    keys = ("documents", "micro_accuracy", "macro_accuracy", "valid_rate", "docs_per_s")
    add_eval(BUNDLED_ADAPTER if model == "bundled" else Path(model), name, {k: report[k] for k in keys})


def table(out: Path) -> str:
    """The markdown results table for docs/model-card.md, from the saved reports."""
    reports = {}
    for f in sorted(out.glob("*.json")):
        r = json.loads(f.read_text())
        if r.get("numerics", "fp32") == "fp32":  # the table is fp32, the exact reference
            reports[(r["model"], r["set"])] = r
    sets = sorted({s for _, s in reports}, key=lambda s: (not s.startswith("sroie"), s))
    lines = ["| set | docs | base: field acc. | base: valid | fine-tuned: field acc. | fine-tuned: valid | "
             "fine-tuned docs/s |", "|---|---|---|---|---|---|---|"]
    for s in sets:
        b, f = reports.get(("base", s)), reports.get(("bundled", s))
        lines.append(_row(s, b, f))
    for group in ("synthetic/", "unseen/"):  # pooled over documents, like one big set
        b = _pool([r for (m, s), r in reports.items() if m == "base" and s.startswith(group)])
        f = _pool([r for (m, s), r in reports.items() if m == "bundled" and s.startswith(group)])
        if b or f:
            lines.append(_row(f"**{group[:-1]}, all**", b, f))
    return "\n".join(lines)


def _row(name: str, b: dict | None, f: dict | None) -> str:
    cell = lambda r, k: "-" if r is None else f"{r[k]:.1%}"  # noqa: E731
    docs = (f or b)["documents"]
    speed = f"{f['docs_per_s']:.3f}" if f else "-"
    return (f"| {name} | {docs} | {cell(b, 'micro_accuracy')} | {cell(b, 'valid_rate')} | "
            f"{cell(f, 'micro_accuracy')} | {cell(f, 'valid_rate')} | {speed} |")


def _pool(reports: list[dict]) -> dict | None:
    """Several reports as one: field accuracy over all (document, field) cells; rates per document."""
    if not reports:
        return None
    docs = sum(r["documents"] for r in reports)
    cells = sum(r["fields"] * r["documents"] for r in reports)  # "fields" counts a schema's fields
    return {"documents": docs,
            "micro_accuracy": sum(r["micro_accuracy"] * r["fields"] * r["documents"] for r in reports) / cells,
            "valid_rate": sum(r["valid_rate"] * r["documents"] for r in reports) / docs,
            "docs_per_s": docs / sum(r["seconds"] for r in reports)}


def breakdown(out: Path, model: str = "bundled") -> str:
    """Where a model fails: accuracy per surface form (pooled over the synthetic sets) and per field."""
    reports = [json.loads(f.read_text()) for f in sorted(out.glob(f"{model}--*.json"))]
    forms: dict[str, list[float]] = {}
    for r in reports:
        counts = r.get("form_documents", {})  # absent from reports written before it existed
        for form, acc in r.get("per_form", {}).items():
            if form not in counts:
                continue
            cells = counts[form] * r["fields"]
            hit, total = forms.setdefault(form, [0.0, 0])
            forms[form] = [hit + acc * cells, total + cells]
    lines = [f"{model}: accuracy per surface form (synthetic sets pooled)"]
    lines += [f"  {form:<10} {hit / total:6.1%}  ({total} fields)" for form, (hit, total) in sorted(forms.items())]
    lines.append(f"{model}: accuracy per field")
    for r in reports:
        worst = sorted(r["per_field"].items(), key=lambda kv: kv[1])
        lines.append(f"  {r['set']:<24} " + ", ".join(f"{k} {v:.0%}" for k, v in worst))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled", help="bundled, base, or an adapter folder")
    parser.add_argument("--out", type=Path, default=Path("finetune/results"))
    parser.add_argument("--only", nargs="*", help="set name prefixes, e.g. sroie-dev unseen")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--numerics", choices=("auto", "fp32", "bf16", "int8", "qint8"), default="fp32",
                        help="the engine's layer matmuls (bf16: faster, outputs may differ)")
    parser.add_argument("--record", action="store_true",
                        help="write the fp32 results into the adapter's manifest (the published numbers)")
    parser.add_argument("--table", action="store_true", help="print the results table and exit")
    parser.add_argument("--breakdown", action="store_true", help="print --model's failures per form and field")
    args = parser.parse_args(argv)
    if args.table or args.breakdown:
        print(table(args.out) if args.table else breakdown(args.out, args.model))
        return
    run(args.model, args.out, args.only, args.batch_size, args.numerics, args.record)


if __name__ == "__main__":
    main()
