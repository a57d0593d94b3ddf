"""The benchmark report as the fixed-width text table ``rnnzoo-bench`` prints."""

from __future__ import annotations

from typing import Any

from rnnzoo.registry import cell_label


def _fmt(value: float | None, suffix: str = "x", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width text table, one block of rows per cell."""
    cfg, machine = report["config"], report["machine"]
    lines = [
        f"one training step (forward + backward + Adam): B={cfg['batch_size']} "
        f"H={cfg['hidden_size']} layers={cfg['num_layers']} T={cfg['seq_len']} "
        f"I={cfg['input_size']}, device={cfg['device']}, {machine['threads']} threads "
        f"({machine['cpu_capability']}), load {machine['load_average']} -> "
        f"{machine.get('load_average_end')}, flush_denormal={cfg['flush_denormal']}"
        + (f"\n{machine['fused']}" if "fused" in machine else ""),
        f"{'cell':<13}{'engine':<9}{'ms/step':>10}{'seq/s':>9}{'epoch':>8}"
        f"{'vs builtin':>12}{'vs gemm':>9}{'vs naive64':>12}  notes",
    ]
    for spec, res in report["cells"].items():
        cell, first = cell_label(spec), True  # mycells:LeakyRNN -> LeakyRNN
        for engine, row in res["engines"].items():
            notes = []
            if engine == res.get("best"):
                missed = [k for k, ok in res["targets"].items() if ok is False]
                notes.append("best" + (f" (misses {', '.join(missed)})" if missed else ""))
            if engine == res.get("auto"):
                notes.append("auto")
            lines.append(
                f"{cell if first else '':<13}{engine:<9}{row['ms_per_step']:>10.1f}"
                f"{row['seq_per_s']:>9.0f}{_minutes(row['epoch_s']):>8}"
                f"{_fmt(row['ratio_vs_builtin']):>12}{_fmt(row['ratio_vs_gemm']):>9}"
                f"{_fmt(row['ratio_vs_naive64'], digits=1):>12}  {', '.join(notes)}"
            )
            first = False
        for name in ("builtin", "gemm", "naive64"):
            row = res.get(name)
            if row is None:
                continue
            note = ""
            if name == "gemm":
                note = ", ".join(f"{k} {v:.1f}" for k, v in row["variants_ms"].items())
            lines.append(
                f"{cell if first else '':<13}{name:<9}{row['ms_per_step']:>10.1f}"
                f"{row['seq_per_s']:>9.0f}{_minutes(row['epoch_s']):>8}"
                f"{'':>12}{'':>9}{'':>12}  {note}"
            )
            first = False
        if "shape" in res:
            shape = " ".join(f"{k}={v}" for k, v in res["shape"].items())
            lines.append(f"{'':<13}at the row view's shape: {shape}")
        if "fused_profile_ms" in res:
            parts = ", ".join(f"{k} {v:.0f}" for k, v in res["fused_profile_ms"].items())
            lines.append(f"{'':<13}fused profile, thread-CPU ms per step: {parts}")
    lines.append(
        "epoch = ceil(55000 / B) steps; vs builtin = builtin ms / ms (>1 faster); "
        "vs gemm = ms / GEMM-only ms; vs naive64 = float64 per-step loop ms / ms"
    )
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}m"
