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
# directory first on the import path, so ``import inspect`` (torch's, numpy's) finds this file,
# also when a sibling script (scripts/benchmark.py) runs. Load the standard library's module
# under its name (the import path is untouched); imported as ``inspect``, this file replaces
# itself by it and goes no further (``import`` returns what sys.modules holds at the end).
_spec = PathFinder.find_spec("inspect", [sysconfig.get_paths()["stdlib"]])
if _spec is not None and (__name__ == "inspect" or "inspect" not in sys.modules):
    sys.modules["inspect"] = _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)

if __name__ == "__main__":
    from rnnzoo.report.inspect_cli import main

    sys.exit(main())
