"""Results of finished runs: a Markdown table and learning curves.

Reads the run directories the trainer writes (``metrics.json``, ``.hydra/config.yaml``,
``tensorboard/``), anywhere below the given paths, so a single run, a sweep or a whole
``multirun/`` tree all work. Runs whose configs differ only in the seed (and in where or how
they were launched: ``data.root``, ``run_name``, progress bars, ...) form one configuration.
For each configuration the table reports the test accuracy at the best-validation checkpoint
as mean ± std over its completed seeds. Runs that did not complete (diverged, failed,
interrupted, or that left no metrics.json at all) are counted and listed, never averaged in.

    python scripts/results.py multirun/2025-01-31/12-00-00.123456 -o results/

Learning curves (validation accuracy and loss against the optimizer step, mean over seeds)
are PNGs drawn with matplotlib, an optional extra (``pip install -e ".[plot]"``); without it
the table is still written.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnzoo.curves import plot_curves
from rnnzoo.errors import UserError

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
COMPLETED = "completed"
MISSING = "no metrics.json"  # status of a job dir whose run never finished writing metrics
TABLE_FILE = "results.md"

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
        return self.config.get(key) if value is None else value


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


# ------------------------------------------------------------------------------------ table


@dataclass
class Row:
    """One table row: the summary of a configuration."""

    group: Group
    test_acc: tuple[float, float] | None  # percent (mean, std); std 0 for one seed
    val_acc: tuple[float, float] | None
    seeds: int
    not_completed: dict[str, int]
    seconds_per_epoch: float | None
    params: int | None


def summarize(group: Group) -> Row:
    """Mean ± std over the completed runs of a configuration, and the others counted."""
    done = group.completed
    others: dict[str, int] = defaultdict(int)
    for run in group.runs:
        if not run.completed:
            others[run.status] += 1
    spe = [s for s in (r.metrics.get("seconds_per_epoch") for r in done) if _finite(s)]
    params = next((r.metrics["params"] for r in group.runs if r.metrics.get("params")), None)
    return Row(
        group=group,
        test_acc=_mean_std([_percent(r.metrics.get("test_acc")) for r in done]),
        val_acc=_mean_std([_percent(r.metrics.get("val_acc")) for r in done]),
        seeds=len(done),
        not_completed=dict(others),
        seconds_per_epoch=statistics.fmean(spe) if spe else None,
        params=params,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _percent(value: Any) -> float | None:
    """Accuracies are stored as fractions in [0, 1]; the table shows percent."""
    return 100.0 * value if _finite(value) else None


def _mean_std(values: list[float | None]) -> tuple[float, float] | None:
    kept = [v for v in values if v is not None]
    if not kept:
        return None
    std = statistics.stdev(kept) if len(kept) > 1 else 0.0  # sample std over seeds
    return statistics.fmean(kept), std


def markdown_table(rows: Sequence[Row]) -> str:
    """The results table in GitHub Markdown."""
    with_setting = any(r.group.setting for r in rows)
    head = ["cell", "task", "hidden", "layers"] + (["setting"] if with_setting else [])
    head += ["params", "test acc (%)", "best val acc (%)", "seeds", "not completed", "s / epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(_align(h) for h in head) + "|"]
    for row in rows:
        cell, task, hidden, layers = (_cell_text(x) for x in row.group.name)
        cells = [cell, task, hidden, layers] + ([row.group.setting] if with_setting else [])
        cells += [
            f"{row.params:,}" if row.params else "—",
            _pm(row.test_acc, row.seeds),
            _pm(row.val_acc, row.seeds),
            str(row.seeds),
            ", ".join(f"{n} {s}" for s, n in sorted(row.not_completed.items())) or "—",
            f"{row.seconds_per_epoch:.1f}" if row.seconds_per_epoch is not None else "—",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _align(header: str) -> str:
    return "---" if header in ("cell", "task", "setting") else "---:"


def _cell_text(value: Any) -> str:
    return "?" if value is None else str(value)


def _pm(mean_std: tuple[float, float] | None, seeds: int) -> str:
    if mean_std is None:
        return "—"
    mean, std = mean_std
    return f"{mean:.2f} ± {std:.2f}" if seeds > 1 else f"{mean:.2f}"


def notes(groups: Sequence[Group], base: Path | None = None) -> str:
    """Markdown notes under the table: what the numbers are, and every run left out."""
    lines = [
        "Test accuracy is measured with the best-validation checkpoint; mean ± sample std over "
        "the completed seeds of each configuration. Runs that did not complete are counted "
        "under 'not completed' and left out of the means.",
    ]
    left_out = [r for g in groups for r in g.runs if not r.completed]
    if left_out:
        lines += ["", "Runs left out:"]
        for run in left_out:
            error = _one_line(run.metrics.get("error")) or "no error recorded"
            lines.append(f"- `{_rel(run.path, base)}`: {run.status} — {error}")
    repeated = _repeated_seeds(groups)
    if repeated:
        lines += ["", "Same seed run more than once (each run counted): " + "; ".join(repeated)]
    return "\n".join(lines) + "\n"


def _one_line(text: Any, limit: int = 160) -> str:
    if not text:
        return ""
    line = str(text).strip().splitlines()[-1] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _rel(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(path.relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)


def _repeated_seeds(groups: Sequence[Group]) -> list[str]:
    out = []
    for group in groups:
        seeds = [s for s in (r.metrics.get("seed") for r in group.completed) if s is not None]
        dupes = sorted({s for s in seeds if seeds.count(s) > 1})
        if dupes:
            out.append(f"{group.label}: seed {', '.join(map(str, dupes))}")
    return out


# ----------------------------------------------------------------------------------- report


@dataclass
class Report:
    """What ``write_report`` produced."""

    table: str  # the Markdown table alone
    table_path: Path
    pngs: list[Path]
    plot_message: str  # one line: where the PNGs are, or why there are none
    runs: int
    groups: int


def write_report(paths: Iterable[str | Path], out_dir: str | Path, plots: bool = True) -> Report:
    """Table (``results.md``) and learning curves (``curves_<task>.png``) into ``out_dir``.

    Raises:
        UserError: a path does not exist or holds no runs.
    """
    paths = [Path(p) for p in paths]
    runs = find_runs(paths)  # before creating out_dir: it may lie inside a mistyped path
    groups = group_runs(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table([summarize(g) for g in groups])
    base = paths[0] if len(paths) == 1 else None
    sources = ", ".join(f"`{p}`" for p in paths)
    text = f"# Results\n\nFrom {sources}: {len(runs)} runs, {len(groups)} configurations.\n\n"
    table_path = out / TABLE_FILE
    table_path.write_text(text + table + "\n" + notes(groups, base))
    pngs, message = _plots(groups, out) if plots else ([], "plots: skipped (--no-plots)")
    return Report(table, table_path, pngs, message, len(runs), len(groups))


def _plots(groups: Sequence[Group], out: Path) -> tuple[list[Path], str]:
    try:
        pngs = plot_curves(groups, out)
    except ImportError:
        return [], 'plots: skipped, matplotlib is not installed (pip install -e ".[plot]")'
    if not pngs:
        return [], "plots: none, no completed run has a validation history"
    return pngs, "plots: " + ", ".join(str(p) for p in pngs)
