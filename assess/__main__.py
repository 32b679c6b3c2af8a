"""`python -m assess`: answer an evaluation set and judge the answers pairwise."""

import sys

from assess.cli import main

if __name__ == "__main__":
    sys.exit(main())
