"""Experiment and search configs (conf/experiment/, conf/hparams_search/): each composes, is a
delta with a header saying how to run it and what it targets, and trains for a step."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest
from cell_groups import generic_cells
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rnnzoo.training import train

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
GROUPS = ("data", "model", "optim", "scheduler", "trainer")
SEARCHES = sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml"))
# shrink any experiment to one optimizer step on the tiny dataset (row view: T=28)
TINY = [
    "data.view=row",
    "data.download=false",
    "data.val_size=50",
    "data.batch_size=8",
    "data.eval_batch_size=50",
    "model.hidden_size=8",
    "trainer.epochs=1",
    "trainer.max_steps=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_eval_batches=1",
    "trainer.progress=false",
    "device=cpu",
]


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    """One Hydra initialization for the module (each one costs a config-search pass)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def compose_cfg(overrides: list[str], hydra: bool = False):
    return compose("config", overrides=overrides, return_hydra_config=hydra)


def header(path: Path) -> str:
    return "".join(itertools.takewhile(lambda line: line.startswith("#"), path.open()))


def flat(cfg) -> dict:
    out = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def test_there_are_experiments_for_the_published_setups():
    assert {"zoo_readme", "lstm_smnist", "lstm_psmnist", "irnn_smnist", "irnn_psmnist"} <= set(
        EXPERIMENTS
    )
    assert {"indrnn_smnist", "indrnn_psmnist", "gru_smnist", "gru_psmnist"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_is_a_headed_delta(name):
    path = CONF / "experiment" / f"{name}.yaml"
    head = header(path)
    assert head.startswith("# @package _global_\n")
    assert "python train.py" in head and f"experiment={name}" in head  # how to run it
    assert "Target" in head  # the published number it targets (or why there is none)
    assert re.search(r"arXiv \d{4}\.\d{5}|github\.com/", head)  # and its source
    full = compose_cfg([f"experiment={name}"], hydra=True)
    groups = [f"{g}={c}" for g, c in full.hydra.runtime.choices.items() if g in GROUPS]
    del full.hydra
    cfg, base = flat(full), flat(compose_cfg(groups))
    assert cfg != base, "changes nothing beyond its group choices"
    # a misspelt key would silently add a new one: only cell kwargs may be new
    typos = {k for k in cfg if k not in base and not k.startswith("model.cell_kwargs.")}
    assert not typos, f"keys its groups do not have: {typos}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lstm_smnist", {"model.cell": "lstm", "model.hidden_size": 100, "optim.lr": 1e-3,
                         "optim.alpha": 0.9, "trainer.clip.norm": 1.0, "data.batch_size": 100}),
        ("irnn_smnist", {"model.cell": "irnn", "model.hidden_size": 100, "optim.lr": 1e-8,
                         "optim._target_": "torch.optim.SGD", "data.batch_size": 16}),
        ("indrnn_smnist", {"model.cell": "indrnn", "model.hidden_size": 128,
                           "model.num_layers": 6, "optim.lr": 2e-4, "data.batch_size": 32}),
        ("gru_smnist", {"model.cell": "gru", "model.hidden_size": 100, "optim.alpha": 0.9}),
    ],
)  # fmt: skip
def test_published_setups(name, expected):
    cfg = flat(compose_cfg([f"experiment={name}"]))
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["data.name"] == "smnist" and cfg["data.permute"] is False


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if n.endswith("_psmnist")])
def test_permuted_variant_differs_only_in_the_data(name):
    permuted = flat(compose_cfg([f"experiment={name}"]))
    plain = flat(compose_cfg([f"experiment={name.replace('_psmnist', '_smnist')}"]))
    differ = {k for k in permuted.keys() | plain.keys() if permuted.get(k) != plain.get(k)}
    assert differ and all(k.startswith("data.") or k == "run_name" for k in differ), differ
    assert permuted["data.permute"] is True and permuted["data.name"] == "psmnist"


def test_zoo_readme_header_command_covers_every_cell_and_both_tasks():
    head = header(CONF / "experiment" / "zoo_readme.yaml")
    line = next(x for x in head.splitlines() if "python train.py -m" in x)
    args = shlex.split(line.lstrip("# "))[3:]  # after "python train.py -m"
    sweeps = dict(a.split("=", 1) for a in args)
    assert sweeps["experiment"] == "zoo_readme"
    assert set(sweeps["model"].split(",")) == set(generic_cells())  # the row cells need rows
    assert sweeps["data"].split(",") == ["smnist", "psmnist"]
    tasks = itertools.cycle(sweeps["data"].split(","))  # each cell once, tasks alternating
    for model, data in zip(sweeps["model"].split(","), tasks, strict=False):
        cfg = compose_cfg(["experiment=zoo_readme", f"model={model}", f"data={data}"])
        got = (cfg.model.cell, cfg.data.name, cfg.model.hidden_size, cfg.model.num_layers)
        assert got == (model, data, 50, 3)
        assert (cfg.optim.lr, cfg.data.batch_size) == (1e-4, 64)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_trains_for_one_step(name, tiny_mnist_root, tmp_path):
    cfg = compose_cfg([f"experiment={name}", f"data.root={tiny_mnist_root}", *TINY])
    result = train(cfg, run_dir=tmp_path / "run")
    assert result["status"] == "completed", result["error"]
    assert result["steps"] == 1 and result["cell"] == cfg.model.cell
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize("name", SEARCHES)
def test_search_composes_and_searches_real_keys(name):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the [optuna] extra")
    head = header(CONF / "hparams_search" / f"{name}.yaml")
    assert head.startswith("# @package _global_\n") and f"hparams_search={name}" in head
    cfg = compose_cfg([f"hparams_search={name}"], hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, f"{key} is not a config key"
