"""Evaluation: per-field exact match after normalization, on a gold JSONL file.

Values are compared in the decoder's surface form (`canonical_output`), after a
normalization that forgives what does not change meaning: case and spacing in
strings (and trailing punctuation), numeric differences below half a cent.
Dates are compared as ISO strings, so "2018-12-25" only matches itself.
A document whose output failed (truncated, invalid) scores every field wrong.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from typing import Any, Sequence

from extractkit._schema import as_output_schema, resolve
from extractkit._surface import dump_json

from ._data import Example

NUMERIC_TOLERANCE = 0.005


def normalize_string(text: str) -> str:
    return re.sub(r"\s+", "", text).casefold().rstrip(".,;:")


def values_match(pred: Any, gold: Any) -> bool:
    """Compare two canonical JSON values with the normalization above."""
    if gold is None or pred is None:
        return gold is None and pred is None
    if isinstance(gold, bool) or isinstance(pred, bool):
        return pred is gold
    if isinstance(gold, (int, float)) and isinstance(pred, (int, float)):
        return abs(float(pred) - float(gold)) <= NUMERIC_TOLERANCE + 1e-9 * abs(float(gold))
    if isinstance(gold, str) and isinstance(pred, str):
        return normalize_string(pred) == normalize_string(gold)
    if isinstance(gold, list) and isinstance(pred, list):
        return len(gold) == len(pred) and all(values_match(p, g) for p, g in zip(pred, gold))
    if isinstance(gold, dict) and isinstance(pred, dict):
        return all(values_match(pred.get(k), v) for k, v in gold.items())
    return False


def evaluate(extractor: Any, examples: Sequence[Example], schema: Any, *,
             keep_failures: int = 50) -> dict[str, Any]:
    """Run `extractor` over the examples and score it; returns a JSON-ready report."""
    schema = as_output_schema(schema)
    js = schema.json_schema
    fields = list(resolve(js, js).get("properties", {}))
    start = time.perf_counter()
    results = list(extractor.extract_many([ex.text for ex in examples], schema.model or js))
    seconds = time.perf_counter() - start
    correct: dict[str, int] = defaultdict(int)
    by_form: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    null = {"pred_null": 0, "gold_null": 0, "both_null": 0}
    failures: list[dict[str, Any]] = []
    valid = 0
    for ex, res in zip(examples, results):
        pred = json.loads(dump_json(res.value, js)) if res.ok else None
        valid += res.ok
        form = str(ex.meta.get("form", "-"))
        for name in fields:
            gold_v = ex.output.get(name)
            pred_v = pred.get(name) if pred is not None else None
            hit = pred is not None and values_match(pred_v, gold_v)
            correct[name] += hit
            by_form[form][0] += hit
            by_form[form][1] += 1
            if pred is not None:
                null["pred_null"] += pred_v is None
                null["both_null"] += pred_v is None and gold_v is None
            null["gold_null"] += gold_v is None
            if not hit and len(failures) < keep_failures:
                failures.append({"id": ex.id, "field": name, "gold": gold_v, "pred": pred_v,
                                 "error": None if res.ok else str(res.error)})
    n = len(examples)
    per_field = {name: round(correct[name] / n, 4) for name in fields}
    return {
        "schema": schema.name, "documents": n, "fields": len(fields),
        "valid_rate": round(valid / n, 4),
        "micro_accuracy": round(sum(correct.values()) / (n * len(fields)), 4),
        "macro_accuracy": round(sum(per_field.values()) / len(fields), 4),
        "per_field": per_field,
        "null_precision": round(null["both_null"] / null["pred_null"], 4) if null["pred_null"] else None,
        "null_recall": round(null["both_null"] / null["gold_null"], 4) if null["gold_null"] else None,
        "per_form": {f: round(c / t, 4) for f, (c, t) in sorted(by_form.items())} if len(by_form) > 1 else {},
        "form_documents": {f: t // len(fields) for f, (_, t) in sorted(by_form.items())} if len(by_form) > 1 else {},
        "seconds": round(seconds, 1), "docs_per_s": round(n / seconds, 4) if seconds else None,
        "failures": failures,
    }


def format_report(report: dict[str, Any]) -> str:
    """The human table printed by `extractkit eval`."""
    lines = [f"schema {report['schema']}: {report['documents']} documents, "
             f"valid {report['valid_rate']:.1%}, {report['docs_per_s']} docs/s",
             f"{'field':<28} accuracy"]
    lines += [f"{name:<28} {acc:.1%}" for name, acc in report["per_field"].items()]
    fmt = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
    lines += [f"{'micro':<28} {report['micro_accuracy']:.1%}", f"{'macro':<28} {report['macro_accuracy']:.1%}",
              f"{'null precision':<28} {fmt(report['null_precision'])}",
              f"{'null recall':<28} {fmt(report['null_recall'])}"]
    for form, acc in report.get("per_form", {}).items():
        lines.append(f"{'form ' + form:<28} {acc:.1%}")
    return "\n".join(lines)
