"""Data pipeline: views, normalization, permutation, splits, batching, config (the raw
files themselves, errors and download: tests/test_data_files.py).

Every test writes its own tiny IDX files (tests/idx_fixtures.py); no network, no system data.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from idx_fixtures import all_x, make_idx_root, one_line_error, raw_dir, tiny_cfg
from omegaconf import OmegaConf

import rnnzoo.data.sources as sources_mod
from rnnzoo.data import SOURCES, build_data, canonical_name, resolve_root
from rnnzoo.data.idx import FILES, read_idx, write_idx
from rnnzoo.errors import UserError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "data"
N_TRAIN, N_TEST, VAL = 300, 100, 50


def indexed_root(path: Path, n_train: int = 45, n_test: int = 20) -> Path:
    """A root whose image i carries i in pixels (0, 0) and (0, 1), so batches can be traced."""
    for n, (img, lbl) in ((n_train, FILES["train"]), (n_test, FILES["test"])):
        ids = torch.arange(n)
        images = torch.zeros(n, 28, 28, dtype=torch.uint8)
        images[:, 0, 0], images[:, 0, 1] = (ids % 256).to(torch.uint8), (ids // 256).to(torch.uint8)
        write_idx(raw_dir(path) / img, images)
        write_idx(raw_dir(path) / lbl, (ids % 10).to(torch.uint8))
    return path


def decode_ids(x: torch.Tensor) -> torch.Tensor:
    """Image ids from an unpermuted pixel-view batch x (784, B, 1)."""
    src = SOURCES["mnist"]
    raw = torch.round((x[:2, :, 0] * src.std + src.mean) * 255).long()  # (2, B)
    return raw[0] + 256 * raw[1]


# --- shapes, views, normalization -----------------------------------------------------------


@pytest.mark.parametrize("source", ["mnist", "fashion"])
@pytest.mark.parametrize(("view", "seq_len", "input_size"), [("pixel", 784, 1), ("row", 28, 28)])
@pytest.mark.parametrize("permute", [False, True])
def test_shapes_and_dtypes(tmp_path, source, view, seq_len, input_size, permute):
    root = make_idx_root(tmp_path, source=source, n_train=N_TRAIN, n_test=N_TEST)
    data = build_data(tiny_cfg(root, source=source, view=view, permute=permute), "cpu")
    assert (data.seq_len, data.input_size, data.num_classes) == (seq_len, input_size, 10)
    assert (len(data.train), len(data.val), len(data.test)) == (N_TRAIN - VAL, VAL, N_TEST)
    for split in (data.train, data.val, data.test):
        x, y = next(split.batches(16, shuffle=True))
        assert x.shape == (seq_len, 16, input_size) and x.dtype == torch.float32
        assert y.shape == (16,) and y.dtype == torch.int64
        assert x.is_contiguous() and x.device.type == "cpu"
        assert y.min() >= 0 and y.max() <= 9


@pytest.mark.parametrize("source", ["mnist", "fashion"])
@pytest.mark.parametrize("view", ["pixel", "row"])
def test_views_lay_out_normalized_pixels(tmp_path, source, view):
    root = make_idx_root(tmp_path, source=source, n_test=30)
    data = build_data(tiny_cfg(root, source=source, view=view), "cpu")
    images = read_idx(raw_dir(root, source) / "t10k-images-idx3-ubyte").float()  # (N, 28, 28)
    mean, std = {"mnist": (0.1307, 0.3081), "fashion": (0.2860, 0.3530)}[source]
    normalized = (images / 255 - mean) / std
    if view == "pixel":
        expected = normalized.reshape(30, 784).T.unsqueeze(-1)  # (784, N, 1), row-major pixels
    else:
        expected = normalized.permute(1, 0, 2)  # (28, N, 28), row r at step r
    torch.testing.assert_close(all_x(data.test, 8), expected, rtol=0, atol=1e-5)
    labels = torch.cat([y for _, y in data.test.batches(8)])
    assert torch.equal(labels, read_idx(raw_dir(root, source) / "t10k-labels-idx1-ubyte").long())


# --- permutation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("view", "seq_len"), [("pixel", 784), ("row", 28)])
def test_permutation_is_fixed_and_applied_to_every_split(tiny_mnist_root, view, seq_len):
    plain = build_data(tiny_cfg(tiny_mnist_root, view=view), "cpu")
    torch.manual_seed(1)
    rng_before = torch.get_rng_state()
    permuted = build_data(
        tiny_cfg(tiny_mnist_root, view=view, permute=True, permutation_seed=7), "cpu"
    )
    assert torch.equal(torch.get_rng_state(), rng_before), "permutation must not use the global RNG"
    perm = permuted.permutation
    assert perm.shape == (seq_len,) and perm.dtype == torch.int64
    assert torch.equal(perm.sort().values, torch.arange(seq_len))
    assert not torch.equal(perm, torch.arange(seq_len))
    assert torch.equal(perm, torch.randperm(seq_len, generator=torch.Generator().manual_seed(7)))
    for name in ("train", "val", "test"):
        x_plain, x_perm = all_x(getattr(plain, name)), all_x(getattr(permuted, name))
        assert torch.equal(x_perm, x_plain[perm]), name  # step t shows original step perm[t]
    again = build_data(
        tiny_cfg(tiny_mnist_root, view=view, permute=True, permutation_seed=7), "cpu"
    )
    other = build_data(
        tiny_cfg(tiny_mnist_root, view=view, permute=True, permutation_seed=8), "cpu"
    )
    assert torch.equal(again.permutation, perm)
    assert not torch.equal(other.permutation, perm)
    assert plain.permutation is None


def test_save_permutation(tiny_mnist_root, tmp_path):
    data = build_data(tiny_cfg(tiny_mnist_root, permute=True, permutation_seed=3), "cpu")
    path = data.save_permutation(tmp_path / "run")
    assert path == tmp_path / "run" / "permutation.pt"
    assert torch.equal(torch.load(path), data.permutation)
    info = json.loads((tmp_path / "run" / "permutation.json").read_text())
    assert info["seed"] == 3 and info["view"] == "pixel" and info["seq_len"] == 784
    plain = build_data(tiny_cfg(tiny_mnist_root), "cpu")
    assert plain.save_permutation(tmp_path / "plain") is None
    assert not (tmp_path / "plain").exists()


# --- validation split -----------------------------------------------------------------------


def test_val_split_disjoint_deterministic_and_from_train(tiny_mnist_root):
    a = build_data(tiny_cfg(tiny_mnist_root, split_seed=5), "cpu")
    b = build_data(tiny_cfg(tiny_mnist_root, split_seed=5), "cpu")
    c = build_data(tiny_cfg(tiny_mnist_root, split_seed=6), "cpu")
    train, val = set(a.train.indices.tolist()), set(a.val.indices.tolist())
    assert len(val) == VAL and not train & val and train | val == set(range(N_TRAIN))
    assert torch.equal(a.val.indices, b.val.indices) and torch.equal(all_x(a.val), all_x(b.val))
    assert not torch.equal(a.val.indices, c.val.indices)
    images = read_idx(raw_dir(tiny_mnist_root) / "train-images-idx3-ubyte")
    labels = read_idx(raw_dir(tiny_mnist_root) / "train-labels-idx1-ubyte").long()
    assert torch.equal(a.val.images, images[a.val.indices])
    assert torch.equal(a.val.labels, labels[a.val.indices])
    assert torch.equal(a.test.images, read_idx(raw_dir(tiny_mnist_root) / "t10k-images-idx3-ubyte"))


@pytest.mark.parametrize("val_size", [0, N_TRAIN, 5000, -1])
def test_val_size_out_of_range(tiny_mnist_root, val_size):
    with pytest.raises(UserError) as e:
        build_data(tiny_cfg(tiny_mnist_root, val_size=val_size), "cpu")
    assert "data.val_size" in one_line_error(e)


# --- batching -------------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_cover_an_epoch_exactly_once(tmp_path, shuffle):
    data = build_data(tiny_cfg(indexed_root(tmp_path), val_size=5), "cpu")
    split = data.train  # 40 images
    batches = list(split.batches(16, shuffle=shuffle, seed=1, epoch=2))
    assert [len(y) for _, y in batches] == [16, 16, 8]  # last partial batch kept
    assert split.num_batches(16) == 3
    ids = torch.cat([decode_ids(x) for x, _ in batches])
    assert sorted(ids.tolist()) == sorted(split.indices.tolist())
    labels = torch.cat([y for _, y in batches])
    assert torch.equal(labels, ids % 10)  # labels travel with their images
    if not shuffle:
        assert torch.equal(ids, split.indices)


def test_limit_caps_batches(tiny_mnist_root):
    split = build_data(tiny_cfg(tiny_mnist_root), "cpu").train  # 250 images
    assert split.num_batches(16) == 16
    assert split.num_batches(16, limit=3) == 3 and len(list(split.batches(16, limit=3))) == 3
    assert split.num_batches(16, limit=100) == 16
    assert split.num_batches(16, limit=0) == 0 and list(split.batches(16, limit=0)) == []


def test_shuffle_depends_only_on_seed_and_epoch(tmp_path):
    split = build_data(tiny_cfg(indexed_root(tmp_path), val_size=5), "cpu").train

    def order(**kw):
        return torch.cat([decode_ids(x) for x, _ in split.batches(8, shuffle=True, **kw)])

    torch.manual_seed(0)
    first = order(seed=0, epoch=0)
    torch.manual_seed(99)  # the global RNG must not matter
    assert torch.equal(order(seed=0, epoch=0), first)
    assert not torch.equal(order(seed=0, epoch=1), first)
    assert not torch.equal(order(seed=1, epoch=0), first)
    assert not torch.equal(order(seed=1, epoch=0), order(seed=0, epoch=1))
    assert not torch.equal(first, split.indices)


# --- config ---------------------------------------------------------------------------------


def test_accepts_dict_dictconfig_and_namespace(tiny_mnist_root):
    cfg = tiny_cfg(tiny_mnist_root, view="row", permute=True)
    built = [build_data(c, "cpu") for c in (cfg, OmegaConf.create(cfg), SimpleNamespace(**cfg))]
    for data in built[1:]:
        assert torch.equal(all_x(data.val), all_x(built[0].val))


@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("source", "cifar", "mnist, fashion"),
        ("view", "column", "pixel, row"),
        ("permute", "yes", "true or false"),
        ("batch_size", 0, ">= 1"),
        ("permutation_seed", 1.5, "integer"),
    ],
)
def test_bad_config_values(tiny_mnist_root, key, value, expect):
    with pytest.raises(UserError) as e:
        build_data(tiny_cfg(tiny_mnist_root, **{key: value}), "cpu")
    message = one_line_error(e)
    assert f"data.{key}" in message and expect in message


def test_root_resolution(tmp_path, monkeypatch):
    repo = Path(sources_mod.__file__).resolve().parents[2]
    assert (repo / "pyproject.toml").is_file()
    assert resolve_root(None) == repo / "data" == resolve_root("")
    monkeypatch.chdir(tmp_path)
    assert resolve_root("mydata") == tmp_path / "mydata"
    assert resolve_root(str(tmp_path / "abs")) == tmp_path / "abs"
    assert resolve_root("~/x") == Path.home() / "x"


def test_relative_root_loads_from_launch_dir(tmp_path, monkeypatch):
    make_idx_root(tmp_path / "rel")
    monkeypatch.chdir(tmp_path)
    assert len(build_data(tiny_cfg("rel"), "cpu").test) == N_TEST


def test_config_files_are_complete_and_named_after_their_knobs():
    files = sorted(CONF_DIR.glob("*.yaml"))
    assert {f.stem for f in files} >= {"smnist", "psmnist", "rowmnist", "fashion", "pfashion"}
    keys = set(tiny_cfg("x"))
    for f in files:
        cfg = OmegaConf.load(f)
        assert set(cfg) == keys, f.name
        assert cfg.name == f.stem == canonical_name(cfg.source, cfg.view, cfg.permute)
        assert cfg.root is None and cfg.download is True and cfg.val_size == 5000


def test_override_combination_name_follows_knobs(tmp_path, caplog):
    root = make_idx_root(tmp_path, source="fashion")
    local = {"root": str(root), "download": False, "val_size": VAL}
    # data=fashion data.view=row, merged as Hydra would: the name follows the knobs
    cfg = OmegaConf.merge(OmegaConf.load(CONF_DIR / "fashion.yaml"), {"view": "row"}, local)
    with caplog.at_level(logging.WARNING, logger="rnnzoo.data"):
        data = build_data(cfg, "cpu")
        assert (data.source, data.seq_len, data.input_size) == ("fashion", 28, 28)
        assert data.name == "rowfashion"
        permuted = OmegaConf.merge(cfg, {"permute": True})
        assert build_data(permuted, "cpu").name == "prowfashion"
        build_data(OmegaConf.merge(cfg, {"name": "my_ablation"}), "cpu")  # custom: deliberate
    assert caplog.text == ""
    # a preset name that contradicts the knobs (set by hand) is warned about
    with caplog.at_level(logging.WARNING, logger="rnnzoo.data"):
        assert build_data(OmegaConf.merge(cfg, {"name": "fashion"}), "cpu").name == "fashion"
    assert "data.name=rowfashion" in caplog.text


# --- fixtures for other tests ---------------------------------------------------------------


def test_fake_data_is_learnable(tiny_data_cfg):
    data = build_data({**tiny_data_cfg, "view": "row"}, "cpu")
    x, y = next(data.train.batches(len(data.train)))  # (28, N, 28)
    features = x.mean(0)  # (N, 28) column profile
    centroids = torch.stack([features[y == k].mean(0) for k in range(10)])  # (10, 28)
    xv, yv = next(data.val.batches(len(data.val)))
    predicted = torch.cdist(xv.mean(0), centroids).argmin(1)
    assert (predicted == yv).float().mean() > 0.9


def test_fake_gz_round_trip(tmp_path):
    values = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    assert torch.equal(read_idx(write_idx(tmp_path / "a.gz", values)), values)
    assert gzip.decompress((tmp_path / "a.gz").read_bytes())[:4] == b"\x00\x00\x08\x03"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches(tiny_mnist_root):
    data = build_data(tiny_cfg(tiny_mnist_root, permute=True), "cuda")
    x, y = next(data.train.batches(16, shuffle=True))
    assert x.is_cuda and y.is_cuda and data.train.images.is_cuda
    cpu = build_data(tiny_cfg(tiny_mnist_root, permute=True), "cpu")
    torch.testing.assert_close(x.cpu(), next(cpu.train.batches(16, shuffle=True))[0])
