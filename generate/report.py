"""`python -m generate.report DIR`: an HTML report with plots of a run's output folder.

The public entry point (a contract other tools rely on); the code is in `generate.quality.report.cli`.
"""

import sys

from generate.quality.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
