"""IDX files, the format MNIST and Fashion-MNIST ship in: read, write and find them on disk.

An IDX file (big-endian) is two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions d, d int32 sizes, then the values in C order. Images are (N, 28, 28), labels (N,).
Format described at http://yann.lecun.com/exdb/mnist/.

Files sit in torchvision's layout, ``<root>/<MNIST|FashionMNIST>/raw/<name>``; a file may be
plain or gzip-compressed (``<name>.gz``, what the download leaves). We read them ourselves into
one uint8 tensor each (no per-item decoding), validating everything a truncated or corrupt file
would get wrong, and report problems as one-line :class:`~rnnzoo.errors.DataError` messages.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import torch
from torch import Tensor

from rnnzoo.errors import DataError, one_line

UBYTE = 0x08  # the only IDX type code MNIST-like files use
IMAGE_SIZE = 28

#: the four files of an MNIST-like dataset, per split: (images, labels)
FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_FILES: tuple[str, ...] = tuple(name for pair in FILES.values() for name in pair)

_FIX = "delete it and download again (data.download=true) or copy a good copy there by hand"


def _corrupt(path: Path, what: str) -> DataError:
    return DataError(f"{path.name} in {path.parent} is corrupt: {what}; {_FIX}")


def _read_bytes(path: Path) -> bytearray:
    """The file's (decompressed) bytes, in a writable buffer torch can share without a copy."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return bytearray(f.read())
        buf = bytearray(path.stat().st_size)
        with open(path, "rb") as f:
            got = f.readinto(buf)
        return buf[:got] if got != len(buf) else buf
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _corrupt(path, f"not a complete gzip file ({one_line(str(e), 100)})") from None
    except OSError as e:
        raise DataError(f"cannot read {path.name} in {path.parent}: {one_line(str(e), 100)}") from None


def read_idx(path: str | Path) -> Tensor:
    """Read an unsigned-byte IDX file (plain or ``.gz``) into a uint8 tensor.

    Args:
        path: the file.

    Returns:
        uint8 tensor with the file's dimensions, e.g. (N, 28, 28) or (N,).

    Raises:
        DataError: unreadable file, bad magic number, unsupported type, or a length that does
            not match the header (truncated or trailing bytes).
    """
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise _corrupt(path, f"only {len(buf)} bytes, shorter than the 4-byte IDX magic number")
    if buf[0] != 0 or buf[1] != 0:
        magic = int.from_bytes(buf[:4], "big")
        raise _corrupt(path, f"bad magic number 0x{magic:08x} (an IDX file starts 0x0000)")
    if buf[2] != UBYTE:
        raise _corrupt(path, f"type code 0x{buf[2]:02x}, expected 0x08 (unsigned byte)")
    ndim = buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise _corrupt(path, f"truncated header ({len(buf)} bytes, {ndim} dims need {header})")
    dims = struct.unpack(f">{ndim}I", bytes(buf[4:header]))
    expected = header + math.prod(dims)
    if len(buf) < expected:
        raise _corrupt(path, f"truncated: {len(buf)} bytes, shape {dims} needs {expected}")
    if len(buf) > expected:
        raise _corrupt(path, f"{len(buf) - expected} unexpected bytes after the {dims} data")
    if math.prod(dims) == 0:
        return torch.zeros(dims, dtype=torch.uint8)
    return torch.frombuffer(buf, dtype=torch.uint8, offset=header).view(dims)


def write_idx(path: str | Path, data: Tensor) -> Path:
    """Write a uint8 tensor as an IDX file (gzip-compressed when ``path`` ends in ``.gz``).

    Args:
        path: destination; parent directories are created.
        data: uint8 tensor of any shape, e.g. (N, 28, 28) images or (N,) labels.

    Returns:
        The path written.
    """
    path = Path(path)
    if data.dtype != torch.uint8:
        raise ValueError(f"write_idx writes uint8 tensors only, got {data.dtype}")
    header = bytes([0, 0, UBYTE, data.dim()]) + struct.pack(f">{data.dim()}I", *data.shape)
    payload = header + data.contiguous().cpu().numpy().tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, compresslevel=1) if path.suffix == ".gz" else payload)
    return path


def locate(raw_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Find the four files in ``raw_dir``, preferring the plain file over its ``.gz``.

    Returns:
        (found: file name -> path on disk, missing: names of files found in neither form)
    """
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in ALL_FILES:
        for candidate in (raw_dir / name, raw_dir / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def load_split(image_path: Path, label_path: Path, num_classes: int = 10) -> tuple[Tensor, Tensor]:
    """Read and cross-check one split's image and label files.

    Returns:
        images (N, 28, 28) uint8 and labels (N,) int64, on the CPU.

    Raises:
        DataError: a file is corrupt, has the wrong shape, labels out of range, or the two
            files disagree on N.
    """
    images = read_idx(image_path)
    if images.dim() != 3 or tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        shape = tuple(images.shape)
        raise _corrupt(image_path, f"images of shape {shape}, expected (N, 28, 28)")
    labels = read_idx(label_path)
    if labels.dim() != 1:
        raise _corrupt(label_path, f"labels of shape {tuple(labels.shape)}, expected (N,)")
    if len(labels) != len(images):
        raise DataError(
            f"{image_path.name} has {len(images)} images but {label_path.name} has "
            f"{len(labels)} labels in {image_path.parent}; one of them is from another dataset "
            f"or truncated; {_FIX}"
        )
    if len(labels) and int(labels.max()) >= num_classes:
        bad = int(labels.max())
        raise _corrupt(label_path, f"label {bad} found, valid labels are 0..{num_classes - 1}")
    return images, labels.long()
