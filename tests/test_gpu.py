"""GPU tier (``python -m pytest -m gpu`` on a CUDA machine; skipped cleanly without CUDA):
every engine against ``loop`` on CUDA in float32, a bf16 training run, kill + resume on CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from idx_fixtures import make_idx_root
from train_helpers import tiny_cfg

from rnnzoo.engines import valid_engines
from rnnzoo.model import SequenceClassifier
from rnnzoo.registry import create_cell, list_cells
from rnnzoo.training import checkpoints, train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
CUDA = ("device=cuda",)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_root(tmp_path_factory.mktemp("data"))


def _logits_and_grads(model: SequenceClassifier, x: torch.Tensor):
    logits, _ = model(x)  # (B, C)
    (logits * torch.arange(logits.numel(), device=x.device).view_as(logits)).sum().backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", list_cells())
def test_every_engine_matches_loop_on_cuda(name: str) -> None:
    torch.manual_seed(0)
    kw = dict(num_layers=2, num_classes=5)
    loop = SequenceClassifier(name, 3, 16, engine="loop", **kw).cuda()
    x = torch.randn(50, 4, 3, device="cuda")  # (T, B, I)
    ref_logits, ref_grads = _logits_and_grads(loop, x)
    engines = [e for e in valid_engines(create_cell(name, 3, 16), "cuda") if e != "loop"]
    for engine in engines:
        model = SequenceClassifier(name, 3, 16, engine=engine, **kw).cuda()
        model.load_state_dict(loop.state_dict())
        logits, grads = _logits_and_grads(model, x)
        torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4, msg=engine)
        for n, g in grads.items():
            torch.testing.assert_close(g, ref_grads[n], atol=1e-4, rtol=1e-3, msg=f"{engine} {n}")


def test_bf16_run_on_cuda(root: Path, tmp_path: Path) -> None:
    result = train(tiny_cfg(root, *CUDA, "trainer.precision=bf16"), run_dir=tmp_path)
    assert result["status"] == "completed" and result["engine"]
    assert result["test_loss"] is not None and result["test_loss"] == result["test_loss"]


class Killed(BaseException):
    """Stands in for SIGKILL: not an Exception, so train() records nothing."""


def test_kill_then_resume_on_cuda(root: Path, tmp_path: Path, monkeypatch) -> None:
    args = (*CUDA, "trainer.ckpt_every_steps=3")
    reference = train(tiny_cfg(root, *args), run_dir=tmp_path / "reference")
    real = checkpoints.save

    def save(path: Path, payload: dict) -> None:
        real(path, payload)
        if path.name == "last.pt" and payload["progress"]["epoch"] == 1:  # mid epoch 2
            raise Killed

    monkeypatch.setattr(checkpoints, "save", save)
    with pytest.raises(Killed):
        train(tiny_cfg(root, *args), run_dir=tmp_path / "run")
    monkeypatch.undo()
    resumed = train(tiny_cfg(root, *args, "trainer.resume=auto"), run_dir=tmp_path / "run")
    assert (resumed["status"], resumed["steps"]) == ("completed", reference["steps"])
    assert [h["step"] for h in resumed["history"]] == [h["step"] for h in reference["history"]]
    # CUDA kernels may reduce in another order run to run: close, not bit-identical
    assert resumed["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-3)
