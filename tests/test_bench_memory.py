"""The benchmark's memory mode: one fresh process per contender, figures for both."""

from __future__ import annotations

from rnnzoo.bench.memory import CONTENDERS, MemoryConfig, format_memory, run_memory


def test_memory_mode_reports_every_contender():
    report = run_memory(MemoryConfig(batch_size=4, hidden_size=8, seq_len=5, steps=1))
    assert set(report["contenders"]) == set(CONTENDERS)
    for row in report["contenders"].values():
        assert row["peak_rss_mb"] >= row["rss_before_mb"] > 0
        assert row["step_peak_mb"] >= 0
    assert "fused" in format_memory(report) and "builtin" in format_memory(report)
