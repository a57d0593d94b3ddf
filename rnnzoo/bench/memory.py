"""Peak memory of one training step, fused LSTM vs torch.nn.LSTM (``--memory`` mode of
``scripts/benchmark.py``).

One step = forward over the sequence, cross-entropy on the last step, backward, Adam, at
sMNIST shapes by default (B=128, H=128, T=784, I=1). torch has no allocator statistics on
CPU, and the fused kernels take their big buffers from their own cache (outside torch's
allocator), so each contender runs in a FRESH subprocess and we read the kernel's numbers:
the resident set before the first step (model, data, optimizer and libraries loaded) and
the peak resident set (``ru_maxrss``) after ``steps`` steps. ``step_peak_mb`` = peak minus
before: what one training step adds at its peak. Denormals are flushed in both.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CONTENDERS = ("fused", "builtin")


@dataclasses.dataclass
class MemoryConfig:
    """Shapes of the measured step (sMNIST defaults) and how many steps to run."""

    batch_size: int = 128
    hidden_size: int = 128
    seq_len: int = 784
    input_size: int = 1
    num_classes: int = 10
    steps: int = 2


def _rss_mb() -> float:
    """The current resident set of this process, in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    """The peak resident set of this process so far, in MB (ru_maxrss is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model(contender: str, cfg: MemoryConfig) -> tuple[nn.Module, Any]:
    """The model of ``contender`` and its forward (x -> logits)."""
    if contender == "fused":
        from rnnzoo.model import SequenceClassifier

        model = SequenceClassifier("lstm", cfg.input_size, cfg.hidden_size, cfg.num_classes,
                                   engine="fused")  # fmt: skip
        model.resolve_engines()  # builds / loads the library before the baseline
        return model, lambda x: model(x)[0]
    rnn = nn.LSTM(cfg.input_size, cfg.hidden_size)
    readout = nn.Linear(cfg.hidden_size, cfg.num_classes)
    return nn.ModuleDict({"rnn": rnn, "readout": readout}), lambda x: readout(rnn(x)[0][-1])


def measure(contender: str, cfg: MemoryConfig) -> dict[str, float]:
    """Run ``cfg.steps`` training steps of ``contender`` in THIS process; MB figures."""
    from rnnzoo.engines.denormal import flush_denormals

    torch.manual_seed(0)
    model, forward = _model(contender, cfg)
    flush_denormals(True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(cfg.seq_len, cfg.batch_size, cfg.input_size)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,))
    before = _rss_mb()
    for _ in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(forward(x), y).backward()
        opt.step()
    peak = _peak_mb()
    return {"rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
            "step_peak_mb": round(peak - before, 1)}  # fmt: skip


def run_memory(cfg: MemoryConfig) -> dict[str, Any]:
    """Every contender in its own fresh subprocess; returns {contender: figures}."""
    report: dict[str, Any] = {"config": dataclasses.asdict(cfg), "contenders": {}}
    for contender in CONTENDERS:
        args = json.dumps([contender, dataclasses.asdict(cfg)])
        code = f"import json, sys; from rnnzoo.bench import memory as m; m._child({args!r})"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"memory run of {contender} failed: {out.stderr.strip()[-500:]}")
        report["contenders"][contender] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def _child(args: str) -> None:
    """Subprocess entry: measure one contender and print its figures as one JSON line."""
    contender, cfg = json.loads(args)
    print(json.dumps(measure(contender, MemoryConfig(**cfg))))


def format_memory(report: dict[str, Any]) -> str:
    """The memory report as a small text table."""
    cfg = report["config"]
    lines = [
        f"peak memory of one LSTM training step: B={cfg['batch_size']} H={cfg['hidden_size']} "
        f"T={cfg['seq_len']} I={cfg['input_size']} ({cfg['steps']} steps, fresh process each)",
        f"{'contender':<12}{'RSS before':>12}{'peak RSS':>12}{'step peak':>12}",
    ]
    for name, row in report["contenders"].items():
        lines.append(
            f"{name:<12}{row['rss_before_mb']:>10.0f}MB{row['peak_rss_mb']:>10.0f}MB"
            f"{row['step_peak_mb']:>10.0f}MB"
        )
    lines.append("step peak = peak resident set - resident set before the first step")
    return "\n".join(lines)
