"""`python -m generate.evolve IN OUT`: evolve instructions (generate/evolve/cli.py)."""

import sys

from generate.evolve.cli import main

if __name__ == "__main__":
    sys.exit(main())
