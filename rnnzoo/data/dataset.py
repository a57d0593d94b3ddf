"""Sequential image classification data: MNIST-like images read as sequences.

Two independent knobs (``conf/data/*.yaml``):

- ``source``: ``mnist`` | ``fashion`` (Fashion-MNIST) — which 28x28 images.
- ``view``: ``pixel`` (T=784 steps of 1 input, row-major) | ``row`` (T=28 steps of 28 inputs).

plus ``permute``: one fixed permutation of the T steps drawn from ``permutation_seed`` with its
own generator, applied identically to train, val and test (permuted sMNIST, Le et al. 2015,
"A Simple Way to Initialize Recurrent Networks of Rectified Linear Units"). With the pixel view
step t shows pixel ``permutation[t]`` of the row-major image; with the row view, row
``permutation[t]``.

Each split is one uint8 tensor on the device (all of MNIST is 47 MB); batches are sliced from it
and turned into normalized, permuted, time-major float sequences on the fly. The validation set
is a fixed seeded subset of the 60k training images; the official 10k test set is kept apart.

``data.name`` names runs. It is a plain string (the config file's name); overriding a knob
without it (``data=smnist data.permute=true``) keeps the old name and logs a warning saying which
name fits (:func:`canonical_name`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnzoo.data.sources import NUM_CLASSES, SOURCES, load_files, resolve_root
from rnnzoo.data.splits import VIEWS, Split, make_permutation, split_indices
from rnnzoo.errors import UserError

log = logging.getLogger(__name__)

_VIEW_PREFIX = {"pixel": "", "row": "row"}


def canonical_name(source: str, view: str, permute: bool) -> str:
    """The data name that matches the knobs, in the style of the config files.

    smnist, psmnist, rowmnist, prowmnist, fashion, pfashion, rowfashion, prowfashion.
    """
    base = "smnist" if (source, view) == ("mnist", "pixel") else _VIEW_PREFIX[view] + source
    return ("p" if permute else "") + base


PRESET_NAMES = frozenset(canonical_name(s, v, p) for s in SOURCES for v in VIEWS for p in (0, 1))


# ---------------------------------------------------------------------------------------------
# config


def _get(cfg: Any, key: str, default: Any) -> Any:
    """``cfg[key]`` for a dict / DictConfig, ``cfg.key`` for a namespace, else ``default``."""
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _int(cfg: Any, key: str, default: int, minimum: int | None = None) -> int:
    value = _get(cfg, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"data.{key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise UserError(f"data.{key} must be >= {minimum}, got {value}")
    return int(value)


def _bool(cfg: Any, key: str, default: bool) -> bool:
    value = _get(cfg, key, default)
    if not isinstance(value, bool):
        raise UserError(f"data.{key} must be true or false, got {value!r}")
    return value


def _choice(cfg: Any, key: str, default: str, valid: Mapping[str, Any]) -> str:
    value = _get(cfg, key, default)
    if not isinstance(value, str) or value.lower() not in valid:
        raise UserError(f"unknown data.{key}={value!r}; valid: {', '.join(valid)}")
    return value.lower()


@dataclass(frozen=True)
class DataConfig:
    """The validated ``data`` config (see ``conf/data/smnist.yaml`` for what each key means)."""

    source: str = "mnist"
    view: str = "pixel"
    permute: bool = False
    permutation_seed: int = 0
    root: Path | None = None  # resolved by from_cfg; None only before
    download: bool = True
    val_size: int = 5000
    split_seed: int = 0
    batch_size: int = 64
    eval_batch_size: int = 1000
    name: str = "smnist"

    @classmethod
    def from_cfg(cls, cfg: Any) -> DataConfig:
        """Validate a DictConfig, dict, namespace or None (all defaults); one-line UserErrors."""
        source = _choice(cfg, "source", cls.source, SOURCES)
        view = _choice(cfg, "view", cls.view, VIEWS)
        permute = _bool(cfg, "permute", cls.permute)
        name = _get(cfg, "name", None)
        return cls(
            source=source,
            view=view,
            permute=permute,
            permutation_seed=_int(cfg, "permutation_seed", cls.permutation_seed),
            root=resolve_root(_get(cfg, "root", None)),
            download=_bool(cfg, "download", cls.download),
            val_size=_int(cfg, "val_size", cls.val_size),  # range checked once N is known
            split_seed=_int(cfg, "split_seed", cls.split_seed),
            batch_size=_int(cfg, "batch_size", cls.batch_size, minimum=1),
            eval_batch_size=_int(cfg, "eval_batch_size", cls.eval_batch_size, minimum=1),
            name=str(name) if name else canonical_name(source, view, permute),
        )



@dataclass
class SequenceData:
    """Train / val / test splits plus what the model needs to know about the sequences."""

    train: Split
    val: Split
    test: Split
    input_size: int
    seq_len: int
    num_classes: int
    permutation: Tensor | None  # (T,) int64 CPU, or None when not permuted
    name: str  # data.name, used in run names
    source: str
    view: str
    permutation_seed: int | None  # None when not permuted

    def save_permutation(self, run_dir: str | os.PathLike) -> Path | None:
        """Write ``permutation.pt`` (the (T,) tensor) and ``permutation.json`` (seed, view, how
        it was drawn) into ``run_dir`` so a result can be traced to its permutation.

        Returns:
            The ``permutation.pt`` path, or None when the data is not permuted (nothing written).
        """
        if self.permutation is None:
            return None
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "permutation.pt"
        torch.save(self.permutation.cpu(), path)
        info = {
            "seed": self.permutation_seed,
            "source": self.source,
            "view": self.view,
            "seq_len": self.seq_len,
            "drawn_as": f"torch.randperm({self.seq_len}, "
            f"generator=torch.Generator().manual_seed({self.permutation_seed}))",
            "first_steps": self.permutation[:10].tolist(),
        }
        (run_dir / "permutation.json").write_text(json.dumps(info, indent=2) + "\n")
        return path


def build_data(data_cfg: Any, device: str | torch.device) -> SequenceData:
    """Load (downloading if allowed and needed) the data the ``data`` config describes.

    Args:
        data_cfg: the ``data`` config: DictConfig, dict, namespace, or None for all defaults.
        device: where the splits live and batches are made ("cpu", "cuda", ...).

    Raises:
        UserError: an invalid config value. DataError: files missing or corrupt.
    """
    cfg = DataConfig.from_cfg(data_cfg)
    fitting = canonical_name(cfg.source, cfg.view, cfg.permute)
    if cfg.name in PRESET_NAMES and cfg.name != fitting:
        log.warning(
            "data.name=%s but source=%s view=%s permute=%s is %s; runs are named after "
            "data.name: pass data.name=%s to name them after what they train on",
            *(cfg.name, cfg.source, cfg.view, cfg.permute, fitting, fitting),
        )
    started = time.perf_counter()
    source = SOURCES[cfg.source]
    files = load_files(source, cfg.root, cfg.download)
    train_images, train_labels = files["train"]
    train_idx, val_idx = split_indices(len(train_images), cfg.val_size, cfg.split_seed)
    seq_len, input_size = VIEWS[cfg.view]
    permutation = make_permutation(seq_len, cfg.permutation_seed) if cfg.permute else None
    device = torch.device(device)

    def split(images: Tensor, labels: Tensor, indices: Tensor) -> Split:
        return Split(
            images.to(device),
            labels.to(device),
            indices,
            cfg.view,
            source.mean,
            source.std,
            permutation,
        )

    test_images, test_labels = files["test"]
    data = SequenceData(
        train=split(train_images[train_idx], train_labels[train_idx], train_idx),
        val=split(train_images[val_idx], train_labels[val_idx], val_idx),
        test=split(test_images, test_labels, torch.arange(len(test_images))),
        input_size=input_size,
        seq_len=seq_len,
        num_classes=NUM_CLASSES,
        permutation=permutation,
        name=cfg.name,
        source=cfg.source,
        view=cfg.view,
        permutation_seed=cfg.permutation_seed if cfg.permute else None,
    )
    log.info(
        "data %s: %s %s view (T=%d, I=%d)%s, train/val/test %d/%d/%d on %s, loaded in %.2f s",
        cfg.name,
        source.title,
        cfg.view,
        seq_len,
        input_size,
        f", permuted (seed {cfg.permutation_seed})" if cfg.permute else "",
        len(data.train),
        len(data.val),
        len(data.test),
        device,
        time.perf_counter() - started,
    )
    return data
