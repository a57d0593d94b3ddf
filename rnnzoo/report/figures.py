"""The inspect PNGs: gradient flow, spectra, hidden states (matplotlib, the optional [plot] extra).

Drawn with ``matplotlib.figure.Figure`` (no pyplot: no GUI backend, no global state) from what
``rnnzoo.report.measure`` measured. Importing this module raises ImportError without
matplotlib; ``rnnzoo.report.inspect`` then skips the pictures and still writes the JSON files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from rnnzoo.report.hidden import HiddenRecord
    from rnnzoo.report.measure import Inspection, View

MAP_STEPS = 8  # time steps shown per state map row


def _ratio_text(log10_ratio: float) -> str:
    if not math.isfinite(log10_ratio):
        return "n/a"
    return f"1e{log10_ratio:+.0f}" if abs(log10_ratio) >= 3 else f"{10**log10_ratio:.3g}"


def _views(result: Inspection) -> list[View]:
    return [result.init] if result.checkpoint == "init" else [result.init, result.final]


def grad_flow_png(result: Inspection, path: Path) -> None:
    """log10 ||dL/dh_t|| against t, one color per layer, init dashed, checkpoint solid."""
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.subplots()
    colors = [f"C{i}" for i in range(10)]
    for v in _views(result):
        style = "--" if v.label == "init" else "-"
        for k, layer in enumerate(v.flow.layers):
            curve = v.flow.log10_norms[k]
            t = np.arange(1, len(curve) + 1)
            ratio = _ratio_text(v.flow.log10_first_over_last(k))
            label = f"{layer}, {v.label} (first/last {ratio})"
            ax.plot(t, curve, style, color=colors[k % 10], lw=1.4, label=label)
    ax.set_xlabel("time step t")
    ax.set_ylabel("log10 ||dL/dh_t||")
    what = f"checkpoint '{result.checkpoint}'" if result.checkpoint != "init" else "init only"
    ax.set_title(
        f"{result.cell} on {result.task}: gradient reaching h_t, mean over "
        f"{result.samples} test sequences ({what})"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)


def spectrum_png(result: Inspection, path: Path) -> None:
    """Eigenvalues in the complex plane with the unit circle, one panel per matrix."""
    views = _views(result)
    final = views[-1]
    keys = [(s.layer, s.name) for s in final.spectra]
    n = max(len(keys), 1)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(max(3.4 * cols, 6.0), 3.5 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    if not keys:
        axes[0].axis("off")
        text = "\n".join(final.notes) or "no recurrent matrix"
        axes[0].text(0.5, 0.5, f"skipped:\n{text}", ha="center", va="center", wrap=True)
    theta = np.linspace(0, 2 * np.pi, 400)
    for ax, key in zip(axes, keys, strict=False):
        ax.plot(np.cos(theta), np.sin(theta), color="0.6", lw=0.8)
        title = []
        reach = 1.0
        for v in views:
            spec = next((s for s in v.spectra if (s.layer, s.name) == key), None)
            if spec is None:
                continue
            eig = spec.eigenvalues
            reach = max(reach, float(np.abs(eig).max(initial=0.0)))
            if v.label == "init" and len(views) > 1:
                ax.scatter(eig.real, eig.imag, s=14, facecolors="none", edgecolors="0.45", lw=0.7)
            else:
                ax.scatter(eig.real, eig.imag, s=9, color="C3" if v.label != "init" else "C0")
            title.append(f"{v.label}: rho {spec.spectral_radius:.3g}, sigma {spec.sigma_max:.3g}")
        lim = 1.08 * reach
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.axhline(0, color="0.85", lw=0.6)
        ax.axvline(0, color="0.85", lw=0.6)
        ax.set_title(f"{key[0]} {key[1]}\n" + "\n".join(title), fontsize="small")
    for ax in axes[len(keys) if keys else 1 :]:
        ax.axis("off")
    legend = "hollow grey: init, red: checkpoint" if len(views) > 1 else "init"
    fig.suptitle(f"{result.cell} on {result.task}: recurrent eigenvalues\n({legend})")
    fig.savefig(path, dpi=110)


def hidden_png(result: Inspection, path: Path) -> None:
    """Per digit: the image, h (units x time) per layer, the gates' mean activation per layer;
    below, for spatial states, the maps at a few time steps."""
    rec = result.digits
    spatial = [layer for layer in rec.layers if layer.maps]
    fig = Figure(figsize=(4 + 5 * len(rec.layers), 2.6 * len(rec.labels) + 3.2 * len(spatial)))
    fig.set_layout_engine("constrained")
    if spatial:
        top, bottom = fig.subfigures(2, 1, height_ratios=[len(rec.labels), 1.3 * len(spatial)])
        _maps(bottom, rec, spatial)
    else:
        top = fig
    _digits(top, rec)
    top.suptitle(f"{result.cell} on {result.task} at checkpoint '{result.checkpoint}'")
    fig.savefig(path, dpi=100)


def _digits(fig: Any, rec: HiddenRecord) -> None:
    gated = any(layer.gates for layer in rec.layers)
    per_layer = 2 if gated else 1
    cols = 1 + per_layer * len(rec.layers)
    ratios = [0.6] + [3, 2][:per_layer] * len(rec.layers)
    axes = fig.subplots(len(rec.labels), cols, squeeze=False, width_ratios=ratios)
    for d, label in enumerate(rec.labels):
        axes[d, 0].imshow(rec.images[d], cmap="gray_r")
        axes[d, 0].set_title(f"test digit {label}", fontsize="small")
        axes[d, 0].axis("off")
        for j, layer in enumerate(rec.layers):
            ax = axes[d, 1 + per_layer * j]
            h = layer.hidden[d]  # (units, T)
            peak = float(np.abs(h).max()) or 1.0
            signed = float(h.min()) < 0
            cmap, lo = ("RdBu_r", -peak) if signed else ("viridis", 0.0)
            extent = (0.5, h.shape[1] + 0.5, h.shape[0] - 0.5, -0.5)  # x: steps 1..T
            im = ax.imshow(
                h, aspect="auto", cmap=cmap, vmin=lo, vmax=peak, interpolation="none", extent=extent
            )
            fig.colorbar(im, ax=ax, fraction=0.04, pad=0.01)
            ax.set_title(f"{layer.name} h_t (units x time)", fontsize="small")
            ax.set_ylabel("unit")
            ax.set_xlabel("time step")
            if gated:
                _gates(axes[d, 2 + per_layer * j], layer, d)


def _gates(ax: Any, layer: Any, d: int) -> None:
    if not layer.gates:
        ax.axis("off")
        ax.text(0.5, 0.5, "no gates", ha="center", va="center")
        return
    for name, values in layer.gates.items():  # (n, T)
        ax.plot(np.arange(1, values.shape[-1] + 1), values[d], lw=1.0, label=name)
    ax.set_ylim(0, 1)
    ax.set_title(f"{layer.name} gates: mean over units", fontsize="small")
    ax.set_xlabel("time step")
    ax.legend(fontsize="x-small", loc="best")
    ax.grid(alpha=0.3)


def _maps(fig: Any, rec: HiddenRecord, layers: list[Any]) -> None:
    """First digit: each spatial state at MAP_STEPS time steps (3-D maps: channel mean)."""
    rows = [(layer, s) for layer in layers for s in range(len(layer.maps))]
    axes = fig.subplots(len(rows), MAP_STEPS, squeeze=False)
    for r, (layer, s) in enumerate(rows):
        maps = layer.maps[s][0]  # (T, *state_shape) of the first digit
        steps = np.unique(np.linspace(0, maps.shape[0] - 1, MAP_STEPS).round().astype(int))
        peak = float(np.abs(maps).max()) or 1.0
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c >= len(steps):
                continue
            m = maps[steps[c]]
            m = m.mean(0) if m.ndim == 3 else m  # (C, H, W) -> (H, W); (C, W) as is
            ax.imshow(np.atleast_2d(m), cmap="RdBu_r", vmin=-peak, vmax=peak, aspect="auto")
            ax.set_title(f"{layer.name} {layer.state_names[s]} t={steps[c] + 1}", fontsize=7)
    fig.suptitle(f"state maps of test digit {rec.labels[0]} (Shi et al. 2015)", fontsize="small")
