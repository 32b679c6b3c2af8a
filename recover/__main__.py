"""`python -m recover make_diff|recover --flag value ...`."""

import sys

from recover.cli import main

if __name__ == "__main__":
    sys.exit(main())
