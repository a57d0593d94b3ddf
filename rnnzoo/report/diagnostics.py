"""Diagnostics while training: cheap numbers from inside the cell at every validation.

TensorBoard scalars (``trainer.diagnostics: true``, the default; ``false`` turns them off):

- ``diag/spectral_radius/<layer>/<matrix>`` and ``diag/sigma_max/<layer>/<matrix>`` for every
  recurrent matrix the cells expose (``rnnzoo.report.spectra``; none for cells without one);
- ``diag/grad_norm_first_over_last/<layer>`` = ||dL/dh_1|| / ||dL/dh_T|| on one fixed
  validation batch (the first ``BATCH`` validation sequences), and its log10 as
  ``diag/log10_grad_norm_first_over_last/<layer>`` (TensorBoard stores float32, which holds
  nothing below ~1e-38; a tanh RNN on sMNIST is far below that). See ``rnnzoo.report.gradflow``.

Cost: one float64 forward and backward of ``BATCH`` sequences with the loop engine, plus an
eigendecomposition per matrix, on a copy of the model built with the global RNG forked, so the
run's random stream, weights and results are the same with diagnostics on or off.
"""

from __future__ import annotations

import math

from torch import nn

from rnnzoo.report.gradflow import grad_flow
from rnnzoo.report.probe import loop_copy
from rnnzoo.report.spectra import model_spectra, scalars

BATCH = 16  # validation sequences the gradient ratio is measured on


class TrainingDiagnostics:
    """The diag/* scalars of a model on a fixed validation batch.

    Args:
        split: the validation split (``rnnzoo.data`` Split); its first ``batch`` sequences are
            the fixed batch.
        batch: how many sequences.
    """

    def __init__(self, split, batch: int = BATCH) -> None:
        self.x, self.y = next(split.batches(batch))  # (T, B, I), (B,)

    def scalars(self, model: nn.Module) -> dict[str, float]:
        """Tag -> value for the model as it is now (non-finite values are left out)."""
        copy = loop_copy(model)
        spectra, _ = model_spectra(copy)
        out = scalars(spectra)
        flow = grad_flow(copy, self.x, self.y)
        for k, layer in enumerate(flow.layers):
            out[f"diag/grad_norm_first_over_last/{layer}"] = flow.first_over_last(k)
            out[f"diag/log10_grad_norm_first_over_last/{layer}"] = flow.log10_first_over_last(k)
        return {tag: value for tag, value in out.items() if math.isfinite(value)}
