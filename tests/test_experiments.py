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
    modern = {"cornn_smnist", "cornn_psmnist", "lipschitz_smnist", "lipschitz_psmnist"}
    modern |= {"exprnn_smnist", "exprnn_psmnist", "lmu_psmnist", "zoo_modern"}
    assert modern <= set(EXPERIMENTS)


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
        ("cornn_smnist", {"model.cell": "cornn", "model.hidden_size": 256, "optim.lr": 0.0021,
                          "model.cell_kwargs.dt": 0.042, "model.cell_kwargs.gamma": 2.7,
                          "model.cell_kwargs.epsilon": 4.7, "data.batch_size": 120,
                          "trainer.clip.norm": None, "scheduler.step_size": 100}),
        ("lipschitz_smnist", {"model.cell": "lipschitz", "model.hidden_size": 128,
                              "optim.lr": 0.1, "optim.momentum": 0.9,
                              "model.cell_kwargs.beta": 0.65, "model.cell_kwargs.eps": 0.01,
                              "model.cell_kwargs.init_std": 32.0, "trainer.clip.norm": 10.0,
                              "scheduler.milestones": [31, 61, 81], "scheduler.gamma": 0.2}),
        ("exprnn_smnist", {"model.cell": "exprnn", "model.hidden_size": 512, "optim.lr": 3e-4,
                           "optim._target_": "torch.optim.RMSprop",
                           "model.cell_kwargs.skew_scale": 0.1, "data.batch_size": 128}),
    ],
)  # fmt: skip
def test_published_setups(name, expected):
    cfg = flat(compose_cfg([f"experiment={name}"]))
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["data.name"] == "smnist" and cfg["data.permute"] is False


#: permuted setups that copy the unpermuted one (the modern papers tune per task: cornn's dt,
#: gamma, epsilon, lipschitz's beta, exprnn's lr; lmu has only the permuted one)
COPIED_PERMUTED = ["gru_psmnist", "indrnn_psmnist", "irnn_psmnist", "lstm_psmnist"]


@pytest.mark.parametrize("name", COPIED_PERMUTED)
def test_permuted_variant_differs_only_in_the_data(name):
    permuted = flat(compose_cfg([f"experiment={name}"]))
    plain = flat(compose_cfg([f"experiment={name.replace('_psmnist', '_smnist')}"]))
    differ = {k for k in permuted.keys() | plain.keys() if permuted.get(k) != plain.get(k)}
    assert differ and all(k.startswith("data.") or k == "run_name" for k in differ), differ
    assert permuted["data.permute"] is True and permuted["data.name"] == "psmnist"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cornn_psmnist", {"model.cell_kwargs.dt": 0.076, "model.cell_kwargs.gamma": 0.4,
                           "model.cell_kwargs.epsilon": 8.0, "optim.lr": 0.0054}),
        ("lipschitz_psmnist", {"model.cell_kwargs.beta": 0.8, "optim.lr": 0.1}),
        ("exprnn_psmnist", {"optim.lr": 5e-4, "model.cell_kwargs.skew_scale": 0.1}),
        ("lmu_psmnist", {"model.cell": "lmu", "model.hidden_size": 212, "optim.lr": 1e-3,
                         "model.cell_kwargs.order": 256, "model.cell_kwargs.theta": 784.0,
                         "data.batch_size": 100, "data.val_size": 10000, "trainer.epochs": 10}),
    ],
)  # fmt: skip
def test_published_permuted_setups_of_the_modern_cells(name, expected):
    cfg = flat(compose_cfg([f"experiment={name}"]))
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["data.name"] == "psmnist" and cfg["data.permute"] is True


def test_zoo_modern_header_command_runs_the_modern_cells_on_one_budget():
    from rnnzoo import list_cells

    head = header(CONF / "experiment" / "zoo_modern.yaml")
    line = next(x for x in head.splitlines() if "python train.py -m" in x)
    sweeps = dict(a.split("=", 1) for a in shlex.split(line.lstrip("# "))[3:])
    models = sweeps["model"].split(",")
    assert {"cornn", "lipschitz", "exprnn", "lmu", "lru", "mingru", "minlstm"} == set(models)
    assert sweeps["data"].split(",") == ["smnist", "psmnist"]
    budgets = set()
    for model in [m for m in models if m in list_cells()]:  # the scan cells when registered
        for data in ("smnist", "psmnist"):
            cfg = compose_cfg(["experiment=zoo_modern", f"model={model}", f"data={data}"])
            assert (cfg.model.cell, cfg.data.name) == (model, data)
            budgets.add((cfg.model.hidden_size, cfg.optim.lr, cfg.data.batch_size,
                         cfg.trainer.epochs))  # fmt: skip
    assert budgets == {(128, 1e-3, 128, 30)}


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
