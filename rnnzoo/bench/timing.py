"""Interleaved timing of every contender, the ratios, and the whole run over the cells."""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from rnnzoo.bench.config import ROW_CELLS, ROW_SHAPE, TARGETS, TRAIN_SIZE, BenchConfig
from rnnzoo.bench.contenders import BUILTINS, builtin_step, engine_step, naive64_step
from rnnzoo.bench.floor import gemm_steps
from rnnzoo.engines import fused_build, list_engines, resolve_engine, valid_engines
from rnnzoo.engines.denormal import flush_denormals
from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import list_cells, resolve_name


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _row(ms: float, cfg: BenchConfig) -> dict[str, Any]:
    return {
        "ms_per_step": round(ms, 3),
        "seq_per_s": round(cfg.batch_size / (ms / 1000.0), 2),
        "epoch_s": round(math.ceil(TRAIN_SIZE / cfg.batch_size) * ms / 1000.0, 1),
    }


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return round(num / den, 3)


def bench_cell(cfg: BenchConfig, cell: str, device: torch.device) -> dict[str, Any]:
    """Time every contender for ``cell`` (interleaved) and compute the ratios."""
    probe = SequenceClassifier(cell, cfg.input_size, cfg.hidden_size, engine="loop").cells[0]
    usable = valid_engines(probe, device)
    contenders: dict[str, Callable] = {}
    for engine in cfg.engines:
        if engine in usable:
            contenders[engine] = engine_step(cfg, cell, engine, device)
    if cfg.builtin and cell in BUILTINS:
        contenders["builtin"] = builtin_step(cfg, cell, device)
    gemm_variants: dict[str, Callable] = gemm_steps(cfg, cell, device) if cfg.gemm else {}
    for name, fn in gemm_variants.items():
        contenders[f"gemm_{name}"] = fn

    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        for _ in range(cfg.warmup):
            fn()
    ops = _profiler(cfg, "fused" in contenders)
    profile: list[float] | None = None
    for _ in range(cfg.repeats):
        for name, fn in contenders.items():
            if ops is not None and name == "fused":
                ops.profile(True)
            times[name].append(_timed(fn, device))
            if ops is not None and name == "fused":
                sample = ops.profile(False)
                profile = (
                    sample
                    if profile is None
                    else [a + b for a, b in zip(profile, sample, strict=True)]
                )

    naive_ms = None
    if cfg.naive:
        naive = naive64_step(cfg, cell, device)
        for _ in range(min(cfg.warmup, 1)):
            naive()
        naive_ms = 1000 * statistics.median(
            _timed(naive, device) for _ in range(max(1, cfg.naive_repeats))
        )

    ms = {name: 1000 * statistics.median(v) for name, v in times.items()}
    builtin_ms = ms.get("builtin")
    gemm_ms = min((ms[f"gemm_{n}"] for n in gemm_variants), default=None)
    result: dict[str, Any] = {"engines": {}, "auto": resolve_engine("auto", probe, device)}
    for engine in cfg.engines:
        if engine not in ms:
            continue
        row = _row(ms[engine], cfg)
        row["ratio_vs_builtin"] = _ratio(builtin_ms, ms[engine])
        row["ratio_vs_gemm"] = _ratio(ms[engine], gemm_ms)
        row["ratio_vs_naive64"] = _ratio(naive_ms, ms[engine])
        result["engines"][engine] = row
    if builtin_ms is not None:
        result["builtin"] = _row(builtin_ms, cfg)
    if gemm_ms is not None:
        result["gemm"] = _row(gemm_ms, cfg)
        result["gemm"]["variants_ms"] = {n: round(ms[f"gemm_{n}"], 3) for n in gemm_variants}
    if naive_ms is not None:
        result["naive64"] = _row(naive_ms, cfg)
    if result["engines"]:
        best = min(result["engines"], key=lambda e: result["engines"][e]["ms_per_step"])
        result["best"] = best
        result["targets"] = _targets(result["engines"][best])
    if profile is not None:
        result["fused_profile_ms"] = _profile_summary(profile, cfg.repeats)
    return result


def _targets(row: dict[str, Any]) -> dict[str, bool | None]:
    def check(value, bound, larger):
        if value is None:
            return None
        return value >= bound if larger else value <= bound

    return {
        "ratio_vs_gemm": check(row["ratio_vs_gemm"], TARGETS["max_ratio_vs_gemm"], False),
        "ratio_vs_builtin": check(row["ratio_vs_builtin"], TARGETS["min_ratio_vs_builtin"], True),
        "ratio_vs_naive64": check(row["ratio_vs_naive64"], TARGETS["min_ratio_vs_naive64"], True),
    }


#: the fused kernels' phases (rnnzoo/engines/csrc/runtime.h, enum Phase)
PHASES = ("fwd_input", "fwd_gemm", "fwd_elementwise", "bwd_elementwise", "bwd_gemm",
          "bwd_copy", "bwd_weight_grad")  # fmt: skip


def _profiler(cfg: BenchConfig, wanted: bool):
    if not (cfg.profile and wanted):
        return None
    try:
        return fused_build.load_ops()
    except fused_build.FusedBuildError:
        return None


def _profile_summary(total: list[float], repeats: int) -> dict[str, float]:
    """Thread CPU ms per training step in each phase of the fused kernels (summed over
    layers and over the threads that run the shards)."""
    return {name: round(1000 * total[i] / repeats, 2) for i, name in enumerate(PHASES)}


def _flush_denormal(enable: bool) -> bool:
    """FTZ/DAZ on the calling thread and every thread of torch's pool (see
    ``rnnzoo.engines.denormal``)."""
    return flush_denormals(enable)


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where the numbers come from (load average: the machine may be shared)."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": fused_build.cpu_capability(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        info["load_average"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every cell in ``cfg.cells``; returns a JSON-ready report."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    flushed = cfg.flush_denormal and _flush_denormal(True)
    device = torch.device(cfg.device)
    try:
        cells = [resolve_name(c) for c in (cfg.cells or list_cells())]
    except ValueError as err:
        raise UserError(str(err)) from None
    unknown = [e for e in cfg.engines if e not in list_engines() or e == "auto"]
    if unknown:
        valid = ", ".join(e for e in list_engines() if e != "auto")
        raise UserError(f"unknown engines {unknown}; valid: {valid}")
    report: dict[str, Any] = {
        "config": dataclasses.asdict(cfg) | {"cells": cells},
        "machine": machine_info(device),
        "targets": TARGETS,
        "cells": {},
    }
    try:
        for cell in cells:
            if log:
                log(f"timing {cell} ...")
            cell_cfg = dataclasses.replace(cfg, **ROW_SHAPE) if cell in ROW_CELLS else cfg
            report["cells"][cell] = bench_cell(cell_cfg, cell, device)
            if cell in ROW_CELLS:
                shape = {k: v for k, v in ROW_SHAPE.items() if k != "naive"}
                report["cells"][cell]["shape"] = shape
    finally:
        if flushed:
            _flush_denormal(False)
    report["machine"]["load_average_end"] = machine_info(device)["load_average"]
    if fused_build.build_failed():
        report["machine"]["fused"] = "NOT BUILT: the fused rows are the loop engine"
    return report
