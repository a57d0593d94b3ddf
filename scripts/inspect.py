"""Gradient flow, spectra and hidden states of a run or sweep (``rnnzoo-inspect``).

    python scripts/inspect.py RUN_DIR [--checkpoint best|last|init] [--samples N]
    python scripts/inspect.py SWEEP_DIR          # every run, plus grad_flow_<task>.png

The logic lives in rnnzoo/report/ (this is the console entry point ``rnnzoo-inspect``).
"""

import importlib.util
import sys
import sysconfig
from importlib.machinery import PathFinder

# This file is named like the standard library's ``inspect`` and Python puts the script's
# directory first on the import path, so torch's ``import inspect`` would find this file.
# Load the standard library's module under its name first (the import path is untouched).
_spec = PathFinder.find_spec("inspect", [sysconfig.get_paths()["stdlib"]])
if _spec is not None and "inspect" not in sys.modules:
    sys.modules["inspect"] = _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)

from rnnzoo.report.inspect_cli import main  # noqa: E402  (after the stdlib inspect)

if __name__ == "__main__":
    sys.exit(main())
