"""`python -m assess.human`: serve the blind comparison page."""

import sys

from assess.human.cli import main

if __name__ == "__main__":
    sys.exit(main())
