"""Truncated BPTT: gradients reach exactly the intended steps; forward values do not change."""

from __future__ import annotations

import pytest
import torch
from cell_groups import generic_cells

from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.training.tbptt import check, forward_pieces

T, B, IN = 10, 8, 2


def _model(cell: str, **kw) -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(cell, input_size=IN, hidden_size=16, num_layers=2, **kw)


def _x() -> torch.Tensor:
    return torch.randn(T, B, IN, generator=torch.Generator().manual_seed(1), requires_grad=True)


def _grad_steps(loss: torch.Tensor, x: torch.Tensor) -> list[int]:
    """Time steps whose input gets a nonzero gradient from ``loss``."""
    (grad,) = torch.autograd.grad(loss, x)
    return [t for t in range(T) if grad[t].abs().sum() > 0]


@pytest.mark.parametrize("cell", generic_cells())
def test_final_mode_backprops_only_the_last_k_steps(cell: str) -> None:
    model, x = _model(cell), _x()
    (logits,) = forward_pieces(model, x, steps=4, mode="final", masks=None)
    assert _grad_steps(logits.sum(), x) == [6, 7, 8, 9]
    full, _ = model(x)
    torch.testing.assert_close(logits, full)  # same forward values as full BPTT


@pytest.mark.parametrize("cell", generic_cells())
def test_chunks_mode_backprops_each_chunk_only(cell: str) -> None:
    model, x = _model(cell), _x()
    pieces = list(forward_pieces(model, x, steps=4, mode="chunks", masks=None))
    assert len(pieces) == 3  # chunks [0, 4), [4, 8), [8, 10)
    ranges = [range(0, 4), range(4, 8), range(8, 10)]
    for logits, steps in zip(pieces, ranges, strict=True):
        assert _grad_steps(logits.sum(), x) == list(steps)
        prefix, _ = model(x[: steps.stop])  # each chunk's loss predicts from the prefix
        torch.testing.assert_close(logits, prefix)


@pytest.mark.parametrize("steps", [0, None, T, T + 5])
def test_zero_or_long_window_is_full_bptt(steps: int | None) -> None:
    model, x = _model("lstm"), _x()
    (logits,) = forward_pieces(model, x, steps=steps, mode="chunks", masks=None)
    assert _grad_steps(logits.sum(), x) == list(range(T))
    torch.testing.assert_close(logits, model(x)[0])


@pytest.mark.parametrize("mode", ["final", "chunks"])
def test_recurrent_dropout_masks_are_shared_by_all_chunks(mode: str) -> None:
    model = _model("gru", recurrent_dropout=0.5).train()
    x = _x()
    masks = model.sample_masks(B)
    pieces = list(forward_pieces(model, x, steps=3, mode=mode, masks=masks))
    with torch.random.fork_rng():  # a fresh draw would change the result
        full, _ = model(x, masks=masks)
    torch.testing.assert_close(pieces[-1], full)


def test_chunks_are_updated_between_pieces() -> None:
    """The caller's update after a chunk is seen by the next chunk (one update per chunk)."""
    model, x = _model("lstm"), _x()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []
    for logits in forward_pieces(model, x, steps=5, mode="chunks", masks=None):
        seen.append(model.readout.weight.detach().clone())
        optimizer.zero_grad()
        logits.sum().backward()
        optimizer.step()
    assert len(seen) == 2 and not torch.equal(seen[0], seen[1])


def test_check_rejects_bad_settings() -> None:
    assert check(None, "final", bidirectional=True) == 0
    assert check(7, "chunks", bidirectional=False) == 7
    with pytest.raises(UserError, match="bidirectional"):
        check(7, "final", bidirectional=True)
    with pytest.raises(UserError, match="valid: final, chunks"):
        check(7, "middle", bidirectional=False)
    with pytest.raises(UserError, match=">= 0"):
        check(-1, "final", bidirectional=False)
