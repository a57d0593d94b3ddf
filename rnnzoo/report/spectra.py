"""Spectra of the recurrent matrices: eigenvalues, spectral radius, largest singular value.

A linearized recurrence h_t = W h_{t-1} carries a gradient back T steps as (W^T)^(T) times it:
the spectral radius rho(W) = max |lambda_i| sets the long-run rate (rho < 1 vanishes, rho > 1
explodes) and the largest singular value sigma_max(W) = ||W||_2 bounds every single step
(||W^T v|| <= sigma_max ||v||); for an orthogonal W both are 1, for gain * orthogonal both are
the gain (Saxe et al. 2013; Pascanu, Mikolov & Bengio 2013, https://arxiv.org/abs/1211.5063).

Each cell names its matrices through the contract (``recurrent_matrices()``): square (K, K)
matrices (one per gate block for gated cells) or diagonals (K,) (element-wise cells such as
IndRNN; possibly complex), never anything that depends on the cell type here. For a diagonal
the eigenvalues are its entries and sigma_max = rho = max |d_i|. Computed in float64 (complex128
for complex matrices) on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from rnnzoo.report.probe import cells_of, layer_names


@dataclass
class Spectrum:
    """One recurrent matrix's spectrum.

    Attributes:
        layer: the layer name ("layer0", ...).
        name: the matrix name the cell gives ("W_hh", "W_hf", "u", ...).
        kind: "matrix" (K, K) or "diagonal" (K,).
        eigenvalues: (K,) complex128.
        spectral_radius: max |eigenvalue|.
        sigma_max: largest singular value.
    """

    layer: str
    name: str
    kind: str
    eigenvalues: np.ndarray
    spectral_radius: float
    sigma_max: float


def matrix_spectrum(layer: str, name: str, matrix: Tensor) -> Spectrum | str:
    """The spectrum of a (K, K) matrix or (K,) diagonal, or a note saying why there is none."""
    m = matrix.detach().cpu()
    m = m.to(torch.complex128 if m.is_complex() else torch.float64)
    if m.dim() == 1:
        eig = m.to(torch.complex128)
        radius = sigma = float(m.abs().max()) if m.numel() else 0.0
        kind = "diagonal"
    elif m.dim() == 2 and m.shape[0] == m.shape[1]:
        eig = torch.linalg.eigvals(m)
        radius = float(eig.abs().max())
        sigma = float(torch.linalg.matrix_norm(m, ord=2))
        kind = "matrix"
    else:
        return f"{layer} {name}: shape {tuple(m.shape)} is neither (K, K) nor (K,), skipped"
    return Spectrum(layer, name, kind, eig.numpy(), radius, sigma)


def model_spectra(model: nn.Module) -> tuple[list[Spectrum], list[str]]:
    """Spectra of every recurrent matrix of every cell, and notes on what was skipped.

    Returns:
        (spectra in layer order, notes) — a cell with no recurrent matrix gets a note.
    """
    spectra: list[Spectrum] = []
    notes: list[str] = []
    for layer, cell in zip(layer_names(model), cells_of(model), strict=True):
        matrices = cell.recurrent_matrices()
        if not matrices:
            notes.append(f"{layer}: {type(cell).__name__} has no recurrent matrix; no spectrum")
        for name, matrix in matrices.items():
            result = matrix_spectrum(layer, name, matrix)
            (notes if isinstance(result, str) else spectra).append(result)
    return spectra, notes


def scalars(spectra: list[Spectrum]) -> dict[str, float]:
    """TensorBoard scalars: ``diag/spectral_radius/<layer>/<matrix>`` and ``diag/sigma_max/...``."""
    out = {}
    for s in spectra:
        out[f"diag/spectral_radius/{s.layer}/{s.name}"] = s.spectral_radius
        out[f"diag/sigma_max/{s.layer}/{s.name}"] = s.sigma_max
    return out
