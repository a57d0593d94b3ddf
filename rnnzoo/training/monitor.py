"""What a run shows while it trains: TensorBoard scalars, tqdm bars or plain log lines.

One ``Monitor`` per job owns its own ``SummaryWriter`` in ``<run_dir>/tensorboard`` and closes it
on exit, also on error. Scalars are written against the global optimizer step:
``train/loss``, ``train/acc``, ``train/grad_norm`` (pre-clip), ``lr``, ``perf/seq_per_s``
(means over the last ``log_every`` steps), ``val/*`` and ``test/*``; hparams at the end.

Progress: tqdm bars (epochs, batches with loss/acc in the postfix) when asked for and stderr
is a terminal; otherwise one log line per ``log_every`` steps, so logs of batch jobs stay
readable. Log records are routed through tqdm while bars are shown, so they do not tear them.
"""

from __future__ import annotations

import logging
import math
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)


@dataclass
class _Window:
    """Sums of the training batches since the last flush."""

    loss: float = 0.0
    acc: float = 0.0
    grad_norm: float = 0.0
    batches: int = 0
    sequences: int = 0
    seconds: float = 0.0


class Monitor:
    """TensorBoard writer plus progress display for one job (a context manager).

    Args:
        run_dir: the job's run directory; events go to ``run_dir/tensorboard``.
        epochs: total epochs (for the epoch bar and log lines).
        progress: show tqdm bars if stderr is a terminal; False: plain log lines.
        log_every: write training scalars (and a log line without bars) every this many steps.
        start_step: the step training (re)starts from; on resume TensorBoard drops the events
            an earlier session logged after it (a killed run logs past its last checkpoint).
    """

    def __init__(
        self,
        run_dir: Path,
        epochs: int,
        progress: bool = True,
        log_every: int = 50,
        start_step: int = 0,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter  # slow import, only when training

        purge_step = start_step + 1 if start_step else None
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)
        self.epochs = epochs
        self.log_every = log_every
        self.bars = progress and sys.stderr.isatty()
        self._stack = ExitStack()
        self._window = _Window()
        self._last_flush = start_step
        self._epoch_bar: tqdm | None = None
        self._batch_bar: tqdm | None = None
        self._where = ""
        self._num_batches = 0

    def __enter__(self) -> Monitor:
        self._stack.callback(self.writer.close)
        if self.bars:
            self._stack.enter_context(logging_redirect_tqdm())
            self._epoch_bar = tqdm(
                total=self.epochs, desc="epochs", unit="epoch", dynamic_ncols=True
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_bars()
        self._stack.close()

    def close_bars(self) -> None:
        """Take the bars off the screen (training is over; testing follows)."""
        for bar in (self._batch_bar, self._epoch_bar):
            if bar is not None:
                bar.close()
        self._batch_bar = self._epoch_bar = None

    # training ---------------------------------------------------------------------------------

    def start_epoch(self, epoch: int, num_batches: int, done: int = 0) -> None:
        """Begin epoch ``epoch`` (0-based) of ``num_batches``, ``done`` of them already trained."""
        self._where = f"epoch {epoch + 1}/{self.epochs}"
        self._num_batches = num_batches
        if self._epoch_bar is not None:
            self._epoch_bar.n = epoch
            self._epoch_bar.refresh()
            if self._batch_bar is not None:
                self._batch_bar.close()
            self._batch_bar = tqdm(
                total=num_batches,
                initial=done,
                desc=self._where,
                unit="batch",
                leave=False,
                dynamic_ncols=True,
            )

    def train_batch(
        self,
        step: int,
        batch: int,
        loss: float,
        acc: float,
        grad_norm: float,
        lr: float,
        sequences: int,
        seconds: float,
    ) -> None:
        """Record one trained batch (``batch`` 1-based within the epoch) ending at ``step``."""
        w = self._window
        w.loss += loss
        w.acc += acc
        w.grad_norm += grad_norm
        w.batches += 1
        w.sequences += sequences
        w.seconds += seconds
        if self._batch_bar is not None:
            self._batch_bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.3f}", refresh=False)
            self._batch_bar.update(1)
        if step // self.log_every > self._last_flush // self.log_every:
            self.flush(step, batch, lr)

    def flush(self, step: int, batch: int, lr: float) -> None:
        """Write the training scalars averaged since the last flush (nothing if none)."""
        w = self._window
        if w.batches == 0:
            return
        values = {
            "train/loss": w.loss / w.batches,
            "train/acc": w.acc / w.batches,
            "train/grad_norm": w.grad_norm / w.batches,
            "lr": lr,
            "perf/seq_per_s": w.sequences / w.seconds if w.seconds > 0 else math.nan,
        }
        self.scalars(step, values)
        if not self.bars:
            log.info(
                "%s batch %d/%d step %d | loss %.4f acc %.3f | grad_norm %.3g | lr %.3g | "
                "%.0f seq/s",
                self._where,
                batch,
                self._num_batches,
                step,
                values["train/loss"],
                values["train/acc"],
                values["train/grad_norm"],
                lr,
                values["perf/seq_per_s"],
            )
        self._window = _Window()
        self._last_flush = step

    def end_epoch(self, epoch: int, summary: str, postfix: dict[str, str]) -> None:
        """Epoch ``epoch`` (0-based) is done: advance the bar and log ``summary``."""
        if self._batch_bar is not None:
            self._batch_bar.close()
            self._batch_bar = None
        if self._epoch_bar is not None:
            self._epoch_bar.n = epoch + 1
            self._epoch_bar.set_postfix(postfix)
        log.info(summary)

    # results ----------------------------------------------------------------------------------

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            if value is not None:
                self.writer.add_scalar(tag, value, step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float | None]) -> None:
        """The run's hyperparameters and final metrics in TensorBoard's HPARAMS tab."""
        clean = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()
        }
        finals = {f"hparam/{k}": math.nan if v is None else float(v) for k, v in metrics.items()}
        self.writer.add_hparams(clean, finals, run_name=".")
        self.writer.flush()
