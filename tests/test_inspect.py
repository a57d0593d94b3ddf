"""rnnzoo-inspect on tiny run and sweep directories (fake IDX data): the files, summary.json,
init = the model training started from, the run's own permutation, the sweep overlay, the
results.md link, user cells with a spatial state, one-line errors."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_cfg

from rnnzoo import registry
from rnnzoo.report.inspect import inspect_path, inspect_run
from rnnzoo.report.inspect_cli import main
from rnnzoo.report.measure import build_job, run_config, use_saved_permutation
from rnnzoo.report.results import write_report
from rnnzoo.training import train

FILES = ("grad_flow.png", "spectrum.png", "hidden.png", "summary.json", "grad_flow.json")


@pytest.fixture
def root(tiny_mnist_root: Path) -> Path:
    return tiny_mnist_root


def _train(root: Path, run_dir: Path, *overrides: str) -> Path:
    train(tiny_cfg(root, "trainer.epochs=1", "model.engine=loop", *overrides), run_dir=run_dir)
    return run_dir


def _finite_numbers(node) -> list[float]:
    if isinstance(node, dict):
        return [v for x in node.values() for v in _finite_numbers(x)]
    if isinstance(node, list):
        return [v for x in node for v in _finite_numbers(x)]
    return [node] if isinstance(node, (int, float)) and not isinstance(node, bool) else []


def test_inspect_writes_pictures_and_a_finite_summary(root, tmp_path):
    run = _train(root, tmp_path / "run", "model=lstm", "model.num_layers=2")
    result = inspect_run(run, samples=8, device="cpu")
    out = run / "inspect"
    assert all((out / name).stat().st_size > 0 for name in FILES)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["cell"], summary["task"], summary["seq_len"]) == ("lstm", "rowmnist", 28)
    assert [layer["layer"] for layer in summary["layers"]] == ["layer0", "layer1"]
    for layer in summary["layers"]:
        for key in ("grad_norm_first_over_last", "log10_grad_norm_first_over_last"):
            assert set(layer[key]) == {"init", "checkpoint"}
            assert all(v is not None and math.isfinite(v) for v in layer[key].values())
        assert set(layer["spectral_radius"]["init"]) == {"W_hi", "W_hf", "W_hg", "W_ho"}
        assert layer["grad_norm_last_step"] == {"init": 28, "checkpoint": 28}
    assert all(math.isfinite(v) for v in _finite_numbers(summary))
    ratio = summary["layers"][0]["log10_grad_norm_first_over_last"]["checkpoint"]
    assert ratio == pytest.approx(result.final.flow.log10_first_over_last(0))
    curves = json.loads((out / "grad_flow.json").read_text())["log10_grad_norm"]
    assert len(curves["init"]["layer0"]) == 28 and len(curves["checkpoint"]["layer1"]) == 28
    assert set(result.digits.labels) == set(result.digits.labels) and len(result.digits.labels) == 3


def test_init_is_the_model_training_started_from(root, tmp_path):
    """With lr = 0 the best checkpoint IS the training start: init and checkpoint agree."""
    run = _train(root, tmp_path / "run", "model=rnn", "optim.lr=0.0")
    result = inspect_run(run, samples=4, device="cpu", plots=False)
    assert [s.spectral_radius for s in result.init.spectra] == [
        s.spectral_radius for s in result.final.spectra
    ]
    for a, b in zip(result.init.flow.log10_norms, result.final.flow.log10_norms, strict=True):
        assert (a == b).all()
    other = _train(root, tmp_path / "seed1", "model=rnn", "optim.lr=0.0", "seed=1")
    assert (
        inspect_run(other, samples=4, device="cpu", plots=False)
        .init.spectra[0]
        .eigenvalues.tolist()
        != result.init.spectra[0].eigenvalues.tolist()
    )


def test_checkpoint_init_only_and_missing_checkpoint(root, tmp_path):
    run = _train(root, tmp_path / "run", "model=gru")
    result = inspect_run(run, checkpoint="init", samples=4, device="cpu", plots=False)
    assert result.final is result.init
    (run / "checkpoints" / "last.pt").unlink()
    assert main([str(run), "--checkpoint", "last", "--no-plots", "--device", "cpu"]) == 2


def test_permuted_run_uses_its_saved_permutation(root, tmp_path):
    run = _train(root, tmp_path / "run", "data.permute=true", "data.name=prowmnist")
    saved = torch.load(run / "permutation.pt")
    job = build_job(run_config(run, None), "cpu", None)
    assert use_saved_permutation(job, run) == []  # the config draws the same one
    torch.save(saved.flip(0), run / "permutation.pt")
    notes = use_saved_permutation(job, run)
    assert len(notes) == 1 and torch.equal(job.data.test.permutation, saved.flip(0))


def test_sweep_overlay_and_results_link(root, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for i, gain in enumerate((0.5, 1.0)):
        _train(root, sweep / f"{i}_rnn", "model=rnn", f"model.cell_kwargs.recurrent_gain={gain}")
    _train(root, sweep / "2_lstm", "model=lstm")
    assert main([str(sweep), "--samples", "4", "--device", "cpu"]) == 0
    assert "overlay" in capsys.readouterr().out
    assert (sweep / "inspect" / "grad_flow_rowmnist.png").stat().st_size > 0
    rows = json.loads((sweep / "inspect" / "sweep.json").read_text())
    assert sorted(r["label"] for r in rows) == [
        "lstm",
        "rnn recurrent_gain=0.5",
        "rnn recurrent_gain=1.0",
    ]
    assert all((sweep / r["run_dir"] / "inspect" / "summary.json").is_file() for r in rows)
    report = write_report([sweep], sweep / "results", plots=False)
    assert "(../inspect/grad_flow_rowmnist.png)" in report.table_path.read_text()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "nowhere" in err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "no runs below" in capsys.readouterr().err


SPATIAL_CELL = '''
import torch
from rnnzoo import RecurrentCell


class SpatialRNN(RecurrentCell):
    """A 1-D convolutional tanh RNN over (C=2, W=3) state maps; no recurrent matrix exposed."""

    state_shape = (2, 3)

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.inp = torch.nn.Linear(input_size, hidden_size)
        self.conv = torch.nn.Conv1d(2, 2, 3, padding=1)

    def reset_parameters(self):  # torch's defaults
        pass

    def input_projection(self, x):
        return self.inp(x)

    def step(self, xp_t, state, rec_mask=None):
        (h,) = state
        h_rec = h if rec_mask is None else h * rec_mask
        h = torch.tanh(xp_t + self.conv(h_rec.view(-1, 2, 3)).flatten(1))
        return h, (h,)
'''


@pytest.fixture
def spatial_cell(tmp_path, monkeypatch):
    """``spatialcells:SpatialRNN``, a user cell from a module on sys.path (module:Class)."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "spatialcells.py").write_text(SPATIAL_CELL)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "spatialcells", raising=False)
    monkeypatch.setattr(registry, "_USER_CELLS", {})
    yield "spatialcells:SpatialRNN"
    sys.modules.pop("spatialcells", None)


def test_user_cell_with_spatial_state_and_no_matrix(root, tmp_path, spatial_cell):
    run = _train(
        root,
        tmp_path / "run",
        "model=custom",
        f"model.cell={spatial_cell}",
        "model.cell_kwargs=null",
        "model.hidden_size=6",
    )
    result = inspect_run(run, samples=4, digits=2, device="cpu")
    (layer,) = result.digits.layers
    assert layer.state_shape == (2, 3) and layer.maps[0].shape == (2, 28, 2, 3)
    assert result.init.spectra == [] and "no recurrent matrix" in result.init.notes[0]
    summary = json.loads((run / "inspect" / "summary.json").read_text())
    assert summary["layers"][0]["spectral_radius"] == {"init": {}, "checkpoint": {}}
    assert math.isfinite(summary["layers"][0]["log10_grad_norm_first_over_last"]["checkpoint"])
    assert (run / "inspect" / "hidden.png").stat().st_size > 0


def test_inspect_path_on_a_single_run(root, tmp_path):
    run = _train(root, tmp_path / "run", "model=indrnn")
    (result,) = inspect_path(run, samples=4, device="cpu", plots=False)
    assert result.init.spectra[0].kind == "diagonal"


def test_convlstm_gets_state_maps_and_gates(root, tmp_path):
    run = _train(root, tmp_path / "run", "model=convlstm", "model.hidden_size=56")
    result = inspect_run(run, samples=4, digits=2, device="cpu")
    (layer,) = result.digits.layers
    channels = 56 // 28
    assert layer.state_shape == (channels, 28) and layer.state_names == ("h", "c")
    assert [m.shape for m in layer.maps] == [(2, 28, channels, 28)] * 2  # h and c maps
    assert set(layer.gates) == {"i", "f", "o"}
    assert (run / "inspect" / "hidden.png").stat().st_size > 0
