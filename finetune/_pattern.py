"""Sample strings that match a JSON Schema `pattern`, e.g. ``^[A-Z]{3}$`` or ``INV-\\d{4,6}``.

Used when no realistic candidate (a currency code, a faker e-mail) fits the
pattern. It walks Python's own parse tree of the regex, so it understands
exactly what `re` does; it covers literals, classes, categories, repeats,
groups and alternation - what field patterns use. Look-arounds and
back-references are rare in schemas and raise ValueError.
"""

from __future__ import annotations

import random
import re
import string

try:  # Python 3.11 exposes the regex parser as re._parser
    from re import _parser as sre
except ImportError:  # pragma: no cover
    import sre_parse as sre  # type: ignore[no-redef]

from re._constants import (ANY, ASSERT, ASSERT_NOT, AT, BRANCH, CATEGORY, IN, LITERAL, MAX_REPEAT,
                           MAXREPEAT, MIN_REPEAT, NEGATE, NOT_LITERAL, RANGE, SUBPATTERN)

try:
    from re._constants import POSSESSIVE_REPEAT
except ImportError:  # pragma: no cover
    POSSESSIVE_REPEAT = MAX_REPEAT

# Characters a sampled string may use: printable, and never a quote or a
# backslash, which the JSON surface form would have to escape.
_SAFE = string.ascii_letters + string.digits + " -_.,:/#&()+"
_PLAIN = string.ascii_lowercase + string.digits + "._-"  # what a negated class like [^@\\s] draws from
_CATEGORIES = {
    "CATEGORY_DIGIT": string.digits,
    "CATEGORY_NOT_DIGIT": string.ascii_letters + "-_",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": string.ascii_letters + string.digits,
    "CATEGORY_WORD": string.ascii_letters + string.digits + "_",
    "CATEGORY_NOT_WORD": " -.,:/",
}
_EXTRA_REPEAT = 5  # an open-ended repeat (`+`, `{2,}`) adds at most this many


def sample_pattern(pattern: str, rng: random.Random, *, max_len: int = 200, min_len: int = 0) -> str:
    """A string `re.search(pattern, s)` accepts in full, within the length bounds."""
    tree = sre.parse(pattern)
    for _ in range(40):
        text = _walk(tree, rng)
        if min_len <= len(text) <= max_len and re.fullmatch(_anchorless(pattern), text):
            return text
    raise ValueError(f"cannot sample a string for pattern {pattern!r} within {min_len}..{max_len} chars")


def _anchorless(pattern: str) -> str:
    body = pattern[1:] if pattern.startswith("^") else pattern
    return body[:-1] if body.endswith("$") and not body.endswith("\\$") else body


def _walk(items, rng: random.Random) -> str:
    return "".join(_one(op, av, rng) for op, av in items)


def _one(op, av, rng: random.Random) -> str:
    if op is LITERAL:
        return chr(av)
    if op is NOT_LITERAL:
        return rng.choice([c for c in _SAFE if c != chr(av)])
    if op is ANY:
        return rng.choice(string.ascii_letters + string.digits)
    if op is IN:
        return rng.choice(_class_chars(av))
    if op in (MAX_REPEAT, MIN_REPEAT, POSSESSIVE_REPEAT):
        lo, hi, sub = av
        hi = lo + _EXTRA_REPEAT if hi is MAXREPEAT or hi > lo + _EXTRA_REPEAT else hi
        # Bias toward the short end: real IDs sit near their minimum length.
        count = min(rng.randint(lo, hi), rng.randint(lo, hi))
        return "".join(_walk(sub, rng) for _ in range(count))
    if op is SUBPATTERN:
        return _walk(av[-1], rng)
    if op is BRANCH:
        return _walk(rng.choice(av[1]), rng)
    if op is AT:
        return ""  # ^, $, \b: position only
    if op in (ASSERT, ASSERT_NOT):
        raise ValueError("look-around assertions are not supported by the pattern sampler")
    raise ValueError(f"unsupported regex construct {op}")


def _class_chars(items) -> str:
    """The characters of a class like ``[A-Z0-9_]`` or ``[^@\\s]`` (drawn from _PLAIN when negated)."""
    chars, negated = [], False
    for op, av in items:
        if op is NEGATE:
            negated = True
        elif op is LITERAL:
            chars.append(chr(av))
        elif op is RANGE:
            chars.extend(chr(c) for c in range(av[0], av[1] + 1))
        elif op is CATEGORY:
            chars.extend(_CATEGORIES.get(str(av), ""))
    if negated:
        excluded = set(chars)
        return "".join(c for c in _PLAIN if c not in excluded) or "x"
    safe = [c for c in chars if c not in '"\\' and c.isprintable()]
    return "".join(safe) or "x"
