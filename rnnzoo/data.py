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

import contextlib
import io
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnzoo.errors import DataError, UserError
from rnnzoo.idx import FILES, IMAGE_SIZE, load_split, locate

log = logging.getLogger(__name__)

NUM_CLASSES = 10
DOWNLOAD_TIMEOUT_S = 20.0  # per network operation; offline machines fail at DNS right away


@dataclass(frozen=True)
class Source:
    """Where an image source lives and its per-channel statistics (over the 60k train images)."""

    title: str  # for messages
    folder: str  # torchvision's folder name under root (also its dataset class name)
    url: str  # the download mirror torchvision tries first
    mean: float
    std: float


SOURCES: dict[str, Source] = {
    "mnist": Source(
        title="MNIST",
        folder="MNIST",
        url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        mean=0.1307,
        std=0.3081,
    ),
    "fashion": Source(
        title="Fashion-MNIST",
        folder="FashionMNIST",
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        mean=0.2860,
        std=0.3530,
    ),
}
#: view -> (seq_len T, input_size I)
VIEWS: dict[str, tuple[int, int]] = {
    "pixel": (IMAGE_SIZE * IMAGE_SIZE, 1),
    "row": (IMAGE_SIZE, IMAGE_SIZE),
}
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


def _launch_dir() -> Path:
    """The directory the user started from (Hydra's runtime.cwd, even if the job chdir'ed)."""
    with contextlib.suppress(Exception):  # hydra absent or not running: plain cwd
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.cwd)
    return Path.cwd()


def default_root() -> Path:
    """``<repo>/data`` when rnnzoo runs from its source tree (pyproject.toml next to the
    package), else ``./data`` in the launch directory (an installed package)."""
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file():
        return repo / "data"
    return _launch_dir() / "data"


def resolve_root(root: str | os.PathLike | None) -> Path:
    """``data.root`` as an absolute path: null/empty -> :func:`default_root`; ``~`` expanded;
    relative paths are taken from the launch directory."""
    if root is None or not str(root).strip():
        return default_root()
    path = Path(str(root)).expanduser()
    return path if path.is_absolute() else _launch_dir() / path


# ---------------------------------------------------------------------------------------------
# files: find, download, read


def _dataset_class(source: Source) -> Any:
    """torchvision's dataset class for the source (imported lazily: torchvision is slow to
    import and is only needed to download)."""
    import torchvision.datasets

    return getattr(torchvision.datasets, source.folder)


def download(source: Source, root: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> str | None:
    """Fetch the missing files with torchvision's downloader, quietly and with a timeout.

    torchvision prints progress bars and per-mirror errors; they are captured and logged at
    debug level. A failed attempt removes the ``.gz`` files it left half-written, so the next
    run does not mistake them for data.

    Returns:
        None on success, else a one-line reason.
    """
    raw_dir = root / source.folder / "raw"
    before = set(raw_dir.iterdir()) if raw_dir.is_dir() else set()
    captured = io.StringIO()
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # urllib without a timeout would wait forever on a stall
    try:
        with (
            contextlib.redirect_stdout(captured),
            contextlib.redirect_stderr(captured),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            _dataset_class(source)(str(root), train=True, download=True)
    except Exception as e:  # any failure (network, disk, torchvision) becomes one DataError
        left = set(raw_dir.iterdir()) - before if raw_dir.is_dir() else set()
        for path in left:
            if path.suffix == ".gz" and not path.with_suffix("").exists():
                path.unlink(missing_ok=True)
        # torchvision's message is "Error downloading <file>:\nTried <mirror>, got:\n<error>";
        # the last line is the cause (e.g. "<urlopen error [Errno -2] Name or service not known>")
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(e).__name__
        return reason if len(reason) <= 160 else reason[:157] + "..."
    finally:
        socket.setdefaulttimeout(old_timeout)
        log.debug("torchvision download output: %s", captured.getvalue())
    return None


def load_files(
    source: Source, root: Path, allow_download: bool
) -> dict[str, tuple[Tensor, Tensor]]:
    """Read the train and test splits of ``source`` from ``root`` (torchvision's layout).

    Returns:
        {"train": (images (60000, 28, 28) uint8, labels (60000,) int64), "test": (...)}, CPU.

    Raises:
        DataError: files missing (and download off or failing) or corrupt; one line.
    """
    raw_dir = root / source.folder / "raw"
    found, missing = locate(raw_dir)
    if missing and allow_download:
        log.info("downloading %s into %s", source.title, raw_dir)
        reason = download(source, root)
        found, missing = locate(raw_dir)
        why = f"download from {source.url} failed: {reason}" if reason else "download incomplete"
        how = f"fetch them from {source.url} on a machine with internet and copy them there"
    else:
        why = "data.download=false"
        how = f"set data.download=true to fetch them from {source.url}, or copy them there by hand"
    if missing:
        raise DataError(
            f"{source.title} file(s) missing in {raw_dir}: {', '.join(missing)} ({why}); {how} "
            "(plain or .gz)"
        )
    return {split: load_split(found[img], found[lbl]) for split, (img, lbl) in FILES.items()}


# ---------------------------------------------------------------------------------------------
# splits and batches


def _mix_seed(*values: int) -> int:
    """One 63-bit generator seed from several ints; (0, 1) and (1, 0) give unrelated seeds."""
    entropy = [int(v) % 2**64 for v in values]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1


def make_permutation(seq_len: int, seed: int) -> Tensor:
    """The fixed step permutation: ``torch.randperm(seq_len)`` from a generator seeded with
    ``seed`` (never the global RNG, so it does not depend on anything else the run draws).

    Returns:
        (T,) int64 on the CPU.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(seq_len, generator=generator)


def split_indices(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Disjoint sorted (train, val) indices into ``n`` training images; depends only on the seed.

    Raises:
        UserError: val_size not in 1..n-1.
    """
    if not 1 <= val_size < n:
        raise UserError(f"data.val_size={val_size} out of range: valid 1..{n - 1} for {n} images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:].sort().values, order[:val_size].sort().values


class Split:
    """One split held as a uint8 tensor on its device, served as batches of sequences.

    Attributes:
        images: (N, 28, 28) uint8 on the device.
        labels: (N,) int64 on the device.
        indices: (N,) int64 CPU, positions of these images in the source file.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        indices: Tensor,
        view: str,
        mean: float,
        std: float,
        permutation: Tensor | None = None,
    ) -> None:
        self.images = images  # (N, 28, 28) uint8
        self.labels = labels  # (N,) int64
        self.indices = indices  # (N,) int64, CPU
        self.view = view
        self.seq_len, self.input_size = VIEWS[view]
        # (x / 255 - mean) / std as one multiply-add
        self._scale = 1.0 / (255.0 * std)
        self._shift = mean / std
        self.permutation = None if permutation is None else permutation.to(images.device)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return self.images.shape[0]

    def num_batches(self, batch_size: int, limit: int | None = None) -> int:
        """Batches per pass: ceil(N / batch_size) (the last one partial), capped at ``limit``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        full = -(-len(self) // batch_size)
        return full if limit is None else min(full, limit)

    def epoch_order(self, seed: int, epoch: int) -> Tensor:
        """The shuffled order of one epoch, (N,) int64 on the device.

        Drawn on the CPU from a generator seeded with (seed, epoch): the same on every device,
        and a resumed run can replay any epoch without drawing the ones before it.
        """
        generator = torch.Generator().manual_seed(_mix_seed(seed, epoch))
        return torch.randperm(len(self), generator=generator).to(self.device)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        limit: int | None = None,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Iterate over the split once (the last batch may be smaller), at most ``limit`` batches.

        Yields:
            x (T, B, input_size) float32, normalized and permuted, on the split's device;
            y (B,) int64.
        """
        count = self.num_batches(batch_size, limit)
        order = self.epoch_order(seed, epoch) if shuffle else None
        for i in range(count):
            start, stop = i * batch_size, min((i + 1) * batch_size, len(self))
            if order is None:
                images, labels = self.images[start:stop], self.labels[start:stop]
            else:
                index = order[start:stop]
                images, labels = self.images[index], self.labels[index]
            yield self.to_sequence(images), labels

    def to_sequence(self, images: Tensor) -> Tensor:
        """Turn images into model input.

        Args:
            images: (B, 28, 28) uint8.

        Returns:
            (T, B, I) float32: (784, B, 1) for the pixel view, (28, B, 28) for the row view.
        """
        b = images.shape[0]
        # float before moving bytes around: strided float copies vectorize, uint8 ones do not
        x = images.reshape(b, self.seq_len, self.input_size).float().transpose(0, 1)  # (T, B, I)
        # one copy either way: index_select reorders the steps and makes x contiguous
        x = x.contiguous() if self.permutation is None else x.index_select(0, self.permutation)
        return x.mul_(self._scale).sub_(self._shift)


# ---------------------------------------------------------------------------------------------
# the dataset


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
