"""Hidden states of a few test digits, step by step: what hidden.png draws.

The model runs (loop engine, no gradient) over one test digit per class, the first ones of the
test split, while ``rnnzoo.report.probe`` records every layer's h_t, the gates each cell hands
to ``observe`` (mean over units) and, for cells with a spatial state (``state_shape``, e.g. a
ConvLSTM's (C, H, W)), every state tensor reshaped to its map, as in Shi et al. 2015,
"Convolutional LSTM Network", https://arxiv.org/abs/1506.04214 (its figure of state maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rnnzoo.report.probe import cells_of, layer_names, probe


@dataclass
class LayerRecord:
    """One layer over time for the recorded digits.

    Attributes:
        name: "layer0", ...
        hidden: (n, units, T) h_t per digit.
        gates: gate name -> (n, T) mean activation over units.
        state_shape: the cell's spatial state shape, or None.
        state_names: names of the state tensors ("h", "c").
        maps: per state tensor, (n, T, *state_shape); empty unless state_shape is set.
    """

    name: str
    hidden: np.ndarray
    gates: dict[str, np.ndarray]
    state_shape: tuple[int, ...] | None
    state_names: tuple[str, ...]
    maps: list[np.ndarray]


@dataclass
class HiddenRecord:
    """The digits and what every layer did with them."""

    images: np.ndarray  # (n, 28, 28) uint8, as stored (unpermuted)
    labels: list[int]
    layers: list[LayerRecord]


def pick_digits(labels: torch.Tensor, n: int) -> list[int]:
    """Indices of the first test image of each class, in order of appearance, n at most."""
    seen: dict[int, int] = {}
    for i, label in enumerate(labels.tolist()):
        if label not in seen:
            seen[label] = i
            if len(seen) == n:
                break
    return list(seen.values())


@torch.no_grad()
def record_hidden(model: nn.Module, split, n: int) -> HiddenRecord:
    """Run ``model`` (built with the loop engine) over ``n`` test digits of different classes.

    Args:
        model: the classifier, loop engine, eval mode.
        split: the test split (``rnnzoo.data`` Split): its images, labels and view.
        n: how many digits.
    """
    index = pick_digits(split.labels, n)
    images = split.images[index]  # (n, 28, 28) uint8
    ref = next(model.parameters())
    x = split.to_sequence(images).to(device=ref.device, dtype=ref.dtype)  # (T, n, I)
    with probe(model, record=True) as records:
        model(x)
    layers = []
    for name, cell, rec in zip(layer_names(model), cells_of(model), records, strict=True):
        shape = cell.state_shape
        maps = []
        if shape is not None and rec.states:
            for s in range(len(rec.states[0])):
                seq = torch.stack([st[s] for st in rec.states], dim=1)  # (n, T, size)
                maps.append(_np(seq.reshape(seq.shape[0], seq.shape[1], *shape)))
        layers.append(
            LayerRecord(
                name=name,
                hidden=_np(torch.stack(rec.hidden, dim=2)),  # (n, units, T)
                gates={g: _np(torch.stack(v, dim=1)) for g, v in rec.gates.items()},  # (n, T)
                state_shape=None if shape is None else tuple(shape),
                state_names=tuple(cell.state_names),
                maps=maps,
            )
        )
    labels = [int(v) for v in split.labels[index].tolist()]
    return HiddenRecord(_np(images), labels, layers)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
