"""Tiny fake MNIST / Fashion-MNIST datasets on disk, in torchvision's layout, for tests.

``make_idx_root(path)`` writes ``<path>/MNIST/raw/`` (or ``FashionMNIST/raw/``) with the four
IDX files. The images are learnable: class k is a bright vertical bar at columns 4+2k..5+2k on
a noisy background, so every row (the row view) and every stretch of 28 pixels (the pixel view,
including the last row a vanilla RNN remembers best) tells the class. A smoke training run can
see accuracy rise within a few dozen steps, especially with ``data.view=row``.

Use the ``tiny_mnist_root`` / ``tiny_fashion_root`` / ``tiny_data_cfg`` fixtures of
``tests/conftest.py``, or import this module (``from idx_fixtures import make_idx_root``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rnnzoo.data.idx import FILES, write_idx

FOLDERS = {"mnist": "MNIST", "fashion": "FashionMNIST"}


def fake_images(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Label-dependent images.

    Args:
        labels: (N,) int64 in 0..9.
        seed: noise seed.

    Returns:
        (N, 28, 28) uint8: noise in 0..63 and, for class k, columns 4+2k and 5+2k at 160..255.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    images = torch.randint(0, 64, (n, 28, 28), generator=g, dtype=torch.uint8)  # (N, 28, 28)
    bar = torch.randint(160, 256, (n, 1), generator=g, dtype=torch.uint8)  # (N, 1) per image
    cols = 4 + 2 * labels  # (N,)
    rows = torch.arange(n)
    for offset in (0, 1):
        images[rows, :, cols + offset] = bar.expand(n, 28)
    return images


def make_idx_root(
    path: str | Path,
    source: str = "mnist",
    n_train: int = 300,
    n_test: int = 100,
    gz: bool = False,
    seed: int = 0,
) -> Path:
    """Write a tiny fake dataset under ``path`` in torchvision's layout.

    Args:
        path: the data root (``data.root``); created if needed.
        source: "mnist" (``MNIST/raw``) or "fashion" (``FashionMNIST/raw``).
        n_train: training images (the validation split comes out of these).
        n_test: test images.
        gz: write ``<name>.gz`` files only (what the downloader leaves) instead of plain files.
        seed: labels and noise seed; labels cycle through all 10 classes in shuffled order.

    Returns:
        ``path`` (pass it as ``data.root``).
    """
    path = Path(path)
    raw = path / FOLDERS[source] / "raw"
    suffix = ".gz" if gz else ""
    for i, (split, n) in enumerate((("train", n_train), ("test", n_test))):
        g = torch.Generator().manual_seed(seed * 2 + i)
        labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]  # (N,)
        image_file, label_file = FILES[split]
        write_idx(raw / f"{image_file}{suffix}", fake_images(labels, seed * 2 + i))
        write_idx(raw / f"{label_file}{suffix}", labels.to(torch.uint8))
    return path


def tiny_cfg(root: str | Path, **overrides: object) -> dict:
    """A complete ``data`` config for a tiny root: no download, val_size 50, small batches."""
    cfg = {
        "name": "smnist",
        "source": "mnist",
        "view": "pixel",
        "permute": False,
        "permutation_seed": 0,
        "root": str(root),
        "download": False,
        "val_size": 50,
        "split_seed": 0,
        "batch_size": 16,
        "eval_batch_size": 50,
    }
    cfg.update(overrides)
    return cfg


def raw_dir(root: Path, source: str = "mnist") -> Path:
    """The raw-file folder of ``source`` under ``root`` (torchvision's layout)."""
    return root / FOLDERS[source] / "raw"


def all_x(split, batch_size: int = 64) -> torch.Tensor:
    """The whole split in file order, (T, N, I)."""
    return torch.cat([x for x, _ in split.batches(batch_size)], dim=1)


def one_line_error(exc_info) -> str:
    """The message of a raised error, asserted to be one line without padding."""
    message = str(exc_info.value)
    assert "\n" not in message and message.strip() == message
    return message
