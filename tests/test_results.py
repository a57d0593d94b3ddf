"""Results table and curves (rnnzoo/report/, scripts/results.py) on synthetic run dirs."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import yaml

from rnnzoo.errors import UserError
from rnnzoo.report import find_runs, group_runs, summarize, write_report
from rnnzoo.report.curves import mean_curve, run_curve

REPO = Path(__file__).resolve().parents[1]


def make_run(
    root: Path,
    name: str,
    *,
    cell: str = "lstm",
    data: str = "smnist",
    hidden: int = 8,
    seed: int = 0,
    status: str = "completed",
    test_acc: float | None = 0.9,
    val_acc: float | None = 0.91,
    history: list[dict] | None = None,
    extra: dict | None = None,
    error: str | None = None,
    hydra: bool = True,
    metrics: bool = True,
) -> Path:
    """A job dir as the trainer and Hydra leave it (no checkpoints: nothing reads them)."""
    run = root / name
    run.mkdir(parents=True)
    if hydra:
        cfg = {
            "data": {"name": data, "root": "${hydra:runtime.cwd}/data", "batch_size": 4},
            "model": {"cell": cell, "hidden_size": hidden, "num_layers": 1, "cell_kwargs": {}},
            "optim": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3},
            "trainer": {"epochs": 1, "progress": False},
            "seed": seed,
            "device": "cpu",
            "run_name": "${model.cell}_${data.name}_seed${seed}",
        }
        for key, value in (extra or {}).items():  # dotted keys
            node = cfg
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if metrics:
        if history is None:
            history = [
                {"epoch": 1, "step": 10, "val_acc": 0.5, "val_loss": 1.5},
                {"epoch": 2, "step": 20, "val_acc": val_acc or 0.1, "val_loss": 1.0},
            ]
        record = {
            "status": status,
            "error": error,
            "val_acc": val_acc,
            "best_step": 20,
            "test_acc": test_acc,
            "test_loss": 0.5,
            "epochs": 2,
            "steps": 20,
            "params": 1234,
            "seconds": 3.0,
            "seconds_per_epoch": 1.5,
            "run_name": f"{cell}_{data}_seed{seed}",
            "cell": cell,
            "data": data,
            "hidden_size": hidden,
            "num_layers": 1,
            "seed": seed,
            "engine": "loop",
            "history": history,
        }
        (run / "metrics.json").write_text(json.dumps(record))
    return run


def rows_of(root: Path):
    return [summarize(g) for g in group_runs(find_runs([root]))]


def test_seeds_of_one_config_are_one_row_with_mean_and_std(tmp_path):
    for seed, acc in enumerate([0.90, 0.92, 0.94]):
        make_run(tmp_path, f"{seed}_lstm", seed=seed, test_acc=acc)
    make_run(tmp_path, "3_gru", cell="gru", test_acc=0.8)
    rows = rows_of(tmp_path)
    assert [r.group.name[0] for r in rows] == ["gru", "lstm"]
    gru, lstm = rows
    assert lstm.seeds == 3 and gru.seeds == 1
    assert lstm.test_acc == pytest.approx((92.0, 2.0))  # sample std over seeds
    report = write_report([tmp_path], tmp_path / "out", plots=False)
    table = report.table
    assert "| lstm | smnist | 8 | 1 | 1,234 | 92.00 ± 2.00 |" in table
    assert "| gru | smnist | 8 | 1 | 1,234 | 80.00 |" in table  # one seed: no ± shown
    assert report.groups == 2 and report.runs == 4
    assert (tmp_path / "out" / "results.md").read_text().count("| lstm |") == 1


def test_failed_and_diverged_runs_are_counted_not_averaged(tmp_path):
    make_run(tmp_path, "0", seed=0, test_acc=0.9)
    make_run(tmp_path, "1", seed=1, status="diverged", test_acc=0.1, error="loss is nan at step 7")
    make_run(
        tmp_path,
        "2",
        seed=2,
        status="failed",
        test_acc=None,
        val_acc=None,
        error="Traceback (most recent call last):\n  ...\nRuntimeError: boom",
    )
    (row,) = rows_of(tmp_path)
    assert row.seeds == 1
    assert row.test_acc == pytest.approx((90.0, 0.0))
    assert row.not_completed == {"diverged": 1, "failed": 1}
    text = write_report([tmp_path], tmp_path / "out", plots=False).table_path.read_text()
    assert "1 diverged, 1 failed" in text
    assert "`1`: diverged — loss is nan at step 7" in text
    assert "`2`: failed — RuntimeError: boom" in text  # the last line of a traceback


def test_job_without_metrics_is_counted_as_not_completed(tmp_path):
    make_run(tmp_path, "0", seed=0)
    make_run(tmp_path, "1", seed=1, metrics=False)  # killed before writing metrics.json
    (row,) = rows_of(tmp_path)
    assert row.seeds == 1 and row.not_completed == {"no metrics.json": 1}


def test_all_runs_failed_row_has_no_numbers(tmp_path):
    make_run(tmp_path, "0", status="failed", test_acc=None, val_acc=None, error="x")
    table = write_report([tmp_path], tmp_path / "out", plots=False).table
    assert "| lstm | smnist | 8 | 1 | 1,234 | — | — | 0 | 1 failed |" in table


def test_launch_keys_do_not_split_a_configuration(tmp_path):
    make_run(tmp_path, "a", seed=0, extra={"data.root": "/x", "trainer.progress": True})
    make_run(tmp_path, "b", seed=1, extra={"data.root": "/y", "run_name": "other"})
    assert len(rows_of(tmp_path)) == 1


def test_settings_name_the_keys_that_differ_within_a_name(tmp_path):
    make_run(tmp_path, "0", extra={"optim.lr": 1e-3, "model.cell_kwargs": {"forget_bias": 1.0}})
    make_run(tmp_path, "1", extra={"optim.lr": 1e-2, "model.cell_kwargs": {"forget_bias": 1.0}})
    make_run(tmp_path, "2", cell="gru")  # differs in forget_bias too, but its name says so
    rows = rows_of(tmp_path)
    assert [r.group.setting for r in rows] == ["", "optim.lr=0.001", "optim.lr=0.01"]
    table = write_report([tmp_path], tmp_path / "out", plots=False).table
    assert "| setting |" in table
    assert "| lstm | smnist | 8 | 1 | optim.lr=0.01 |" in table


def test_runs_without_hydra_config_group_by_metrics_fields(tmp_path):
    make_run(tmp_path, "0", seed=0, hydra=False, test_acc=0.5)
    make_run(tmp_path, "1", seed=1, hydra=False, test_acc=0.7)
    make_run(tmp_path, "2", hidden=16, hydra=False)
    rows = rows_of(tmp_path)
    assert [(r.group.name[2], r.seeds) for r in rows] == [(8, 2), (16, 1)]
    assert rows[0].test_acc == pytest.approx((60.0, 14.142135623730951))


def test_nested_sweeps_and_overlapping_paths_find_each_run_once(tmp_path):
    make_run(tmp_path / "multirun" / "day" / "t1", "0_a")
    make_run(tmp_path / "multirun" / "day" / "t2", "0_a", seed=1)
    runs = find_runs([tmp_path / "multirun", tmp_path / "multirun" / "day" / "t1"])
    assert len(runs) == 2


def test_missing_or_empty_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        find_runs([tmp_path / "nope"])
    with pytest.raises(UserError, match="no runs below"):
        find_runs([tmp_path])


def test_mean_curve_averages_seeds_per_step(tmp_path):
    h0 = [{"step": 10, "val_acc": 0.2, "val_loss": 2.0}, {"step": 20, "val_acc": 0.6}]
    h1 = [{"step": 10, "val_acc": 0.4, "val_loss": 1.0}, {"step": 20, "val_acc": 0.8}]
    make_run(tmp_path, "0", seed=0, history=h0)
    make_run(tmp_path, "1", seed=1, history=h1)
    (group,) = group_runs(find_runs([tmp_path]))
    steps, means, stds = mean_curve(group.completed, "val_acc")
    assert steps == [10, 20]
    assert means == pytest.approx([0.3, 0.7])
    assert stds == pytest.approx([0.1414213, 0.1414213], rel=1e-5)
    assert mean_curve(group.completed, "val_loss")[0] == [10]  # steps without the metric skipped


def test_curve_falls_back_to_tensorboard_events(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run_dir = make_run(tmp_path, "0", history=[])
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    for step, acc in [(5, 0.3), (10, 0.5)]:
        writer.add_scalar("val/acc", acc, step)
    writer.close()
    (run,) = find_runs([tmp_path])
    assert run_curve(run, "val_acc") == [(5, pytest.approx(0.3)), (10, pytest.approx(0.5))]
    assert run_curve(run, "val_loss") == []


def test_report_draws_one_png_per_task(tmp_path):
    pytest.importorskip("matplotlib")
    for seed in (0, 1):
        make_run(tmp_path, f"s{seed}", seed=seed)
        make_run(tmp_path, f"p{seed}", data="psmnist", seed=seed)
    make_run(tmp_path, "f", data="psmnist", cell="gru", status="failed", history=[])
    report = write_report([tmp_path], tmp_path / "out")
    assert sorted(p.name for p in report.pngs) == ["curves_psmnist.png", "curves_smnist.png"]
    for png in report.pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert report.plot_message.startswith("plots: ")


def test_report_without_matplotlib_still_writes_the_table(tmp_path, monkeypatch):
    make_run(tmp_path, "0")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    report = write_report([tmp_path], tmp_path / "out")
    assert report.pngs == []
    assert "matplotlib is not installed" in report.plot_message
    assert "\n" not in report.plot_message
    assert "| lstm |" in report.table_path.read_text()


def test_cli_prints_the_table_and_writes_into_the_sweep_dir(tmp_path, capsys, monkeypatch):
    make_run(tmp_path, "0")
    script = str(REPO / "scripts" / "results.py")
    monkeypatch.setattr(sys, "argv", [script, str(tmp_path), "--no-plots"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "| lstm | smnist |" in out and "plots: skipped" in out
    assert (tmp_path / "results" / "results.md").is_file()


def test_cli_reports_a_bad_path_in_one_line(tmp_path, capsys, monkeypatch):
    script = str(REPO / "scripts" / "results.py")
    monkeypatch.setattr(sys, "argv", [script, str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err
