"""Run directories of finished jobs, found and grouped into configurations.

Reads the run directories the trainer writes (``metrics.json``, ``.hydra/config.yaml``),
anywhere below the given paths, so a single run, a sweep or a whole ``multirun/`` tree all
work. Runs whose configs differ only in the seed (and in where or how they were launched:
``data.root``, ``run_name``, progress bars, ...) form one configuration (a ``Group``).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnzoo.errors import UserError
from rnnzoo.registry import cell_label

METRICS_FILE = "metrics.json"
COMPLETED = "completed"
MISSING = "no metrics.json"  # status of a job dir whose run never finished writing metrics

# config keys that say where or how a run was launched, not what was trained: ignored when
# grouping runs into configurations (the seed is what the mean ± std is taken over)
IGNORED_KEYS = frozenset(
    {
        "seed",
        "run_name",
        "data.root",
        "data.download",
        "trainer.progress",
        "trainer.resume",
        "trainer.log_every_steps",
        "trainer.ckpt_every_steps",
        "trainer.diagnostics",
        "trainer.threads",  # results do not depend on the thread count
    }
)
# the keys that name a configuration in every table row, with the metrics.json field that
# holds the same thing (used when a run has no .hydra/config.yaml)
NAME_KEYS = {
    "model.cell": "cell",
    "data.name": "data",
    "model.hidden_size": "hidden_size",
    "model.num_layers": "num_layers",
}


@dataclass
class Run:
    """One job directory.

    Attributes:
        path: the run directory.
        status: metrics.json ``status`` ("completed", "diverged", ...) or ``MISSING``.
        metrics: the parsed metrics.json ({} when missing).
        config: flat resolved config, dotted keys -> values, launch keys removed; from
            ``.hydra/config.yaml`` when present, else from the metrics.json name fields.
    """

    path: Path
    status: str
    metrics: dict[str, Any]
    config: dict[str, Any]

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    def get(self, key: str) -> Any:
        """A naming field (``NAME_KEYS`` key): metrics.json first, then the config."""
        value = self.metrics.get(NAME_KEYS[key])
        value = self.config.get(key) if value is None else value
        return cell_label(value) if key == "model.cell" and value is not None else value


@dataclass
class Group:
    """Runs of one configuration (same config up to the seed)."""

    key: tuple[tuple[str, str], ...]
    runs: list[Run]
    setting: str = ""  # the keys that set it apart from groups with the same name fields
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> list[Run]:
        return [r for r in self.runs if r.completed]

    @property
    def name(self) -> tuple[Any, ...]:
        """(cell, task, hidden size, layers) of the first run."""
        return tuple(self.runs[0].get(k) for k in NAME_KEYS)

    @property
    def label(self) -> str:
        cell, task, hidden, layers = self.name
        base = f"{cell} {task} h{hidden}x{layers}"
        return f"{base} {self.setting}" if self.setting else base


# ---------------------------------------------------------------------------------- loading


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """All run directories below ``paths``: those with metrics.json or ``.hydra/config.yaml``.

    Raises:
        UserError: a path does not exist, or no run directory was found below any of them.
    """
    dirs: dict[Path, None] = {}
    roots = [Path(p) for p in paths]
    for root in roots:
        if not root.exists():
            raise UserError(f"{root}: no such directory; give run or sweep directories")
        for found in sorted(root.rglob(METRICS_FILE)):
            dirs.setdefault(found.parent.resolve())
        for found in sorted(root.rglob("config.yaml")):
            if found.parent.name == ".hydra":
                dirs.setdefault(found.parent.parent.resolve())
    if not dirs:
        names = ", ".join(str(r) for r in roots)
        raise UserError(f"no runs below {names}: expected job dirs with {METRICS_FILE}")
    return [load_run(d) for d in dirs]


def load_run(run_dir: Path) -> Run:
    """Read one run directory (metrics.json and ``.hydra/config.yaml``, either may be absent)."""
    metrics: dict[str, Any] = {}
    status = MISSING
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text())
            status = str(metrics.get("status", "unknown"))
        except (OSError, json.JSONDecodeError) as err:
            metrics, status = {"error": f"unreadable {METRICS_FILE}: {err}"}, "unreadable"
    config = load_config(run_dir)
    if not config:
        config = {k: metrics.get(v) for k, v in NAME_KEYS.items()}
    return Run(run_dir, status, metrics, config)


def load_config(run_dir: Path) -> dict[str, Any]:
    """Flat config of a run from ``.hydra/config.yaml``, launch keys removed ({} if absent).

    Hydra saves the config unresolved; interpolations are resolved here where they can be
    (``${model.hidden_size}``) and kept as written where they cannot (``${hydra:...}``).
    """
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf  # hydra's dependency; imported late to keep import cheap

    cfg = OmegaConf.load(path)
    flat = {}
    for key, raw in _flatten(OmegaConf.to_container(cfg, resolve=False)).items():
        if key not in IGNORED_KEYS:
            flat[key] = _resolve(cfg, key, raw)
    return flat


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": leaf}; lists and empty dicts are leaves."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        flat.update(_flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return flat


def _resolve(cfg: Any, key: str, raw: Any) -> Any:
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        return value
    except Exception:  # an interpolation that needs Hydra's runtime: keep it as written
        return raw


# --------------------------------------------------------------------------------- grouping


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs -> configurations, sorted by task, cell, hidden size, layers, setting."""
    by_key: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        key = tuple(sorted((k, _canonical(v)) for k, v in run.config.items()))
        by_key[key].append(run)
    groups = [Group(k, sorted(rs, key=_seed_order), "", rs[0].config) for k, rs in by_key.items()]
    _set_settings(groups)
    return sorted(groups, key=_group_order)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _seed_order(run: Run) -> tuple:
    seed = run.metrics.get("seed")
    return (not isinstance(seed, int), seed if isinstance(seed, int) else 0, str(run.path))


def _group_order(group: Group) -> tuple:
    cell, task, hidden, layers = group.name
    return (str(task), str(cell), _num(hidden), _num(layers), group.setting)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else math.inf


def _set_settings(groups: list[Group]) -> None:
    """Name what sets apart groups that share (cell, task, hidden, layers): the differing keys.

    Keys that differ only between groups of different names (e.g. the LSTM's forget bias
    between an LSTM and a GRU row) are not shown: the name already says it.
    """
    by_name: dict[tuple, list[Group]] = defaultdict(list)
    for group in groups:
        by_name[tuple(str(x) for x in group.name)].append(group)
    for same in by_name.values():
        if len(same) < 2:
            continue
        keys = sorted({k for g in same for k in g.config} - set(NAME_KEYS))
        differing = [k for k in keys if len({_canonical(g.config.get(k)) for g in same}) > 1]
        for group in same:
            group.setting = " ".join(f"{k}={_short(group.config.get(k))}" for k in differing)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
