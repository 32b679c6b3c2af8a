"""`python -m recover make_diff|recover --flag value ...`."""

import sys

from recover.cli import main

sys.exit(main())
