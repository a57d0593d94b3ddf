"""Diagnostics while training: diag/* TensorBoard scalars at every validation, their values,
``trainer.diagnostics=false``, and runs that are the same with them on or off."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from train_helpers import compared, tiny_cfg

from rnnzoo.errors import UserError
from rnnzoo.model import SequenceClassifier
from rnnzoo.report.spectra import model_spectra
from rnnzoo.training import checkpoints, train


@pytest.fixture
def root(tiny_mnist_root: Path) -> Path:
    return tiny_mnist_root


def _scalars(run_dir: Path) -> dict[str, list]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def test_diag_scalars_at_every_validation(root, tmp_path):
    result = train(tiny_cfg(root, "model=rnn"), run_dir=tmp_path)
    scalars = _scalars(tmp_path)
    diag = sorted(t for t in scalars if t.startswith("diag/"))
    assert diag == [
        "diag/grad_norm_first_over_last/layer0",
        "diag/log10_grad_norm_first_over_last/layer0",
        "diag/sigma_max/layer0/W_hh",
        "diag/spectral_radius/layer0/W_hh",
    ]
    steps = [h["step"] for h in result["history"]]
    assert all([e.step for e in scalars[t]] == steps for t in diag)
    # the last value is the spectrum of the weights saved at that step
    model = SequenceClassifier(
        **checkpoints.load(tmp_path / "checkpoints" / "last.pt")["model_args"]
    )
    checkpoints.load_weights(model, tmp_path / "checkpoints" / "last.pt")
    (spec,), _ = model_spectra(model)
    last = scalars["diag/spectral_radius/layer0/W_hh"][-1].value
    assert last == pytest.approx(spec.spectral_radius, rel=1e-6)
    assert scalars["diag/sigma_max/layer0/W_hh"][-1].value == pytest.approx(
        spec.sigma_max, rel=1e-6
    )
    ratio = scalars["diag/grad_norm_first_over_last/layer0"][-1].value
    log10 = scalars["diag/log10_grad_norm_first_over_last/layer0"][-1].value
    assert 0 < ratio < 1 and ratio == pytest.approx(10**log10, rel=1e-4)


def test_off_switch_and_same_run_either_way(root, tmp_path):
    overrides = ("model=gru", "model.num_layers=2", "model.dropout=0.2", "trainer.epochs=1")
    on = train(tiny_cfg(root, *overrides), run_dir=tmp_path / "on")
    off = train(tiny_cfg(root, *overrides, "trainer.diagnostics=false"), run_dir=tmp_path / "off")
    assert compared(on) == compared(off)
    assert not any(t.startswith("diag/") for t in _scalars(tmp_path / "off"))
    on_tags = _scalars(tmp_path / "on")
    assert {"diag/spectral_radius/layer1/W_hz", "diag/grad_norm_first_over_last/layer1"} <= set(
        on_tags
    )
    a = torch.load(tmp_path / "on" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "off" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_diagonal_cells_get_their_spectrum_and_the_gradient_ratio(root, tmp_path):
    train(tiny_cfg(root, "model=indrnn", "trainer.epochs=1"), run_dir=tmp_path)
    tags = _scalars(tmp_path)
    assert "diag/spectral_radius/layer0/u" in tags  # IndRNN's diagonal
    values = [e.value for e in tags["diag/log10_grad_norm_first_over_last/layer0"]]
    assert values and all(math.isfinite(v) for v in values)


def test_bad_value_is_a_one_line_user_error(root, tmp_path):
    with pytest.raises(UserError, match="trainer.diagnostics must be true or false"):
        train(tiny_cfg(root, "trainer.diagnostics=sometimes"), run_dir=tmp_path)
