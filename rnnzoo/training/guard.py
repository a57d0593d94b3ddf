"""A Hydra callback that refuses a resume of another run before Hydra writes anything.

Hydra saves ``.hydra/config.yaml`` and opens ``train.log`` in the run directory before the
task function runs, so a resume that ``train()`` refuses would still have overwritten the
run's recorded config. ``ResumeGuard.on_run_start`` runs before that (single runs; a sweep's
jobs are checked by ``train()`` itself, after Hydra set up their directories) and applies the
same check: one line, exit code 1, the run dir untouched. Enabled in conf/hydra/default.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rnnzoo.errors import UserError, print_error
from rnnzoo.training.checkpoints import open_resume
from rnnzoo.training.runtime import run_config


class ResumeGuard(Callback):
    """Checks ``trainer.resume`` against the composed config before a single run starts."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        resume = OmegaConf.select(config, "trainer.resume", default=None)
        if not resume:
            return
        try:
            run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir")))
            open_resume(str(resume), run_dir, run_config(config))
        except UserError as err:
            print_error(err)
            sys.exit(1)
