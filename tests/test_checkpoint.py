"""Checkpoints: atomic writes, weights_only loading, RNG round trips, resume paths."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_cfg

from rnnzoo.errors import UserError
from rnnzoo.training import checkpoints, train


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "ckpt" / "last.pt"
    checkpoints.save(path, {"format": checkpoints.FORMAT, "x": torch.ones(3)})

    def broken(f) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoints.atomic_write(path, broken)
    assert torch.equal(checkpoints.load(path)["x"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left over


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(3)
    torch.manual_seed(3)
    path = tmp_path / "rng.pt"
    checkpoints.save(path, {"format": checkpoints.FORMAT, "rng": checkpoints.rng_state()})
    expected = (random.random(), torch.rand(4))
    random.seed(99)
    torch.manual_seed(99)
    checkpoints.set_rng_state(checkpoints.load(path)["rng"])
    got = (random.random(), torch.rand(4))
    assert got[0] == expected[0]
    assert torch.equal(got[1], expected[1])


def test_load_rejects_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        checkpoints.load(tmp_path / "nope.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not an rnnzoo checkpoint"):
        checkpoints.load(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        checkpoints.load(tmp_path / "junk.pt")


def test_resume_path(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert checkpoints.resume_path(None, run) is None
    assert checkpoints.resume_path("auto", run) is None  # nothing yet: start fresh
    last = run / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    assert checkpoints.resume_path("auto", run) == last
    assert checkpoints.resume_path(str(run), tmp_path) == last  # a run directory
    assert checkpoints.resume_path(str(last), tmp_path) == last
    with pytest.raises(UserError, match="does not exist"):
        checkpoints.resume_path(str(tmp_path / "missing.pt"), run)


@pytest.mark.parametrize(
    "overrides",
    [
        ("optim=adam", "scheduler=plateau"),
        ("optim=rmsprop", "scheduler=cosine"),
        ("optim=sgd", "scheduler=step", "model.learn_init=true"),
    ],
)
def test_trainer_checkpoints_load_with_weights_only(
    tiny_mnist_root: Path, tmp_path: Path, overrides: tuple[str, ...]
) -> None:
    cfg = tiny_cfg(tiny_mnist_root, "trainer.epochs=1", "trainer.limit_train_batches=2", *overrides)
    result = train(cfg, run_dir=tmp_path / "run")
    assert result["status"] == "completed"
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / "run" / "checkpoints" / name, weights_only=True)
        assert {
            "model",
            "model_args",
            "optimizer",
            "scheduler",
            "rng",
            "progress",
            "config",
        } <= set(state)
        assert state["model_args"]["cell"] == "lstm"
        assert state["config"]["optim"]["_target_"] == cfg.optim._target_
        assert state["scheduler"] is not None
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert (last["progress"]["epoch"], last["progress"]["batch"], last["progress"]["step"]) == (
        1,
        0,
        2,
    )


def test_resume_with_a_different_model_is_a_user_error(tiny_mnist_root: Path, tmp_path: Path):
    run = tmp_path / "run"
    train(tiny_cfg(tiny_mnist_root, "trainer.epochs=1", "trainer.limit_train_batches=1"), run)
    cfg = tiny_cfg(tiny_mnist_root, "model.hidden_size=9", f"trainer.resume={run}")
    with pytest.raises(UserError, match="model.hidden_size: 8 -> 9"):
        train(cfg, run_dir=tmp_path / "other")
