"""`python -m generate.clean IN OUT`: the defect detectors applied to any Alpaca-format file.

The public entry point (a contract other tools rely on); the code is in `generate.quality.clean`.
"""

import sys

from generate.quality.clean import main

if __name__ == "__main__":
    sys.exit(main())
