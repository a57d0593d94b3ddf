"""conf/model/: every registered cell has a model config that composes, and model files state
only what differs from the shared defaults (conf/model_shared.yaml)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from cell_groups import ROW_CELLS
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rnnzoo import registry
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import list_cells

CONF = Path(__file__).resolve().parents[1] / "conf"
SHARED = OmegaConf.load(CONF / "model_shared.yaml")
#: custom.yaml has no cell: it takes a module:Class one (tests/test_user_cells.py)
MODEL_FILES = sorted(
    p for p in (CONF / "model").glob("*.yaml") if not p.stem.startswith("_") and p.stem != "custom"
)


def compose_model(name: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"model={name}"]).model


@pytest.mark.parametrize("name", list_cells())
def test_every_registered_cell_has_a_model_config_that_composes(name):
    model_cfg = compose_model(name)
    assert model_cfg.cell == name
    assert set(model_cfg) == set(SHARED)  # the shared keys, filled in
    assert (model_cfg.num_layers, model_cfg.engine) == (1, "auto")
    # the row cells' state is channels x 28 maps, so their width is a multiple of 28
    assert model_cfg.hidden_size == 128 or (name in ROW_CELLS and model_cfg.hidden_size % 28 == 0)
    model_cfg.engine = "loop"  # the reference engine: no C++ build in a config test
    torch.manual_seed(0)
    model = SequenceClassifier.from_config(model_cfg, input_size=28, num_classes=10, seq_len=28)
    logits, _ = model(torch.randn(28, 2, 28))  # (T, B, I) -> (B, C)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_model_files_state_only_what_differs(path):
    raw = OmegaConf.to_container(OmegaConf.load(path))
    assert raw.pop("defaults") == ["/model_shared@_here_", "_self_"]
    assert raw.pop("cell") == path.stem
    kwargs = raw.pop("cell_kwargs", {})
    restated = {k: v for k, v in raw.items() if SHARED.get(k) == v}
    assert not restated, f"{path.name} repeats shared defaults {restated}"
    assert set(raw) <= set(SHARED), f"{path.name}: keys {set(raw) - set(SHARED)} are not model keys"
    # cell_kwargs name real keywords of the cell (a typo would otherwise fail only at run time)
    params = list(inspect.signature(registry._CELLS[path.stem]).parameters)[2:]
    assert set(kwargs) <= set(params), f"{path.name}: not keywords of the cell: {kwargs}"


def test_shared_defaults_leave_the_cell_to_each_file():
    assert OmegaConf.is_missing(SHARED, "cell")
    assert SHARED.cell_kwargs == {}
