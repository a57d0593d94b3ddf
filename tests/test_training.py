"""The training loop, in process, on tiny fake data (see train_helpers.tiny_overrides)."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from idx_fixtures import make_idx_root
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from train_helpers import compared, read_metrics, tiny_cfg

from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.training import checkpoints, loop, train
from rnnzoo.training.metrics import KEYS
from rnnzoo.training.optim import clip_gradients

SCALARS = {
    "train/loss",
    "train/acc",
    "train/grad_norm",
    "lr",
    "val/loss",
    "val/acc",
    "test/loss",
    "test/acc",
    "perf/seq_per_s",
}
#: exercises every piece of state a resume must restore: dropout and recurrent-dropout RNG,
#: optimizer moments, a scheduler (halving the lr after epoch 2), mid-epoch checkpoints
RESUMABLE = (
    "model.num_layers=2",
    "model.dropout=0.3",
    "model.recurrent_dropout=0.2",
    "scheduler=step",
    "scheduler.step_size=2",
    "trainer.ckpt_every_steps=3",
    "trainer.epochs=3",
)


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so train() records nothing."""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted 3-epoch run of the RESUMABLE config."""
    return train(tiny_cfg(root, *RESUMABLE), run_dir=tmp_path_factory.mktemp("reference"))


def _on_call(monkeypatch, module, name: str, call: int, action) -> None:
    """Replace ``module.name`` by a wrapper that runs ``action(result)`` at the call-th call
    (1-based) made with autograd on (training, not evaluation) and returns what it returns."""
    real = getattr(module, name)
    count = 0

    def wrapper(*args, **kwargs):
        nonlocal count
        result = real(*args, **kwargs)
        count += torch.is_grad_enabled()
        return action(result) if count == call and torch.is_grad_enabled() else result

    monkeypatch.setattr(module, name, wrapper)


def _kill_after_save(monkeypatch, when) -> None:
    real = checkpoints.save

    def save(path: Path, payload: dict) -> None:
        real(path, payload)
        if path.name == "last.pt" and when(payload["progress"]):
            raise Killed

    monkeypatch.setattr(checkpoints, "save", save)


def test_smoke_run_writes_metrics_checkpoints_and_events(root: Path, tmp_path: Path) -> None:
    result = train(tiny_cfg(root), run_dir=tmp_path)
    assert result == read_metrics(tmp_path)
    assert set(result) == set(KEYS)
    assert result["status"] == "completed" and result["error"] is None
    assert (result["epochs"], result["steps"], result["cell"], result["data"]) == (
        2.0,
        16,
        "lstm",
        "rowmnist",
    )
    assert 0.0 <= result["val_acc"] <= 1.0 and 0.0 <= result["test_acc"] <= 1.0
    assert result["params"] > 0 and result["engine"] and result["seconds"] > 0
    assert [h["step"] for h in result["history"]] == [8, 16]
    assert set(result["history"][0]) == {
        "epoch",
        "step",
        "val_acc",
        "val_loss",
        "train_loss",
        "train_acc",
    }
    assert result["val_acc"] == max(h["val_acc"] for h in result["history"])
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "checkpoints" / "best.pt").is_file()

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) >= SCALARS
    assert [e.step for e in events.Scalars("val/acc")] == [8, 16]
    assert len(events.Scalars("train/loss")) == 16  # log_every_steps=1
    assert events.Scalars("test/acc")[0].value == pytest.approx(result["test_acc"])
    assert events.PluginTagToContent("hparams")  # the HPARAMS tab


def test_same_seed_same_metrics_other_seed_not(root: Path, tmp_path: Path) -> None:
    overrides = ("model.dropout=0.2", "model.num_layers=2", "trainer.epochs=1")
    first = train(tiny_cfg(root, *overrides), run_dir=tmp_path / "a")
    second = train(tiny_cfg(root, *overrides), run_dir=tmp_path / "b")
    other = train(tiny_cfg(root, *overrides, "seed=1"), run_dir=tmp_path / "c")
    assert compared(first) == compared(second)
    assert first["history"] != other["history"]


@pytest.mark.parametrize(
    "kill_when",
    [
        pytest.param(lambda p: p["epoch"] == 1 and p["batch"] == 0, id="after-epoch-1"),
        pytest.param(lambda p: p["epoch"] == 0 and p["batch"] == 3, id="mid-epoch-step-3"),
    ],
)
def test_killed_then_resumed_equals_uninterrupted(
    root: Path, tmp_path: Path, reference: dict, monkeypatch, kill_when
) -> None:
    _kill_after_save(monkeypatch, kill_when)
    with pytest.raises(Killed):
        train(tiny_cfg(root, *RESUMABLE), run_dir=tmp_path)
    assert not (tmp_path / "metrics.json").exists()
    monkeypatch.undo()
    resumed = train(tiny_cfg(root, *RESUMABLE, "trainer.resume=auto"), run_dir=tmp_path)
    assert compared(resumed) == compared(reference)


def test_resume_from_another_run_dir_keeps_its_best(root: Path, tmp_path: Path, reference):
    first = tmp_path / "first"
    train(tiny_cfg(root, *RESUMABLE, "trainer.epochs=1"), run_dir=first)
    resumed = train(tiny_cfg(root, *RESUMABLE, f"trainer.resume={first}"), tmp_path / "second")
    assert compared(resumed) == compared(reference)
    assert (tmp_path / "second" / "checkpoints" / "best.pt").is_file()


def test_ctrl_c_finishes_the_batch_saves_and_resumes_exactly(
    root: Path, tmp_path: Path, reference: dict, monkeypatch
) -> None:
    def interrupt(norm):
        os.kill(os.getpid(), signal.SIGINT)
        return norm

    _on_call(monkeypatch, loop, "clip_gradients", 5, interrupt)
    result = train(tiny_cfg(root, *RESUMABLE), run_dir=tmp_path)
    assert (result["status"], result["steps"]) == ("interrupted", 5)
    assert read_metrics(tmp_path)["status"] == "interrupted"
    monkeypatch.undo()
    resumed = train(tiny_cfg(root, *RESUMABLE, "trainer.resume=auto"), run_dir=tmp_path)
    assert compared(resumed) == compared(reference)


def test_hard_interrupt_still_tests_the_best_checkpoint(root: Path, tmp_path: Path, monkeypatch):
    def interrupt(norm):
        raise KeyboardInterrupt

    _on_call(monkeypatch, loop, "clip_gradients", 3, interrupt)
    result = train(tiny_cfg(root, "trainer.val_every_steps=2"), run_dir=tmp_path)
    assert (result["status"], result["steps"], result["best_step"]) == ("interrupted", 2, 2)
    assert result["test_acc"] is not None


def test_unexpected_errors_are_recorded_then_raised(root: Path, tmp_path: Path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(loop, "clip_gradients", boom)
    with pytest.raises(RuntimeError, match="boom"):
        train(tiny_cfg(root), run_dir=tmp_path)
    record = read_metrics(tmp_path)
    assert (record["status"], record["error"], record["cell"]) == (
        "failed",
        "RuntimeError: boom",
        "lstm",
    )


def _nan(loss: torch.Tensor) -> torch.Tensor:
    return loss * float("nan")


def test_nan_loss_stops_with_good_checkpoints(root: Path, tmp_path: Path, monkeypatch) -> None:
    _on_call(monkeypatch, F, "cross_entropy", 11, _nan)  # epoch 2, batch 3
    result = train(tiny_cfg(root), run_dir=tmp_path)
    assert result["status"] == "diverged" and result == read_metrics(tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    assert "step 11 " in result["error"] and str(last) in result["error"]
    assert "\n" not in result["error"]
    assert result["steps"] == 10 and result["test_acc"] is not None
    state = checkpoints.load(last)
    assert state["progress"]["step"] == 8  # the epoch-1 checkpoint, not overwritten
    for name in ("last.pt", "best.pt"):
        weights = checkpoints.load(tmp_path / "checkpoints" / name)["model"]
        assert all(torch.isfinite(w).all() for w in weights.values())


def test_nan_gradient_stops_too(root: Path, tmp_path: Path, monkeypatch) -> None:
    _on_call(monkeypatch, loop, "clip_gradients", 2, lambda norm: math.inf)
    result = train(tiny_cfg(root), run_dir=tmp_path)
    assert result["status"] == "diverged" and "gradient norm is inf at step 2 " in result["error"]
    assert "no checkpoint written yet" in result["error"]


def test_nan_policy_skip_drops_the_batch(root: Path, tmp_path: Path, monkeypatch) -> None:
    _on_call(monkeypatch, F, "cross_entropy", 11, _nan)
    result = train(tiny_cfg(root, "trainer.nan_policy=skip"), run_dir=tmp_path)
    assert (result["status"], result["steps"]) == ("completed", 15)


def test_clip_gradients_returns_the_pre_clip_norm_and_bounds_it() -> None:
    def params() -> list[torch.nn.Parameter]:
        ps = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
        ps[0].grad = torch.tensor([3.0, 0.0, -4.0])
        ps[1].grad = torch.full((2, 2), 6.0)
        return ps

    def total(ps) -> float:
        return torch.cat([p.grad.flatten() for p in ps]).norm().item()

    ps = params()
    assert clip_gradients(ps, None, None) == pytest.approx(13.0)  # sqrt(9 + 16 + 4 * 36)
    assert total(ps) == pytest.approx(13.0)  # clipping off: untouched
    ps = params()
    assert clip_gradients(ps, 1.0, None) == pytest.approx(13.0)
    assert total(ps) == pytest.approx(1.0, rel=1e-4)
    ps = params()
    clip_gradients(ps, None, 2.5)
    assert max(p.grad.abs().max().item() for p in ps) == 2.5
    ps = params()
    clip_gradients(ps, 5.0, 0.5)
    assert total(ps) <= 5.0 and max(p.grad.abs().max().item() for p in ps) <= 0.5


@pytest.mark.parametrize("mode, steps", [("chunks", 2 * 4), ("final", 2)])
def test_tbptt_modes_update_per_chunk_or_per_batch(root, tmp_path, mode: str, steps: int):
    cfg = tiny_cfg(
        root,
        "trainer.epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.tbptt.steps=7",
        f"trainer.tbptt.mode={mode}",
    )  # T=28: 4 chunks
    assert train(cfg, run_dir=tmp_path)["steps"] == steps


def test_every_optimizer_step_calls_post_step(root, tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(SequenceClassifier, "post_step_", lambda self: calls.append(1))
    cfg = tiny_cfg(
        root,
        "model=indrnn",
        "model.hidden_size=8",
        "model.cell_kwargs.seq_len=28",
        "trainer.epochs=1",
        "trainer.limit_train_batches=3",
    )
    assert train(cfg, run_dir=tmp_path)["steps"] == len(calls) == 3


def test_validation_schedule_and_max_steps(root: Path, tmp_path: Path) -> None:
    result = train(tiny_cfg(root, "trainer.val_every_steps=3"), run_dir=tmp_path / "a")
    assert [h["step"] for h in result["history"]] == [3, 6, 8, 9, 12, 15, 16]
    assert [h["epoch"] for h in result["history"]] == [1, 1, 1, 2, 2, 2, 2]
    result = train(tiny_cfg(root, "trainer.max_steps=5"), run_dir=tmp_path / "b")
    assert (result["status"], result["steps"], result["epochs"]) == ("completed", 5, 0.625)
    assert [h["step"] for h in result["history"]] == [5]  # a final validation


def test_step_scheduler_halves_lr_each_epoch(root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(
        root,
        "scheduler=step",
        "scheduler.step_size=1",
        "scheduler.gamma=0.5",
        "trainer.epochs=3",
        "trainer.limit_train_batches=1",
        "optim.lr=0.01",
    )
    train(cfg, run_dir=tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([0.01, 0.005, 0.0025])


def test_bf16_autocast_runs(root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(
        root, "trainer.precision=bf16", "trainer.epochs=1", "trainer.limit_train_batches=2"
    )
    assert train(cfg, run_dir=tmp_path)["status"] == "completed"


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.cell=nope", "unknown cell 'nope'"),
        ("trainer.precision=16", "unknown trainer.precision=16; valid: 32, bf16"),
        ("optim.lr=-1", "Invalid learning rate"),
        ("trainer.epochs=0", "trainer.epochs must be an integer >= 1"),
        ("model.bidirectional=true", "truncated BPTT cannot train a bidirectional model"),
        pytest.param(
            "device=cuda",
            "CUDA is not available",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA"),
        ),
    ],
)
def test_config_mistakes_are_recorded_user_errors(root, tmp_path, override, message) -> None:
    cfg = tiny_cfg(root, override, "trainer.tbptt.steps=7")
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        train(cfg, run_dir=tmp_path)
    record = read_metrics(tmp_path)
    assert record["status"] == "failed" and message in record["error"]


def test_run_dir_comes_from_the_config_when_not_given(root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(
        root,
        f"+run_dir={tmp_path / 'from_cfg'}",
        "trainer.epochs=1",
        "trainer.limit_train_batches=1",
    )
    train(cfg)
    assert read_metrics(tmp_path / "from_cfg")["status"] == "completed"
    with pytest.raises(UserError, match="no run directory"):
        train(tiny_cfg(root))
