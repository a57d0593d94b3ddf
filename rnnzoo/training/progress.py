"""Where training stands: the counters a checkpoint saves so a resumed run continues exactly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Progress:
    """Training counters and history (plain values: checkpoints load with weights_only)."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches trained in the current epoch (where a resumed run picks up)
    step: int = 0  # optimizer steps
    best_val_acc: float | None = None
    best_val_loss: float | None = None
    best_step: int | None = None
    seconds: float = 0.0  # training-loop wall time, summed over resumed sessions
    skipped: int = 0  # batches dropped by nan_policy=skip
    epoch_loss: float = 0.0  # sum over the current epoch's sequences of the batch loss
    epoch_correct: int = 0
    epoch_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per validation

    def train_means(self) -> dict[str, float | None]:
        """Mean training loss and accuracy over the current epoch so far."""
        if self.epoch_seen == 0:
            return {"train_loss": None, "train_acc": None}
        return {
            "train_loss": self.epoch_loss / self.epoch_seen,
            "train_acc": self.epoch_correct / self.epoch_seen,
        }

    def next_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0
        self.epoch_loss, self.epoch_correct, self.epoch_seen = 0.0, 0, 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Progress:
        """Rebuild from ``to_dict`` output (unknown keys from other versions are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def crossed(before: int, after: int, every: int | None) -> bool:
    """True if a multiple of ``every`` lies in (before, after] (None: never). Robust to steps
    advancing by more than one per batch (truncated BPTT in chunks mode)."""
    return every is not None and after // every > before // every
