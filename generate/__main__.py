"""`python -m generate`."""

import sys

from generate.cli import main

if __name__ == "__main__":
    sys.exit(main())
