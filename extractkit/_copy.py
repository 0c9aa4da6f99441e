"""The fast engine's second draft source: what the document says next.

Extraction copies. A company name, an address, an invoice number or a total is
written out token by token, and most of those tokens are the document's own,
in the document's order. So once the answer's last few tokens also occur in the
document, the tokens that follow them there are a good guess for what the
model writes next ("prompt lookup" drafting). The engine feeds the guess in
the same forward pass as the chosen token and keeps only what greedy decoding
confirms, position by position (`_engine._advance`), so a wrong guess costs a
few wasted positions of one pass, never a different output.

`CopyDraft` indexes one prompt's document tokens once, by the n-grams (n up to
`LONGEST`) that end at each position, and answers `propose(context, room)`.
"""

from __future__ import annotations

from typing import Sequence

LONGEST = 3   # the longest answer suffix looked up: longer is rarer and adds little precision
COPY = 8      # tokens proposed at most per lookup (a pass costs little more per extra position)


class CopyDraft:
    """The document's tokens (`ids`), indexed to propose continuations of an answer's suffix."""

    def __init__(self, ids: Sequence[int], longest: int = LONGEST):
        self.ids = list(ids)
        self.longest = longest
        # n-gram -> position just after its first occurrence. The first, because a document
        # usually states a value before it repeats or totals it (and it is one dict lookup).
        self._after: dict[tuple[int, ...], int] = {}
        for end in range(1, len(self.ids)):
            for n in range(1, min(longest, end) + 1):
                self._after.setdefault(tuple(self.ids[end - n:end]), end)

    def propose(self, context: Sequence[int], room: int) -> list[int]:
        """Up to `room` tokens the document has after the longest suffix of `context` it contains.

        The longest suffix first: "SDN BHD" after "ACME" is more telling than
        after any "SDN". Empty when no suffix occurs (or nothing follows it).
        """
        if room <= 0 or not context:
            return []
        for n in range(min(self.longest, len(context)), 0, -1):
            after = self._after.get(tuple(context[-n:]))
            if after is not None and after < len(self.ids):
                return self.ids[after:after + room]
        return []
