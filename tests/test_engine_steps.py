"""The fast engine's cheap per-step helpers: copy drafts (`_copy.py`) and allowed ids (`_constraint.py`)."""

from __future__ import annotations

from extractkit._copy import CopyDraft


def test_the_longest_suffix_found_decides():
    # "7" alone first occurs before 8; "3 7" occurs before 9: the longer match wins.
    draft = CopyDraft([1, 7, 8, 2, 3, 7, 9, 4, 5])
    assert draft.propose([7], 3) == [8, 2, 3]
    assert draft.propose([3, 7], 3) == [9, 4, 5]
    assert draft.propose([6, 3, 7], 2) == [9, 4]  # 6 3 7 is not there, 3 7 is


def test_nothing_to_propose():
    draft = CopyDraft([1, 2, 3])
    assert draft.propose([9], 4) == []      # not in the document
    assert draft.propose([3], 4) == []      # at its end: nothing follows
    assert draft.propose([1], 0) == []      # no room
    assert draft.propose([], 4) == []
    assert CopyDraft([]).propose([1], 4) == []


def test_the_first_occurrence_and_the_room():
    draft = CopyDraft([5, 1, 2, 5, 3, 4])
    assert draft.propose([5], 10) == [1, 2, 5, 3, 4]
    assert draft.propose([2, 5], 1) == [3]


def test_allowed_ids_match_the_unpacked_mask():
    # The engine's sparse unpacking (only non-zero words) against the dense one, sparse to full.
    import torch

    from extractkit._constraint import allowed_ids, new_bitmask, unpack_bitmask

    vocab, generator = 262_144 + 80, torch.Generator().manual_seed(0)
    for fill in ("none", "one", "some", "last", "all", "most"):
        bitmask = new_bitmask(1, vocab)
        if fill == "one":
            bitmask[0, 7] = -2 ** 31                      # the sign bit: token 7 * 32 + 31
        elif fill == "some":
            words = torch.randint(0, bitmask.shape[1], (50,), generator=generator)
            bitmask[0, words] = torch.randint(-2 ** 31, 2 ** 31 - 1, (50,), generator=generator).int()
        elif fill == "last":
            bitmask[0, -1] = -1                            # bits past the vocabulary are dropped
        elif fill in ("all", "most"):
            bitmask[0] = -1
            if fill == "most":
                bitmask[0, ::3] = 0
        expected = unpack_bitmask(bitmask, vocab)[0].nonzero().view(-1)
        assert torch.equal(allowed_ids(bitmask[0], vocab), expected), fill
        assert torch.equal(allowed_ids(bitmask[0].clone(), vocab), expected), fill  # again: the kept answer
    # The kept open-ended answer is for the same words only: one bit off, another answer.
    bitmask[0, 5] = 0
    assert torch.equal(allowed_ids(bitmask[0], vocab), unpack_bitmask(bitmask, vocab)[0].nonzero().view(-1))
