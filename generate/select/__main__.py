"""`python -m generate.select IN OUT --k N`: choose the best subset (generate/select/cli.py)."""

import sys

from generate.select.cli import main

if __name__ == "__main__":
    sys.exit(main())
