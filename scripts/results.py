"""Results table and learning curves from run / sweep directories (``rnnzoo-results``).

    python scripts/results.py multirun/2025-01-31/12-00-00.123456
    python scripts/results.py multirun/ outputs/ -o results/ --no-plots

The logic lives in rnnzoo/report/ (this is the console entry point ``rnnzoo-results``).
"""

import sys

from rnnzoo.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
