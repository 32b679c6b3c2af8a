"""`python -m recipe RECIPE.yaml ...`: see recipe/cli.py."""

import sys

from recipe.cli import main

if __name__ == "__main__":
    sys.exit(main())
