"""Sweeps end to end: ``python train.py -m ...`` in a subprocess on the tiny dataset.

Every job gets its own directory, TensorBoard events and metrics.json; a job that fails or
diverges is recorded and the sweep goes on; the results script reads the sweep.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from rnnzoo.report import write_report

REPO = Path(__file__).resolve().parents[1]
TIME = r"\d{2}-\d{2}-\d{2}\.\d{6}"  # HH-MM-SS.microseconds
# tiny jobs: row view (T=28), 2 batches, one validation batch; loop engine (no build step)
TINY = [
    "data.view=row",
    "data.download=false",
    "data.val_size=50",
    "data.batch_size=16",
    "data.eval_batch_size=50",
    "model.engine=loop",
    "trainer.epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_eval_batches=1",
    "trainer.progress=false",
    "device=cpu",
]


def run_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python train.py <args>`` from ``cwd`` (outputs land in ``cwd/multirun``)."""
    cmd = [sys.executable, str(REPO / "train.py"), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(
        (d for d in sweep.iterdir() if d.is_dir()), key=lambda d: int(d.name.split("_")[0])
    )


def read_metrics(job: Path) -> dict:
    return json.loads((job / "metrics.json").read_text())


def test_output_dirs_have_sub_second_timestamps():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        first = compose("config", return_hydra_config=True).hydra
        time.sleep(0.002)
        second = compose("config", return_hydra_config=True).hydra
    assert re.fullmatch(rf"multirun/\d{{4}}-\d{{2}}-\d{{2}}/{TIME}", first.sweep.dir)
    assert re.fullmatch(
        rf"outputs/\d{{4}}-\d{{2}}-\d{{2}}/{TIME}_lstm_smnist_h128x1_seed0", first.run.dir
    )
    assert first.sweep.dir != second.sweep.dir  # two sweeps in the same second stay apart
    assert first.run.dir != second.run.dir


@pytest.mark.slow
def test_multirun_separates_jobs_and_survives_failures(tiny_mnist_root, tmp_path):
    pytest.importorskip("tensorboard")
    # 4 jobs in this order: hidden 0 (fails twice: a config error), then hidden 8 with the
    # identity recurrence (completes) and with a 50x one (explodes: diverges at step 1)
    result = run_train(
        [
            "-m",
            "model=irnn",
            "model.hidden_size=0,8",
            "model.cell_kwargs.recurrent_gain=1.0,50.0",
            f"data.root={tiny_mnist_root}",
            *TINY,
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    assert re.fullmatch(TIME, sweep.name)
    jobs = job_dirs(sweep)
    assert [j.name for j in jobs] == [
        "0_irnn_rowmnist_h0x1_seed0",
        "1_irnn_rowmnist_h0x1_seed0",
        "2_irnn_rowmnist_h8x1_seed0",
        "3_irnn_rowmnist_h8x1_seed0",
    ]
    statuses = [read_metrics(j)["status"] for j in jobs]
    assert statuses == ["failed", "failed", "completed", "diverged"]
    assert "hidden_size" in read_metrics(jobs[0])["error"]
    assert "nan" in read_metrics(jobs[3])["error"]
    # each job its own TensorBoard dir, so `tensorboard --logdir <sweep>` shows them apart
    for job in jobs[2:]:
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(jobs[2] / "tensorboard"))
    events.Reload()
    assert {"train/loss", "val/acc", "test/acc"} <= set(events.Tags()["scalars"])
    overrides = yaml.safe_load((jobs[3] / ".hydra" / "overrides.yaml").read_text())
    assert "model.cell_kwargs.recurrent_gain=50.0" in overrides

    # the results script reads the sweep: the good run averaged, the others counted
    report = write_report([sweep], tmp_path / "results")
    assert report.runs == 4
    table = report.table
    assert re.search(
        r"\| irnn \| rowmnist \| 8 \| 1 \| model.cell_kwargs.recurrent_gain=1.0 \|", table
    )
    assert re.search(r"recurrent_gain=50.0 \| [\d,]+ \| — \| — \| 0 \| 1 diverged \|", table)
    assert table.count("| 0 | 1 failed |") == 2  # hidden 0: one row per recurrent gain
    text = report.table_path.read_text()
    assert "`0_irnn_rowmnist_h0x1_seed0`: failed — " in text
    if importlib.util.find_spec("matplotlib"):
        assert [p.name for p in report.pngs] == ["curves_rowmnist.png"]
    else:  # the [plot] extra is optional: the table is written all the same
        assert not report.pngs and "matplotlib is not installed" in report.plot_message


@pytest.mark.slow
def test_optuna_search_goes_on_after_a_failed_trial(tiny_mnist_root, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the [optuna] extra")
    # the seeded sampler draws hidden size 0 (fails) then 8 for these two trials
    result = run_train(
        [
            "hparams_search=lstm_optuna",
            "hydra.sweeper.n_trials=2",
            "model.hidden_size=choice(0,8)",
            f"data.root={tiny_mnist_root}",
            *TINY,
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    jobs = job_dirs(sweep)
    assert len(jobs) == 2
    assert [read_metrics(j)["status"] for j in jobs] == ["failed", "completed"]
    assert re.fullmatch(r"1_lstm_rowmnist_h8x1_seed0_lr[\d.e-]+_clip[\d.]+", jobs[1].name)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_params"]["model.hidden_size"] == 8
    assert best["best_value"] == pytest.approx(read_metrics(jobs[1])["val_acc"])


def test_joblib_launcher_composes():
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs the [joblib] extra")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=joblib"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")


def test_slurm_launcher_preset_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the [slurm] extra")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"]
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.partition) == (1, "gpu")
    assert launcher.submitit_folder.startswith(cfg.hydra.sweep.dir)  # logs beside the jobs
