"""Synthetic training data: realistic documents with known gold, for any schema.

    from extractkit.finetune import synthesize, random_schemas
    examples = synthesize(Invoice, 1000, seed=1)
    for js in random_schemas(50):
        examples += synthesize(js, 40)

Each example is drawn from its own RNG, seeded by (schema, seed, index), so
any example can be regenerated alone and adding examples never changes earlier
ones. The gold is passed through `canonical_output`, exactly as the decoder
would write it; an object that does not validate is a bug here, and raises.
"""

from __future__ import annotations

import random
import re
from typing import Any

from extractkit._schema import as_output_schema
from extractkit._surface import build_surface

from ._data import Example, canonical_output
from ._forms import FORMS, available_forms
from ._render import Renderer
from ._schemas import random_schemas
from ._values import LOCALES, GoldMaker, faker_for, field_kind, non_null

__all__ = ["random_schemas", "synthesize"]

# Kinds whose gold is shouted in capitals on a till receipt (not e-mails or codes).
_UPPERCASE_ON_RECEIPTS = {"person", "company", "party", "address", "city", "place", "product", "words"}


def synthesize(schema: Any, n: int, *, seed: int = 0) -> list[Example]:
    """`n` (document, gold) pairs for `schema` (a Pydantic class, JSON Schema dict or OutputSchema)."""
    out_schema = as_output_schema(schema)
    js = out_schema.json_schema
    build_surface(js).require_supported()  # data for a schema the grammar cannot decode is useless
    return [_one(out_schema, js, seed, i) for i in range(n)]


def _one(out_schema, js: dict[str, Any], seed: int, i: int) -> Example:
    rng = random.Random(f"{out_schema.name}/{out_schema.digest}/{seed}/{i}")
    locale = rng.choice(LOCALES)
    fake = faker_for(locale, rng.getrandbits(32))
    gold = GoldMaker(js, rng, fake).object(js)
    renderer = Renderer(js, gold, rng, fake, locale)
    forms = available_forms(renderer)
    form = rng.choices(list(forms), weights=list(forms.values()))[0]
    if form == "receipt" or (form == "ocr" and rng.random() < 0.3):
        gold = _shout(gold, js, js, rng)
        renderer = Renderer(js, gold, rng, fake, locale)
    output = canonical_output(gold, out_schema)
    text = re.sub(r"\n{3,}", "\n\n", FORMS[form](renderer)).strip() + "\n"  # gold never spans lines
    return Example(text=text, output=output, id=f"synth-{out_schema.name}-{seed}-{i}", meta={"form": form})


def _shout(value: Any, s: dict[str, Any], root: dict[str, Any], rng: random.Random) -> Any:
    """Upper-case the plain strings a receipt prints in capitals (the gold follows the print)."""
    s = non_null(s, root, rng)
    if isinstance(value, dict):
        props = s.get("properties", {})
        out = {}
        for k, v in value.items():
            sub = non_null(props.get(k, {}), root, rng)
            if isinstance(v, str) and "pattern" not in sub and "enum" not in sub and "format" not in sub \
                    and field_kind(k, sub) in _UPPERCASE_ON_RECEIPTS and len(v.upper()) == len(v):
                out[k] = v.upper()
            else:
                out[k] = _shout(v, sub, root, rng)
        return out
    if isinstance(value, list):
        return [_shout(v, s.get("items", {}), root, rng) for v in value]
    return value
