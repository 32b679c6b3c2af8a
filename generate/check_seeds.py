"""`python -m generate.check_seeds PATH`: check a seed file before paying for a run.

The public entry point (a contract other tools rely on); the code is in `generate.seeds.check`.
"""

import sys

from generate.seeds.check import main

if __name__ == "__main__":
    sys.exit(main())
