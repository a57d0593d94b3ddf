"""Splits and views: the seeded train/val split, the fixed step permutation, and ``Split``,
one uint8 image tensor on its device served as normalized, permuted, time-major batches.

Views: ``pixel`` (T=784 steps of 1 input, row-major) | ``row`` (T=28 steps of 28 inputs).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from rnnzoo.data.idx import IMAGE_SIZE
from rnnzoo.errors import UserError

#: view -> (seq_len T, input_size I)
VIEWS: dict[str, tuple[int, int]] = {
    "pixel": (IMAGE_SIZE * IMAGE_SIZE, 1),
    "row": (IMAGE_SIZE, IMAGE_SIZE),
}


def _mix_seed(*values: int) -> int:
    """One 63-bit generator seed from several ints; (0, 1) and (1, 0) give unrelated seeds."""
    entropy = [int(v) % 2**64 for v in values]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1


def make_permutation(seq_len: int, seed: int) -> Tensor:
    """The fixed step permutation: ``torch.randperm(seq_len)`` from a generator seeded with
    ``seed`` (never the global RNG, so it does not depend on anything else the run draws).

    Returns:
        (T,) int64 on the CPU.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(seq_len, generator=generator)


def split_indices(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Disjoint sorted (train, val) indices into ``n`` training images; depends only on the seed.

    Raises:
        UserError: val_size not in 1..n-1.
    """
    if not 1 <= val_size < n:
        raise UserError(f"data.val_size={val_size} out of range: valid 1..{n - 1} for {n} images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:].sort().values, order[:val_size].sort().values


class Split:
    """One split held as a uint8 tensor on its device, served as batches of sequences.

    Attributes:
        images: (N, 28, 28) uint8 on the device.
        labels: (N,) int64 on the device.
        indices: (N,) int64 CPU, positions of these images in the source file.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        indices: Tensor,
        view: str,
        mean: float,
        std: float,
        permutation: Tensor | None = None,
    ) -> None:
        self.images = images  # (N, 28, 28) uint8
        self.labels = labels  # (N,) int64
        self.indices = indices  # (N,) int64, CPU
        self.view = view
        self.seq_len, self.input_size = VIEWS[view]
        # (x / 255 - mean) / std as one multiply-add
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std
        self.permutation = None if permutation is None else permutation.to(images.device)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return self.images.shape[0]

    def num_batches(self, batch_size: int, limit: int | None = None) -> int:
        """Batches per pass: ceil(N / batch_size) (the last one partial), capped at ``limit``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        full = -(-len(self) // batch_size)
        return full if limit is None else min(full, limit)

    def epoch_order(self, seed: int, epoch: int) -> Tensor:
        """The shuffled order of one epoch, (N,) int64 on the device.

        Drawn on the CPU from a generator seeded with (seed, epoch): the same on every device,
        and a resumed run can replay any epoch without drawing the ones before it.
        """
        generator = torch.Generator().manual_seed(_mix_seed(seed, epoch))
        return torch.randperm(len(self), generator=generator).to(self.device)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        limit: int | None = None,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Iterate over the split once (the last batch may be smaller), at most ``limit`` batches.

        Yields:
            x (T, B, input_size) float32, normalized and permuted, on the split's device;
            y (B,) int64.
        """
        count = self.num_batches(batch_size, limit)
        order = self.epoch_order(seed, epoch) if shuffle else None
        for i in range(count):
            start, stop = i * batch_size, min((i + 1) * batch_size, len(self))
            if order is None:
                images, labels = self.images[start:stop], self.labels[start:stop]
            else:
                index = order[start:stop]
                images, labels = self.images[index], self.labels[index]
            yield self.to_sequence(images), labels

    def to_sequence(self, images: Tensor) -> Tensor:
        """Turn images into model input.

        Args:
            images: (B, 28, 28) uint8.

        Returns:
            (T, B, I) float32: (784, B, 1) for the pixel view, (28, B, 28) for the row view.
        """
        b = images.shape[0]
        # float before moving bytes around: strided float copies vectorize, uint8 ones do not
        x = images.reshape(b, self.seq_len, self.input_size).float().transpose(0, 1)  # (T, B, I)
        # one copy either way: index_select reorders the steps and makes x contiguous
        x = x.contiguous() if self.permutation is None else x.index_select(0, self.permutation)
        return x.mul_(self._scale).sub_(self._shift)

