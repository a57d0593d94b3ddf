"""Classic rnn_zoo flags (``--model-type=lstm --hx=50``) translated into Hydra overrides.

``train.py`` rewrites ``sys.argv`` with :func:`translate` before ``@hydra.main`` parses it, so
classic flags, Hydra overrides and Hydra's own flags mix freely::

    python train.py --model-type=lstm --hx 50 --layers=2 optim=rmsprop
    python train.py -m --model-type=lstm,gru --seed=0,1      # comma lists become sweeps

Both ``--flag=value`` and ``--flag value`` work, and ``_`` / ``-`` are interchangeable in
flag names. Values are checked here (one-line error, exit code 2); a value holding ``(``
(Hydra sweep syntax such as ``interval(1e-4,1e-2)``) is passed on unchecked. Hydra's flags
(``--help``, ``-m``, ``--cfg job``, ``-cn``...) pass through untouched; any other ``-x`` is an
error that lists what is valid.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from rnnzoo.errors import UserError, print_error

#: classic --task names -> data config names
TASKS = {"seqmnist": "smnist", "pseqmnist": "psmnist"}

#: Hydra's own command-line flags, short and long (argparse in hydra/_internal/utils.py)
HYDRA_FLAGS = frozenset(
    {
        *("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--resolve"),
        *("--package", "-p", "--run", "-r", "--multirun", "-m", "--shell-completion", "-sc"),
        *("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--info", "-i"),
        "--experimental-rerun",
    }
)


class UsageError(UserError):
    """A bad classic flag or value (exit code 2, like argparse)."""


def _int_at_least(minimum: int) -> Callable[[str, str], str]:
    def parse(flag: str, text: str) -> str:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"{flag} expects an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise UsageError(f"{flag} expects an integer >= {minimum}, got {value}")
        return str(value)

    return parse


def _float(ok: Callable[[float], bool], what: str) -> Callable[[str, str], str]:
    def parse(flag: str, text: str) -> str:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not ok(value):  # nan fails every check
            raise UsageError(f"{flag} expects {what}, got {text!r}")
        return repr(value)

    return parse


def _model_type(flag: str, text: str) -> str:
    from rnnzoo import cell_aliases, list_cells  # imports torch: only when the flag is used

    if ":" in text:  # a user cell, module:Class (imported and checked when the model is built)
        module, _, cls = text.partition(":")
        if not (all(p.isidentifier() for p in module.split(".")) and cls.isidentifier()):
            raise UsageError(f"{flag}: {text!r} is not module:Class (e.g. mycells:LeakyRNN)")
        return text
    key = text.lower()
    aliases = cell_aliases()
    if key in list_cells():
        return key
    if key in aliases:
        return aliases[key]
    valid = [*list_cells(), *sorted(aliases)]
    raise UsageError(
        f"{flag}: unknown cell {text!r}{_did_you_mean(key, valid)}; valid: {', '.join(valid)}"
    )


def _task(conf_dir: Path | None) -> Callable[[str, str], str]:
    def parse(flag: str, text: str) -> str:
        key = text.lower()
        data = sorted(p.stem for p in conf_dir.glob("data/*.yaml")) if conf_dir else []
        if key in TASKS:
            return TASKS[key]
        if key in data:
            return key
        valid = [*TASKS, *data]
        raise UsageError(
            f"{flag}: unknown task {text!r}{_did_you_mean(key, valid)}; valid: {', '.join(valid)}"
        )

    return parse


@dataclass(frozen=True)
class Flag:
    """A classic flag: the override key it sets and how its value is checked."""

    key: str
    help: str
    parse: Callable[[str, str], str] | None = None  # None: a bare flag
    constant: str = ""  # the value a bare flag sets
    metavar: str = "VALUE"


def classic_flags(conf_dir: Path | None = None) -> dict[str, Flag]:
    """Flag name (without ``--``, dashes) -> Flag."""
    rate = _float(lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
    return {
        "model-type": Flag(
            "model",
            "cell: registry name, alias (lstm, gru, rnn+...) or module:Class",
            _model_type,
            metavar="NAME",
        ),
        "hx": Flag("model.hidden_size", "hidden units per layer", _int_at_least(1), metavar="N"),
        "layers": Flag("model.num_layers", "stacked layers", _int_at_least(1), metavar="N"),
        "lr": Flag(
            "optim.lr", "learning rate", _float(lambda v: 0.0 < v < math.inf, "a number > 0")
        ),
        "epochs": Flag("trainer.epochs", "training epochs", _int_at_least(1), metavar="N"),
        "seed": Flag("seed", "random seed", _int_at_least(0), metavar="N"),
        "batch-size": Flag("data.batch_size", "training batch size", _int_at_least(1), metavar="N"),
        "task": Flag(
            "data",
            "seqmnist (smnist) | pseqmnist (psmnist) | a data config",
            _task(conf_dir),
            metavar="NAME",
        ),
        "cuda": Flag("device", "train on the GPU (a bare flag)", constant="cuda"),
        "drop": Flag("model.dropout", "dropout between stacked layers, in [0, 1)", rate),
        "rec-drop": Flag("model.recurrent_dropout", "recurrent dropout, in [0, 1)", rate),
    }


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _value(flag: str, spec: Flag, text: str) -> str:
    """Check a value (or a comma list for -m sweeps) and return the override value."""
    if "(" in text:  # hydra sweep syntax (range, choice, interval...): hydra checks it
        return text
    return ",".join(spec.parse(flag, part.strip()) for part in text.split(","))


def translate(argv: Sequence[str], conf_dir: Path | None = None) -> list[str]:
    """Rewrite classic flags in ``argv`` (without the program name) as Hydra overrides.

    Raises:
        UsageError: an unknown flag, a missing value or a bad value (one line).
    """
    flags = classic_flags(conf_dir)
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        name, has_value, text = arg.partition("=")
        if not arg.startswith("-") or name in HYDRA_FLAGS or arg == "--":
            out.append(arg)
            continue
        key = name.lstrip("-").replace("_", "-").lower()
        spec = flags.get(key) if name.startswith("--") else None
        if spec is None:
            known = [f"--{k}" for k in flags]
            hint = _did_you_mean("--" + key, known)
            raise UsageError(
                f"unknown flag {name}{hint}; classic flags: {', '.join(known)}; Hydra flags: "
                "--help, --hydra-help, -m/--multirun, --cfg, -cn, -cp, -cd, --info ...; "
                "anything else is a Hydra override key=value (see --help)"
            )
        if spec.parse is None:
            if has_value:
                raise UsageError(f"{name} takes no value (it is a bare flag), got {arg!r}")
            out.append(f"{spec.key}={spec.constant}")
            continue
        if not has_value:
            if i >= len(args) or args[i].startswith("--"):
                raise UsageError(f"{name} needs a value: {name}=<{spec.metavar}>")
            text = args[i]
            i += 1
        value = _value(name, spec, text)
        if spec.key == "model" and ":" in value:  # user cells run under model=custom
            out += ["model=custom", f"model.cell={value}"]
        else:
            out.append(f"{spec.key}={value}")
    return out


def rewrite_sys_argv(conf_dir: Path) -> None:
    """Translate ``sys.argv`` in place; on a usage error print one line and exit with 2."""
    try:
        sys.argv[1:] = translate(sys.argv[1:], conf_dir)
    except UsageError as err:
        print_error(err)
        raise SystemExit(2) from None


def flags_help() -> str:
    """The classic flags as help text (used by the ``--help`` template)."""
    lines = []
    for name, spec in classic_flags().items():
        usage = f"--{name}" if spec.parse is None else f"--{name}={spec.metavar}"
        target = f"{spec.key}={spec.constant}" if spec.parse is None else spec.key
        lines.append(f"  {usage:<22} {spec.help}  [{target}]")
    return "\n".join(lines)


# ${rnnzoo_classic_flags:} in conf/hydra/help/rnnzoo.yaml: the help text cannot drift
OmegaConf.register_new_resolver("rnnzoo_classic_flags", flags_help, replace=True)
