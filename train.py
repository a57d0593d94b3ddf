"""Train one recurrent cell on Sequential MNIST (or a relative) and record the result.

    python train.py                                   # LSTM on sMNIST, 10 epochs
    python train.py --model-type=lstm --hx=50 --layers=2          # classic rnn_zoo flags
    python train.py model=gru data=psmnist optim.lr=3e-4          # Hydra overrides
    python train.py -m --model-type=lstm,gru seed=0,1             # a sweep
    python train.py --help                                        # every option

``main`` returns the best validation accuracy, the value a Hydra sweeper maximizes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rnnzoo.errors import UserError, print_error
from rnnzoo.training import train
from rnnzoo.training.cli import rewrite_sys_argv

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent / "conf"
#: what a sweeper gets from a job that failed or diverged: the worst possible accuracy, so a
#: maximizing sweeper ranks it last and avoids that region (inf or nan break some sweepers);
#: metrics.json keeps the job's real numbers
FAILED_VALUE = 0.0


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Train the configured job; return its best validation accuracy (a fraction in [0, 1])."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        result = train(cfg)
    except UserError as err:  # train() recorded it in metrics.json as "failed"
        if multirun:  # one bad job must not end the sweep
            log.error("job failed: %s", err)
            return FAILED_VALUE
        print_error(err)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (recorded as interrupted)
        sys.exit(130)
    except Exception:  # a bug or e.g. out of memory: recorded as "failed" in metrics.json
        if not multirun:
            raise
        log.exception("job failed; the sweep goes on")  # the rest of the sweep still runs
        return FAILED_VALUE
    if result["status"] == "interrupted":
        sys.exit(130)  # also ends a sweep: Ctrl-C means stop
    if result["status"] == "diverged":
        if not multirun:
            sys.exit(1)  # the one-line reason was logged
        return FAILED_VALUE
    return FAILED_VALUE if result["val_acc"] is None else float(result["val_acc"])


if __name__ == "__main__":
    rewrite_sys_argv(CONF_DIR)  # classic flags -> Hydra overrides; exits 2 on a bad flag
    main()
