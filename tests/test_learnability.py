"""Every cell, in the full model, learns a small memory task an untrained model cannot solve.

Task: sequences of T steps with 3 features. At step 0 the first two features hold two random
signs (a, b); they are 0 afterwards. The third feature is N(0, 1) noise at every step. The
label, read out after the LAST step, is the pair (a, b): 4 classes, chance 25%. So the model
must keep two bits through T-1 noisy steps.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from cell_groups import generic_cells

from rnnzoo.model import SequenceClassifier

T, HIDDEN, BATCH, LR, MAX_STEPS, EVAL_EVERY = 10, 16, 32, 1e-2, 400, 25
# IndRNN bounds its recurrent weights by the sequence length (2^(1/seq_len)).
CELL_KWARGS = {"indrnn": {"seq_len": T}}


def _batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    bits = torch.randint(0, 2, (n, 2), generator=gen)  # (N, 2)
    x = torch.zeros(T, n, 3)
    x[0, :, :2] = bits.float() * 2 - 1
    x[:, :, 2] = torch.randn(T, n, generator=gen)
    return x, bits[:, 0] * 2 + bits[:, 1]  # (T, N, 3), (N,)


@torch.no_grad()
def _accuracy(model: SequenceClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    acc = (model(x)[0].argmax(1) == y).float().mean().item()
    model.train()
    return acc


@pytest.fixture
def one_thread():
    """Tiny matmuls: threads only add fork/join waits (and the CI box is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("cell", generic_cells())
def test_cell_learns_to_remember_the_first_step(cell, one_thread):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = SequenceClassifier(cell, 3, HIDDEN, num_classes=4, cell_kwargs=CELL_KWARGS.get(cell))
    x_test, y_test = _batch(512, gen)
    untrained = _accuracy(model, x_test, y_test)
    assert untrained < 0.5

    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    history = []
    for step in range(1, MAX_STEPS + 1):
        x, y = _batch(BATCH, gen)
        loss = F.cross_entropy(model(x)[0], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.post_step_()
        if step % EVAL_EVERY == 0:
            history.append(round(_accuracy(model, x_test, y_test), 3))
            if history[-1] > 0.95:
                break
    assert history[-1] > 0.9, f"{cell}: test accuracy every {EVAL_EVERY} steps: {history}"
