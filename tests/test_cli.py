"""The command users run: classic flags, errors, help, and real ``python train.py`` runs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
from idx_fixtures import make_idx_root
from train_helpers import CONF_DIR, compared, read_metrics, tiny_overrides, train_cmd

from rnnzoo.training.cli import UsageError, translate

#: one thread per subprocess: the machine is shared, and the killed and the reference run
#: must compute identically
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_cmd(*args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )


# translation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["--model-type=lstm", "--hx=50", "--layers=2"],
            ["model=lstm", "model.hidden_size=50", "model.num_layers=2"],
        ),
        (["--model_type", "rnn+", "--hx", "64"], ["model=intersection", "model.hidden_size=64"]),
        (["--model-type=peephole_lstm"], ["model=peephole"]),
        (
            ["--lr", "1e-3", "--epochs=3", "--seed", "7", "--batch_size=32"],
            ["optim.lr=0.001", "trainer.epochs=3", "seed=7", "data.batch_size=32"],
        ),
        (
            ["--task=seqmnist", "--task", "pseqmnist", "--task=rowmnist"],
            ["data=smnist", "data=psmnist", "data=rowmnist"],
        ),
        (
            ["--cuda", "--drop=0.1", "--rec_drop", "0.25", "--rec-drop=0"],
            [
                "device=cuda",
                "model.dropout=0.1",
                "model.recurrent_dropout=0.25",
                "model.recurrent_dropout=0.0",
            ],
        ),
        (
            ["-m", "--model-type=lstm,gru", "optim=sgd", "--hx", "16,32", "seed=0,1"],
            ["-m", "model=lstm,gru", "optim=sgd", "model.hidden_size=16,32", "seed=0,1"],
        ),
        (
            ["--model-type=mycells:LeakyRNN", "--hx=32"],
            ["model=custom", "model.cell=mycells:LeakyRNN", "model.hidden_size=32"],
        ),
        (
            ["-m", "--model-type=pkg.cells:A,lstm"],
            ["-m", "model=custom", "model.cell=pkg.cells:A,lstm"],
        ),
        (
            ["--multirun", "--lr=tag(log,interval(1e-4,1e-2))"],
            ["--multirun", "optim.lr=tag(log,interval(1e-4,1e-2))"],
        ),
    ],
)
def test_classic_flags_become_overrides(argv: list[str], expected: list[str]) -> None:
    assert translate(argv, CONF_DIR) == expected


HYDRA_ARGS = [
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "job",
    "--resolve",
    "-p",
    "model",
    "-cn",
    "config",
    "--config-dir=/tmp",
    "-cd",
    "/tmp",
    "--info",
    "defaults",
    "--version",
    "-c",
    "all",
    "--",
    "model.hidden_size=3",
    "+foo=bar",
    "~x",
]


def test_hydra_flags_and_overrides_pass_through_untouched() -> None:
    assert translate(HYDRA_ARGS, CONF_DIR) == HYDRA_ARGS


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--hx=abc"], "--hx expects an integer >= 1, got 'abc'"),
        (["--layers", "0"], "--layers expects an integer >= 1, got 0"),
        (["--lr=-0.1"], "--lr expects a number > 0, got '-0.1'"),
        (["--drop=1"], "--drop expects a number in [0, 1), got '1'"),
        (["--rec_drop=-0.5"], "--rec_drop expects a number in [0, 1)"),
        (["--seed=-3"], "--seed expects an integer >= 0"),
        (["--model-type=lsmt"], "unknown cell 'lsmt' (did you mean 'lstm'?); valid: convlstm,"),
        (["--model-type=my-cells:A"], "--model-type: 'my-cells:A' is not module:Class"),
        (["--model-type=mycells:"], "--model-type: 'mycells:' is not module:Class"),
        (["--task=mnist"], "unknown task 'mnist' (did you mean 'smnist'?); valid: seqmnist,"),
        (["--hiden=5"], "unknown flag --hiden; classic flags: --model-type, --hx"),
        (["--epoch=5"], "unknown flag --epoch (did you mean '--epochs'?)"),
        (["-x"], "unknown flag -x"),
        (["--hx"], "--hx needs a value"),
        (["--hx", "--layers=2"], "--hx needs a value"),
        (["--cuda=yes"], "--cuda takes no value"),
        (["-m", "--hx=8,big"], "--hx expects an integer >= 1, got 'big'"),
    ],
)
def test_bad_flags_raise_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        translate(argv, CONF_DIR)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# the real command -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hx=abc", "--layers=2"], "error: --hx expects an integer >= 1, got 'abc'"),
        (["--model-type=lstm", "--frobnicate"], "error: unknown flag --frobnicate"),
    ],
)
def test_bad_flag_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(message)
    assert not list(tmp_path.iterdir())  # nothing ran


def test_help_describes_hyperparameters_and_classic_flags(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for text in (
        "--model-type=NAME",
        "--rec-drop",
        "model.hidden_size",
        "trainer.tbptt.steps",
        "optim: adam, rmsprop, sgd",
        "scheduler: cosine, multistep, none, plateau, step",
        "hidden_size: 128",
        "epochs: 10",
    ):
        assert text in result.stdout


def test_missing_data_is_one_line_naming_the_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(
        f"data.root={empty}", "data.download=false", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "train-images-idx3-ubyte" in line and str(empty) in line
    assert read_metrics(tmp_path / "r")["status"] == "failed"


@pytest.mark.slow
def test_multirun_survives_a_failing_job(tiny_mnist_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run(
        "-m",
        "--model-type=lstm",
        "model.cell=lstm,nope",
        *tiny_overrides(
            tiny_mnist_root,
            "trainer.epochs=1",
            "trainer.limit_train_batches=2",
            f"hydra.sweep.dir={sweep}",
        ),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    jobs = {p.name: read_metrics(p) for p in sweep.iterdir() if (p / "metrics.json").exists()}
    assert {name: m["status"] for name, m in jobs.items()} == {
        "0_lstm_rowmnist_h8x1_seed0": "completed",
        "1_nope_rowmnist_h8x1_seed0": "failed",
    }
    assert "unknown cell 'nope'" in jobs["1_nope_rowmnist_h8x1_seed0"]["error"]


# a real run, killed with SIGKILL and resumed -------------------------------------------------

#: classic flags mixed with overrides; pixel view (T=784) so an epoch lasts long enough to kill
#: the run between two checkpoints
CLASSIC = ("--model-type=lstm", "--hx", "16", "--epochs=2")
PIXEL = ("data.view=pixel", "data.name=smnist", "trainer.limit_train_batches=6")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def two_epochs(data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """``python train.py`` with classic flags, 2 epochs on tiny IDX files, uninterrupted."""
    out = tmp_path_factory.mktemp("two_epochs") / "run"
    # classic flags last: they win over the tiny overrides (model.hidden_size=8)
    result = run(
        *tiny_overrides(data_root, *PIXEL, f"hydra.run.dir={out}"), *CLASSIC, cwd=out.parent
    )
    return out, result


@pytest.mark.slow
def test_classic_command_trains_two_epochs(two_epochs) -> None:
    out, result = two_epochs
    assert result.returncode == 0, result.stderr
    metrics = read_metrics(out)
    assert (metrics["status"], metrics["epochs"], metrics["steps"]) == ("completed", 2.0, 12)
    assert metrics["run_name"] == "lstm_smnist_h16x1_seed0"
    for path in ("checkpoints/last.pt", "checkpoints/best.pt", ".hydra/config.yaml", "train.log"):
        assert (out / path).is_file(), path
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert "epoch 2/2: train loss" in result.stdout  # plain log lines: stderr is not a tty


@pytest.mark.slow
def test_sigkill_after_first_epoch_then_resume_matches(data_root, two_epochs, tmp_path: Path):
    out = tmp_path / "killed"
    args = (*tiny_overrides(data_root, *PIXEL, f"hydra.run.dir={out}"), *CLASSIC)
    last = out / "checkpoints" / "last.pt"
    proc = subprocess.Popen(
        train_cmd(*args),
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not last.exists():
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    progress = torch.load(last, weights_only=True)["progress"]
    assert (progress["epoch"], progress["batch"]) == (1, 0)  # killed in epoch 2
    assert not (out / "metrics.json").exists()

    resumed = run(*args, "trainer.resume=auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert compared(read_metrics(out)) == compared(read_metrics(two_epochs[0]))
