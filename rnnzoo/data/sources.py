"""Image sources and their files: where MNIST and Fashion-MNIST live, finding and downloading
the four IDX files (torchvision's downloader, quiet and with a timeout), and reading them.

``data.root`` resolves to ``<repo>/data`` in a source checkout, else ``./data`` in the launch
directory; files sit in torchvision's layout, ``<root>/<MNIST|FashionMNIST>/raw/``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from rnnzoo.data.idx import FILES, load_split, locate
from rnnzoo.errors import DataError, one_line

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
    repo = Path(__file__).resolve().parents[2]
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
        return one_line(lines[-1] if lines else type(e).__name__, 160)
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

