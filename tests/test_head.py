"""The engine's output head (`_head.py`): every route picks what a full fp32 argmax over the allowed ids picks."""

from __future__ import annotations

import pytest
import torch

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


@pytest.mark.parametrize("screen", ["on", "off", "auto"])
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
    if screen == "on":
        assert head.stats["screened"] > 0


def test_near_ties_the_screen_cannot_settle_are_scored_in_full(weight):
    """More near-equal tokens than the screen keeps: the proof fails and fp32 decides."""
    hidden = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(2))
    tied = weight.clone()
    top = hidden / hidden.norm() * 10  # far above every random row
    for k in range(2 * SCREEN):          # bf16 cannot tell these apart; fp32 can
        tied[100 + k] = top * (1 + k * 1e-6)
    head = Head(tied, eos=1, screen="on")
    pick = head.pick(hidden[None], [torch.arange(VOCAB)])[0]
    assert pick == reference(tied, hidden, torch.arange(VOCAB)) == 100 + 2 * SCREEN - 1
    assert head.stats["fallback"] == 1
    few = torch.arange(90, 300)  # a small allowed set is screened too once the screen is on
    assert head.pick(hidden[None], [few])[0] == reference(tied, hidden, few) == 100 + 2 * SCREEN - 1
    assert head.stats["fallback"] == 2


def test_ties_go_to_the_lowest_id_like_argmax(weight):
    hidden = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(3))
    tied = weight.clone()
    tied[900] = tied[300] = hidden * 5
    for screen in ("on", "off"):
        assert Head(tied, eos=1, screen=screen).pick(hidden[None], [torch.arange(VOCAB)])[0] == 300


def test_a_head_that_is_not_fp32_is_never_screened(weight):
    head = Head(weight.to(torch.bfloat16), eos=1, screen="on")
    assert head.screen == "off"
    with pytest.raises(ValueError):
        Head(weight, eos=1, screen="sometimes")
