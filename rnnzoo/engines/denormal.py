"""Flush denormal floats to zero in every thread that computes, for every engine.

Gradients that fade over hundreds of steps of backpropagation through time pass through the
denormal range (below 1.2e-38 in float32), where every float operation is ~100x slower on
x86: torch's own kernels (the loop and native engines, torch.nn modules) slowed down 2-7x in
sMNIST training here. FTZ/DAZ (flush-to-zero, denormals-are-zero) is a per-thread CPU mode:
``torch.set_flush_denormal`` sets it in the calling thread only, while torch's matmuls and
element-wise kernels run in its intra-op thread pool. ``flush_denormals`` sets it in the
calling thread AND in every thread of the pool (through the fused library's
``flush_denormal`` op, which runs one task per pool thread). Results change only for values
below 1.2e-38 (float32) / 2.2e-308 (float64), which become zero.

Call it after ``torch.set_num_threads`` (threads started later do not inherit the mode).
"""

from __future__ import annotations

import logging

import torch

from rnnzoo.engines import fused_build

log = logging.getLogger(__name__)


def flush_denormals(enabled: bool = True) -> bool:
    """Set (or clear) FTZ/DAZ in the calling thread and in every thread of torch's pool.

    Args:
        enabled: True flushes denormals to zero; False restores IEEE behaviour.

    Returns:
        True when the mode is set in every thread; False when the CPU has no such mode, or
        the fused library cannot be built (then only the calling thread is set, via
        ``torch.set_flush_denormal``, and a warning says so).
    """
    try:
        ops = fused_build.load_ops()
    except fused_build.FusedBuildError as err:
        calling = torch.set_flush_denormal(enabled)
        if enabled:
            log.warning(
                "flush_denormal: only the calling thread flushes denormals (%s); torch's "
                "thread pool keeps IEEE denormals",
                err,
            )
        return False if enabled else calling
    return bool(ops.flush_denormal(enabled))
