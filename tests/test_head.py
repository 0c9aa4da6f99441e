"""The engine's output head (`_head.py`): every route picks what a full fp32 argmax over the allowed ids picks."""

from __future__ import annotations

import pytest
import torch

from extractkit import _screens
from extractkit._head import SCREEN, SMALL, Head

VOCAB, HIDDEN = 3 * SMALL, 64


def reference(weight: torch.Tensor, hidden: torch.Tensor, ids: torch.Tensor) -> int:
    logits = torch.full((weight.shape[0],), float("-inf"))
    logits[ids] = weight[ids] @ hidden
    return int(torch.argmax(logits))


@pytest.fixture(scope="module")
def weight() -> torch.Tensor:
    return torch.randn(VOCAB, HIDDEN, generator=torch.Generator().manual_seed(0))


def allowed_sets(generator: torch.Generator) -> list[torch.Tensor]:
    everything = torch.arange(VOCAB)
    return [torch.tensor([17]),                                             # forced: no logits
            torch.randperm(VOCAB, generator=generator)[:300].sort().values,  # a few: gathered rows
            everything,                                                     # open-ended: screened
            everything[torch.rand(VOCAB, generator=generator) < 0.7],      # open-ended with holes
            torch.tensor([], dtype=torch.long)]                             # dead state: EOS


@pytest.mark.parametrize("screen", ["qint8", "int8", "bf16", "off", "auto"])
def test_every_route_picks_the_fp32_argmax(weight, screen):
    generator = torch.Generator().manual_seed(1)
    head = Head(weight, eos=1, screen=screen)
    for _ in range(20):
        allowed = allowed_sets(generator)
        hidden = torch.randn(len(allowed), HIDDEN, generator=generator)
        picks = head.pick(hidden, allowed)
        assert picks[-1] == 1
        for r, ids in enumerate(allowed[:-1]):
            assert picks[r] == reference(weight, hidden[r], ids)
    if screen in ("qint8", "int8", "bf16"):
        assert head.stats["near"] > 0  # proven from the allowed tokens near the screen's top


@pytest.mark.parametrize("screen", ["qint8", "int8", "bf16"])
@pytest.mark.parametrize("small", [SMALL, 16])
def test_near_ties_the_screen_cannot_settle_are_rescored(weight, screen, small):
    """More near-equal tokens than the screen keeps: the proof widens to every token that could
    still win (a few dozen rows), or - past `small` of them - scores the row in full fp32."""
    hidden = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(2))
    tied = weight.clone()
    top = hidden / hidden.norm() * 10  # far above every random row
    for k in range(2 * SCREEN):          # the screen cannot tell these apart; fp32 can
        tied[100 + k] = top * (1 + k * 1e-6)
    head = Head(tied, eos=1, screen=screen, small=small)
    # All near the top are rescored - or, past `small` of them, the row is scored in full fp32.
    route = "near" if small == SMALL else "fallback"
    everything = torch.arange(VOCAB)
    pick = head.pick(hidden[None], [everything])[0]
    assert pick == reference(tied, hidden, everything) == 100 + 2 * SCREEN - 1
    assert head.stats[route] == 1
    few = torch.arange(90, 300)  # a small allowed set is screened too (qint8: scored in fp32)
    if len(few) > small:
        few = few[: small]       # (the gather route only takes sets up to `small`)
    expected = reference(tied, hidden, few)
    assert head.pick(hidden[None], [few])[0] == expected
    if small == SMALL:  # the gathered set: the best 32, then every token the bound cannot rule out
        assert expected == 100 + 2 * SCREEN - 1 and head.stats["widened"] == (0 if screen == "qint8" else 1)


@pytest.mark.parametrize("screen", ["qint8", "int8"])
def test_a_forbidden_top_falls_back_to_the_general_proof(weight, screen):
    """The tokens nearest the screen's top are all forbidden: the near shortcut cannot prove the
    pick, and the general proof over the allowed values does."""
    hidden = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(7))
    tall = weight.clone()
    tall[:8] = hidden / hidden.norm() * 10  # far above every other row
    allowed = torch.arange(8, VOCAB)
    head = Head(tall, eos=1, screen=screen)
    assert head.pick(hidden[None], [allowed])[0] == reference(tall, hidden, allowed)
    assert head.stats["near"] == 0 and head.stats["screened"] + head.stats["widened"] == 1


def test_ties_go_to_the_lowest_id_like_argmax(weight):
    hidden = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(3))
    tied = weight.clone()
    tied[900] = tied[300] = hidden * 5
    for screen in ("qint8", "int8", "bf16", "off"):
        assert Head(tied, eos=1, screen=screen).pick(hidden[None], [torch.arange(VOCAB)])[0] == 300


def test_a_head_that_is_not_fp32_is_never_screened(weight):
    head = Head(weight.to(torch.bfloat16), eos=1, screen="int8")
    assert head.screen == "off"
    with pytest.raises(ValueError):
        Head(weight, eos=1, screen="sometimes")


def test_int8_screen_bound_holds_for_every_token(weight):
    """The int8 copy's bound covers the real gap between screen and fp32 scores, row by row."""
    from extractkit._screens import Screen as _Screen

    screen = _Screen("int8", weight)
    assert screen.copy.dtype == torch.int8 and screen.error > 0
    hidden = torch.randn(8, HIDDEN, generator=torch.Generator().manual_seed(4)) * 3
    values = screen.logits(hidden)
    exact = hidden @ weight.T
    for r in range(len(hidden)):
        gap = (exact[r] - values[r]).abs()
        bounds = torch.tensor([screen.bound(hidden[r], float(v)) for v in values[r, :64]])
        assert (gap[:64] <= bounds).all()
        assert float(gap.max()) > 0  # a lossy copy: the bound is doing work


def test_auto_chooses_a_screen_by_measurement(weight):
    head = Head(weight, eos=1, screen="auto")
    head.pick(torch.randn(1, HIDDEN), [torch.arange(VOCAB)])
    assert head.screen in ("int8", "bf16", "off")  # one row: qint8's build would not pay


def test_auto_times_qint8_for_a_batch(weight, monkeypatch):
    """A first open-ended pass of several rows makes qint8 a candidate; the choice is the cheapest."""
    from extractkit._qint8 import QInt8Screen

    timed = []

    def cost(run, one, batch):  # qint8 "measures" cheapest: the choice follows the timings
        timed.append(run)
        return 0.0 if isinstance(getattr(run, "__self__", None), QInt8Screen) else 1.0

    monkeypatch.setattr(_screens, "_time", cost)
    head = Head(weight, eos=1, screen="auto")
    generator = torch.Generator().manual_seed(6)
    hidden = torch.randn(3, HIDDEN, generator=generator)
    picks = head.pick(hidden, [torch.arange(VOCAB)] * 3)
    assert head.screen == "qint8" and len(timed) == 4  # fp32, qint8, int8, bf16
    assert picks == [reference(weight, h, torch.arange(VOCAB)) for h in hidden]


def test_a_head_warmed_on_one_row_asks_again_at_its_first_batch(weight, monkeypatch):
    """One row first (int8 measures cheapest), then a batch (qint8 does): the batch answer takes
    over and its copy replaces the old one; later picks, one row or many, ask nothing more."""
    from extractkit._qint8 import QInt8Screen

    asked = []

    def cost(run, one, batch):
        asked.append(run)
        owner = getattr(run, "__self__", None)
        return 0.0 if isinstance(owner, QInt8Screen) else 0.5 if getattr(owner, "kind", "") == "int8" else 1.0

    monkeypatch.setattr(_screens, "_time", cost)
    head = Head(weight, eos=1, screen="auto")
    generator = torch.Generator().manual_seed(8)
    everything = torch.arange(VOCAB)
    one = torch.randn(1, HIDDEN, generator=generator)
    assert head.pick(one, [everything]) == [reference(weight, one[0], everything)]
    assert head.screen == "int8" and len(asked) == 3  # fp32, int8, bf16
    hidden = torch.randn(4, HIDDEN, generator=generator)
    assert head.pick(hidden, [everything] * 4) == [reference(weight, h, everything) for h in hidden]
    assert head.screen == "qint8" and isinstance(head._copy, QInt8Screen) and len(asked) == 7
    for rows in (one, hidden):
        assert head.pick(rows, [everything] * len(rows)) == [reference(weight, h, everything) for h in rows]
    assert head.screen == "qint8" and len(asked) == 7


def test_qint8_screen_bound_holds_for_every_token(weight):
    """int8 x int8 with fp32 outlier dims: the bound covers the real gap for every token, and with
    the outliers taken out of the int8 part it is tight enough to prove picks (Gemma-like states)."""
    from extractkit._qint8 import QInt8Screen

    generator = torch.Generator().manual_seed(5)
    hidden = torch.randn(8, HIDDEN, generator=generator)
    hidden[:, [3, 17, 40]] *= 40  # a few dimensions far larger than the rest, the same in every row
    screen = QInt8Screen(weight, hidden.abs().mean(0).topk(16).indices)
    values, exact = screen.logits(hidden), hidden @ weight.T
    for r in range(len(hidden)):
        gap, bound = (exact[r] - values[r]).abs(), screen.bound(hidden[r], float(values[r].abs().max()))
        assert float(gap.max()) > 0 and (gap <= bound).all()
        assert bound < 0.05 * float(exact[r].max() - exact[r].median())  # far below the winner's lead
    with pytest.raises(ValueError):
        screen.logits(hidden, torch.arange(5))


def test_the_near_proof_is_skipped_where_it_rarely_proves(weight):
    """qint8's wide bound makes the near-top proof fail 9 times in 10: after 64 tries with under a
    quarter proved, open-ended rows go straight to the rescoring proof - with the same picks."""
    generator = torch.Generator().manual_seed(6)
    everything = torch.arange(VOCAB)
    head = Head(weight, eos=1, screen="int8")
    assert head._near_pays()
    head._near = [64, 15]
    assert not head._near_pays()
    hidden = torch.randn(4, HIDDEN, generator=generator)
    assert head.pick(hidden, [everything] * 4) == [reference(weight, h, everything) for h in hidden]
    assert head.stats["near"] == 0 and head.stats["screened"] + head.stats["widened"] == 4
    head._near = [64, 16]
    assert head._near_pays()


def test_reach_never_rules_out_a_token_the_bound_lets_through():
    """`_reach` replaces a pass of s + 1.01u|s| + slack >= best over 262k values by one threshold:
    every screen value below it must fail that test (in float64, and in the float32 the head uses)."""
    from extractkit._head import _reach
    from extractkit._screens import OUTPUT as _OUTPUT

    generator = torch.Generator().manual_seed(9)
    for _ in range(200):
        best, slack = (float(x) for x in torch.randn(2, generator=generator) * torch.tensor([30.0, 5.0]))
        slack = abs(slack)
        s = _reach(best, slack)
        below = torch.linspace(s - 1.0, s, 1001, dtype=torch.float64)[:-1]
        assert not (below + _OUTPUT * below.abs() + slack >= best).any()
        below32 = below.float()[below.float() < s]
        assert not (below32 + _OUTPUT * below32.abs() + slack >= best).any()
        assert s + 1e-3 + _OUTPUT * abs(s + 1e-3) + slack >= best  # and it is not far below


def test_open_ended_rows_alternating_allowed_sets_pick_the_fp32_argmax(weight):
    """The forbidden-token mask is kept for the next row with the same set: rows with other sets
    in between must still get their own."""
    generator = torch.Generator().manual_seed(10)
    everything = torch.arange(VOCAB)
    holes = [everything[torch.rand(VOCAB, generator=generator) < p] for p in (0.9, 0.6)]
    head = Head(weight, eos=1, screen="qint8")
    for _ in range(5):
        sets = [holes[0], holes[1], holes[0], everything, holes[1]]
        hidden = torch.randn(len(sets), HIDDEN, generator=generator)
        assert head.pick(hidden, sets) == [reference(weight, h, ids) for h, ids in zip(hidden, sets)]


def test_rows_sharing_one_allowed_set_pick_the_fp32_argmax(weight):
    """The usual batch step: every open-ended row holds the same ids object, and its forbidden
    tokens are filled for all rows at once."""
    generator = torch.Generator().manual_seed(11)
    holes = torch.arange(VOCAB)[torch.rand(VOCAB, generator=generator) < 0.8]
    head = Head(weight, eos=1, screen="qint8")
    for _ in range(5):
        hidden = torch.randn(6, HIDDEN, generator=generator)
        assert head.pick(hidden, [holes] * 6) == [reference(weight, h, holes) for h in hidden]


@pytest.mark.parametrize("vocab", [262144, 48 * 256, 1000])
def test_block_top_finds_the_same_values_as_topk(vocab):
    """`_top` searches only the best blocks: the same k values as torch.topk, ties and forbidden
    floors included (indices may differ only among tied values)."""
    from extractkit._head import _top

    generator = torch.Generator().manual_seed(12)
    values = torch.randn(4, vocab, generator=generator).mul(3).round()  # many ties
    values[1, : vocab // 2] = torch.finfo(torch.float32).min              # half the row forbidden
    values[2, 7] = 100.0                                                   # one block holds the top
    values[3] = 0.0                                                        # all tied
    expected, found = torch.topk(values, SCREEN, dim=1), _top(values, SCREEN)
    assert torch.equal(found.values, expected.values)
    assert torch.equal(torch.gather(values, 1, found.indices), found.values)
    assert all(len(set(row.tolist())) == SCREEN for row in found.indices)


def test_a_saved_qint8_screen_is_taken_when_its_dims_are_mostly_these():
    from extractkit._screens import _close

    dims = torch.arange(16)
    assert _close(dims, torch.tensor(list(range(12)) + [20, 21, 22, 23]))
    assert not _close(dims, torch.tensor(list(range(11)) + [20, 21, 22, 23, 24]))
    assert not _close(dims, torch.arange(12))
