"""flush_denormals: FTZ/DAZ in the calling thread and in every thread of torch's pool."""

from __future__ import annotations

import pytest
import torch

from rnnzoo.engines import fused_build
from rnnzoo.engines.denormal import flush_denormals

TINY = 1e-20  # TINY * TINY = 1e-40: a float32 denormal


def _denormal_products() -> int:
    """How many of 2^20 products TINY * TINY stay nonzero; a tensor this large is split
    over every thread of torch's pool."""
    x = torch.full((1 << 20,), TINY)
    return int((x * x != 0).sum())


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    flush_denormals(False)
    torch.set_num_threads(saved)


def test_every_pool_thread_flushes(two_threads):
    fused_build.load_ops()
    assert flush_denormals(False)
    assert _denormal_products() == 1 << 20  # IEEE: all denormal, all nonzero
    assert flush_denormals(True)
    assert _denormal_products() == 0  # every thread flushed its share
    assert flush_denormals(False)
    assert _denormal_products() == 1 << 20


def test_torch_switch_alone_misses_the_pool(two_threads):
    # why flush_denormals exists: torch.set_flush_denormal sets the calling thread only
    flush_denormals(False)
    torch.set_flush_denormal(True)
    try:
        assert 0 < _denormal_products() < 1 << 20
    finally:
        torch.set_flush_denormal(False)
