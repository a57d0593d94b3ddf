"""What a run records about how it ran: the engine actually used (start line, metrics.json,
TensorBoard hparams, results table) and the denormal mode it trained under."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from idx_fixtures import make_idx_root
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from train_helpers import read_metrics, tiny_cfg

from rnnzoo.report import write_report
from rnnzoo.training import train


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_root(tmp_path_factory.mktemp("data"))


def hparams_of(run_dir: Path) -> dict[str, object]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.string_value or v.number_value or v.bool_value for k, v in info.hparams.items()}


@pytest.mark.parametrize("engine", ["loop", "auto"])
def test_the_engine_that_ran_is_recorded(root: Path, tmp_path: Path, caplog, engine: str):
    with caplog.at_level(logging.INFO, logger="rnnzoo"):
        result = train(tiny_cfg(root, f"model.engine={engine}", "trainer.epochs=1"), tmp_path)
    ran = result["engine"]
    assert ran and ran != "auto" and (engine == "auto" or ran == engine)
    assert {"engine", "engines", "engine_note"} <= set(read_metrics(tmp_path))
    assert f"engine {ran}" in caplog.text  # the start line
    assert hparams_of(tmp_path)["engine"] == ran
    table = write_report([tmp_path], tmp_path / "report", plots=False).table
    assert table.splitlines()[0].endswith("| engine |") and f"| {ran} |" in table


@pytest.mark.parametrize("flush", [True, False])
def test_flush_denormal_reaches_every_thread(root: Path, tmp_path: Path, flush: bool) -> None:
    train(tiny_cfg(root, f"trainer.flush_denormal={flush}", "trainer.epochs=1"), tmp_path)
    tiny = torch.full((1 << 18,), 1e-39)  # float32 denormals; big enough for the thread pool
    assert bool((tiny * 1.0 == 0).all()) == flush
    assert hparams_of(tmp_path)["flush_denormal"] == flush
