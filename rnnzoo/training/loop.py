"""Training: ``train(cfg)`` runs one job end to end and returns its metrics record.

The loop: for each epoch, shuffled batches (order seeded by (seed, epoch)); per batch one set
of recurrent-dropout masks and the pieces truncated BPTT asks for (``tbptt``), each a loss,
backward, gradient clipping (the pre-clip norm is logged), an optimizer step and
``model.post_step_()``. Validation at every epoch end (and every ``val_every_steps``) keeps
``checkpoints/best.pt``; ``checkpoints/last.pt`` is written at every epoch end (and every
``ckpt_every_steps``); ``checkpoints`` owns what they hold and how a run resumes. At the end
the official test set is evaluated with ``best.pt``, and ``metrics.json`` records the job
(``metrics``). Nothing here branches on the cell type.

How a job can end (the ``status`` in metrics.json):
- ``completed``: epochs or max_steps reached.
- ``diverged``: a NaN/Inf loss or gradient with ``nan_policy=stop``; nothing non-finite is
  ever stepped into the weights or saved, so last.pt and best.pt stay good.
- ``interrupted``: Ctrl-C. The first one finishes the current batch, writes last.pt and
  stops (resumable exactly); a second one stops at once. Both still test ``best.pt``.
- ``failed``: an exception; recorded, then re-raised.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from rnnzoo.errors import one_line
from rnnzoo.report.diagnostics import TrainingDiagnostics
from rnnzoo.training import checkpoints, metrics, tbptt
from rnnzoo.training.monitor import Monitor
from rnnzoo.training.optim import clip_gradients
from rnnzoo.training.progress import Progress, crossed
from rnnzoo.training.runtime import StopRequest, resolve_run_dir, run_config
from rnnzoo.training.setup import Job

log = logging.getLogger(__name__)

FINALS = ("val_acc", "test_acc", "test_loss")  # the metrics shown next to the hparams


class Diverged(Exception):
    """The loss or the gradient became NaN/Inf under ``trainer.nan_policy=stop``."""


def train(cfg: DictConfig, run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train one job, validate, test the best checkpoint, write ``metrics.json``.

    Args:
        cfg: the composed config (``conf/config.yaml``).
        run_dir: where outputs go; see :func:`resolve_run_dir`.

    Returns:
        The metrics record (also in ``<run_dir>/metrics.json``); ``status`` says how it ended.

    Raises:
        UserError: a mistake in the config or the data (metrics.json says "failed" first).
        Exception: anything else, likewise recorded first.
    """
    run_dir = resolve_run_dir(cfg, run_dir)
    resume = (cfg.get("trainer") or {}).get("resume")
    # a checkpoint of another run is refused before anything is written into the run dir
    accepted = checkpoints.open_resume(resume, run_dir, run_config(cfg))
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, run_dir, accepted)
    try:
        trainer.setup()
        return trainer.fit()
    except (Exception, KeyboardInterrupt) as err:
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        metrics.write(run_dir, trainer.record(status, error=one_line(err)))
        raise


class Trainer:
    """The loop over one job: train, validate, checkpoint, test, record."""

    def __init__(
        self, cfg: DictConfig, run_dir: Path, resume: checkpoints.Resume | None = None
    ) -> None:
        self.cfg = cfg
        self.resume = resume  # a checkpoint accepted by checkpoints.open_resume
        self.run_dir = run_dir
        self.last_path = run_dir / "checkpoints" / "last.pt"
        self.best_path = run_dir / "checkpoints" / "best.pt"
        self.progress = Progress()
        self.job: Job | None = None  # set by setup()
        self.monitor: Monitor | None = None  # set by fit()
        self.diagnostics: TrainingDiagnostics | None = None  # set by setup() unless turned off
        self._clock = self._epoch_clock = time.perf_counter()

    def setup(self) -> None:
        """Build the job; continue the accepted checkpoint, or start from ``init_from``'s
        weights."""
        self.job = job = Job.build(self.cfg)
        job.data.save_permutation(self.run_dir)
        init_from = job.settings.init_from
        if self.resume is not None:
            self.progress = checkpoints.restore(job, self.resume, self.run_dir)
            if init_from:
                log.info("trainer.init_from=%s ignored: the run resumes", init_from)
        elif init_from:
            checkpoints.init_weights(job, init_from)
        if job.settings.diagnostics:
            self.diagnostics = TrainingDiagnostics(job.data.val)
        log.info("%s; run dir %s", job.describe(), self.run_dir)

    # the loop ---------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train, test best.pt, write metrics.json; returns the record."""
        s, p = self.job.settings, self.progress
        status, error = "completed", None
        with Monitor(self.run_dir, s.epochs, s.progress, s.log_every_steps, p.step) as monitor:
            self.monitor = monitor
            try:
                with StopRequest() as stop:
                    self._loop(stop)
            except Diverged as err:
                status, error = "diverged", str(err)
                log.error("%s", err)
            except KeyboardInterrupt:
                status, error = "interrupted", f"interrupted at step {p.step}"
                log.warning("%s; resume with trainer.resume=%s", error, self.run_dir)
            monitor.close_bars()
            self._tick()
            test_loss, test_acc = self._test()
            monitor.scalars(p.step, {"test/loss": test_loss, "test/acc": test_acc})
            result = self.record(status, error, test_loss=test_loss, test_acc=test_acc)
            monitor.hparams(self.job.hparams(), {k: result[k] for k in FINALS})
        metrics.write(self.run_dir, result)
        log.info(
            f"{status}: best val_acc {_fmt(result['val_acc'])}, test_acc {_fmt(test_acc)}, "
            f"{p.step} steps in {p.seconds:.1f} s; {self.run_dir / 'metrics.json'}"
        )
        return result

    def _loop(self, stop: StopRequest) -> None:
        j, s, p = self.job, self.job.settings, self.progress
        n = j.num_batches
        self._clock = time.perf_counter()
        while p.epoch < s.epochs and not self._max_steps_reached():
            self.monitor.start_epoch(p.epoch, n, p.batch)
            self._epoch_clock = time.perf_counter()
            batches = j.data.train.batches(
                j.batch_size, True, j.seed, p.epoch, s.limit_train_batches
            )
            for x, y in itertools.islice(batches, p.batch, None):  # resume mid-epoch
                before = p.step
                self._train_batch(x, y)
                p.batch += 1
                if p.batch < n:  # the epoch end validates and saves anyway
                    if crossed(before, p.step, s.val_every_steps):
                        self._validate()
                    if crossed(before, p.step, s.ckpt_every_steps):
                        self._save(self.last_path)
                if stop.requested:  # first Ctrl-C: a consistent, resumable stop
                    self._save(self.last_path)
                    raise KeyboardInterrupt
                if self._max_steps_reached():
                    break
            # the batches ran out (also when a checkpoint's position lies past them), or
            # max_steps stopped the loop exactly at the epoch's end
            if p.batch >= n or not self._max_steps_reached():
                self._end_epoch()
        if p.batch:  # stopped mid-epoch by max_steps: a final validation, a resumable last.pt
            self._validate()
            self._save(self.last_path)

    def _max_steps_reached(self) -> bool:
        max_steps = self.job.settings.max_steps
        return max_steps is not None and self.progress.step >= max_steps

    def _train_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One batch: x (T, B, I), y (B,); one update per truncation piece."""
        j, p = self.job, self.progress
        started = time.perf_counter()
        j.model.train()
        masks = j.model.sample_masks(x.size(1))  # one per sequence, shared by all pieces
        pieces = tbptt.forward_pieces(
            j.model, x, j.tbptt_steps, j.settings.tbptt_mode, masks, j.autocast
        )
        norms = []
        for logits in pieces:  # (B, C)
            loss = F.cross_entropy(logits.float(), y)
            norm = self._update(loss)
            if norm is None:
                return  # skipped (nan_policy=skip)
            norms.append(norm)
        # the last piece saw the whole sequence: its loss and prediction are the batch's
        loss_value, size = loss.item(), y.numel()
        correct = (logits.argmax(-1) == y).sum().item()
        p.epoch_loss += loss_value * size
        p.epoch_correct += correct
        p.epoch_seen += size
        self.monitor.train_batch(
            p.step,
            p.batch + 1,
            loss_value,
            correct / size,
            sum(norms) / len(norms),
            j.lr,
            size,
            time.perf_counter() - started,
        )

    def _update(self, loss: torch.Tensor) -> float | None:
        """Backward, clip, step; the pre-clip gradient norm, or None if the batch is skipped."""
        j = self.job
        if not torch.isfinite(loss):
            return self._non_finite(f"loss is {loss.item()}")
        j.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_gradients(j.model.parameters(), j.settings.clip_norm, j.settings.clip_value)
        if not math.isfinite(norm):
            return self._non_finite(f"gradient norm is {norm}")
        j.optimizer.step()
        j.model.post_step_()  # e.g. IndRNN clamps its recurrent weights
        self.progress.step += 1
        return norm

    def _non_finite(self, what: str) -> None:
        """Skip the batch (nan_policy=skip) or stop the run; never step the weights."""
        p = self.progress
        self.job.optimizer.zero_grad(set_to_none=True)
        where = f"step {p.step + 1} (epoch {p.epoch + 1}, batch {p.batch + 1})"
        if self.job.settings.nan_policy == "skip":
            p.skipped += 1
            log.warning("%s at %s: batch skipped (trainer.nan_policy=skip)", what, where)
            return None
        last = self.last_path
        kept = f"last good checkpoint {last}" if last.is_file() else "no checkpoint written yet"
        raise Diverged(
            f"training diverged: {what} at {where}; stopped, {kept} (try a lower optim.lr, "
            "trainer.clip.norm, or trainer.nan_policy=skip)"
        )

    # evaluation and checkpoints ---------------------------------------------------------------

    def _validate(self) -> tuple[float, float]:
        """Validate, record history and TensorBoard, save best.pt if it improved."""
        j, p = self.job, self.progress
        if p.history and p.history[-1]["step"] == p.step:  # nothing trained since
            return p.history[-1]["val_loss"], p.history[-1]["val_acc"]
        loss, acc = j.evaluate(j.data.val)
        entry = {"epoch": p.epoch + 1, "step": p.step, "val_acc": acc, "val_loss": loss}
        p.history.append({**entry, **p.train_means()})
        self.monitor.scalars(p.step, {"val/loss": loss, "val/acc": acc})
        if self.diagnostics is not None:  # diag/*: spectra, gradient ratio (trainer.diagnostics)
            self.monitor.scalars(p.step, self.diagnostics.scalars(j.model))
        if p.best_val_acc is None or acc > p.best_val_acc:
            p.best_val_acc, p.best_val_loss, p.best_step = acc, loss, p.step
            self._save(self.best_path)
        return loss, acc

    def _end_epoch(self) -> None:
        j, p = self.job, self.progress
        self.monitor.flush(p.step, p.batch, j.lr)
        val_loss, val_acc = self._validate()
        if isinstance(j.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            j.scheduler.step(val_loss)
        elif j.scheduler is not None:
            j.scheduler.step()
        train = p.train_means()
        summary = (
            f"epoch {p.epoch + 1}/{j.settings.epochs}: train loss {_fmt(train['train_loss'])} "
            f"acc {_fmt(train['train_acc'])} | val loss {_fmt(val_loss)} acc {_fmt(val_acc)} "
            f"(best {_fmt(p.best_val_acc)} at step {p.best_step}) | "
            f"{time.perf_counter() - self._epoch_clock:.1f} s"
        )
        p.next_epoch()
        self._save(self.last_path)
        self.monitor.end_epoch(p.epoch - 1, summary, {"val_acc": _fmt(val_acc)})

    def _tick(self) -> None:
        """Add the loop time since the last tick to progress.seconds."""
        now = time.perf_counter()
        self.progress.seconds += now - self._clock
        self._clock = now

    def _save(self, path: Path) -> None:
        self._tick()
        checkpoints.save_job(path, self.job, self.progress)

    def _test(self) -> tuple[float | None, float | None]:
        """Test loss and accuracy of best.pt (None, None if no validation ever ran)."""
        j = self.job
        if not self.best_path.is_file():
            log.warning("no best checkpoint (no validation ran): the test set is not evaluated")
            return None, None
        checkpoints.load_weights(j.model, self.best_path)
        return j.evaluate(j.data.test)

    def record(self, status: str, error: str | None = None, **values: Any) -> dict[str, Any]:
        """The metrics record with whatever this job got to (safe to call at any point)."""
        return metrics.from_run(self.cfg, status, self.progress, self.job, error=error, **values)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
