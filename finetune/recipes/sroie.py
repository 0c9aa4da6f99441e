"""The SROIE receipts as extractkit training/evaluation data.

The schema has exactly the four fields SROIE annotates. The raw gold is as
printed on the receipt (``25/12/2018``, ``RM 9.00``); `to_output` normalizes it
the way the decoder writes values (ISO date, plain number), which is what the
dev-split accuracy is measured on.

    python -m extractkit.finetune.recipes.sroie ../shared/datasets/sroie-train.jsonl finetune/data/sroie
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, Field

DEV_FROM = 500  # lines 0..499 train, 500.. held-out dev (never trained on)


class SroieReceipt(BaseModel):
    company: str = Field(max_length=120, description="name of the shop or company that issued the receipt")
    date: dt.date | None = Field(None, description="date of purchase")
    address: str | None = Field(None, max_length=200, description="the shop's address")
    total: Decimal | None = Field(None, max_digits=10, decimal_places=2,
                                  description="final amount paid, after rounding")


_MONTHS = {m: i for i, m in enumerate(
    "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), start=1)}


def parse_date(raw: str) -> dt.date | None:
    """Malaysian receipts write dates day first; years may have two digits."""
    s = raw.strip().strip("()").upper()
    m = re.fullmatch(r"(\d{4})[-/]?(\d{1,2})[-/]?(\d{1,2})", s) if s[:2] in ("19", "20") else None
    if m:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    m = re.fullmatch(r"(\d{1,2})[-/. ](\d{1,2}|[A-Z]{3})[-/. ,]*(\d{2}|\d{4})", s)
    if not m:
        m = re.fullmatch(r"(\d{2})(\d{2})(\d{4})", s)
    if m:
        day, month, year = m[1], m[2], m[3]
    else:
        m = re.fullmatch(r"([A-Z]{3})\s+(\d{1,2}),?\s*(\d{4})", s)  # OCT 9, 2018
        if not m:
            return None
        month, day, year = m[1], m[2], m[3]
    month_n = _MONTHS.get(month[:3]) if month.isalpha() else int(month)
    year_n = int(year) + (2000 if len(year) == 2 else 0)
    day_n = int(day)
    if month_n and month_n > 12 >= day_n:  # a few receipts are month first (12/28/2017)
        day_n, month_n = month_n, day_n
    try:
        return dt.date(year_n, month_n, day_n) if month_n else None
    except ValueError:
        return None


def parse_total(raw: str) -> Decimal | None:
    s = re.sub(r"(RM|\$|\s)", "", raw).replace(",", "")
    return Decimal(s) if re.fullmatch(r"-?\d+(\.\d+)?", s) else None


def to_output(gold: dict) -> dict:
    date = parse_date(gold.get("date", "")) if gold.get("date") else None
    total = parse_total(gold["total"]) if gold.get("total") else None
    return {
        "company": gold.get("company", ""),
        "date": date.isoformat() if date else None,
        "address": gold.get("address") or None,
        "total": float(total) if total is not None else None,
    }


def convert(source: Path, out_dir: Path) -> tuple[int, int]:
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {"train.jsonl": rows[:DEV_FROM], "dev.jsonl": rows[DEV_FROM:]}
    for name, part in splits.items():
        with (out_dir / name).open("w", encoding="utf-8") as fh:
            for r in part:
                row = {"id": r["id"], "text": r["text"], "output": to_output(r["gold"]), "source_gold": r["gold"]}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(splits["train.jsonl"]), len(splits["dev.jsonl"])


if __name__ == "__main__":
    print(convert(Path(sys.argv[1]), Path(sys.argv[2])))
