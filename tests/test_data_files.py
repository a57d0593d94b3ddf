"""Data files: torchvision's layout, .gz, missing or corrupt files (one line naming the file),
download and its failure.

Every test writes its own tiny IDX files (tests/idx_fixtures.py); no network, no system data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from idx_fixtures import all_x, make_idx_root, one_line_error, raw_dir, tiny_cfg

import rnnzoo.data.sources as sources_mod
from rnnzoo.data import build_data
from rnnzoo.data.idx import ALL_FILES, write_idx
from rnnzoo.errors import DataError

N_TRAIN, VAL = 300, 50  # tiny_cfg's split sizes (as tests/test_data.py)


def test_gz_files_load_like_plain_ones(tmp_path):
    plain = build_data(tiny_cfg(make_idx_root(tmp_path / "plain")), "cpu")
    gz = build_data(tiny_cfg(make_idx_root(tmp_path / "gz", gz=True)), "cpu")
    assert not (raw_dir(tmp_path / "gz") / "train-images-idx3-ubyte").exists()
    assert torch.equal(all_x(plain.train), all_x(gz.train))
    assert torch.equal(all_x(plain.test), all_x(gz.test))


def test_missing_file_names_file_directory_and_remedy(tiny_mnist_root):
    (raw_dir(tiny_mnist_root) / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as e:
        build_data(tiny_cfg(tiny_mnist_root), "cpu")
    message = one_line_error(e)
    assert "train-labels-idx1-ubyte" in message and str(raw_dir(tiny_mnist_root)) in message
    assert f"missing in {raw_dir(tiny_mnist_root)}: train-labels-idx1-ubyte (" in message
    assert "data.download=true" in message


def test_no_files_at_all_lists_all_four(tmp_path):
    with pytest.raises(DataError) as e:
        build_data(tiny_cfg(tmp_path, source="fashion"), "cpu")
    message = one_line_error(e)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert all(name in message for name in ALL_FILES)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _bad_magic(path: Path) -> None:
    path.write_bytes(b"\x08\x03\x00\x00" + path.read_bytes()[4:])


def _trailing(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\x00")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _small_images(path: Path) -> None:
    write_idx(path, torch.zeros(300, 27, 27, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("corrupt", "file", "what"),
    [
        (_truncate, "train-images-idx3-ubyte", "truncated"),
        (_bad_magic, "t10k-images-idx3-ubyte", "magic"),
        (_trailing, "t10k-labels-idx1-ubyte", "unexpected bytes"),
        (_empty, "train-labels-idx1-ubyte", "shorter"),
        (_small_images, "train-images-idx3-ubyte", "(N, 28, 28)"),
    ],
)
def test_corrupt_file_is_one_line_naming_file(tiny_mnist_root, corrupt, file, what):
    corrupt(raw_dir(tiny_mnist_root) / file)
    with pytest.raises(DataError) as e:
        build_data(tiny_cfg(tiny_mnist_root), "cpu")
    message = one_line_error(e)
    assert file in message and str(raw_dir(tiny_mnist_root)) in message and what in message


def test_truncated_gzip_and_mismatched_files(tmp_path):
    root = make_idx_root(tmp_path / "gz", gz=True)
    path = raw_dir(root) / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DataError) as e:
        build_data(tiny_cfg(root), "cpu")
    assert "t10k-images-idx3-ubyte.gz" in one_line_error(e) and "gzip" in str(e.value)

    root = make_idx_root(tmp_path / "plain")
    write_idx(raw_dir(root) / "t10k-labels-idx1-ubyte", torch.zeros(99, dtype=torch.uint8))
    with pytest.raises(DataError) as e:
        build_data(tiny_cfg(root), "cpu")
    assert "100 images" in one_line_error(e) and "99 labels" in str(e.value)

    write_idx(raw_dir(root) / "t10k-labels-idx1-ubyte", torch.full((100,), 10, dtype=torch.uint8))
    with pytest.raises(DataError) as e:
        build_data(tiny_cfg(root), "cpu")
    assert "label 10" in one_line_error(e)


class _OfflineDataset:
    """Stands in for torchvision.datasets.MNIST offline: noisy, leaves a partial file, fails."""

    calls: list = []

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        type(self).calls.append((root, download))
        print(
            "Downloading https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
        )
        print("  0%|          | 0/9912422", file=sys.stderr)  # tqdm's bar
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b partial")
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://ossci-datasets.s3."
            "amazonaws.com/mnist/, got:\n<urlopen error [Errno -2] Name or service not known>\n"
        )


def test_download_failure_is_one_quiet_line(tmp_path, monkeypatch, capsys):
    _OfflineDataset.calls = []
    monkeypatch.setattr(sources_mod, "_dataset_class", lambda source: _OfflineDataset)
    with pytest.raises(DataError) as e:
        build_data(tiny_cfg(tmp_path, download=True), "cpu")
    message = one_line_error(e)
    assert _OfflineDataset.calls == [(str(tmp_path), True)]
    assert "train-images-idx3-ubyte" in message and str(raw_dir(tmp_path)) in message
    assert "download" in message and "Name or service not known" in message
    assert "copy them there" in message and "<urlopen error" in message
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # torchvision's chatter is swallowed
    assert not (raw_dir(tmp_path) / "train-images-idx3-ubyte.gz").exists()  # partial removed


def test_download_fills_missing_files(tmp_path, monkeypatch):
    class FakeDataset:
        def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
            make_idx_root(root, source="fashion", gz=True)

    monkeypatch.setattr(sources_mod, "_dataset_class", lambda source: FakeDataset)
    data = build_data(tiny_cfg(tmp_path, source="fashion", download=True), "cpu")
    assert len(data.train) == N_TRAIN - VAL


def test_no_download_when_files_present(tiny_mnist_root, monkeypatch):
    def fail(source):
        raise AssertionError("must not download when the files are there")

    monkeypatch.setattr(sources_mod, "_dataset_class", fail)
    build_data(tiny_cfg(tiny_mnist_root, download=True), "cpu")
