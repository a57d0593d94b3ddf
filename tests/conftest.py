"""Shared fixtures: tiny fake datasets on disk (no network, no system datasets)."""

from __future__ import annotations

from pathlib import Path

import pytest
from idx_fixtures import make_idx_root, tiny_cfg


@pytest.fixture
def tiny_mnist_root(tmp_path: Path) -> Path:
    """A data root with a fake 300-train / 100-test MNIST in ``MNIST/raw/`` (learnable)."""
    return make_idx_root(tmp_path / "data", source="mnist")


@pytest.fixture
def tiny_fashion_root(tmp_path: Path) -> Path:
    """A data root with a fake 300-train / 100-test Fashion-MNIST in ``FashionMNIST/raw/``."""
    return make_idx_root(tmp_path / "data", source="fashion")


@pytest.fixture
def tiny_data_cfg(tiny_mnist_root: Path) -> dict:
    """A ``data`` config (plain dict) on ``tiny_mnist_root``: smnist, val_size 50, batch 16,
    download off. Copy and override keys as needed, e.g. ``{**tiny_data_cfg, "view": "row"}``;
    wrap it with ``OmegaConf.create`` to put it in a full config."""
    return tiny_cfg(tiny_mnist_root)


@pytest.fixture
def idx_root_factory():
    """``make_idx_root(path, source="mnist", n_train=300, n_test=100, gz=False, seed=0)``."""
    return make_idx_root
