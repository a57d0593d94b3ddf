"""Resume means the same run; init_from starts a new one from old weights; results do not
depend on the thread count (in process on tiny IDX files, and real ``python train.py`` runs)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from idx_fixtures import make_idx_root
from train_helpers import compared, read_metrics, tiny_cfg, tiny_overrides, train_cmd

from rnnzoo.errors import UserError
from rnnzoo.training import checkpoints, train

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
BASE = ("data.permute=true", "data.name=prowmnist", "trainer.epochs=1")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def one_epoch(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch run (permuted row view) to resume from."""
    run_dir = tmp_path_factory.mktemp("one_epoch")
    train(tiny_cfg(root, *BASE), run_dir=run_dir)
    return run_dir


def snapshot(run_dir: Path) -> dict[str, tuple[int, str]]:
    """Every file below run_dir: (mtime_ns, sha256)."""
    return {
        str(p.relative_to(run_dir)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    "override, change",
    [
        ("data.batch_size=16", "data.batch_size: 32 -> 16"),
        ("trainer.limit_train_batches=3", "trainer.limit_train_batches: null -> 3"),
        ("seed=4", "seed: 0 -> 4"),
        ("data.permutation_seed=5", "data.permutation_seed: 0 -> 5"),
        ("optim.lr=0.01", "optim.lr: 0.001 -> 0.01"),
    ],
)
def test_resume_with_another_setting_is_refused_before_touching_the_run(
    root: Path, one_epoch: Path, override: str, change: str
) -> None:
    before = snapshot(one_epoch)
    cfg = tiny_cfg(root, *BASE, "trainer.epochs=2", "trainer.resume=auto", override)
    with pytest.raises(UserError) as err:
        train(cfg, run_dir=one_epoch)
    message = str(err.value)
    assert "\n" not in message and change in message
    assert message.count(" -> ") == 2  # this key and "(checkpoint -> now)": nothing else
    assert snapshot(one_epoch) == before


def test_refusal_names_every_differing_key(root: Path, one_epoch: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(root, *BASE, f"trainer.resume={one_epoch}", "seed=3", "data.batch_size=64")
    with pytest.raises(UserError, match="data.batch_size: 32 -> 64, seed: 0 -> 3 "):
        train(cfg, run_dir=tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_how_long_how_often_where_may_change(root: Path, one_epoch: Path, tmp_path: Path):
    allowed = (
        "trainer.epochs=2",
        "trainer.val_every_steps=3",
        "trainer.ckpt_every_steps=5",
        "trainer.log_every_steps=7",
        "trainer.limit_eval_batches=1",
        "trainer.progress=true",
        "trainer.threads=1",
        "data.eval_batch_size=50",
        f"data.root={root}/.",
        "device=cpu",
    )
    cfg = tiny_cfg(root, *BASE, *allowed, f"trainer.resume={one_epoch}")
    result = train(cfg, run_dir=tmp_path)
    assert (result["status"], result["epochs"], result["steps"]) == ("completed", 2.0, 16)


def test_a_checkpoint_past_the_epoch_end_still_ends(root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train(tiny_cfg(root, *BASE), run_dir=run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["progress"]["batch"] = 50  # a position no epoch of this config reaches
    checkpoints.save(last, state)

    def hung(signum, frame):
        raise TimeoutError("the training loop did not end")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        result = train(tiny_cfg(root, *BASE, "trainer.epochs=2", "trainer.resume=auto"), run_dir)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result["status"] == "completed" and result["epochs"] == 2.0


def test_init_from_starts_a_new_run_from_the_weights(root: Path, one_epoch: Path, tmp_path):
    # lr=0: the weights stay those of one_epoch's best.pt, so validation shows the same number
    same = train(
        tiny_cfg(root, *BASE, f"trainer.init_from={one_epoch}", "optim.lr=0"), tmp_path / "a"
    )
    assert same["val_acc"] == read_metrics(one_epoch)["val_acc"]
    assert same["steps"] == 8 and [h["step"] for h in same["history"]] == [8]  # fresh counters
    # another learning rate trains: a new run in its own dir, from those weights
    tuned = train(
        tiny_cfg(root, *BASE, f"trainer.init_from={one_epoch}", "optim.lr=0.01"), tmp_path / "b"
    )
    assert tuned["status"] == "completed" and tuned["steps"] == 8
    start = torch.load(one_epoch / "checkpoints" / "best.pt", weights_only=True)["model"]
    end = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert any(not torch.equal(start[k], end[k]) for k in start)
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["config"][
        "optim"
    ]["lr"] == pytest.approx(0.01)


def test_init_from_another_model_is_one_line(root: Path, one_epoch: Path, tmp_path: Path):
    cfg = tiny_cfg(root, *BASE, f"trainer.init_from={one_epoch}", "model.hidden_size=9")
    with pytest.raises(UserError, match=r"hidden_size=8, the config asks for hidden_size=9") as e:
        train(cfg, run_dir=tmp_path)
    assert "\n" not in str(e.value)
    cfg = tiny_cfg(root, *BASE, f"trainer.init_from={tmp_path / 'nothing'}")
    with pytest.raises(UserError, match="does not exist; valid: a .pt file or a run directory"):
        train(cfg, run_dir=tmp_path / "other")


# real runs ------------------------------------------------------------------------------------


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_cmd(*args), cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_cli_refusal_is_one_line_and_leaves_the_run_dir_alone(root, one_epoch, tmp_path):
    before = snapshot(one_epoch)
    args = tiny_overrides(root, *BASE, f"hydra.run.dir={one_epoch}", "trainer.resume=auto")
    result = run(*args, "seed=4", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: cannot resume")
    assert "seed: 0 -> 4" in result.stderr and "Traceback" not in result.stdout + result.stderr
    assert snapshot(one_epoch) == before  # no .hydra/, no train.log, nothing rewritten


@pytest.mark.slow
def test_threads_do_not_change_the_numbers(root: Path, tmp_path: Path) -> None:
    metrics = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        env = {k: v for k, v in ENV.items() if k != "OMP_NUM_THREADS"}
        args = tiny_overrides(root, f"hydra.run.dir={out}", f"trainer.threads={threads}")
        result = run(*args, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        metrics.append(compared(read_metrics(out)))
    assert metrics[0] == metrics[1]


#: pixel view (T=784) and the loop engine: batches slow enough to kill the run between two
#: mid-epoch checkpoints
KILLABLE = (
    "data.view=pixel",
    "data.name=smnist",
    "trainer.limit_train_batches=8",
    "trainer.ckpt_every_steps=2",
    "model.engine=loop",
)


@pytest.mark.slow
def test_sigkill_mid_epoch_two_then_resume_auto_matches(root: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    done = run(*tiny_overrides(root, *KILLABLE, f"hydra.run.dir={reference}"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed"
    args = tiny_overrides(root, *KILLABLE, f"hydra.run.dir={out}")
    last = out / "checkpoints" / "last.pt"
    proc = subprocess.Popen(
        train_cmd(*args),
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, seen = time.monotonic() + 300, None
    while True:
        assert proc.poll() is None, "the run ended before a mid-epoch-2 checkpoint was seen"
        assert time.monotonic() < deadline
        stamp = last.stat().st_mtime_ns if last.exists() else None
        if stamp != seen:
            seen = stamp
            progress = torch.load(last, weights_only=True)["progress"]
            if progress["epoch"] == 1 and progress["batch"] > 0:  # mid epoch 2
                break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()

    resumed = run(*args, "trainer.resume=auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert compared(read_metrics(out)) == compared(read_metrics(reference))
